"""Score Kaldi ``text`` files: read and check them, score, bootstrap, write the outputs.

Side files (``utt2spk``, ``utt2domain``, ``utt2lang``) not given explicitly are
taken from the reference's folder when present there, so scoring ``data/x/text``
or an ``exp/<system>/decode_<dataset>/ref`` finds its speakers and domains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_transfer.data.kaldi import DataError, parse_table, read_table
from asr_transfer.score import bootstrap
from asr_transfer.score.formats import GROUP_KEYS, from_json, write_outputs
from asr_transfer.score.scoring import ScoreResult, score_texts, unit_counts
from asr_transfer.text.normalize import Normalizer

SIDE_FILES = {"spk": "utt2spk", "domain": "utt2domain", "lang": "utt2lang"}


@dataclass(frozen=True)
class ScoreOptions:
    """How to score; stored in ``wer.json`` so a cached score is reused only under the same options."""

    normalizer: Normalizer = Normalizer()
    unit: str = "utt"  #: bootstrap unit: "utt" or "spk"
    n_resamples: int = bootstrap.N_RESAMPLES
    seed: int = bootstrap.SEED
    #: refuse empty references instead of scoring them as sclite and Kaldi's compute-wer do
    strict_empty_ref: bool = False

    def as_dict(self) -> dict:
        return {
            "normalizer": vars(self.normalizer),
            "unit": self.unit,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "strict_empty_ref": self.strict_empty_ref,
        }


def read_pair(ref_path: Path, hyp_path: Path, options: ScoreOptions) -> tuple[dict[str, str], dict[str, str]]:
    """Read REF and HYP; :class:`DataError` naming file and line for duplicate, extra or bad entries.

    Empty hypotheses are fine. An empty reference (before or after normalisation) is scored as
    sclite scores it (every hypothesis word an insertion, a non-empty hypothesis a sentence error),
    or is an error with ``options.strict_empty_ref``; :func:`empty_references` lists them.
    """
    ref_entries, problems = parse_table(ref_path, allow_empty_value=True)
    if problems:
        raise DataError(problems[0])
    if not ref_entries:
        raise DataError(f"{ref_path}: no utterances")
    if options.strict_empty_ref:
        for e in ref_entries:
            if not options.normalizer(e.value):
                raise DataError(
                    f"{ref_path}:{e.line}: empty reference for '{e.key}'"
                    f"{' after normalisation' if e.value else ''} (refused by --strict-empty-ref; "
                    "without it, its hypothesis words count as insertions, as in sclite)"
                )
    hyp_entries, problems = parse_table(hyp_path, allow_empty_value=True)
    if problems:
        raise DataError(problems[0])
    ref = {e.key: e.value for e in ref_entries}
    for e in hyp_entries:
        if e.key not in ref:
            raise DataError(f"{hyp_path}:{e.line}: utterance id '{e.key}' is not in the reference {ref_path}")
    return ref, {e.key: e.value for e in hyp_entries}


def empty_references(result: ScoreResult) -> list[str]:
    """Ids of the utterances whose reference is empty once normalised (scored as sclite does).

    Example:
        >>> from asr_transfer.score.scoring import score_texts
        >>> r = score_texts({"a": "x", "b": "", "c": "!!"}, {"a": "x", "b": "y z", "c": ""})
        >>> empty_references(r), r.total.words.ins, r.total.sentence_errors
        (['b', 'c'], 2, 1)
    """
    return [u.utt for u in result.utts if not u.ref]


def side_tables(ref_path: Path, given: dict[str, Path | None]) -> dict[str, dict[str, str] | None]:
    """``{"spk"|"domain"|"lang": table or None}``: the given files, else those beside the reference."""
    tables: dict[str, dict[str, str] | None] = {}
    for key, name in SIDE_FILES.items():
        path = given.get(key) or (ref_path.parent / name)
        tables[key] = read_table(path) if given.get(key) or path.is_file() else None
    return tables


def intervals(result: ScoreResult, options: ScoreOptions) -> dict[str, dict[str, bootstrap.Interval]]:
    """Bootstrap intervals of the total WER and of each speaker, domain and language group."""
    out = {"total": {"all": _interval(result, options)}}
    for key in GROUP_KEYS:
        names = result.groups(key)
        if len(names) > 1:
            out[key] = {
                name: _interval(result, options, lambda u, k=key, n=name: getattr(u, k) == n)
                for name in names
            }
    return out


def _interval(result: ScoreResult, options: ScoreOptions, keep=None) -> bootstrap.Interval:
    subset = ScoreResult([u for u in result.utts if keep is None or keep(u)], result.normalizer)
    counts = np.array(list(unit_counts(subset, options.unit).values()), dtype=np.int64)
    return bootstrap.interval(counts[:, 0], counts[:, 1], n_resamples=options.n_resamples, seed=options.seed)


def score_files(
    ref_path: Path,
    hyp_path: Path,
    options: ScoreOptions,
    *,
    out: Path | None = None,
    side: dict[str, Path | None] | None = None,
) -> tuple[ScoreResult, dict[str, dict[str, bootstrap.Interval]]]:
    """Score HYP against REF; with ``out``, write ``ref.trn``, ``hyp.trn``, ``result.txt``, ``wer.json``."""
    ref, hyp = read_pair(ref_path, hyp_path, options)
    tables = side_tables(ref_path, side or {})
    result = score_texts(
        ref,
        hyp,
        normalizer=options.normalizer,
        utt2spk=tables["spk"],
        utt2domain=tables["domain"],
        utt2lang=tables["lang"],
    )
    cis = intervals(result, options)
    if out is not None:
        meta = {"ref": str(ref_path), "hyp": str(hyp_path), "options": options.as_dict()}
        write_outputs(result, out, meta, cis)
    return result, cis


def load_or_score(decode_dir: Path, options: ScoreOptions) -> tuple[ScoreResult, dict]:
    """The score of ``decode_dir/text`` against ``decode_dir/ref``, cached in ``decode_dir/score/``.

    The cache is used when its options match and it is newer than every input file.
    Returns the result and the ``wer.json`` data.
    """
    cache = decode_dir / "score" / "wer.json"
    inputs = [decode_dir / n for n in ("text", "ref", *SIDE_FILES.values()) if (decode_dir / n).is_file()]
    if cache.is_file() and all(cache.stat().st_mtime >= p.stat().st_mtime for p in inputs):
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("options") == options.as_dict():
            return from_json(data), data
    score_files(decode_dir / "ref", decode_dir / "text", options, out=cache.parent)
    data = json.loads(cache.read_text(encoding="utf-8"))
    return from_json(data), data
