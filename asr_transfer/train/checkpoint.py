"""Atomic checkpoints, resume state and checkpoint averaging."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_atomic(obj: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves a half-written file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.pt"
        >>> save_atomic({"a": 1}, p)
        >>> torch.load(p)["a"]
        1
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def average_checkpoints(paths: list[str | Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the ``model`` state dicts in ``paths`` (integer buffers from the last).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for i in (1, 3):
        ...     save_atomic({"model": {"w": torch.tensor([float(i)])}}, d / f"{i}.pt")
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
