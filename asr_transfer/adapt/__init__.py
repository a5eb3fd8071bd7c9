"""Adaptation methods: small plug-ins the training loop selects by name (``adapt.method``).

A method contributes losses, never a trainer. Its contract:

- :meth:`Method.setup` adds the modules it needs through the model's slots and
  says which parameters train (everything else is frozen);
- :meth:`Method.losses` turns one step's batches into named loss terms; the loop
  sums the terms, logs each one, and does backward, clipping, AMP, DDP and checkpoints.

Only ``supervised`` (plain training or fine-tuning) exists so far; CMatch, MMD,
adversarial and the adapter family register here as they land.
"""

from __future__ import annotations

import torch

from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import HybridASR
from asr_transfer.model.slots import set_trainable


class Method:
    """Supervised training; the base every adaptation method extends.

    ``cfg`` is the ``adapt:`` config section. ``freeze`` lists glob patterns of
    parameter names to freeze, ``train_only`` (if given) freezes everything else.
    """

    name = "supervised"

    def __init__(self, cfg: dict | None = None) -> None:
        self.cfg = cfg or {}

    def setup(self, model: HybridASR) -> None:
        only = self.cfg.get("train_only")
        if only:
            set_trainable(model, ["*"], False)
            set_trainable(model, only, True)
        set_trainable(model, self.cfg.get("freeze", []), False)

    def losses(self, model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Named loss terms whose sum is minimised; ``model`` may be DDP-wrapped."""
        out = model(batch.feats, batch.feat_lens, batch.ys, batch.lang)
        inner = model.module if hasattr(model, "module") else model
        return {
            "ctc": inner.ctc_weight * out.loss_ctc,
            "att": (1 - inner.ctc_weight) * out.loss_att,
        }


METHODS: dict[str, type[Method]] = {"supervised": Method}


def build_method(cfg: dict | None) -> Method:
    """Instantiate the method named by ``cfg["method"]`` (default ``supervised``)."""
    cfg = dict(cfg or {})
    name = cfg.get("method", "supervised")
    if name not in METHODS:
        raise ValueError(f"unknown adaptation method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name](cfg)


# methods in their own modules register themselves in METHODS on import
from asr_transfer.adapt import finetune  # noqa: E402,F401
