"""MMD baseline: multi-kernel Gaussian MMD between source and target utterance embeddings.

An utterance embedding is the mean of its encoder frames over the true length
(padding masked out; the authors' code averaged the padding in). The kernel is a
sum of Gaussians ``exp(-d / (sigma0 * 2^k))``, ``k = -2..2``, with ``sigma0`` the
mean pairwise squared distance of the step's embeddings (detached). Equations and options:
docs/methods.md, section 2.3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from asr_transfer.adapt.base import Context
from asr_transfer.adapt.self_training import DomainOptions, SelfTraining, masked_mean
from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import ModelOutput


@dataclass
class MMDOptions(DomainOptions):
    """``kernel_scales``: the exponents ``k`` of the bandwidths ``sigma0 * 2^k``."""

    kernel_scales: list[int] = field(default_factory=lambda: [-2, -1, 0, 1, 2])


def gaussian_mmd(
    xs: torch.Tensor, xt: torch.Tensor, scales: list[int] | tuple[int, ...] = (-2, -1, 0, 1, 2)
) -> torch.Tensor:
    """Biased multi-kernel MMD^2 between ``(Ns, D)`` and ``(Nt, D)`` samples.

    ``mean K(s, s') + mean K(t, t') - 2 mean K(s, t)`` with ``K`` a sum of Gaussian kernels.

    Example:
        >>> x = torch.randn(8, 3)
        >>> float(gaussian_mmd(x, x)) == 0.0
        True
        >>> bool(gaussian_mmd(x, x + 5) > 0.5)
        True
    """
    k = gaussian_kernel(torch.cat([xs, xt]).float(), scales)
    ns = xs.size(0)
    return k[:ns, :ns].mean() + k[ns:, ns:].mean() - 2 * k[:ns, ns:].mean()


def gaussian_kernel(x: torch.Tensor, scales: list[int] | tuple[int, ...] = (-2, -1, 0, 1, 2)) -> torch.Tensor:
    """``(N, D)`` samples -> ``(N, N)`` sum of Gaussian kernels ``exp(-d / (sigma0 * 2^k))``.

    ``sigma0`` is the mean pairwise squared distance (detached), so the kernel does not depend on
    the features' scale.

    Example:
        >>> k = gaussian_kernel(torch.tensor([[0.0], [1.0], [3.0]]), scales=[0])
        >>> k.diagonal().tolist(), bool(k[0, 1] > k[0, 2])
        ([1.0, 1.0, 1.0], True)
    """
    d2 = torch.cdist(x, x).pow(2)
    n = x.size(0)
    sigma0 = d2.detach().sum() / max(n * n - n, 1)
    return sum(torch.exp(-d2 / (sigma0 * 2.0**s).clamp_min(1e-12)) for s in scales)


class MMD(SelfTraining):
    """Self-training plus ``mmd``: Gaussian MMD of utterance-mean encoder outputs (lambda = 10).

    Example:
        >>> MMD({}).weights["mmd"]
        10.0
    """

    name: ClassVar[str] = "mmd"
    OptionsClass: ClassVar[type] = MMDOptions
    default_weights: ClassVar[dict[str, float | None]] = {**SelfTraining.default_weights, "mmd": 10.0}

    @property
    def unlabelled_target(self) -> bool:
        return True  # utterance means need no labels: every target utterance is matched

    def match(
        self, out_s: ModelOutput, out_t: ModelOutput, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        pairs = zip(self.features(out_s), self.features(out_t))
        terms = [
            gaussian_mmd(
                masked_mean(fs, out_s.enc_lens), masked_mean(ft, out_t.enc_lens), self.opts.kernel_scales
            )
            for fs, ft in pairs
        ]
        return {"mmd": torch.stack(terms).mean()}
