"""Checkpoint averaging (the files are written by :func:`~asr_transfer.util.atomic.save_torch`)."""

from __future__ import annotations

from pathlib import Path

import torch


def average_checkpoints(paths: list[str | Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the ``model`` state dicts in ``paths`` (integer buffers from the last).

    Example:
        >>> import tempfile, pathlib
        >>> from asr_transfer.util.atomic import save_torch
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for i in (1, 3):
        ...     save_torch({"model": {"w": torch.tensor([float(i)])}}, d / f"{i}.pt")
        >>> average_checkpoints([d / "1.pt", d / "3.pt"])["w"]
        tensor([2.])
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    avg: dict[str, torch.Tensor] = {}
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        for key, value in state.items():
            if not value.is_floating_point():
                avg[key] = value
            elif key in avg:
                avg[key] += value.double()
            else:
                avg[key] = value.double().clone()
    return {k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in avg.items()}
