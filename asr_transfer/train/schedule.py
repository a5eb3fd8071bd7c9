"""Learning-rate schedules as multipliers of the optimiser's peak ``lr`` (for ``LambdaLR``)."""

from __future__ import annotations

import math
from collections.abc import Callable


def noam(warmup_steps: int) -> Callable[[int], float]:
    """Noam: linear warm-up to the peak at ``warmup_steps``, then ``1/sqrt(step)`` decay.

    Scaled so the peak equals the configured ``lr`` (ESPnet's ``warmuplr``).

    Example:
        >>> f = noam(100)
        >>> [round(f(s), 3) for s in (0, 50, 100, 400)]
        [0.01, 0.5, 1.0, 0.5]
    """

    def factor(step: int) -> float:
        step = max(step, 1)
        return min(step / warmup_steps, math.sqrt(warmup_steps / step))

    return factor


def warmup_decay(warmup_steps: int, total_steps: int, final_ratio: float = 0.05) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to ``final_ratio`` of the peak at ``total_steps``.

    The short warm-up + low peak schedule adaptation uses on a converged model.

    Example:
        >>> f = warmup_decay(10, 110, final_ratio=0.0)
        >>> [round(f(s), 2) for s in (5, 10, 60, 110, 200)]
        [0.5, 1.0, 0.5, 0.0, 0.0]
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return max(step, 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def warmup_exp(warmup_steps: int, half_life_steps: int, final_ratio: float = 0.05) -> Callable[[int], float]:
    """Linear warm-up, then the peak halves every ``half_life_steps``, down to ``final_ratio`` of it.

    Unlike :func:`warmup_decay` it does not depend on the run's length: a run that the dev set stops
    early (``train.patience``) has decayed as far as its length says, not as far as its maximum does.

    Example:
        >>> f = warmup_exp(10, 20, final_ratio=0.2)
        >>> [round(f(s), 2) for s in (5, 10, 30, 50, 200)]
        [0.5, 1.0, 0.5, 0.25, 0.2]
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return max(step, 1) / warmup_steps
        return max(final_ratio, 0.5 ** ((step - warmup_steps) / half_life_steps))

    return factor


def build_schedule(cfg: dict, total_steps: int) -> Callable[[int], float]:
    """From the ``train.scheduler`` config section (``type``: noam | warmup_decay | warmup_exp | constant)."""
    kind = cfg.get("type", "noam")
    if kind == "noam":
        return noam(cfg.get("warmup_steps", 25000))
    if kind == "warmup_decay":
        return warmup_decay(cfg.get("warmup_steps", 500), total_steps, cfg.get("final_ratio", 0.05))
    if kind == "warmup_exp":
        if "half_life_steps" not in cfg:
            raise ValueError("train.scheduler.half_life_steps: warmup_exp needs it (steps per halving)")
        return warmup_exp(cfg.get("warmup_steps", 500), cfg["half_life_steps"], cfg.get("final_ratio", 0.05))
    if kind == "constant":
        return lambda step: 1.0
    raise ValueError(f"unknown scheduler type {kind!r}: use noam, warmup_decay, warmup_exp or constant")
