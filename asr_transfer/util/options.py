"""Typed options: a config section -> a dataclass, where a key it does not know is an error."""

from __future__ import annotations

import dataclasses
from typing import Any


def parse_options(cls: type, cfg: dict[str, Any], where: str = "adapt") -> Any:
    """Build the dataclass ``cls`` from ``cfg``; nested dataclass fields take dicts; unknown keys fail.

    Example:
        >>> @dataclasses.dataclass
        ... class Opts:
        ...     method: str = "x"
        ...     weights: dict = dataclasses.field(default_factory=dict)
        >>> parse_options(Opts, {"method": "y", "weights": {"ctc": 1}}).weights
        {'ctc': 1}
        >>> parse_options(Opts, {"methd": "y"})
        Traceback (most recent call last):
        ...
        ValueError: adapt.methd: unknown option; known: method, weights
    """
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown option; known: {', '.join(sorted(known))}")
    kwargs = {}
    for key, value in cfg.items():
        default = (
            known[key].default_factory if known[key].default_factory is not dataclasses.MISSING else None
        )
        sub = default() if default is not None else known[key].default
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            value = parse_options(type(sub), value, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)
