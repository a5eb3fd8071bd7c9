"""Reading model checkpoints, and averaging them (the files are written by
:func:`~asr_transfer.util.atomic.save_torch`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model`` state dict of a checkpoint file (tensors only: nothing in it is run).

    A file that is not such a checkpoint is a :class:`ValueError` naming it, in one line.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.pt"
        >>> _ = p.write_text("not a checkpoint")
        >>> load_model_state(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../x.pt: not a model checkpoint (...)
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's message is about loading it unsafely: not for us
        raise ValueError(f"{path}: not a model checkpoint (not a torch file of tensors)") from err
    except (RuntimeError, EOFError) as err:  # e.g. a truncated file
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ValueError(f"{path}: not a model checkpoint (torch.load: {first})") from err
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ValueError(f"{path}: not a model checkpoint (no 'model' state dict)")
    return data["model"]


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
        state = load_model_state(path)
        if avg:
            # one architecture: a parameter missing, added or of another shape is refused by name
            have, new = {k: v.shape for k, v in avg.items()}, {k: v.shape for k, v in state.items()}
            key = next((k for k in sorted(have.keys() | new.keys()) if have.get(k) != new.get(k)), None)
            if key is not None:
                raise ValueError(f"{path}: parameter '{key}' differs from {paths[0]}'s")
        for key, value in state.items():
            if not value.is_floating_point():
                avg[key] = value
            elif key in avg:
                avg[key] += value.double()
            else:
                avg[key] = value.double().clone()
    return {k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in avg.items()}
