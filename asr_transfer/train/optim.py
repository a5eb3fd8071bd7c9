"""The optimiser: Adam (betas 0.9/0.98, eps 1e-9), in its fastest implementation for the device.

With ``weight_decay`` 0 (every shipped config) Adam and AdamW make the same update; the type
stays Adam so existing experiments resume unchanged. The fused kernel (one launch for all
parameters) is the default on CUDA and is what lets a non-finite step be skipped on the device
(``found_inf``, see :mod:`asr_transfer.train.nonfinite`); on the CPU the multi-tensor (foreach)
path gives bit-identical updates to the per-parameter loop.
"""

from __future__ import annotations

import torch


def build_optimizer(
    params: list[torch.nn.Parameter],
    lr: float,
    weight_decay: float,
    device: torch.device,
    fused: bool | None = None,
) -> torch.optim.Adam:
    """Adam over ``params``; ``fused`` ``None`` means fused on CUDA, foreach elsewhere.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> opt = build_optimizer([w], 0.1, 0.0, torch.device("cpu"))
        >>> opt.defaults["fused"], opt.defaults["foreach"]
        (None, True)
        >>> build_optimizer([w], 0.1, 0.0, torch.device("cpu"), fused=True).defaults["fused"]
        True
    """
    if fused is None:
        fused = device.type == "cuda"
    kind = {"fused": True} if fused else {"foreach": True}
    return torch.optim.Adam(
        params, lr=float(lr), betas=(0.9, 0.98), eps=1e-9, weight_decay=float(weight_decay), **kind
    )
