"""How far target audio is from a source model's training domain, before any training.

Everything comes from one pass of the source model's encoder and CTC layer over a sample of each
data dir (audio only, no transcript):

- ``mmd``: squared maximum mean discrepancy (unbiased, Gaussian kernel) between the target's and
  the source sample's mean-pooled encoder outputs, one vector per utterance; the bandwidth is the
  source sample's median pairwise distance, so every target is measured with the same kernel.
- ``unit``: CMatch-style per-unit distance: frames labelled by their CTC best token (blank frames
  left out), per token the squared distance between the target's and the source's mean encoder
  frame, averaged over tokens weighted by the target's frames, over the source frames' total
  variance (scale-free).
- ``entropy``: mean CTC posterior entropy per frame (nats), of the target alone.
- ``blank``: share of frames whose best CTC token is blank, of the target alone.

Each is larger for a farther (harder) domain; ``asr-transfer distance`` tabulates them and, given
measured WERs, their Spearman rank correlation with the WER.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr_transfer.data.audio import load_audio
from asr_transfer.data.kaldi import load_data_dir
from asr_transfer.decode.transcribe import Recognizer

MEASURES = ("mmd", "unit", "entropy", "blank")


@dataclass
class EncodedSample:
    """What the source model makes of a sample of utterances."""

    pooled: np.ndarray  #: (utterances, D) mean encoder output of each utterance
    frames: np.ndarray  #: (frames, D) every valid encoder frame
    labels: np.ndarray  #: (frames,) CTC best token of each frame (0: blank)
    entropy: np.ndarray  #: (frames,) CTC posterior entropy of each frame, nats


def sample_utts(utts: list[str], n: int) -> list[str]:
    """``n`` utterances spread evenly over the sorted list (all when fewer): deterministic, and
    covering every speaker of a list sorted by speaker.

    Example:
        >>> sample_utts([f"u{i}" for i in range(10)], 3)
        ['u0', 'u3', 'u6']
    """
    if len(utts) <= n:
        return sorted(utts)
    ordered = sorted(utts)
    step = len(ordered) / n
    return [ordered[int(i * step)] for i in range(n)]


@torch.inference_mode()
def encode_dir(
    rec: Recognizer, data_dir: Path, lang: str, n_utts: int, batch_size: int = 32
) -> EncodedSample:
    """Encode a sample of ``n_utts`` utterances of a Kaldi data dir with the recognizer's model."""
    data = load_data_dir(data_dir, require_text=False)
    line_of = {u: i for i, u in enumerate(data.wav, start=1)}
    utts = sample_utts(data.utts, n_utts)
    waves = [
        load_audio(data.wav[u], where=f"{data_dir / 'wav.scp'}:{line_of[u]}: utterance '{u}'") for u in utts
    ]
    model = rec.model.eval()
    pooled, frames, labels, entropy = [], [], [], []
    order = sorted(
        range(len(waves)), key=lambda i: len(waves[i])
    )  # similar lengths batch with little padding
    for i in range(0, len(order), batch_size):
        feats = [rec.frontend(waves[j]) for j in order[i : i + batch_size]]
        lens = torch.tensor([f.shape[0] for f in feats])
        batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(rec.device)
        enc, enc_lens, _ = model.encode(batch, lens.to(rec.device))
        logp = model.ctc_log_probs(enc, lang)
        for e, lp, n in zip(enc.float().cpu(), logp.cpu(), enc_lens.tolist(), strict=True):
            pooled.append(e[:n].mean(0))
            frames.append(e[:n])
            labels.append(lp[:n].argmax(-1))
            entropy.append(-(lp[:n].exp() * lp[:n]).sum(-1))
    return EncodedSample(
        torch.stack(pooled).numpy(),
        torch.cat(frames).numpy(),
        torch.cat(labels).numpy(),
        torch.cat(entropy).numpy(),
    )


def median_bandwidth(x: np.ndarray) -> float:
    """Median pairwise Euclidean distance between the rows of ``x`` (the Gaussian kernel's width)."""
    d = np.sqrt(np.maximum(_sq_dists(x, x), 0.0))
    return float(np.median(d[np.triu_indices(len(x), k=1)]))


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased squared MMD between samples ``x`` and ``y`` (rows), Gaussian kernel of ``bandwidth``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(100, 4)), rng.normal(size=(100, 4))
        >>> mmd2(a, b, 2.0) < 0.02 < mmd2(a, b + 1.0, 2.0)
        True
    """

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-_sq_dists(a, b) / (2 * bandwidth**2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T


def unit_distance(target: EncodedSample, source: EncodedSample, min_frames: int = 5) -> float:
    """Per-token mean-frame distance (blank excluded), weighted by the target's frames, over the
    source frames' total variance; tokens with fewer than ``min_frames`` frames on either side are
    left out. NaN when no token qualifies."""
    scale = float(source.frames.var(0).sum())
    total, weight = 0.0, 0
    for unit in np.unique(target.labels):
        if unit == 0:
            continue
        t, s = target.frames[target.labels == unit], source.frames[source.labels == unit]
        if len(t) < min_frames or len(s) < min_frames:
            continue
        total += len(t) * float(((t.mean(0) - s.mean(0)) ** 2).sum())
        weight += len(t)
    return total / weight / scale if weight else float("nan")


def distances(target: EncodedSample, source: EncodedSample, bandwidth: float) -> dict[str, float]:
    """The four measures of ``target`` against ``source`` (see the module's docstring)."""
    return {
        "mmd": mmd2(target.pooled, source.pooled, bandwidth),
        "unit": unit_distance(target, source),
        "entropy": float(target.entropy.mean()),
        "blank": float((target.labels == 0).mean()),
    }


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank).

    Example:
        >>> round(spearman([1, 2, 3, 4], [10, 20, 40, 30]), 6)
        0.8
    """
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)
