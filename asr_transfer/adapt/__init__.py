"""Adaptation methods: plug-ins the one training loop selects by name (``adapt.method``).

A method contributes batch streams, modules, trainable-parameter choices and named
loss terms, never a trainer; the contract is in :mod:`asr_transfer.adapt.base`.

Methods: ``supervised`` (plain training or fine-tuning), and for unsupervised domain
adaptation ``source_only``, ``self_training``, ``mmd``, ``adv`` and ``cmatch``; for a new
language (``asr-transfer add-language``) ``head``, ``full``, ``adapter``, ``metaadapter``,
``simadapter`` and ``simadapter+``, after the source-side runs ``source_adapters`` (one adapter
per source language) and ``meta_train`` (the MetaAdapter).
"""

from __future__ import annotations

from asr_transfer.adapt.adv import Adversarial
from asr_transfer.adapt.base import Context, Method
from asr_transfer.adapt.cmatch import CMatch
from asr_transfer.adapt.finetune import AdapterTransfer, FullFineTune, HeadOnly
from asr_transfer.adapt.metaadapter import MetaAdapterTransfer, MetaTrain
from asr_transfer.adapt.mmd import MMD
from asr_transfer.adapt.self_training import SelfTraining, SourceOnly
from asr_transfer.adapt.simadapter import SimAdapter, SimAdapterPlus
from asr_transfer.adapt.source_adapters import SourceAdapters

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        Method,
        SourceOnly,
        SelfTraining,
        MMD,
        Adversarial,
        CMatch,
        HeadOnly,
        FullFineTune,
        AdapterTransfer,
        SourceAdapters,
        MetaTrain,
        MetaAdapterTransfer,
        SimAdapter,
        SimAdapterPlus,
    )
}

#: what a method is for (:attr:`Method.kind`)
KINDS = ("train", "uda", "source", "new_language")

__all__ = ["KINDS", "METHODS", "Context", "Method", "build_method", "methods_of_kind", "needs_sources"]


def methods_of_kind(kind: str) -> list[str]:
    """The registered methods of one :data:`KINDS` entry, in registration order.

    Example:
        >>> methods_of_kind("new_language")
        ['head', 'full', 'adapter', 'metaadapter', 'simadapter', 'simadapter+']
        >>> methods_of_kind("source")
        ['source_adapters', 'meta_train']
    """
    if kind not in KINDS:
        raise ValueError(f"method kind {kind!r}: choose from {KINDS}")
    return [name for name, cls in METHODS.items() if cls.kind == kind]


def needs_sources(name: str) -> bool:
    """Whether the method ``name`` builds on earlier experiments (``adapt.meta``, ``adapt.sources``).

    Example:
        >>> needs_sources("simadapter"), needs_sources("adapter")
        (True, False)
    """
    return METHODS[name].needs_sources


def build_method(cfg: dict | None) -> Method:
    """Instantiate the method named by ``cfg["method"]`` (default ``supervised``).

    Example:
        >>> build_method({"method": "cmatch", "labels": "frame_average"}).opts.labels
        'frame_average'
        >>> build_method({"method": "cmatc"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: adapt.method: unknown method 'cmatc'; known: adapter, adv, cmatch, ...
    """
    cfg = dict(cfg or {})
    name = cfg.get("method", "supervised")
    if name not in METHODS:
        raise ValueError(f"adapt.method: unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg)
