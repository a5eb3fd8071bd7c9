"""Supervised transfer to a new language (methods.md section 3): ``head``, ``full``, ``adapter``.

Each method only chooses what trains (and, for ``adapter``, adds the target's adapter set);
the loss is the base :class:`~asr_transfer.adapt.Method`'s CTC + attention loss. Config keys
(the ``adapt:`` section): ``lang`` (the target language, whose head is new), ``bottleneck`` and
``where`` (adapter only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asr_transfer.adapt.base import Method, Options
from asr_transfer.model.asr import HybridASR
from asr_transfer.model.slots import set_trainable


@dataclass
class TransferOptions(Options):
    """The ``adapt:`` section of ``head``, ``full`` and ``adapter``.

    Attributes:
        lang: the target language (its head is new; add-language sets it).
        bottleneck: adapter bottleneck (``adapter`` only; methods.md: 64 for d_model 256).
        where: the stacks whose slots get the adapter (``adapter`` only).
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


class _Transfer(Method):
    OptionsClass = TransferOptions

    def target(self, model: HybridASR) -> str:
        super().setup(model)  # the loss weights (CTC weight of the model)
        lang = self.opts.lang
        if not lang:
            raise ValueError(f"adapt.method {self.name}: adapt.lang (the target language) is not set")
        if lang not in model.heads:
            raise ValueError(f"adapt.lang {lang!r}: the model has no head for it ({sorted(model.heads)})")
        return lang


class HeadOnly(_Transfer):
    """Train the target's embedding, output layer and CTC layer; freeze everything else."""

    name = "head"

    def setup(self, model: HybridASR) -> None:
        lang = self.target(model)
        set_trainable(model, ["*"], False)
        set_trainable(model, [f"heads.{lang}.*"], True)


class FullFineTune(_Transfer):
    """Train every parameter (full fine-tuning)."""

    name = "full"

    def setup(self, model: HybridASR) -> None:
        self.target(model)
        set_trainable(model, ["*"], True)


class AdapterTransfer(_Transfer):
    """Add the target's adapter after every block (enabled alone); train it and the target head."""

    name = "adapter"

    def setup(self, model: HybridASR) -> None:
        lang = self.target(model)
        model.add_adapter(
            lang,
            bottleneck=int(self.opts.bottleneck),
            where=tuple(self.opts.where),
            enabled=False,
        )
        model.set_enabled([lang])
        set_trainable(model, ["*"], False)
        set_trainable(model, [f"heads.{lang}.*", f"*.modules_by_name.{lang}.*"], True)
