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
the saved config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import HybridASR, ModelOutput
from asr_transfer.model.slots import set_trainable
from asr_transfer.text.tokenizer import Tokenizer


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
            starting experiment for the two-domain methods, so they adapt what is decoded.
    """

    method: str = "supervised"
    name: str | None = None
    target: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    train_only: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)
    ctc_share: float | None = None


def parse_options(cls: type, cfg: dict[str, Any], where: str = "adapt") -> Any:
    """Build the dataclass ``cls`` from ``cfg``; nested dataclass fields take dicts; unknown keys fail.

    Example:
        >>> parse_options(Options, {"method": "x", "weights": {"ctc": 1}}).weights
        {'ctc': 1}
        >>> parse_options(Options, {"methd": "x"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: adapt.methd: unknown option; known: ctc_share, freeze, method, name, target, ...
    """
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown option; known: {', '.join(sorted(known))}")
    kwargs = {}
    for key, value in cfg.items():
        default = (
            known[key].default_factory if known[key].default_factory is not dataclasses.MISSING else None
        )
        sub = default() if default is not None else known[key].default
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            value = parse_options(type(sub), value, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


class Method(torch.nn.Module):
    """Supervised training (plain training or fine-tuning); the base every method extends.

    Subclasses set :attr:`name`, :attr:`streams`, :attr:`default_weights`, and an
    ``OptionsClass`` when they take options of their own.

    Example:
        >>> m = Method({"weights": {"att": 0.5}})
        >>> m.streams, m.weight("att", Context()), m.resolved_config()["method"]
        (('source',), 0.5, 'supervised')
    """

    name: ClassVar[str] = "supervised"
    streams: ClassVar[tuple[str, ...]] = ("source",)
    OptionsClass: ClassVar[type] = Options
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
        #: language -> tokenizer, set by the loop before :meth:`setup`
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

    def setup(self, model: HybridASR) -> None:
        """Add modules and choose the trainable parameters; resolve weights that depend on the model."""
        ctc = model.ctc_weight if self.opts.ctc_share is None else self.opts.ctc_share
        for term, pair in (("ctc", ctc), ("att", 1 - ctc)):
            if term in self.weights and self.weights[term] is None:
                self.weights[term] = pair
        if self.opts.train_only:
            set_trainable(model, ["*"], False)
            set_trainable(model, self.opts.train_only, True)
        if self.opts.freeze:
            set_trainable(model, self.opts.freeze, False)

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


def forward(model: torch.nn.Module, batch: Batch, layers: tuple[int, ...] = ()) -> ModelOutput:
    """Run ``model`` on ``batch``; unlabelled batches (``ys is None``) give no losses."""
    return model(batch.feats, batch.feat_lens, batch.ys, batch.lang, return_layers=layers)
