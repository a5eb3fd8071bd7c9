"""MetaAdapter (Hou et al., IEEE/ACM TASLP 2021): meta-learn one adapter over the source languages, then
fine-tune it on the target.

``meta_train`` (an ``asr-transfer train`` run on the sources, from the multilingual model):
every step's batch is one task (one source language). Its utterances are split in halves,
support and query; ``inner_steps`` steps on the support adapt a **fresh functional copy** of the
shared adapter and the task's head (``torch.func.functional_call``: no state dict is copied, no
inner optimiser state outlives its task, the model is never modified), by the authors' inner
optimiser, Adam with ``beta1 = 0`` (``inner_optim: adam``; each step moves every weight by about
``inner_lr`` whatever its gradient's size) or plain SGD (``inner_optim: sgd``), and

- ``fomaml``: the outer gradient is the query loss's gradient at the adapted weights;
- ``reptile``: the inner loop also steps on the query, the outer gradient is ``theta - theta'``.

The method returns it as the gradient of the ``meta`` term (its value is the query loss), so the
one training loop does the outer step: ``train.accum_grad`` tasks make one meta-batch, whose
outer update is the mean of theirs; clipping, checkpoints and dev evaluation (the query loss
after adaptation on the dev batch's support half) are the loop's. The adapter ``meta`` is
persisted in ``model.adapters``.

``metaadapter`` (through ``asr-transfer add-language``): copies ``meta`` from the ``meta_train``
experiment (``adapt.meta``) as the target's adapter, named by its language, and trains it with
the target's fresh head, like ``adapter``. Equations, options and how the outer step differs from
the authors': docs/methods.md, section 3.5.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch.func import functional_call

from asr_transfer.adapt.base import Context, Method, Options, unwrap
from asr_transfer.adapt.finetune import TransferMethod, TransferOptions
from asr_transfer.data.dataset import IGNORE_ID, Batch
from asr_transfer.model.adapters import import_adapters
from asr_transfer.model.asr import HybridASR
from asr_transfer.text.tokenizer import Tokenizer

#: ``loss_fn(model, params, batch) -> scalar``: the model's loss with ``params`` in place of its own
LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor], object], torch.Tensor]
ALGORITHMS = ("fomaml", "reptile")
INNER_OPTIMS = ("adam", "sgd")


def inner_adapt(
    model: torch.nn.Module,
    params: dict[str, torch.Tensor],
    loss_fn: LossFn,
    batches: list,
    lr: float,
    optim: str = "adam",
    betas: tuple[float, float] = (0.0, 0.999),
    eps: float = 1e-8,
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """One optimiser step per batch from a fresh copy of ``params``; returns the adapted weights and losses.

    ``optim`` is ``adam`` (the authors' inner optimiser: Adam with ``betas``, their ``beta1 = 0``, its
    state fresh for every call, so for every task) or ``sgd``. First order: each step's graph is
    cut, so no second derivatives are ever formed.

    Example (``f(w) = (2 w - 0)^2`` at ``w = 1``, gradient 8; SGD: ``1 - 0.1 * 8``; the first Adam step with
    ``beta1 = 0`` moves by the learning rate whatever the gradient: ``1 - 0.1``):
        >>> lin = torch.nn.Linear(1, 1, bias=False)
        >>> w = {"weight": torch.tensor([[1.0]])}
        >>> mse = lambda m, p, b: ((functional_call(m, p, (b[0],)) - b[1]) ** 2).mean()
        >>> task = [(torch.tensor([[2.0]]), torch.tensor([[0.0]]))]
        >>> fast, losses = inner_adapt(lin, w, mse, task, 0.1, "sgd")
        >>> round(fast["weight"].item(), 4), losses, w["weight"].item()
        (0.2, [4.0], 1.0)
        >>> round(inner_adapt(lin, w, mse, task, 0.1)[0]["weight"].item(), 4)
        0.9
    """
    if optim not in INNER_OPTIMS:
        raise ValueError(f"adapt.inner_optim {optim!r}: choose from {INNER_OPTIMS}")
    fast = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    # torch's own optimisers on the fresh leaves: their state lives and dies with this call
    opt = (
        torch.optim.Adam(fast.values(), lr=lr, betas=betas, eps=eps)
        if optim == "adam"
        else torch.optim.SGD(fast.values(), lr=lr)
    )
    losses = []
    for batch in batches:
        loss = loss_fn(model, fast, batch)
        grads = torch.autograd.grad(loss, list(fast.values()), allow_unused=True)
        for w, g in zip(fast.values(), grads):
            w.grad = g  # None: the optimiser leaves that weight as it is
        opt.step()
        losses.append(float(loss.detach()))
    return fast, losses


def meta_gradient(
    model: torch.nn.Module,
    params: dict[str, torch.Tensor],
    loss_fn: LossFn,
    support: object,
    query: object,
    inner_steps: int = 1,
    inner_lr: float = 0.01,
    algorithm: str = "fomaml",
    inner_optim: str = "adam",
    inner_betas: tuple[float, float] = (0.0, 0.999),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One task's ``(query loss, outer gradient per parameter)``; ``params`` and ``model`` stay unchanged.

    The inner steps are :func:`inner_adapt`'s (``inner_optim``, ``inner_betas``).

    Example (FOMAML on ``(w x - y)^2``, one inner SGD step, by hand: ``w' = 1 - 0.1 * 2 * 1 * (1 - 2) = 1.2``,
    query gradient ``2 * 3 * (1.2 * 3 - 3) = 3.6``):
        >>> lin = torch.nn.Linear(1, 1, bias=False)
        >>> mse = lambda m, p, b: ((functional_call(m, p, (b[0],)) - b[1]) ** 2).sum()
        >>> s = (torch.tensor([[1.0]]), torch.tensor([[2.0]]))
        >>> q = (torch.tensor([[3.0]]), torch.tensor([[3.0]]))
        >>> w = {"weight": torch.tensor([[1.0]])}
        >>> loss, g = meta_gradient(lin, w, mse, s, q, 1, 0.1, inner_optim="sgd")
        >>> round(g["weight"].item(), 4), round(loss.item(), 4)
        (3.6, 0.36)
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"adapt.algorithm {algorithm!r}: choose from {ALGORITHMS}")
    steps = {"lr": inner_lr, "optim": inner_optim, "betas": tuple(inner_betas)}
    if algorithm == "fomaml":
        fast, _ = inner_adapt(model, params, loss_fn, [support] * inner_steps, **steps)
        loss = loss_fn(model, fast, query)
        grads = torch.autograd.grad(loss, list(fast.values()), allow_unused=True)
        out = {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads)}
        return loss.detach(), out
    fast, losses = inner_adapt(model, params, loss_fn, [support] * inner_steps + [query], **steps)
    return torch.tensor(losses[-1]), {n: p.detach() - fast[n].detach() for n, p in params.items()}


def as_gradient(value: torch.Tensor, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]):
    """A term whose value is ``value`` and whose gradient w.r.t. each of ``params`` is ``grads``.

    Example:
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> t = as_gradient(torch.tensor(5.0), {"w": w}, {"w": torch.tensor([0.5, -1.0])})
        >>> t.backward(); t.item(), w.grad.tolist()
        (5.0, [0.5, -1.0])
    """
    term = value.detach().clone()
    for n, p in params.items():
        term = term + ((p - p.detach()) * grads[n]).sum()
    return term


def split_halves(batch: Batch) -> tuple[Batch, Batch]:
    """Support (even positions) and query (odd positions) halves of a batch; one utterance serves as both."""
    if len(batch.utts) < 2:
        return batch, batch

    def part(idx: list[int]) -> Batch:
        sel = torch.tensor(idx, device=batch.feats.device)
        lens = batch.feat_lens[sel]
        ys = batch.ys[sel]
        width = int((ys != IGNORE_ID).sum(1).max())
        return Batch(batch.feats[sel, : int(lens.max())], lens, ys[:, :width], batch.lang,
                     [batch.utts[i] for i in idx])  # fmt: skip

    n = len(batch.utts)
    return part(list(range(0, n, 2))), part(list(range(1, n, 2)))


def model_loss(model: torch.nn.Module, params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    """The model's CTC/attention loss on ``batch`` with ``params`` substituted."""
    out = functional_call(model, params, (batch.feats, batch.feat_lens, batch.ys, batch.lang))
    return out.loss


