"""Decode a batch of features: CTC greedy (batched) or joint CTC/attention beam search.

``beam`` is our search vectorised over utterances and beams (:mod:`asr_transfer.decode.batch_beam`);
``beam_espnet`` is ESPnet's ``BatchBeamSearch`` (vectorised over the beam only, one utterance at a
time) with our decoder and ESPnet's ``CTCPrefixScorer``, kept as the reference the first is tested
against. Options come from ``conf/decode/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from espnet.nets.batch_beam_search import BatchBeamSearch
from espnet.nets.scorers.ctc import CTCPrefixScorer
from espnet.nets.scorers.length_bonus import LengthBonus

from asr_transfer.decode import tta
from asr_transfer.decode.batch_beam import batch_beam_search
from asr_transfer.decode.greedy import ctc_confidence, ctc_greedy
from asr_transfer.decode.scorer import DecoderScorer
from asr_transfer.model.asr import HybridASR
from asr_transfer.train.init import DECODING_FILE


@dataclass
class DecodeConfig:
    """Decoding options.

    ``mode``: ``ctc_greedy``, ``beam`` (batched over utterances) or ``beam_espnet`` (ESPnet's search,
    one utterance at a time; same results, much slower). ``ctc_weight``: weight of the CTC prefix
    score against the attention decoder's (0: attention only, 1: CTC only). ``length_penalty``:
    ESPnet's length bonus per token. ``maxlen_ratio``: maximum output length as a fraction of the
    encoder frames; 0 means the encoder length with ESPnet's end detection. ``batch_size``:
    utterances per batch.

    ``tta``: test-time adaptation before decoding (``none`` or ``suta``, see
    :mod:`asr_transfer.decode.tta`): ``tta_steps`` Adam steps at ``tta_lr`` on the parameter groups
    ``tta_params`` (comma-separated: ``ln``, ``frontend``, ``encoder``), per ``tta_scope``
    (``utterance`` or ``batch``), of ``tta_em_weight`` x entropy (over non-blank frames when
    ``tta_non_blank``) + ``tta_mcc_weight`` x minimum class confusion of the CTC posteriors
    smoothed by ``tta_temperature``. The defaults are ``conf/decode/ctc_greedy_suta.yaml``'s, chosen
    on dev data (the paper's entropy is over non-blank frames: ``tta_non_blank: true``).
    """

    mode: str = "beam"
    beam_size: int = 10
    ctc_weight: float = 0.3
    length_penalty: float = 0.0
    maxlen_ratio: float = 0.0
    batch_size: int = 16
    tta: str = "none"
    tta_steps: int = 3
    tta_lr: float = 3e-3
    tta_params: str = "ln"
    tta_scope: str = "utterance"
    tta_temperature: float = 2.5
    tta_em_weight: float = 0.3
    tta_mcc_weight: float = 0.7
    tta_non_blank: bool = False

    def __post_init__(self) -> None:
        tta.check_options(self)

    @classmethod
    def from_config(cls, paths: list[str], overrides: list[str]) -> DecodeConfig:
        """From ``conf/decode/*.yaml`` files plus ``--key value`` overrides; unknown keys are an error.

        Example:
            >>> DecodeConfig.from_config([], ["--mode", "ctc_greedy"]).mode
            'ctc_greedy'
        """
        from dataclasses import fields

        from asr_transfer.config import load_config

        cfg = load_config(paths, overrides)
        known = {f.name for f in fields(cls)}
        if set(cfg) - known:
            raise ValueError(f"unknown decode options {sorted(set(cfg) - known)}; known: {sorted(known)}")
        return cls(**cfg)

    @classmethod
    def for_exp(cls, exp: str | Path, paths: list[str], overrides: list[str]) -> DecodeConfig:
        """``paths`` + ``overrides``; without ``paths``, the decoding recorded in ``EXP/decode.yaml``
        (if any) is the base.

        Example:
            >>> DecodeConfig.for_exp("/nonexistent", [], ["--beam_size", "3"]).beam_size
            3
        """
        recorded = Path(exp) / DECODING_FILE
        if not paths and recorded.is_file():
            paths = [str(recorded)]
        return cls.from_config(paths, overrides)


@torch.inference_mode()
def decode_batch(
    model: HybridASR, feats: torch.Tensor, feat_lens: torch.Tensor, lang: str, cfg: DecodeConfig
) -> list[list[int]]:
    """``(B, T, 80)`` features -> token id sequences (no sos/eos/blank).

    Each utterance gets the hypothesis it gets alone, whatever its batch, up to float rounding (a
    padded batch's matrix products round differently, ~1e-6, which can only flip near-exact score
    ties): the encoder uses each utterance's own lengths and masks (``exact_lengths``) and the search
    scores, ends and stops each utterance on its own frames. Features must be those of each
    utterance alone (a frontend over a padded batch of audio may change the last frames).
    """
    return decode_batch_scored(model, feats, feat_lens, lang, cfg)[0]


@torch.inference_mode()
def decode_batch_scored(
    model: HybridASR, feats: torch.Tensor, feat_lens: torch.Tensor, lang: str, cfg: DecodeConfig
) -> tuple[list[list[int]], list[float]]:
    """``(B, T, 80)`` features -> token id sequences and ``B`` length-normalised confidences.

    Beam search: the hypothesis's total log-score divided by its number of scored steps
    (tokens + ``<eos>``), so long utterances are not ranked below short ones merely for being
    long (the reference ranks raw scores, which favours short utterances). CTC greedy: the mean
    log best posterior over the frames whose best path emits a token
    (:func:`~asr_transfer.decode.greedy.ctc_confidence`): blank frames are left out, since a
    hypothesis made mostly of blanks (deletions, on noisy audio) is confident on every blank frame.
    Both are ``<= 0``; higher means more confident.
    """
    model.eval()
    model.fast_subsampling()
    if cfg.tta == "none":
        # each utterance's lengths and masks as if decoded alone: the batch does not change its result
        enc_out, enc_lens, _ = model.encode(feats, feat_lens, exact_lengths=True)
    else:
        enc_out, enc_lens = tta.adapted_encode(model, feats, feat_lens, lang, cfg)
    if cfg.mode == "ctc_greedy":
        logp = model.ctc_log_probs(enc_out, lang)  # (B, T, V)
        return ctc_greedy(logp, enc_lens), ctc_confidence(logp, enc_lens).tolist()
    if cfg.mode == "beam":
        hyps, scores = batch_beam_search(
            model,
            enc_out,
            enc_lens,
            lang,
            cfg.beam_size,
            cfg.ctc_weight,
            cfg.length_penalty,
            cfg.maxlen_ratio,
            return_scores=True,
        )
    elif cfg.mode == "beam_espnet":
        hyps, scores = espnet_beam_search(model, enc_out, enc_lens, lang, cfg, return_scores=True)
    else:
        raise ValueError(f"unknown decode mode {cfg.mode!r}: use ctc_greedy, beam or beam_espnet")
    return hyps, [s / (len(h) + 1) for h, s in zip(hyps, scores, strict=True)]


@torch.inference_mode()
def espnet_beam_search(
    model: HybridASR,
    enc_out: torch.Tensor,
    enc_lens: torch.Tensor,
    lang: str,
    cfg: DecodeConfig,
    return_scores: bool = False,
) -> list[list[int]] | tuple[list[list[int]], list[float]]:
    """ESPnet's ``BatchBeamSearch`` on each utterance of ``(B, T, D)`` encoder output in turn.

    With ``return_scores``, also the total score of each best hypothesis.
    """
    head = model.heads[lang]
    eos = head.vocab_size - 1
    scorers = {"decoder": DecoderScorer(model, lang), "length_bonus": LengthBonus(head.vocab_size)}
    weights = {"decoder": 1.0 - cfg.ctc_weight, "length_bonus": cfg.length_penalty}
    if cfg.ctc_weight > 0:
        scorers["ctc"] = CTCPrefixScorer(ctc=head.ctc, eos=eos)
        weights["ctc"] = cfg.ctc_weight
    # CTC-only: the "full" pre-beam would rank tokens by a constant, so CTC scores every token
    pre_beam_key = "full" if cfg.ctc_weight < 1 else None
    search = BatchBeamSearch(
        scorers=scorers,
        weights=weights,
        beam_size=cfg.beam_size,
        vocab_size=head.vocab_size,
        sos=eos,
        eos=eos,
        pre_beam_score_key=pre_beam_key,
    )
    search.to(enc_out.device).eval()
    out, scores = [], []
    for x, n in zip(enc_out, enc_lens):
        hyps = search(x=x[:n], maxlenratio=cfg.maxlen_ratio)
        # at the maximum length ESPnet appends <eos> even after an <eos>: drop both specials
        out.append([t for t in hyps[0].yseq.tolist()[1:-1] if t not in (0, eos)] if hyps else [])
        scores.append(float(hyps[0].score) if hyps else float("-inf"))
    return (out, scores) if return_scores else out
