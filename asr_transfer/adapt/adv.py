"""Domain-adversarial baseline (DANN): gradient reversal and a frame-level domain discriminator.

The discriminator (Linear-ReLU-LayerNorm-Linear; LayerNorm rather than the
authors' BatchNorm, whose statistics would mix the domains and the padding)
classifies every unpadded encoder frame as source (1) or target (0). Its loss is
minimised by the discriminator and, through the gradient-reversal layer, maximised
by the encoder with the DANN ramp ``2 / (1 + exp(-10 p)) - 1`` of training progress ``p``, after
a warm-up (``disc_warmup``) in which only the discriminator learns. Model selection on dev data
leaves the discriminator's loss out (as every matching term, :meth:`SelfTraining.weight`), so it
does not prefer the epochs in which the discriminator wins. Equations, options and why each
departure from the authors' code: docs/methods.md, section 2.4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch

from asr_transfer.adapt.base import Context
from asr_transfer.adapt.self_training import DomainOptions, SelfTraining, valid_frames
from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import HybridASR, ModelOutput
from asr_transfer.text.tokenizer import Tokenizer


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # noqa: ANN001
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """Identity forward, gradient times ``-coeff`` backward.

    Example:
        >>> x = torch.ones(2, requires_grad=True)
        >>> grad_reverse(x, 0.5).sum().backward()
        >>> x.grad
        tensor([-0.5000, -0.5000])
    """
    return _Reverse.apply(x, coeff)


def dann_coeff(progress: float, gamma: float = 10.0) -> float:
    """The DANN ramp ``2 / (1 + exp(-gamma p)) - 1``: 0 at the start, near 1 at the end.

    Example:
        >>> dann_coeff(0.0), round(dann_coeff(1.0), 4)
        (0.0, 0.9999)
    """
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def reversal_coeff(progress: float, warmup: float = 0.0, gamma: float = 10.0) -> float:
    """The gradient-reversal coefficient: 0 while the discriminator warms up, then the DANN ramp.

    During the first ``warmup`` fraction of training only the discriminator learns (the encoder
    gets no reversed gradient): an untrained discriminator's gradient is noise, and reversing it
    into the encoder from the first steps only perturbs it.

    Example:
        >>> reversal_coeff(0.05, warmup=0.1), reversal_coeff(0.1, warmup=0.1)
        (0.0, 0.0)
        >>> round(reversal_coeff(1.0, warmup=0.1), 4) == round(dann_coeff(1.0), 4)
        True
    """
    if progress <= warmup:
        return 0.0
    return dann_coeff((progress - warmup) / (1.0 - warmup), gamma)


@dataclass
class AdvOptions(DomainOptions):
    """``hidden``: discriminator width; ``gamma``: steepness of the reversal ramp; ``disc_warmup``:
    fraction of training during which only the discriminator learns (no reversal into the encoder)."""

    hidden: int = 256
    gamma: float = 10.0
    disc_warmup: float = 0.1


class Adversarial(SelfTraining):
    """Self-training plus ``adv``: frame-level domain classification through gradient reversal.

    Example:
        >>> m = Adversarial({})
        >>> m.weights["adv"], m.weight("adv", Context("train")), m.weight("adv", Context("dev"))
        (0.3, 0.3, 0.0)
    """

    name: ClassVar[str] = "adv"
    OptionsClass: ClassVar[type] = AdvOptions
    default_weights: ClassVar[dict[str, float | None]] = {**SelfTraining.default_weights, "adv": 0.3}

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        super().setup(model, tokenizers)
        d, h = model.d_model, self.opts.hidden
        self.discriminators = torch.nn.ModuleList(
            torch.nn.Sequential(
                torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.LayerNorm(h), torch.nn.Linear(h, 1)
            )
            for _ in self.opts.layers
        )

    @property
    def unlabelled_target(self) -> bool:
        return True  # the discriminator needs domains, not transcripts

    def match(
        self, out_s: ModelOutput, out_t: ModelOutput, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        coeff = reversal_coeff(ctx.progress, self.opts.disc_warmup, self.opts.gamma)
        losses = []
        for disc, fs, ft in zip(self.discriminators, self.features(out_s), self.features(out_t)):
            frames = torch.cat([valid_frames(fs, out_s.enc_lens), valid_frames(ft, out_t.enc_lens)])
            labels = torch.cat(
                [frames.new_ones(int(out_s.enc_lens.sum())), frames.new_zeros(int(out_t.enc_lens.sum()))]
            )
            with torch.autocast(frames.device.type, enabled=False):
                logits = disc(grad_reverse(frames.float(), coeff)).squeeze(-1)
                losses.append(torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float()))
        return {"adv": torch.stack(losses).mean()}