@dataclass
class MetaTrainOptions(Options):
    """The ``adapt:`` section of ``meta_train``.

    Attributes:
        bottleneck: the shared adapter's bottleneck (the paper: 64).
        where: the stacks whose slots get it.
        algorithm: ``fomaml`` or ``reptile``.
        inner_steps: inner steps on the support half per task.
        inner_lr: their learning rate (the authors': 0.01).
        inner_optim: ``adam`` (the authors': fresh state per task) or ``sgd``.
        inner_betas: Adam's betas (the authors': ``[0.0, 0.999]``, no momentum).
    """

    bottleneck: int = 64
    where: list[str] = field(default_factory=lambda: ["encoder", "decoder"])
    algorithm: str = "fomaml"
    inner_steps: int = 1
    inner_lr: float = 0.01
    inner_optim: str = "adam"
    inner_betas: list[float] = field(default_factory=lambda: [0.0, 0.999])


class MetaTrain(Method):
    """Meta-train the shared adapter ``meta`` (and the source heads) over the source languages.

    Example:
        >>> MetaTrain({"algorithm": "reptile", "inner_steps": 2}).weights
        {'meta': 1.0}
    """

    name = "meta_train"
    OptionsClass = MetaTrainOptions
    default_weights = {"meta": 1.0}
    adapter = "meta"
    kind = "source"
    find_unused_parameters = True
    # the step never runs the DDP-wrapped forward, so DDP could not average its gradients
    supports_multiprocess = False

    def __init__(self, cfg: dict | None = None) -> None:
        super().__init__(cfg)
        if self.opts.algorithm not in ALGORITHMS:
            raise ValueError(f"adapt.algorithm {self.opts.algorithm!r}: choose from {ALGORITHMS}")
        if int(self.opts.inner_steps) < 1:
            raise ValueError(f"adapt.inner_steps {self.opts.inner_steps}: at least 1")
        if self.opts.inner_optim not in INNER_OPTIMS:
            raise ValueError(f"adapt.inner_optim {self.opts.inner_optim!r}: choose from {INNER_OPTIMS}")
        betas = [float(b) for b in self.opts.inner_betas]
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"adapt.inner_betas {self.opts.inner_betas}: two numbers in [0, 1)")
        self.opts.inner_betas = betas

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        super().setup(model, tokenizers)
        model.add_adapter(self.adapter, bottleneck=int(self.opts.bottleneck), where=tuple(self.opts.where))
        model.set_enabled([self.adapter])
        model.freeze()
        for lang in model.heads:
            model.unfreeze_head(lang)
        model.unfreeze_adapters([self.adapter])

    def compute_objectives(
        self, model: torch.nn.Module, batches: dict[str, Batch], ctx: Context
    ) -> dict[str, torch.Tensor]:
        net = unwrap(model)
        batch = batches["source"]
        adapter = {n for n, _ in net.named_adapter_parameters(self.adapter)}
        params = {
            n: p
            for n, p in net.named_parameters()
            if p.requires_grad and (n in adapter or n.startswith(f"heads.{batch.lang}."))
        }
        support, query = split_halves(batch)
        with torch.enable_grad():  # dev evaluation runs under no_grad; adaptation needs gradients
            loss, grads = meta_gradient(net, params, model_loss, support, query, int(self.opts.inner_steps),
                                        float(self.opts.inner_lr), self.opts.algorithm, self.opts.inner_optim,
                                        tuple(self.opts.inner_betas))  # fmt: skip
        if ctx.stage != "train":
            return {"meta": loss}
        return {"meta": as_gradient(loss, params, grads)}


@dataclass
class MetaAdapterOptions(TransferOptions):
    """The ``adapt:`` section of ``metaadapter``: ``meta`` is the ``meta_train`` experiment.

    The adapter's size and stacks are the MetaAdapter's (``bottleneck`` and ``where`` are not used).
    """

    meta: str | None = None


class MetaAdapterTransfer(TransferMethod):
    """Start the target's adapter from the meta-trained one; train it and the target head."""

    name = "metaadapter"
    OptionsClass = MetaAdapterOptions
    needs_sources = True
    writes_adapter_file = True
    trains_target_adapter = True

    def setup(self, model: HybridASR, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        lang = self.set_up_target(model, tokenizers)
        if not self.opts.meta:
            raise ValueError("adapt.meta: the meta_train experiment (the MetaAdapter) is not set")
        if lang not in model.adapter_specs:  # a rebuilt experiment already holds the fine-tuned one
            import_adapters(model, self.opts.meta, {MetaTrain.adapter: lang})
        model.set_enabled([lang])
        model.freeze()
        model.unfreeze_head(lang)
        model.unfreeze_adapters([lang])
