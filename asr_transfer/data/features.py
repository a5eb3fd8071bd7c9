"""Kaldi-compatible fbank features, global CMVN statistics and speed perturbation.

Why dumped features: on a 2-core CPU, fbank costs a sizeable share of a tiny
model's training step and would be recomputed every epoch; dumping once
(kaldiio ark/scp, like Kaldi and ESPnet) makes epochs cheaper, deterministic and
trivially resumable. SpecAugment stays on the fly (it must differ per epoch) and
speed perturbation makes extra copies at dump time, as Kaldi recipes do.
Decoding and :func:`asr_transfer.decode.transcribe` compute the same fbank on the
fly from audio, so any data dir can be decoded without a dump stage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from asr_transfer.data.audio import SAMPLE_RATE
from asr_transfer.util.atomic import atomic_path

NUM_MEL_BINS = 80
DITHER_SEED = 1234


def fbank(wave: np.ndarray | torch.Tensor, num_mel_bins: int = NUM_MEL_BINS) -> torch.Tensor:
    """80-dim log-mel filterbank, 25 ms window, 10 ms shift, Kaldi defaults with seeded dither.

    Args:
        wave: ``(N,)`` float samples in [-1, 1] at 16 kHz.

    Returns:
        ``(T, num_mel_bins)`` float32, ``T = 1 + (N - 400) // 160``.

    Example:
        >>> fbank(np.zeros(16000, dtype=np.float32)).shape
        torch.Size([98, 80])
    """
    x = torch.as_tensor(wave, dtype=torch.float32)
    if x.numel() < 400:
        raise ValueError(f"audio too short for one 25 ms frame: {x.numel()} samples")
    # Kaldi's default dither (1 LSB of Gaussian noise at 16-bit scale), but from a fixed seed so
    # features stay deterministic. Without it, digital silence (exact zeros, common in synthesised
    # or gated audio) gives log(eps) = -15.9 in every bin, which dominates the CMVN statistics.
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(DITHER_SEED))
    return kaldi.fbank(
        (x * 32768.0 + noise).unsqueeze(0),
        num_mel_bins=num_mel_bins,
        sample_frequency=SAMPLE_RATE,
        dither=0.0,
        energy_floor=0.0,
    )


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Change speed (tempo and pitch together) by resampling, as Kaldi's ``sox speed`` does.

    Example:
        >>> speed_perturb(np.zeros(16000, dtype=np.float32), 1.1).shape
        (14546,)
    """
    from fractions import Fraction

    from scipy.signal import resample_poly

    frac = Fraction(factor).limit_denominator(100)
    return resample_poly(wave, frac.denominator, frac.numerator).astype(np.float32)


class CMVNStats:
    """Accumulates per-dimension sums for global mean/variance normalisation.

    Example:
        >>> s = CMVNStats()
        >>> s.add(torch.tensor([[1.0, 2.0], [3.0, 6.0]]))
        >>> mean, istd = s.mean_istd()
        >>> mean.tolist(), [round(v, 3) for v in istd.tolist()]
        ([2.0, 4.0], [1.0, 0.5])
    """

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.sumsq: torch.Tensor | None = None
        self.count = 0

    def add(self, feats: torch.Tensor) -> None:
        f = feats.double()
        if self.sum is None:
            self.sum, self.sumsq = f.sum(0), (f * f).sum(0)
        else:
            self.sum += f.sum(0)
            self.sumsq += (f * f).sum(0)
        self.count += f.shape[0]

    def mean_istd(self, floor: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.count:
            raise ValueError("no frames accumulated for CMVN")
        mean = self.sum / self.count
        var = (self.sumsq / self.count - mean * mean).clamp_min(floor)
        return mean.float(), var.rsqrt().float()

    def save(self, path: str | Path) -> None:
        """Write ``mean``, ``istd`` and ``count`` to ``path`` (``.npz`` added if missing) atomically."""
        mean, istd = self.mean_istd()
        path = Path(path) if str(path).endswith(".npz") else Path(f"{path}.npz")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file: numpy would add .npz to a name
            np.savez(f, mean=mean.numpy(), istd=istd.numpy(), count=self.count)


def load_cmvn(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Load ``(mean, istd)`` written by :meth:`CMVNStats.save`."""
    data = np.load(path)
    return torch.from_numpy(data["mean"]), torch.from_numpy(data["istd"])
