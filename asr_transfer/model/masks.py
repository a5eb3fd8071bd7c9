"""Padding masks, decoder targets and accuracy computed on the tensors' device.

ESPnet's ``make_pad_mask``, ``add_sos_eos`` and ``th_accuracy`` read lengths or counts back to
the host (``lengths.max()`` as a size, per-row slicing, ``float(...)``): on a GPU each is a
synchronisation that stalls the training step. These give the same values without one, for the
batches our collate builds (``ys`` padded with ``ignore_id`` to its longest row).
"""

from __future__ import annotations

import torch


def pad_mask(lengths: torch.Tensor, maxlen: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, maxlen)`` bool, True at padded positions (ESPnet's ``make_pad_mask``).

    Example:
        >>> pad_mask(torch.tensor([3, 1]), 4).int().tolist()
        [[0, 0, 0, 1], [0, 1, 1, 1]]
    """
    return torch.arange(maxlen, device=lengths.device) >= lengths.unsqueeze(1)


def add_sos_eos(
    ys: torch.Tensor, ys_lens: torch.Tensor, sos: int, eos: int, ignore_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, L)`` targets padded with ``ignore_id`` -> decoder inputs and outputs, both ``(B, L + 1)``.

    Inputs are ``<sos> y`` padded with ``eos``; outputs ``y <eos>`` padded with ``ignore_id``.

    Example:
        >>> ys = torch.tensor([[4, 5], [6, -1]])
        >>> ys_in, ys_out = add_sos_eos(ys, torch.tensor([2, 1]), 9, 9, -1)
        >>> ys_in.tolist(), ys_out.tolist()
        ([[9, 4, 5], [9, 6, 9]], [[4, 5, 9], [6, 9, -1]])
    """
    start = ys.new_full((ys.size(0), 1), sos)
    ys_in = torch.cat([start, ys.masked_fill(ys == ignore_id, eos)], dim=1)
    ys_out = torch.cat([ys, ys.new_full((ys.size(0), 1), ignore_id)], dim=1)
    ys_out = ys_out.scatter(1, ys_lens.unsqueeze(1), eos)
    return ys_in, ys_out


def accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore_id: int) -> torch.Tensor:
    """Share of non-ignored ``(B, L)`` targets that are the argmax of ``(B, L, V)`` logits; a 0-d tensor.

    Example:
        >>> logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
        >>> accuracy(logits, torch.tensor([[1, 1, -1]]), -1).item()
        0.5
    """
    keep = targets != ignore_id
    hits = (logits.argmax(-1) == targets) & keep
    return hits.sum() / keep.sum().clamp_min(1)
