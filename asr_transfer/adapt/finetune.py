"""Supervised transfer to a new language (Hou et al., IEEE/ACM TASLP 2021): ``head``, ``full``, ``adapter``.

Each method only chooses what trains (and, for ``adapter``, adds the target's adapter set);
the loss is the base :class:`~asr_transfer.adapt.Method`'s CTC + attention loss. Config keys
(the ``adapt:`` section): ``lang`` (the target language, whose head is new), ``bottleneck`` and
``where`` (adapter only). What each trains: docs/methods.md, sections 3.1-3.4.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from asr_transfer.adapt.base import Method, Options
from asr_transfer.model.asr import HybridASR
from asr_transfer.text.tokenizer import Tokenizer


@dataclass
class TransferOptions(Options):
    """The ``adapt:`` section of ``head``, ``full`` and ``adapter``.

    Attributes:
        lang: the target language (its head is new; add-language sets it).
        bottleneck: adapter bottleneck (``adapter`` only; the paper: 64 for d_model 256).
        where: the stacks whose slots get the adapter (``adapter`` only): ``encoder``, ``decoder``, and
            ``frontend`` (one adapter after the convolutional subsampling, before the blocks).
    """

    lang: str | None = None
    bottleneck: int = 64
    where: list[str] = field(default_factory=lambda: ["encoder", "decoder"])


def trainable_share(model: HybridASR) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts.

    Example:
        >>> import torch
        >>> m = torch.nn.Linear(3, 2)
        >>> m.bias.requires_grad_(False)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> trainable_share(m)
        (6, 8)
    """
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


class TransferMethod(Method):
    """The base of the new-language methods: ``adapt.lang`` names the target, whose head is new."""

    OptionsClass = TransferOptions
    kind: ClassVar[str] = "new_language"
    find_unused_parameters: ClassVar[bool] = True
    #: ``add-language`` writes the small ``<lang>.adapter`` file (the body does not train)
    writes_adapter_file: ClassVar[bool] = False
    #: the method trains an adapter named by the target language (it goes into that file)
    trains_target_adapter: ClassVar[bool] = False
    #: ``add-language`` measures the dev set's mean fusion weights (SimAdapter)
    measures_fusion: ClassVar[bool] = False

    def set_up_target(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None) -> str:
        """The base set-up (the loss weights) and the checked target language."""
        super().setup(model, tokenizers)
        lang = self.opts.lang
        if not lang:
            raise ValueError(f"adapt.method {self.name}: adapt.lang (the target language) is not set")
        if lang not in model.heads:
            raise ValueError(f"adapt.lang {lang!r}: the model has no head for it ({sorted(model.heads)})")
        return lang


class HeadOnly(TransferMethod):
    """Train the target's embedding, output layer and CTC layer; freeze everything else."""

    name = "head"
    writes_adapter_file = True

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        lang = self.set_up_target(model, tokenizers)
        model.freeze()
        model.unfreeze_head(lang)


class FullFineTune(TransferMethod):
    """Train every parameter (full fine-tuning)."""

    name = "full"

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        self.set_up_target(model, tokenizers)
        model.unfreeze()


class AdapterTransfer(TransferMethod):
    """Add the target's adapter after every block (enabled alone); train it and the target head."""

    name = "adapter"
    writes_adapter_file = True
    trains_target_adapter = True

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        lang = self.set_up_target(model, tokenizers)
        model.add_adapter(
            lang,
            bottleneck=int(self.opts.bottleneck),
            where=tuple(self.opts.where),
            enabled=False,
        )
        model.set_enabled([lang])
        model.freeze()
        model.unfreeze_head(lang)
        model.unfreeze_adapters([lang])
