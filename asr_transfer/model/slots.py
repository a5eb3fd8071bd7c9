"""Named module slots after every encoder/decoder block, adapters, and freezing by pattern.

A :class:`Slot` sits after each block and applies, in order, the modules that are
enabled in it. Modules are added to every slot under one name (``"ro"``,
``"meta"``...), so an adapter set is a name, and its checkpoint is just the
parameters under that name.
"""

from __future__ import annotations

import fnmatch

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
            x = self.modules_by_name[name](x)
        return x


class Adapter(torch.nn.Module):
    """Residual bottleneck adapter: ``z + W_up ReLU(W_down LayerNorm(z))``, no biases.

    ``W_up`` starts at zero so a freshly added adapter leaves the model unchanged.

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
