"""Batched CTC greedy decoding."""

from __future__ import annotations

import torch


def ctc_greedy(ctc_logp: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks.

    Args:
        ctc_logp: ``(B, T, V)`` log-posteriors.
        lens: ``(B,)`` valid frames.

    Example:
        >>> logp = torch.log(torch.tensor([[[.1, .9, 0], [.1, .9, 0], [.9, .1, 0], [.1, .0, .9]]]))
        >>> ctc_greedy(logp, torch.tensor([4]))
        [[1, 2]]
    """
    best = ctc_logp.argmax(-1)
    # keep a frame when it differs from its predecessor and is not blank
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    keep &= torch.arange(best.size(1), device=best.device)[None, :] < lens[:, None]
    return [row[mask].tolist() for row, mask in zip(best, keep)]
