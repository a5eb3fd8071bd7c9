"""Adapts one language of :class:`HybridASR`'s decoder to ESPnet's beam-search scorer interface."""

from __future__ import annotations

from typing import Any

import torch
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask
from espnet.nets.scorer_interface import BatchScorerInterface

from asr_transfer.model.asr import HybridASR


class DecoderScorer(BatchScorerInterface, torch.nn.Module):
    """Attention-decoder scores ``log p(next token | prefix, x)`` with a per-layer cache."""

    def __init__(self, model: HybridASR, lang: str) -> None:
        torch.nn.Module.__init__(self)
        self.model = model
        self.lang = lang

    def score(self, ys: torch.Tensor, state: Any, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp.squeeze(0), states[0]

    def batch_score(
        self, ys: torch.Tensor, states: list[Any], xs: torch.Tensor
    ) -> tuple[torch.Tensor, list[Any]]:
        """``ys`` ``(N, L)`` prefixes, ``xs`` ``(N, T, D)`` -> ``(N, V)`` log-probs and per-hyp states."""
        n_layers = len(self.model.dec_slots)
        cache = None if states[0] is None else [torch.stack([s[i] for s in states]) for i in range(n_layers)]
        mask = subsequent_mask(ys.size(-1), device=xs.device).unsqueeze(0)
        hidden, new_cache = self.model.decode_steps(ys, mask, xs, None, self.lang, cache)
        logp = torch.log_softmax(self.model.heads[self.lang].output(hidden[:, -1]).float(), dim=-1)
        return logp, [[c[b] for c in new_cache] for b in range(len(ys))]
