"""Batches read and padded off the training thread: a ``DataLoader`` over an epoch's steps.

The steps (:func:`~asr_transfer.data.dataset.stream_batches`) fix the batch order; the loader
only does the work of each step (read the features, pad) in worker processes, in that order,
starting at any step, so a resumed run gets exactly the batches an uninterrupted one gets. The
loader never draws from torch's global RNG (its own generator seeds the workers), so dropout
and SpecAugment see the same random numbers with or without workers.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from asr_transfer.data.dataset import Batch, Utterance, collate

Step = dict[str, list[Utterance]]


class StepDataset(Dataset):
    """Steps ``start, start + 1, ...`` of an epoch; item ``k`` is step ``start + k`` collated.

    Example:
        >>> ds = StepDataset([{"source": []}] * 5, start=2)
        >>> len(ds)
        3
    """

    def __init__(self, steps: list[Step], start: int = 0) -> None:
        self.steps, self.start = steps, start

    def __len__(self) -> int:
        return len(self.steps) - self.start

    def __getitem__(self, k: int) -> dict[str, Batch]:
        return {name: collate(items) for name, items in self.steps[self.start + k].items()}


def step_loader(
    steps: list[Step], start: int = 0, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """Collated steps ``start..`` in order: ``{stream: Batch}`` per step.

    ``num_workers`` processes build the batches ahead (0: on the calling thread);
    ``pin_memory`` (for CUDA) puts them in page-locked memory so ``Batch.to(dev,
    non_blocking=True)`` overlaps the copy with compute.

    Example:
        >>> len(step_loader([{"source": []}] * 4, start=1))
        3
    """
    return DataLoader(
        StepDataset(steps, start),
        batch_size=None,  # a step is already a batch
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        # a private generator: the global RNG (dropout, SpecAugment) is left as it was
        generator=torch.Generator().manual_seed(0),
    )


def padding_frames(step: Step) -> tuple[int, int]:
    """``(padded, total)`` input frames of a step over its streams: ``total = sum(B * longest)``.

    Example:
        >>> us = [Utterance("a", "en", 100, "", [1]), Utterance("b", "en", 60, "", [1])]
        >>> padding_frames({"source": us})
        (40, 200)
    """
    padded = total = 0
    for items in step.values():
        longest = max(u.frames for u in items)
        total += longest * len(items)
        padded += sum(longest - u.frames for u in items)
    return padded, total
