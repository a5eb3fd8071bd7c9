"""YAML configs with ESPnet2-style command-line overrides.

A config is a nested dict loaded from one or more YAML files (later files win).
Any key can be overridden from the command line as ``--a.b.c value`` or
``a.b.c=value``; values are parsed as YAML, so ``--train.lr 1e-3`` is a float and
``--model.heads [en,ro]`` a list. The resolved config is written next to the
checkpoints so every result can be reproduced from it.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import yaml

from asr_transfer.util.atomic import write_text


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` as a string (it wants ``1.0e-3``); users mean a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def yaml_load(text: str):
    """``yaml.safe_load`` that also reads ``1e-3`` as a float.

    Example:
        >>> yaml_load("lr: 1e-3")
        {'lr': 0.001}
    """
    return yaml.load(text, Loader=_Loader)


def deep_merge(base: dict, extra: dict) -> dict:
    """Merge ``extra`` into a copy of ``base``; nested dicts merge, other values replace.

    Example:
        >>> deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4})
        {'a': {'b': 1, 'c': 3}, 'd': 4}
    """
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_configs(base: dict, extra: dict) -> dict:
    """:func:`deep_merge`, except that an ``adapt:`` section naming another method replaces the old one.

    A method's options mean nothing to another method, so a source experiment's saved config
    can be the base of an adaptation run.

    Example:
        >>> merge_configs({"adapt": {"method": "supervised", "weights": {"ctc": 0.3}}},
        ...               {"adapt": {"method": "cmatch"}})
        {'adapt': {'method': 'cmatch'}}
    """
    old, new = base.get("adapt") or {}, extra.get("adapt") or {}
    if "method" in new and old.get("method", new["method"]) != new["method"]:
        base = {k: v for k, v in base.items() if k != "adapt"}
    return deep_merge(base, extra)


def set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    """Set ``cfg["a"]["b"] = value`` for ``dotted == "a.b"``, creating dicts on the way.

    Example:
        >>> c = {}
        >>> set_dotted(c, "train.optim.lr", 0.1)
        >>> c
        {'train': {'optim': {'lr': 0.1}}}
    """
    keys = dotted.split(".")
    node = cfg
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """Turn ``["--a.b", "3", "c=x"]`` into ``[("a.b", 3), ("c", "x")]``.

    Example:
        >>> parse_overrides(["--train.epochs", "2", "model.d_model=64", "--flag=true"])
        [('train.epochs', 2), ('model.d_model', 64), ('flag', True)]
    """
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" not in arg:
            if i + 1 >= len(args):
                raise ValueError(f"override {arg} has no value")
            key, raw = arg[2:], args[i + 1]
            i += 2
        elif "=" in arg:
            key, raw = arg.lstrip("-").split("=", 1)
            i += 1
        else:
            raise ValueError(f"cannot parse override {arg!r}: use --key value or key=value")
        try:
            out.append((key, yaml_load(raw)))
        except yaml.YAMLError as err:
            raise ValueError(f"override --{key}: {raw!r} is not a YAML value: {_problem(err)}") from None
    return out


def _problem(err: yaml.YAMLError) -> str:
    """What a YAML error says, in one line (its position is given by the caller)."""
    if isinstance(err, yaml.MarkedYAMLError):
        return ": ".join(filter(None, [err.context, err.problem]))
    return " ".join(str(err).split())


def load_config(paths: list[str | os.PathLike], overrides: list[str] | None = None) -> dict:
    """Load and merge YAML files, then apply command-line overrides.

    A YAML file may list other files under ``include:`` (relative to itself),
    merged before its own keys.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "base.yaml").write_text("model: {d_model: 256}\\n")
        >>> _ = (d / "tiny.yaml").write_text("include: [base.yaml]\\ntrain: {epochs: 3}\\n")
        >>> load_config([d / "tiny.yaml"], ["--model.d_model", "64"])
        {'model': {'d_model': 64}, 'train': {'epochs': 3}}
    """
    cfg: dict = {}
    for path in paths:
        cfg = merge_configs(cfg, _load_yaml(Path(path)))
    for key, value in parse_overrides(overrides or []):
        set_dotted(cfg, key, value)
    return cfg


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ValueError(f"{where}: invalid YAML: {_problem(err)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    merged: dict = {}
    for inc in data.pop("include", []) or []:
        merged = deep_merge(merged, _load_yaml(path.parent / inc))
    return deep_merge(merged, data)


def save_config(cfg: dict, path: str | os.PathLike) -> str:
    """Write the resolved config atomically; return its short hash (for reports)."""
    text = yaml.safe_dump(cfg, sort_keys=True, allow_unicode=True)
    write_text(path, text)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
