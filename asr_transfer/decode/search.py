"""Decode a batch of features: CTC greedy (batched) or joint CTC/attention beam search.

The beam search is ESPnet's ``BatchBeamSearch`` (vectorised over the beam) with
our decoder and ESPnet's ``CTCPrefixScorer``; options come from ``conf/decode/*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from espnet.nets.batch_beam_search import BatchBeamSearch
from espnet.nets.scorers.ctc import CTCPrefixScorer
from espnet.nets.scorers.length_bonus import LengthBonus

from asr_transfer.decode.greedy import ctc_greedy
from asr_transfer.decode.scorer import DecoderScorer
from asr_transfer.model.asr import HybridASR


@dataclass
class DecodeConfig:
    """``mode``: ``ctc_greedy`` or ``beam``. ``length_penalty`` is ESPnet's length bonus per token."""

    mode: str = "beam"
    beam_size: int = 10
    ctc_weight: float = 0.3
    length_penalty: float = 0.0
    maxlen_ratio: float = 0.0
    batch_size: int = 16


@torch.no_grad()
def decode_batch(model: HybridASR, feats: torch.Tensor, feat_lens: torch.Tensor, lang: str,
                 cfg: DecodeConfig) -> list[list[int]]:
    """``(B, T, 80)`` features -> token id sequences (no sos/eos/blank)."""
    model.eval()
    enc_out, enc_lens, _ = model.encode(feats, feat_lens)
    if cfg.mode == "ctc_greedy":
        return ctc_greedy(model.ctc_log_probs(enc_out, lang), enc_lens)
    if cfg.mode != "beam":
        raise ValueError(f"unknown decode mode {cfg.mode!r}: use ctc_greedy or beam")
    head = model.heads[lang]
    eos = head.vocab_size - 1
    scorers = {"decoder": DecoderScorer(model, lang), "length_bonus": LengthBonus(head.vocab_size)}
    weights = {"decoder": 1.0 - cfg.ctc_weight, "length_bonus": cfg.length_penalty}
    if cfg.ctc_weight > 0:
        scorers["ctc"] = CTCPrefixScorer(ctc=head.ctc, eos=eos)
        weights["ctc"] = cfg.ctc_weight
    search = BatchBeamSearch(scorers=scorers, weights=weights, beam_size=cfg.beam_size,
                             vocab_size=head.vocab_size, sos=eos, eos=eos, pre_beam_score_key="full")
    search.to(feats.device).eval()
    out = []
    for x, n in zip(enc_out, enc_lens):
        hyps = search(x=x[:n], maxlenratio=cfg.maxlen_ratio)
        out.append([t for t in hyps[0].yseq.tolist()[1:-1] if t != 0])
    return out
