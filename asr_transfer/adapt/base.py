"""The contract between the one training loop and an adaptation method.

A method is a ``torch.nn.Module`` (so its own modules and running statistics are
trained by the loop's optimiser and saved in its checkpoints) that:

- names the batch **streams** it needs each step (``source``: the labelled
  ``data.train``; ``target``: ``data.target``, audio of the new domain, read with
  its ``text`` only when :attr:`Method.target_labels` is true, i.e. pseudo-labels);
  the first stream named defines the epoch, the others are cycled;
- in :meth:`Method.setup`, adds modules to the model's slots and chooses which
  parameters train;
- in :meth:`Method.compute_objectives`, turns one step's batches into named,
  **unweighted** loss terms; :meth:`Method.weight` gives each term's weight
  (from the method's options, possibly on a schedule). The loop sums, logs every
  term, and does backward, clipping, AMP, DDP, checkpoints and dev evaluation
  (the same function with ``ctx.stage == "dev"``).

Options live in one typed place per method (a dataclass); a key the method does
not know is an error naming it, and the resolved options are written back into
the saved config. What every method computes, and its options: docs/methods.md
(the shared options: section 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import HybridASR, ModelOutput
from asr_transfer.text.tokenizer import Tokenizer
from asr_transfer.util.options import parse_options

__all__ = ["Context", "Method", "Options", "forward", "parse_options", "supervised_terms", "unwrap"]


@dataclass
class Context:
    """Where the loop is: ``stage`` is ``train`` or ``dev``; ``progress`` runs from 0 to 1 over training."""

    stage: str = "train"
    epoch: int = 1
    step: int = 0
    progress: float = 0.0


@dataclass
class Options:
    """Options every method takes (the ``adapt:`` config section).

    Attributes:
        method: registered method name.
        name: display name in reports (default: derived from the method).
        target: name of the target domain or language (reports only).
        weights: loss-term weights overriding the method's defaults.
        train_only: glob patterns of the only parameters that train (others frozen).
        freeze: glob patterns of parameters frozen after ``train_only``.
        ctc_share: the CTC share of the supervised terms (the attention term gets the rest);
            ``None``: the model's CTC weight. The loop sets it from the decoding recorded in the
            starting experiment for the domain-adaptation methods, so they adapt what is decoded.
    """

    method: str = "supervised"
    name: str | None = None
    target: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    train_only: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)
    ctc_share: float | None = None


class Method(torch.nn.Module):
    """Supervised training (plain training or fine-tuning); the base every method extends.

    Subclasses set :attr:`name`, :attr:`streams`, :attr:`default_weights`, an
    ``OptionsClass`` when they take options of their own, and declare what the loop and the
    commands need to know in the class attributes below (the loop never tests a method's name).

    Example:
        >>> m = Method({"weights": {"att": 0.5}})
        >>> m.streams, m.weight("att", Context()), m.resolved_config()["method"]
        (('source',), 0.5, 'supervised')
        >>> m.kind, m.find_unused_parameters, m.averages_gradients_by_hand
        ('train', False, False)
    """

    name: ClassVar[str] = "supervised"
    streams: ClassVar[tuple[str, ...]] = ("source",)
    OptionsClass: ClassVar[type] = Options
    #: ``train`` (plain training), ``uda`` (domain adaptation), ``source`` (source-side runs of
    #: the new-language methods) or ``new_language`` (``asr-transfer add-language`` methods)
    kind: ClassVar[str] = "train"
    #: whether the method needs earlier experiments' adapters (``adapt.meta``, ``adapt.sources``)
    needs_sources: ClassVar[bool] = False
    #: DDP must look for parameters without a gradient: only plain training uses every one
    find_unused_parameters: ClassVar[bool] = False
    #: whether it may run in several processes (``torchrun``); the loop refuses otherwise
    supports_multiprocess: ClassVar[bool] = True
    #: term -> weight; ``None`` means "the model's CTC weight" (resolved in :meth:`setup`)
    default_weights: ClassVar[dict[str, float | None]] = {"ctc": None, "att": None}

    def __init__(self, cfg: dict | None = None) -> None:
        super().__init__()
        cfg = dict(cfg or {})
        cfg.setdefault("method", self.name)
        self.opts = parse_options(self.OptionsClass, cfg)
        unknown = sorted(set(self.opts.weights) - set(self.default_weights))
        if unknown:
            raise ValueError(f"adapt.weights.{unknown[0]}: {self.name} has no such loss term")
        self.weights: dict[str, float | None] = {**self.default_weights, **self.opts.weights}
        #: language -> tokenizer, as given to :meth:`setup`
        self.tokenizers: dict[str, Tokenizer] = {}

    @property
    def target_labels(self) -> bool:
        """Whether the ``target`` stream's ``text`` (pseudo-labels) is read."""
        return False

    @property
    def unlabelled_target(self) -> bool:
        """Whether terms need no target labels, so the target audio left without a pseudo-label
        (``data.target_unlabelled``) joins the ``target`` stream, in batches of its own."""
        return False

    @property
    def averages_gradients_by_hand(self) -> bool:
        """Whether several processes average gradients by hand rather than by DDP.

        DDP expects one forward per backward and knows only the model's parameters: a method with
        several streams or modules of its own cannot be wrapped.
        """
        return len(self.streams) > 1 or any(True for _ in self.parameters())

    @property
    def domain_adapter(self) -> str | None:
        """The per-domain adapter the method trains on a frozen base, or ``None`` (the loop writes it
        as ``EXP/<name>.adapter`` when training ends)."""
        return None

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        """Add modules and choose the trainable parameters; resolve weights that depend on the model.

        ``tokenizers`` (language -> tokenizer) are the experiment's.
        """
        self.tokenizers = dict(tokenizers or {})
        ctc = self.ctc_share(model)
        for term, pair in (("ctc", ctc), ("att", 1 - ctc)):
            if term in self.weights and self.weights[term] is None:
                self.weights[term] = pair
        if self.opts.train_only:
            model.freeze()
            model.unfreeze(self.opts.train_only)
        if self.opts.freeze:
            model.freeze(self.opts.freeze)

    def ctc_share(self, model: HybridASR) -> float:
        """The CTC share of the supervised terms: ``adapt.ctc_share``, else the model's CTC weight."""
        return model.ctc_weight if self.opts.ctc_share is None else self.opts.ctc_share

    def weight(self, term: str, ctx: Context) -> float:
        """The weight of ``term`` at this point of training."""
        return float(self.weights[term])

    def compute_objectives(
        self, model: torch.nn.Module, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        """Named unweighted loss terms for this step; ``model`` may be DDP-wrapped."""
        return supervised_terms(forward(model, batches["source"]))

    def resolved_config(self) -> dict[str, Any]:
        """The ``adapt:`` section with every default filled in (written to the saved config)."""
        cfg = dataclasses.asdict(self.opts)
        cfg["weights"] = {k: v for k, v in self.weights.items() if v is not None}
        return cfg


def supervised_terms(out: ModelOutput, suffix: str = "") -> dict[str, torch.Tensor]:
    """``{"ctc<suffix>": ..., "att<suffix>": ...}`` of a labelled forward pass."""
    return {f"ctc{suffix}": out.loss_ctc, f"att{suffix}": out.loss_att}


def unwrap(model: torch.nn.Module) -> HybridASR:
    """The :class:`HybridASR` inside a DDP wrapper (or ``model`` itself)."""
    return getattr(model, "module", model)


def forward(model: torch.nn.Module, batch: Batch, layers: tuple[int, ...] = ()) -> ModelOutput:
    """Run ``model`` on ``batch``; unlabelled batches (``ys is None``) give no losses."""
    return model(batch.feats, batch.feat_lens, batch.ys, batch.lang, return_layers=layers)
