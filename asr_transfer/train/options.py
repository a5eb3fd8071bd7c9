"""Every option of the training loop (the ``train:`` config section), with its default, in one place.

A key that is not a field here is an error naming it, so a mistyped ``--train.epoch 3`` fails
instead of being ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from asr_transfer.util.options import parse_options


@dataclass
class TrainOptions:
    """The ``train:`` section.

    Attributes:
        seed: seeds weights, dropout and the batch order (with the epoch).
        epochs: passes over the first (source) stream.
        max_batch_frames: padded input frames per batch and rank.
        max_utt_frames: longer utterances are left out.
        accum_grad: batches per optimiser step.
        lr: peak learning rate (Adam, betas 0.9/0.98).
        weight_decay: Adam weight decay.
        fused_optimizer: fused Adam, which also skips a non-finite step on the device without a
            host sync (:mod:`asr_transfer.train.nonfinite`); ``None``: on CUDA only. ``false``
            reads the finite flag back every batch (the previous behaviour).
        num_workers: processes reading and padding batches ahead of the training step (0: on
            the training thread, the previous behaviour); the batch order is the same either way.
        scheduler: ``{type: noam|warmup_decay|warmup_exp|constant, ...}``
            (:mod:`asr_transfer.train.schedule`).
        grad_clip: gradient-norm clipping.
        save_every_steps: optimiser steps between resumable checkpoints.
        log_every_steps: optimiser steps between TensorBoard points.
        keep_best: epochs (best dev loss) averaged into ``model.pt``.
        patience: stop after this many epochs without a new best dev loss (``epochs`` is then the
            most); ``None``: run every epoch. Adaptation's length is chosen this way, on the
            method's unsupervised dev criterion.
        min_epochs: patience stops no run before this many epochs (``add-language`` sets it so a
            small target still trains a minimum number of steps).
        num_threads: torch CPU threads (``None``: torch's default).
        bf16: bf16 autocast on GPUs.
        compile: ``torch.compile`` the model's forward (:mod:`asr_transfer.train.compile`; needs a
            C/C++ compiler, and every new input shape compiles again at first).
        device: ``auto`` (GPU when there is one) or ``cpu``.
        init: a ``model.pt`` to start from (strict load).
        init_espnet: an ESPnet2 experiment dir to start from.
        init_espnet_checkpoint: which ``.pth`` of it (default: the best one found).

    Example:
        >>> TrainOptions.from_config({"epochs": 3}).epochs
        3
        >>> TrainOptions.from_config({"epoch": 3})
        Traceback (most recent call last):
        ...
        ValueError: train.epoch: unknown option; known: accum_grad, bf16, compile, device, epochs, ...
    """

    seed: int = 1
    epochs: int = 10
    max_batch_frames: int = 20000
    max_utt_frames: int = 3000
    accum_grad: int = 1
    lr: float = 2e-3
    weight_decay: float = 0.0
    fused_optimizer: bool | None = None
    num_workers: int = 1
    scheduler: dict = field(default_factory=dict)
    grad_clip: float = 5.0
    save_every_steps: int = 200
    log_every_steps: int = 10
    keep_best: int = 5
    patience: int | None = None
    min_epochs: int = 0
    num_threads: int | None = None
    bf16: bool = True
    compile: bool = False
    device: str = "auto"
    init: str | None = None
    init_espnet: str | None = None
    init_espnet_checkpoint: str | None = None

    @classmethod
    def from_config(cls, section: dict | None) -> TrainOptions:
        """Parse the ``train:`` section; unknown keys are errors."""
        return parse_options(cls, dict(section or {}), "train")

    def to_config(self) -> dict:
        """The section with every default filled in (for the saved config)."""
        return asdict(self)
