"""Two-domain adaptation: a labelled source stream and a target stream, and plain self-training.

Each step draws one source batch and one target batch; an epoch is one pass over the target
audio. The supervised terms on the source (``ctc``, ``att``) and, with ``self_training: true``,
the same terms on the target's pseudo-labels (``ctc_target``, ``att_target``) follow the CMatch paper:
``0.3 * (CTC_S + CTC_T) / 2 + 0.7 * (Att_S + Att_T) / 2``, halved over the two domains, with the
CTC share of the decoder actually used (``ctc_share``: 1 for CTC greedy decoding, the beam's CTC
weight for joint decoding; the model's CTC weight when unset). With ``per_token`` the supervised
terms are per output token rather than per utterance, so their scale does not depend on the
corpus's utterance length and a matching weight moves between corpora (the papers' LibriSpeech
utterances have ~180 characters, a spoken-digit string ~5 units). Subclasses add a matching term
in :meth:`match`. The loss, its options and how they differ from the authors' code:
docs/methods.md, section 2.2 (model selection on dev data: section 2.6).

With ``train: adapter`` (any of these methods) the base stays frozen and only a per-domain adapter
named by ``target`` trains, in the slots after the encoder blocks (``where``), so it changes the
features that MMD, ADV and CMatch match. Only the target stream runs through it: the source stream
is the base alone, as the source domain is decoded (without the adapter), so the matching terms
pull the adapted target features towards the base's source features. The adapter is written as
``EXP/<target>.adapter`` when training ends (docs/methods.md, section 2.7).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from asr_transfer.adapt.base import Context, Method, Options, forward, supervised_terms, unwrap
from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import HybridASR, ModelOutput
from asr_transfer.text.tokenizer import Tokenizer

#: the terms that need labels (transcripts on the source, pseudo-labels on the target)
SUPERVISED_TERMS = ("ctc", "att", "ctc_target", "att_target")
#: ``adapt.train``: the whole model, or a per-domain adapter on the frozen base
TRAIN_CHOICES = ("model", "adapter")


@dataclass
class DomainOptions(Options):
    """Options of the two-domain methods.

    Attributes:
        self_training: add the supervised terms on the target's pseudo-labels (reads the
            target dump's ``text``, which must hold pseudo-labels, never ground truth).
        layers: encoder layers whose output is matched: ``-1`` is the final encoder output
            (after its LayerNorm), ``k >= 1`` the output of block ``k``.
        per_token: supervised terms per output token instead of per utterance.
        train: ``model`` (every parameter trains) or ``adapter`` (the base is frozen; a domain
            adapter named by ``target`` trains and is written as ``EXP/<target>.adapter``).
        bottleneck: the domain adapter's bottleneck (``train: adapter``).
        where: the stacks whose slots get the domain adapter (``train: adapter``); the encoder
            holds the features the matching terms compare, ``frontend`` adds the slot after the
            convolutional subsampling.
        adapter_source: the source stream runs through the domain adapter too, which then also
            trains on the source transcripts (``train: adapter``); off, the source is read by the
            base alone, as it is decoded.
    """

    self_training: bool = True
    layers: list[int] = field(default_factory=lambda: [-1])
    per_token: bool = True
    train: str = "model"
    bottleneck: int = 32
    where: list[str] = field(default_factory=lambda: ["encoder"])
    adapter_source: bool = False


class SelfTraining(Method):
    """Source supervised loss plus the loss on filtered target pseudo-labels.

    Example:
        >>> m = SelfTraining({})
        >>> m.streams, m.target_labels
        (('target', 'source'), True)
    """

    name: ClassVar[str] = "self_training"
    kind: ClassVar[str] = "uda"
    find_unused_parameters: ClassVar[bool] = True
    # an epoch is one pass over the target-domain audio; source batches are cycled
    streams: ClassVar[tuple[str, ...]] = ("target", "source")
    OptionsClass: ClassVar[type] = DomainOptions
    default_weights: ClassVar[dict[str, float | None]] = {
        "ctc": None, "att": None, "ctc_target": None, "att_target": None,
    }  # fmt: skip

    @property
    def target_labels(self) -> bool:
        return bool(self.opts.self_training)

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        self.check_train_option()
        ctc = self.ctc_share(model)
        share = 2 if self.opts.self_training else 1
        pairs = {"ctc": ctc, "att": 1 - ctc, "ctc_target": ctc, "att_target": 1 - ctc}
        for term, value in pairs.items():
            if self.weights.get(term, 0) is None:
                self.weights[term] = value / share
        if not self.opts.self_training:
            del self.weights["ctc_target"], self.weights["att_target"]
        super().setup(model, tokenizers)
        bad = [k for k in self.opts.layers if k != -1 and not 1 <= k <= len(model.enc_slots)]
        if bad:
            raise ValueError(
                f"adapt.layers: no encoder block {bad[0]} (the model has {len(model.enc_slots)})"
            )
        if self.domain_adapter:
            # as add-language's adapter: added after the base's own adapters, the base frozen
            name = self.domain_adapter
            base_enabled = model.enabled_adapters()
            model.add_adapter(name, bottleneck=int(self.opts.bottleneck), where=tuple(self.opts.where),
                              enabled=False)  # fmt: skip
            model.set_enabled([*base_enabled, name])
            model.freeze()
            model.unfreeze_adapters([name])

    def check_train_option(self) -> None:
        """A clear error for a bad ``adapt.train`` or an adapter without a usable ``adapt.target``."""
        o = self.opts
        if o.train not in TRAIN_CHOICES:
            raise ValueError(f"adapt.train: {o.train!r}; choose from {', '.join(TRAIN_CHOICES)}")
        if o.train != "adapter":
            return
        if not o.target or not re.fullmatch(r"[A-Za-z0-9_-]+", o.target):
            raise ValueError(
                f"adapt.train adapter: adapt.target names the domain adapter (and its file "
                f"<target>.adapter): letters, digits, _ and - only, got {o.target!r}"
            )
        if o.train_only or o.freeze:
            raise ValueError("adapt.train adapter trains the adapter alone: no adapt.train_only/freeze")

    @property
    def domain_adapter(self) -> str | None:
        """The name of the domain adapter trained (``adapt.target``), or ``None`` when the model trains."""
        return self.opts.target if self.opts.train == "adapter" else None

    @contextlib.contextmanager
    def base_only(self, model: torch.nn.Module) -> Iterator[None]:
        """With a domain adapter: the adapter off and no gradient (nothing of the base trains), unless
        ``adapter_source``."""
        if not self.domain_adapter or self.opts.adapter_source:
            yield
            return
        inner = unwrap(model)
        enabled = inner.enabled_adapters()
        inner.set_enabled([n for n in enabled if n != self.domain_adapter])
        try:
            with torch.no_grad():
                yield
        finally:
            inner.set_enabled(enabled)

    def weight(self, term: str, ctx: Context) -> float:
        # The dev criterion (epoch selection, and the tuning grid's choice) is the supervised terms
        # alone: source transcripts and target pseudo-labels, weighted for the decoder. A matching
        # term is logged but selects nothing: its scale differs across methods and weights, and
        # an adversary's loss is lowest exactly when the discriminator wins.
        if ctx.stage == "dev" and term not in SUPERVISED_TERMS:
            return 0.0
        return super().weight(term, ctx)

    @property
    def taps(self) -> tuple[int, ...]:
        """Encoder blocks to return from the forward pass (``-1`` needs none)."""
        return tuple(k for k in self.opts.layers if k != -1)

    def features(self, out: ModelOutput) -> list[torch.Tensor]:
        """The ``(B, T', D)`` encoder features of each configured layer."""
        return [out.enc_out if k == -1 else out.layers[k] for k in self.opts.layers]

    def compute_objectives(
        self, model: torch.nn.Module, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        # with a domain adapter the source is read as it is decoded: by the base alone
        with self.base_only(model):
            out_s = forward(model, batches["source"], self.taps)
        terms = self.supervised(out_s, batches["source"])
        if "target" not in batches:  # dev data of the source domain only
            return terms
        out_t = forward(model, batches["target"], self.taps)
        # a batch of the target audio without pseudo-labels feeds the label-free terms only
        if self.opts.self_training and batches["target"].ys is not None:
            terms |= self.supervised(out_t, batches["target"], "_target")
        return terms | self.match(out_s, out_t, batches, ctx)

    def supervised(self, out: ModelOutput, batch: Batch, suffix: str = "") -> dict[str, torch.Tensor]:
        """The CTC and attention terms of a labelled batch, per token with ``per_token``."""
        terms = supervised_terms(out, suffix)
        if not self.opts.per_token:
            return terms
        # the model's losses are sums over the batch's tokens divided by its utterances
        per_token = len(batch.utts) / (batch.ys >= 0).sum().clamp_min(1)
        return {name: value * per_token for name, value in terms.items()}

    def match(
        self, out_s: ModelOutput, out_t: ModelOutput, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        """Extra terms comparing the domains; none for plain self-training."""
        return {}


class SourceOnly(Method):
    """The baseline row: supervised training on the source stream only (no target audio).

    Example:
        >>> SourceOnly({}).streams
        ('source',)
    """

    name: ClassVar[str] = "source_only"
    kind: ClassVar[str] = "uda"
    find_unused_parameters: ClassVar[bool] = True


def masked_mean(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` padded frames -> ``(B, D)`` mean over the ``lens`` valid frames of each row.

    Example:
        >>> masked_mean(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([2]))
        tensor([[2.]])
    """
    mask = (torch.arange(x.size(1), device=x.device)[None, :] < lens[:, None]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / lens[:, None].to(x.dtype)


def valid_frames(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` -> ``(N, D)``: the unpadded frames of every row, concatenated.

    Example:
        >>> valid_frames(torch.arange(6.0).view(2, 3, 1), torch.tensor([1, 2])).flatten().tolist()
        [0.0, 3.0, 4.0]
    """
    mask = torch.arange(x.size(1), device=x.device)[None, :] < lens[:, None]
    return x[mask]
