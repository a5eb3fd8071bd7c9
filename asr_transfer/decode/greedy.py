"""Batched CTC greedy decoding."""

from __future__ import annotations

import torch


def best_path_emissions(
    ctc_logp: torch.Tensor, lens: torch.Tensor, blank: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, V)`` log-posteriors -> ``(B, T)`` best path and ``(B, T)`` mask of the frames it emits at.

    A frame emits when its argmax is not blank and differs from its predecessor's (CTC's spikes).

    Example:
        >>> logp = torch.log(torch.tensor([[[.1, .9, 0], [.1, .9, 0], [.9, .1, 0], [.1, .0, .9]]]))
        >>> best_path_emissions(logp, torch.tensor([4]))[1].tolist()
        [[True, False, False, True]]
    """
    best = ctc_logp.argmax(-1)
    # keep a frame when it differs from its predecessor and is not blank
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    keep &= torch.arange(best.size(1), device=best.device)[None, :] < lens[:, None]
    return best, keep


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
    best, keep = best_path_emissions(ctc_logp, lens, blank)
    return [row[mask].tolist() for row, mask in zip(best, keep)]


def ctc_confidence(ctc_logp: torch.Tensor, lens: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """``(B, T, V)`` log-posteriors -> ``(B,)`` mean log best posterior over the non-blank best-path frames.

    Blank frames are left out: on noisy audio a hypothesis that is mostly blanks (deletions) would
    otherwise look confident because the blank posterior is high almost everywhere. An utterance
    whose best path is all blank (an empty hypothesis, never kept as a pseudo-label) gets the mean
    over all its frames.

    Example:
        >>> logp = torch.log(torch.tensor([[[.99, .01], [.99, .01], [.99, .01], [.4, .6]],
        ...                                [[.1, .9], [.1, .9], [.9, .1], [.1, .9]]]))
        >>> [round(c, 3) for c in ctc_confidence(logp, torch.tensor([4, 4])).tolist()]
        [-0.511, -0.105]
    """
    best, arg = ctc_logp.max(-1)
    valid = torch.arange(best.size(1), device=best.device)[None, :] < lens[:, None]
    emitted = valid & (arg != blank)
    n_emitted = emitted.sum(-1)
    on_tokens = best.masked_fill(~emitted, 0.0).sum(-1) / n_emitted.clamp_min(1)
    on_frames = best.masked_fill(~valid, 0.0).sum(-1) / lens.clamp_min(1)
    return torch.where(n_emitted > 0, on_tokens, on_frames)
