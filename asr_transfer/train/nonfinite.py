"""Skipping the update of a non-finite loss (on every rank alike), with or without a host sync.

Semantics (both modes): a batch whose loss is not finite on any rank is counted in
``skipped``; it and the batches accumulated before it in its ``accum_grad`` window contribute
no gradient; a window whose last batch is non-finite makes no update (parameters and Adam
moments untouched).

* host mode (``device_side=False``, any optimiser): the flag is read back every batch; a
  non-finite batch gets no backward and no optimiser step. Reading it is free on the CPU.
* device mode (``device_side=True``, fused Adam): nothing is read back. Every batch runs
  backward; a non-finite one's gradients are zeroed on the device (with ``accum_grad`` > 1),
  and the fused kernel's ``found_inf`` turns the update into a no-op. The host cannot know, so
  the learning-rate schedule and ``state["step"]`` advance as for a taken step (as with
  ``torch.amp.GradScaler``). The count is read only when :attr:`skipped` is asked for.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from asr_transfer.train.dist import DistInfo, all_reduce_sum


class NonFiniteGuard:
    """Decides, per batch, whether its loss counts; counts the ones that do not.

    Example:
        >>> from asr_transfer.train.dist import DistInfo
        >>> g = NonFiniteGuard(DistInfo(0, 1, torch.device("cpu")), device_side=False)
        >>> g.check(torch.tensor(1.0)), g.check(torch.tensor(float("nan"))), g.skipped
        (True, False, 1)
    """

    def __init__(self, info: DistInfo, device_side: bool, skipped: int = 0) -> None:
        self.info, self.device_side = info, device_side
        self._host = skipped
        self._count = torch.zeros((), device=info.device)
        #: 1.0 when the last batch was non-finite on some rank (device mode), else 0.0
        self.bad = torch.zeros((), device=info.device)

    def check(self, loss: torch.Tensor) -> bool:
        """Whether to run backward on ``loss`` (always ``True`` in device mode)."""
        if not self.device_side:
            # every rank must agree on skipping, or the others would wait in backward's all-reduce
            finite = all_reduce_sum([float(torch.isfinite(loss))], self.info)[0] == self.info.world_size
            self._host += not finite
            return finite
        ok = torch.isfinite(loss.detach()).float()
        if self.info.world_size > 1:
            dist.all_reduce(ok)  # queued on the device's stream, nothing read back
            ok = (ok == self.info.world_size).float()
        self.bad = 1.0 - ok
        self._count += self.bad
        return True

    def drop_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Device mode, after backward: zero every gradient if the batch was non-finite."""
        bad = self.bad.bool()
        for p in params:
            if p.grad is not None:
                p.grad.masked_fill_(bad, 0.0)  # masked_fill, not a product: NaN * 0 is NaN

    def arm(self, optim: torch.optim.Optimizer) -> None:
        """Device mode, before ``optim.step()``: make the step a no-op after a non-finite batch."""
        if self.device_side:
            optim.found_inf = self.bad

    @property
    def skipped(self) -> int:
        """Batches skipped so far (device mode: reads the device counter back)."""
        return self._host + (int(self._count.item()) if self.device_side else 0)
