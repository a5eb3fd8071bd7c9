"""Scoring: WER/CER/SER with S/D/I, sclite trn and Kaldi lines, paired bootstrap, reports.

Python API: :func:`score_texts` on ``{utt: text}`` dicts, :func:`score_files` on Kaldi text files.
"""

from asr_transfer.score.api import ScoreOptions, load_or_score, score_files
from asr_transfer.score.scoring import Counts, GroupScore, ScoreResult, score_texts

__all__ = [
    "Counts",
    "GroupScore",
    "ScoreOptions",
    "ScoreResult",
    "load_or_score",
    "score_files",
    "score_texts",
]
