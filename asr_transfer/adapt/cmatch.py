"""CMatch: per-output-unit distribution matching between source and target encoder frames.

Every unpadded encoder frame gets an output unit (a token of the source tokenizer)
or none, by one of three strategies:

- ``frame_average``: each utterance's true (unpadded) length split uniformly into as many
  segments as it has tokens (with ``average_over: spikes``, the span its CTC spikes cover
  instead, so leading and trailing silence stay unlabelled);
- ``ctc_align``: CTC forced alignment (``torchaudio.functional.forced_align``, per
  utterance in C++, no Python loop over frames) of the current model's CTC posteriors
  against the transcript (ground truth on the source, pseudo-label on the target); the
  spike frame keeps its unit and, with ``extend_blanks``, the blank frames after it inherit it;
- ``ctc_pred``: the CTC argmax where its probability exceeds ``threshold``.

Units that carry no acoustics (blank, unk, sos/eos, word boundary, punctuation) come from
the tokenizer and are never matched. For every unit seen in at least ``min_frames`` frames
on both sides, ``d_c = ||mean_S(c) - mean_T(c)||^2`` (``kernel: linear``, the paper's); the loss
is the mean of ``d_c`` (all class means in one ``index_add``). With ``ema > 0`` a unit missing from
one side of the batch is matched against that side's running (detached) mean, so rare units are
matched too. ``kernel: gaussian`` matches each unit's whole distribution of frames instead of its
mean: ``d_c`` is the multi-kernel Gaussian MMD^2 (MMD's kernel, bandwidths from the step's frames)
between the unit's source and target frames, bounded and free of the features' scale. With
``detach_source`` only the target side receives the gradient: the target's frames move towards
the source's, whose features the source transcripts keep in place.
Equations, options and where the labellings differ from the authors' code: docs/methods.md,
section 2.5 (2.5.1-2.5.3 for the three labellings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torchaudio

from asr_transfer.adapt.base import Context
from asr_transfer.adapt.mmd import gaussian_kernel
from asr_transfer.adapt.self_training import DomainOptions, SelfTraining
from asr_transfer.data.dataset import IGNORE_ID, Batch
from asr_transfer.decode.greedy import best_path_emissions
from asr_transfer.model.asr import HybridASR, ModelOutput
from asr_transfer.text.tokenizer import Tokenizer

STRATEGIES = ("frame_average", "ctc_align", "ctc_pred")
KERNELS = ("linear", "gaussian")


@dataclass
class CMatchOptions(DomainOptions):
    """CMatch options.

    Attributes:
        labels: frame-labelling strategy, one of ``frame_average``, ``ctc_align``, ``ctc_pred``.
        threshold: ``ctc_pred``'s minimum posterior.
        extend_blanks: ``ctc_align``: blank frames inherit the preceding unit.
        min_frames: a unit is matched only with at least this many frames on each side.
        ema: momentum of the running class means (0: off, batch means only).
        warmup: fraction of training over which the CMatch weight ramps up from 0.
        kernel: ``linear`` (distance of the class means, the paper's) or ``gaussian`` (multi-kernel
            MMD^2 of each class's frames).
        kernel_scales: ``gaussian``: the exponents ``k`` of the bandwidths ``sigma0 * 2^k``.
        detach_source: no gradient through the source frames (only the target moves).
        average_over: ``frame_average``: split the whole utterance (``utterance``, the paper's) or
            the span of its CTC spikes (``spikes``).
    """

    labels: str = "ctc_align"
    threshold: float = 0.9
    extend_blanks: bool = True
    min_frames: int = 5
    ema: float = 0.0
    warmup: float = 0.0
    kernel: str = "linear"
    kernel_scales: list[int] = field(default_factory=lambda: [-2, -1, 0, 1, 2])
    detach_source: bool = False
    average_over: str = "utterance"


def frame_average_labels(
    ys: torch.Tensor, ends: torch.Tensor, frames: int, starts: torch.Tensor | None = None
) -> torch.Tensor:
    """Uniform segmentation: ``(B, L)`` tokens (``-1`` padded) -> ``(B, T')`` frame labels (``-1``: none).

    Frames ``starts .. ends - 1`` (``starts``: 0 by default; ``ends``: the true lengths for the
    whole utterance) are split into as many equal segments as the utterance has tokens; the frames
    outside stay unlabelled.

    Example:
        >>> frame_average_labels(torch.tensor([[5, 6, -1], [7, -1, -1]]), torch.tensor([4, 2]), 5).tolist()
        [[5, 5, 6, 6, -1], [7, 7, -1, -1, -1]]
        >>> frame_average_labels(torch.tensor([[5, 6]]), torch.tensor([5]), 6, torch.tensor([1])).tolist()
        [[-1, 5, 5, 6, 6, -1]]
    """
    starts = torch.zeros_like(ends) if starts is None else starts
    ys_lens = (ys != IGNORE_ID).sum(1)
    t = torch.arange(frames, device=ys.device)[None, :]
    idx = ((t - starts[:, None]).clamp_min(0) * ys_lens[:, None]) // (ends - starts).clamp_min(1)[:, None]
    labels = ys.gather(1, idx.clamp(max=ys.size(1) - 1))
    valid = (t >= starts[:, None]) & (t < ends[:, None]) & (ys_lens[:, None] > 0)
    return labels.masked_fill(~valid, IGNORE_ID)


def spike_span(ctc_logp: torch.Tensor, enc_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The frames an utterance's CTC spikes cover: ``(B, T', V)`` -> ``(B,)`` starts and ends.

    A spike is a frame whose CTC argmax is a unit other than blank and other than the previous
    frame's. A CTC model spikes near a word's start, so the span runs from the first spike to
    one mean spike spacing past the last (the last word's length); an utterance with fewer than
    two spikes keeps its whole length.

    Example:
        >>> logp = torch.full((1, 10, 3), -9.0)
        >>> for t, v in enumerate([0, 0, 1, 0, 2, 0, 1, 0, 0, 0]): logp[0, t, v] = 0.0
        >>> [x.tolist() for x in spike_span(logp, torch.tensor([10]))]
        [[2], [8]]
    """
    _, spike = best_path_emissions(ctc_logp.detach(), enc_lens)
    t = torch.arange(spike.size(1), device=spike.device)[None, :].expand_as(spike)
    count = spike.sum(1)
    first = torch.where(spike, t, spike.size(1)).min(1).values
    last = torch.where(spike, t, -1).max(1).values
    spacing = (last - first).float() / (count - 1).clamp_min(1)
    end = torch.minimum((last + spacing).round().long(), enc_lens)
    several = count >= 2
    return torch.where(several, first, 0), torch.where(several, end, enc_lens)


def ctc_align_labels(
    ctc_logp: torch.Tensor, ys: torch.Tensor, enc_lens: torch.Tensor, extend_blanks: bool = True
) -> torch.Tensor:
    """CTC forced alignment: ``(B, T', V)`` log-posteriors, ``(B, L)`` tokens -> ``(B, T')`` labels.

    The spike frame of each token is labelled; with ``extend_blanks`` the blank frames after
    it inherit it while it stays the most probable non-blank unit there (blanks before the first
    token stay unlabelled). A blank frame where another unit is more probable is most likely part
    of a word the transcript lacks (a pseudo-label's deletion): it is left unlabelled rather than
    given the previous word's unit. An utterance too short for its transcript (CTC needs a blank
    between repeated tokens) is left unlabelled.

    Example:
        >>> logp = torch.full((1, 5, 4), -10.0)
        >>> for t, v in enumerate([0, 2, 0, 2, 3]): logp[0, t, v] = 0.0
        >>> ctc_align_labels(logp, torch.tensor([[2, 2, 3]]), torch.tensor([5])).tolist()
        [[-1, 2, 2, 2, 3]]
        >>> ctc_align_labels(logp, torch.tensor([[2, 2, 3]]), torch.tensor([5]), extend_blanks=False).tolist()
        [[-1, 2, -1, 2, 3]]
        >>> logp[0, 2, 1] = -1.0  # the blank frame leans towards unit 1, which the transcript lacks
        >>> ctc_align_labels(logp, torch.tensor([[2, 2, 3]]), torch.tensor([5])).tolist()
        [[-1, 2, -1, 2, 3]]
    """
    out = torch.full(ctc_logp.shape[:2], IGNORE_ID, dtype=torch.long, device=ctc_logp.device)
    logp = ctc_logp.detach().float()
    for b in range(ys.size(0)):
        tokens = ys[b][ys[b] != IGNORE_ID]
        t_len = int(enc_lens[b])
        repeats = int((tokens[1:] == tokens[:-1]).sum()) if tokens.numel() > 1 else 0
        if tokens.numel() == 0 or tokens.numel() + repeats > t_len:
            continue
        path, _ = torchaudio.functional.forced_align(
            logp[b : b + 1, :t_len], tokens[None].to(torch.int32), blank=0
        )
        out[b, :t_len] = path[0].long()
    blank = out == 0
    if not extend_blanks:
        return out.masked_fill(blank, IGNORE_ID)
    # forward-fill: each blank frame takes the label of the last non-blank frame before it
    t = torch.arange(out.size(1), device=out.device).expand_as(out)
    last = torch.where(~blank & (out != IGNORE_ID), t, torch.full_like(t, -1)).cummax(1).values
    filled = out.gather(1, last.clamp_min(0))
    # a blank frame keeps the previous unit only while no other unit is more probable there
    inherited = logp.gather(2, filled.clamp_min(0)[..., None]).squeeze(-1)
    still_it = inherited >= logp[..., 1:].max(-1).values
    extend = blank & (last >= 0) & still_it
    return torch.where(extend, filled, out).masked_fill(blank & ~extend, IGNORE_ID)


def ctc_pred_labels(ctc_logp: torch.Tensor, enc_lens: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """CTC argmax where its posterior exceeds ``threshold``: ``(B, T', V)`` -> ``(B, T')`` labels.

    Example:
        >>> logp = torch.tensor([[[0.95, 0.05], [0.2, 0.8], [0.01, 0.99]]]).log()
        >>> ctc_pred_labels(logp, torch.tensor([2])).tolist()
        [[0, -1, -1]]
    """
    conf, arg = ctc_logp.detach().max(-1)
    valid = (conf > torch.log(torch.tensor(threshold))) & (
        torch.arange(arg.size(1), device=arg.device)[None, :] < enc_lens[:, None]
    )
    return arg.masked_fill(~valid, IGNORE_ID)


def class_means(
    feats: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T', D)`` frames and ``(B, T')`` labels -> ``(V, D)`` class means and ``(V,)`` frame counts.

    Example:
        >>> f = torch.tensor([[[1.0], [3.0], [5.0]]])
        >>> means, counts = class_means(f, torch.tensor([[1, 1, -1]]), 3)
        >>> means.flatten().tolist(), counts.tolist()
        ([0.0, 2.0, 0.0], [0, 2, 0])
    """
    keep = labels >= 0
    x, y = feats[keep].float(), labels[keep]
    counts = torch.bincount(y, minlength=num_classes)
    sums = x.new_zeros(num_classes, x.size(-1)).index_add_(0, y, x)
    return sums / counts.clamp_min(1)[:, None], counts


def class_gaussian_mmd(
    fs: torch.Tensor,
    ls: torch.Tensor,
    ft: torch.Tensor,
    lt: torch.Tensor,
    classes: torch.Tensor,
    scales: list[int] | tuple[int, ...] = (-2, -1, 0, 1, 2),
) -> torch.Tensor:
    """Multi-kernel MMD^2 per class between source and target frames: ``(C,)`` for ``classes``.

    ``fs``/``ft``: ``(B, T', D)`` frames, ``ls``/``lt``: ``(B, T')`` labels (``-1``: none). One
    kernel over every labelled frame of both sides; class ``c``'s MMD^2 is ``w_c^T K w_c`` with
    ``w_c`` ``+1/n_S(c)`` on its source frames and ``-1/n_T(c)`` on its target frames.

    Example:
        >>> f = torch.randn(1, 8, 4)
        >>> lab = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 2]])
        >>> same = class_gaussian_mmd(f, lab, f, lab, torch.tensor([1, 2]))
        >>> moved = class_gaussian_mmd(f, lab, f + 3, lab, torch.tensor([1, 2]))
        >>> same.abs().max().item() < 1e-5, bool((moved > 0.1).all())
        (True, True)
    """
    keep_s, keep_t = torch.isin(ls, classes), torch.isin(lt, classes)  # -1 (no unit) is never a class
    one_s = (ls[keep_s][:, None] == classes).float()  # (N_S, C)
    one_t = (lt[keep_t][:, None] == classes).float()  # (N_T, C)
    sign = torch.cat([one_s / one_s.sum(0).clamp_min(1), -one_t / one_t.sum(0).clamp_min(1)])  # (N, C)
    k = gaussian_kernel(torch.cat([fs[keep_s], ft[keep_t]]).float(), scales)
    return ((k @ sign) * sign).sum(0)


class CMatch(SelfTraining):
    """Self-training plus ``cmatch``: matching per-unit means of source and target frames (lambda = 10).

    Example:
        >>> m = CMatch({"labels": "ctc_pred", "self_training": False})
        >>> m.weights["cmatch"], m.target_labels
        (10.0, False)
    """

    name: ClassVar[str] = "cmatch"
    OptionsClass: ClassVar[type] = CMatchOptions
    default_weights: ClassVar[dict[str, float | None]] = {**SelfTraining.default_weights, "cmatch": 10.0}

    def __init__(self, cfg: dict | None = None) -> None:
        super().__init__(cfg)
        if self.opts.labels not in STRATEGIES:
            raise ValueError(f"adapt.labels: {self.opts.labels!r} is not one of {', '.join(STRATEGIES)}")
        if self.opts.kernel not in KERNELS:
            raise ValueError(f"adapt.kernel: {self.opts.kernel!r} is not one of {', '.join(KERNELS)}")
        if self.opts.average_over not in ("utterance", "spikes"):
            raise ValueError(f"adapt.average_over: {self.opts.average_over!r} is not utterance or spikes")
        if self.opts.kernel == "gaussian" and self.opts.ema > 0:
            raise ValueError("adapt.ema: running class means need kernel: linear (a mean is no distribution)")

    @property
    def target_labels(self) -> bool:
        # alignment and uniform segmentation need a transcript of the target: its pseudo-label
        return bool(self.opts.self_training) or self.opts.labels != "ctc_pred"

    @property
    def unlabelled_target(self) -> bool:
        # CTC-predicted frame labels need no transcript; alignment and uniform segmentation do
        return self.opts.labels == "ctc_pred"

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        super().setup(model, tokenizers)
        if len(self.tokenizers) != 1:
            raise ValueError(f"cmatch: adapts one language, the tokenizers are {sorted(self.tokenizers)}")
        tok = next(iter(self.tokenizers.values()))
        ignore = torch.zeros(tok.vocab_size, dtype=torch.bool)
        ignore[tok.non_character_ids] = True
        self.register_buffer("ignore", ignore, persistent=False)
        shape = (len(self.opts.layers), tok.vocab_size, model.d_model)
        # running class means per layer and domain, and whether a class has been seen yet
        self.register_buffer("ema_means", torch.zeros(2, *shape))
        self.register_buffer("ema_seen", torch.zeros(2, *shape[:2], dtype=torch.bool))

    def weight(self, term: str, ctx: Context) -> float:
        w = super().weight(term, ctx)
        if term == "cmatch" and self.opts.warmup > 0:
            w *= min(1.0, ctx.progress / self.opts.warmup)
        return w

    def frame_labels(self, out: ModelOutput, batch: Batch) -> torch.Tensor:
        """``(B, T')`` unit per encoder frame (``-1``: not matched) by the configured strategy."""
        frames = out.enc_out.size(1)
        if self.opts.labels == "ctc_pred":
            labels = ctc_pred_labels(out.ctc_logp, out.enc_lens, self.opts.threshold)
        elif self.opts.labels == "frame_average":
            starts, ends = None, out.enc_lens
            if self.opts.average_over == "spikes":
                starts, ends = spike_span(out.ctc_logp, out.enc_lens)
            labels = frame_average_labels(batch.ys, ends, frames, starts)
        else:
            labels = ctc_align_labels(out.ctc_logp, batch.ys, out.enc_lens, self.opts.extend_blanks)
        return labels.masked_fill(self.ignore[labels.clamp_min(0)], IGNORE_ID)

    def match(
        self, out_s: ModelOutput, out_t: ModelOutput, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        lab_s = self.frame_labels(out_s, batches["source"])
        lab_t = self.frame_labels(out_t, batches["target"])
        vocab, need = self.ignore.numel(), self.opts.min_frames
        # the labels are the same for every matched layer: which units have enough frames, once
        ok_s = torch.bincount(lab_s[lab_s >= 0], minlength=vocab) >= need
        ok_t = torch.bincount(lab_t[lab_t >= 0], minlength=vocab) >= need
        shared = ok_s & ok_t
        both = shared.nonzero().squeeze(1)
        losses = []
        for i, (fs, ft) in enumerate(zip(self.features(out_s), self.features(out_t))):
            if self.opts.detach_source:
                fs = fs.detach()
            valid = shared  # per layer: the running means (ema) may add units
            if self.opts.kernel == "gaussian" and both.numel():
                d = class_gaussian_mmd(fs, lab_s, ft, lab_t, both, self.opts.kernel_scales)
                losses.append(d.mean())
                continue
            if self.opts.kernel == "linear":
                (ms, _), (mt, _) = class_means(fs, lab_s, vocab), class_means(ft, lab_t, vocab)
                if self.opts.ema > 0:
                    ms, mt, valid = self._with_running_means(i, ms, ok_s, mt, ok_t, ctx)
                if valid.any():
                    losses.append((ms - mt).pow(2).sum(-1)[valid].mean())
                    continue
            # no unit on both sides: a zero that keeps the graph (every rank runs the same backward)
            losses.append((fs.sum() + ft.sum()) * 0.0)
        return {"cmatch": torch.stack(losses).mean()}

    def _with_running_means(
        self,
        layer: int,
        ms: torch.Tensor,
        ok_s: torch.Tensor,
        mt: torch.Tensor,
        ok_t: torch.Tensor,
        ctx: Context,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Units missing on one side take that side's running (detached) mean; update the running means.

        A unit is matched when both sides have a mean and at least one comes from this batch.
        """
        means, avail = [], []
        for side, (m, ok) in enumerate(((ms, ok_s), (mt, ok_t))):
            ema, seen = self.ema_means[side, layer], self.ema_seen[side, layer]
            means.append(torch.where(ok[:, None], m, ema))
            avail.append(ok | seen)
            if ctx.stage == "train":
                mom = torch.where(seen, self.opts.ema, 0.0)[:, None]
                self.ema_means[side, layer] = torch.where(
                    ok[:, None], mom * ema + (1 - mom) * m.detach(), ema
                )
                self.ema_seen[side, layer] = seen | ok
        return means[0], means[1], avail[0] & avail[1] & (ok_s | ok_t)
