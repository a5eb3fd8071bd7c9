"""``train.compile``: ``torch.compile`` of the model's forward, or a clear error where it cannot work.

Inductor, ``torch.compile``'s default backend, writes C++ (CPU) or Triton (GPU) kernels and
builds them with the machine's compiler: a C++ compiler for CPU kernels, a C compiler for
Triton's launchers. Without one, torch fails deep inside the first training step; here the
missing compiler is named before training starts.

The model is compiled in place (``nn.Module.compile``), so its parameter names, state dicts and
checkpoints stay those of the eager model. Only ``forward`` (``model(...)``) is compiled; methods
called directly (``model.encode``...) run eagerly. The first steps of each new input shape are slow
(compilation: about a minute per graph on a 2-core CPU).
"""

from __future__ import annotations

import os
import shutil

import torch

from asr_transfer.util.errors import InputError


def required_compiler(device: torch.device) -> str:
    """The compiler Inductor calls for ``device``: ``$CXX``/``g++`` on CPU, ``$CC``/``gcc`` on GPU.

    Example:
        >>> os.environ.pop("CXX", None) and None
        >>> required_compiler(torch.device("cpu"))
        'g++'
    """
    if device.type == "cpu":
        return os.environ.get("CXX", "g++")
    return os.environ.get("CC", "gcc")


def compile_model(model: torch.nn.Module, device: torch.device, enabled: bool = True) -> torch.nn.Module:
    """Compile ``model``'s forward in place when ``enabled``; returns ``model``.

    Raises ``RuntimeError`` naming the missing compiler when Inductor could not build kernels here.

    Example:
        >>> m = torch.nn.Linear(2, 2)
        >>> compile_model(m, torch.device("cpu"), enabled=False) is m
        True
    """
    if not enabled:
        return model
    compiler = required_compiler(device)
    if shutil.which(compiler) is None:
        raise InputError(
            f"train.compile: torch.compile builds {device.type} kernels with {compiler!r}, which is not "
            f"installed here (apt-get install {'g++' if device.type == 'cpu' else 'gcc'}, or set "
            f"{'CXX' if device.type == 'cpu' else 'CC'}); or set train.compile false"
        )
    model.compile()
    return model
