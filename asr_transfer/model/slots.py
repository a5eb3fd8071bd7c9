"""Named module slots after every encoder/decoder block, adapters, and freezing by pattern.

A :class:`Slot` sits after each block and applies, in order, the modules that are
enabled in it. Modules are added to every slot under one name (``"ro"``,
``"meta"``...), so an adapter set is a name, and its checkpoint is just the
parameters under that name.
"""

from __future__ import annotations

import fnmatch
import math

import torch


class Slot(torch.nn.Module):
    """An ordered set of named modules applied to a block's output ``(B, T, D)``.

    Example:
        >>> slot = Slot()
        >>> slot.modules_by_name["ro"] = Adapter(d_model=4, bottleneck=2)
        >>> torch.nn.init.ones_(slot.modules_by_name["ro"].up.weight)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> x = torch.randn(1, 3, 4)
        >>> torch.equal(slot(x), x)  # nothing enabled: identity
        True
        >>> slot.enabled = ["ro"]
        >>> torch.equal(slot(x), x)
        False
    """

    def __init__(self) -> None:
        super().__init__()
        self.modules_by_name = torch.nn.ModuleDict()
        self.enabled: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.enabled:
            module = self.modules_by_name[name]
            # a fusion layer reads its siblings (the adapters it fuses), which stay disabled themselves
            x = module(x, self.modules_by_name) if isinstance(module, Fusion) else module(x)
        return x


class Adapter(torch.nn.Module):
    """Residual bottleneck adapter: ``z + W_up ReLU(W_down LayerNorm(z))``, no biases.

    ``W_up`` starts at zero so a freshly added adapter leaves the model unchanged
    (docs/methods.md, section 3.1).

    Example:
        >>> a = Adapter(d_model=8, bottleneck=4)
        >>> x = torch.randn(2, 3, 8)
        >>> torch.equal(a(x), x)
        True
    """

    def __init__(self, d_model: int, bottleneck: int = 64) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(d_model)
        self.down = torch.nn.Linear(d_model, bottleneck, bias=False)
        self.up = torch.nn.Linear(bottleneck, d_model, bias=False)
        torch.nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(self.norm(x))))


class Fusion(torch.nn.Module):
    """SimAdapter's per-layer attention over the outputs of named sibling adapters.

    For a block output ``h`` ``(B, T, D)`` and the fused adapters' outputs ``a_k = adapter_k(h)``
    (plus ``a_0 = h`` with ``with_base``): ``q = W_q h``, ``k_k = W_k a_k``,
    ``alpha = softmax_k(q . k_k / tau)`` per frame, and the output is
    ``h + W_v sum_k alpha_k (a_k - h)``. ``W_v`` starts at the identity, so one fused adapter
    gives exactly that adapter's output; ``tau`` is ``sqrt(D)`` or learnt (``temperature``).
    How this differs from the authors' fusion, and why: docs/methods.md, section 3.6.
    The last attention weights are kept (:attr:`last_alpha`, ``(B, T, K)``) for the guide loss and
    for the plot of which language helps the target; :attr:`alpha_sum` accumulates them when
    :attr:`record` is on.

    Example:
        >>> slot = Slot()
        >>> slot.modules_by_name["de"] = Adapter(8, 4)
        >>> torch.nn.init.normal_(slot.modules_by_name["de"].up.weight)  # doctest: +ELLIPSIS
        Parameter containing:...
        >>> slot.modules_by_name["fusion"] = Fusion(8, fuses=["de"])
        >>> slot.enabled = ["fusion"]
        >>> x = torch.randn(2, 3, 8)
        >>> torch.allclose(slot(x), slot.modules_by_name["de"](x))
        True
    """

    def __init__(
        self, d_model: int, fuses: list[str], temperature: str = "sqrt_d", with_base: bool = False
    ) -> None:
        super().__init__()
        if not fuses:
            raise ValueError("a fusion layer needs at least one adapter to fuse")
        if temperature not in ("sqrt_d", "learnt"):
            raise ValueError(f"fusion temperature {temperature!r}: choose sqrt_d or learnt")
        self.fuses = list(fuses)
        self.with_base = with_base
        self.query = torch.nn.Linear(d_model, d_model)
        self.key = torch.nn.Linear(d_model, d_model)
        self.value = torch.nn.Linear(d_model, d_model, bias=False)
        torch.nn.init.eye_(self.value.weight)
        # log tau, starting at sqrt(D): a parameter when learnt, else a buffer (same state-dict key)
        log_tau = torch.tensor(0.5 * math.log(d_model))
        if temperature == "learnt":
            self.log_tau = torch.nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        self.temperature = temperature
        self.last_alpha: torch.Tensor | None = None
        self.record = False
        self.alpha_sum = torch.zeros(self.num_choices)
        self.alpha_count = 0

    @property
    def names(self) -> list[str]:
        """The attended choices in order: ``["<base>"]`` first with ``with_base``, then the adapters."""
        return (["<base>"] if self.with_base else []) + self.fuses

    @property
    def num_choices(self) -> int:
        return len(self.fuses) + int(self.with_base)

    def forward(self, h: torch.Tensor, siblings: torch.nn.ModuleDict) -> torch.Tensor:
        missing = [n for n in self.fuses if n not in siblings]
        if missing:
            raise KeyError(f"fusion layer: no adapter {missing} in this slot ({sorted(siblings)})")
        outs = [h] if self.with_base else []
        outs += [siblings[n](h) for n in self.fuses]
        a = torch.stack(outs, dim=2)  # (B, T, K, D)
        q = self.query(h).unsqueeze(2)  # (B, T, 1, D)
        scores = (q * self.key(a)).sum(-1) / self.log_tau.exp()  # (B, T, K)
        alpha = scores.softmax(-1)
        self.last_alpha = alpha
        if self.record:
            with torch.no_grad():
                self.alpha_sum = self.alpha_sum.to(alpha.device) + alpha.detach().float().sum((0, 1))
                self.alpha_count += alpha.shape[0] * alpha.shape[1]
        return h + self.value((alpha.unsqueeze(-1) * (a - h.unsqueeze(2))).sum(2))

    def value_penalty(self) -> torch.Tensor:
        """``||W_v - I||^2`` (the regulariser that keeps the values near the adapters' outputs)."""
        eye = torch.eye(self.value.weight.shape[0], device=self.value.weight.device)
        return ((self.value.weight - eye) ** 2).sum()


def set_trainable(module: torch.nn.Module, patterns: list[str], trainable: bool) -> int:
    """Set ``requires_grad`` on parameters whose name matches a glob pattern; return how many.

    Example:
        >>> m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
        >>> set_trainable(m, ["0.*"], False)
        2
        >>> [p.requires_grad for p in m.parameters()]
        [False, False, True, True]
    """
    count = 0
    for name, param in module.named_parameters():
        if any(fnmatch.fnmatchcase(name, pat) for pat in patterns):
            param.requires_grad_(trainable)
            count += 1
    if patterns and not count:
        raise ValueError(f"no parameter matches {patterns}")
    return count
