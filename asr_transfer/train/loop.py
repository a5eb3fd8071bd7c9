"""The one training loop: read :class:`Trainer` top to bottom, one method per phase.

    __init__ (set-up): seed, ranks, tokenizers, model, method; config saved after the method set
        the model up; the method's batch streams; optimiser over the model's and the method's
        trainable parameters
    resume: from checkpoints/last.pt if it exists (model, method state, optimiser, TrainState, RNG);
        then DDP, or gradients averaged by hand when the method asks for it
    run: for each epoch:
        train_one_epoch: for each step (one batch per stream, deterministic from seed + epoch; read
                and padded ahead by data-loader workers, pinned for CUDA):
            batch_forward: autocast forward -> method's named loss terms x their weights
            batch_backward: skip if non-finite on any rank, else backward
            every accum_grad steps: update_parameters (clip, step, schedule)
            every log_every_steps optimiser steps: log_step, the only host reads of losses
            every save_every_steps optimiser steps: save_checkpoint (atomic, the position in the epoch)
        validate: the method's dev loss (dev data only)
        end_epoch: padding share, keep the best k, checkpoint
    finish: average the best k into model.pt; a method's domain adapter into EXP/<domain>.adapter

A killed run restarts from ``last.pt`` at the batch after the last saved step,
with the same batch order, RNG state and optimiser state.
"""

from __future__ import annotations

import logging
import math
import random
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from asr_transfer.adapt import Context, Method, build_method
from asr_transfer.config import save_config
from asr_transfer.data.dataset import Batch, Utterance, load_dump, stream_batches
from asr_transfer.data.features import load_cmvn
from asr_transfer.data.frontend import check_record
from asr_transfer.data.loader import padding_frames, step_loader
from asr_transfer.model.asr import HybridASR, build_model
from asr_transfer.text.tokenizer import Tokenizer
from asr_transfer.train.checkpoint import average_checkpoints, load_model_state
from asr_transfer.train.compile import compile_model
from asr_transfer.train.dist import DistInfo, all_reduce_sum, init_distributed
from asr_transfer.train.init import DECODING_FILE, init_from_base, recorded_decoding
from asr_transfer.train.nonfinite import NonFiniteGuard
from asr_transfer.train.optim import build_optimizer
from asr_transfer.train.options import TrainOptions
from asr_transfer.train.schedule import build_schedule
from asr_transfer.util.atomic import save_torch, write_text
from asr_transfer.util.errors import InputError

log = logging.getLogger("asr_transfer.train")


def load_tokenizers(cfg: dict) -> dict[str, Tokenizer]:
    """``data.tokenizers: {lang: folder}`` -> loaded tokenizers."""
    return {lang: Tokenizer.load(folder) for lang, folder in cfg["data"]["tokenizers"].items()}


def load_split(
    entries: list[dict],
    toks: dict[str, Tokenizer],
    max_frames: int,
    features: dict | None = None,
    labelled: bool = True,
) -> list[Utterance]:
    """``[{dump: DIR, lang: L}, ...]`` -> utterances with token ids (``labelled``) or without.

    Dumps must come from ``features``. Unlabelled dumps' ``text`` files are never opened.
    """
    utts: list[Utterance] = []
    for entry in entries:
        check_record(entry["dump"], features)
        utts += load_dump(entry["dump"], entry["lang"], toks[entry["lang"]], max_frames, labelled)
    return utts


def load_streams(
    cfg: dict, method: Method, toks: dict[str, Tokenizer], max_frames: int
) -> tuple[dict[str, list[Utterance]], dict[str, list[Utterance]]]:
    """The method's training and dev streams: ``source`` from ``data.train``/``data.dev``,
    ``target`` from ``data.target``/``data.target_dev`` (dev optional), in the order of
    ``method.streams``: the first defines the epoch, the others are cycled. ``data.target_unlabelled``
    (the target audio the pseudo-labeller left out) joins ``target``, unlabelled, for a method
    whose terms need no labels (:attr:`Method.unlabelled_target`); dev stays the labelled part."""
    data, feats = cfg["data"], cfg.get("features")
    train = {"source": load_split(data["train"], toks, max_frames, feats)}
    dev = {"source": load_split(data["dev"], toks, max_frames, feats)}
    if "target" in method.streams:
        if not data.get("target"):
            raise ValueError(f"data.target: adaptation method {method.name!r} needs target-domain audio")
        labelled = method.target_labels
        train["target"] = load_split(data["target"], toks, max_frames, feats, labelled)
        if data.get("target_unlabelled") and method.unlabelled_target:
            known = {u.utt for u in train["target"]}
            rest = load_split(data["target_unlabelled"], toks, max_frames, feats, labelled=False)
            train["target"] += [u for u in rest if u.utt not in known]
        if data.get("target_dev"):
            dev["target"] = load_split(data["target_dev"], toks, max_frames, feats, labelled)
    order = [name for name in method.streams if name in train]
    return {k: train[k] for k in order}, {k: dev[k] for k in order if k in dev}


def model_from_config(cfg: dict, toks: dict[str, Tokenizer]) -> HybridASR:
    """Build the model of ``cfg`` with one head per tokenizer and the CMVN stats loaded."""
    model = build_model(cfg["model"], {lang: t.vocab_size for lang, t in toks.items()})
    if cfg["data"].get("cmvn"):
        model.cmvn.mean, model.cmvn.istd = load_cmvn(cfg["data"]["cmvn"])
    return model


def start_from_espnet(cfg: dict, exp: Path) -> tuple[HybridASR, dict[str, Tokenizer]]:
    """``train.init_espnet: DIR``: start from an ESPnet2 experiment's model, tokenizer and frontend.

    ``cfg`` is completed in place (``model``, ``features``, ``data.tokenizers``) so the saved
    config rebuilds this model without the ESPnet folder and reruns unchanged. A section the
    user set to something else is an error, not silently replaced.
    """
    from asr_transfer.model.espnet_loader import espnet_starting_point

    tcfg, data = cfg["train"], cfg["data"]
    langs = sorted({entry["lang"] for entry in data["train"]})
    if len(langs) != 1:
        raise ValueError(
            f"train.init_espnet: an ESPnet model has one vocabulary, the training data has {langs}"
        )
    if data.get("cmvn"):
        raise ValueError("data.cmvn and train.init_espnet are both set: the ESPnet model brings its own CMVN")
    lang = langs[0]
    model, tok, model_cfg, features = espnet_starting_point(
        tcfg["init_espnet"], tcfg.get("init_espnet_checkpoint"), lang
    )
    derived = {"model": model_cfg, "features": features}
    for key, value in derived.items():
        if cfg.get(key) not in (None, value):
            raise ValueError(f"{key}: set in the config, but train.init_espnet defines it: {value}")
        cfg[key] = value
    # a saved config names the copy of ESPnet's token list: rerunning it is fine, another list is not
    given = data.get("tokenizers")
    if given and (set(given) != {lang} or Tokenizer.load(given[lang]).tokens != tok.tokens):
        raise ValueError("data.tokenizers and train.init_espnet are both set: ESPnet brings its tokenizer")
    data["tokenizers"] = {lang: str(exp / "tokenizers" / lang)}
    return model, {lang: tok}


def starting_model(cfg: dict, exp: Path, opts: TrainOptions) -> tuple[HybridASR, dict[str, Tokenizer]]:
    """The model training starts from and its tokenizers: ESPnet's, a base model's, or fresh."""
    if opts.init_espnet:
        return start_from_espnet(cfg, exp)
    toks = load_tokenizers(cfg)
    model = model_from_config(cfg, toks)
    if opts.init:
        # strict except for whole heads of new languages: a misfit fails loudly, never loads nothing
        init_from_base(model, opts.init)
    return model, toks


def set_up_method(
    cfg: dict,
    model: HybridASR,
    toks: dict[str, Tokenizer],
    info: DistInfo,
    decoding: tuple[Path, float] | None = None,
) -> Method:
    """Build ``cfg``'s method and let it set the model up; record what it resolved in ``cfg``.

    ``decoding``: the starting experiment's recorded decoding and its CTC share
    (:func:`~asr_transfer.train.init.recorded_decoding`).
    """
    method = build_method(cfg.get("adapt"))
    if info.world_size > 1 and not method.supports_multiprocess:
        raise InputError(f"{method.name} runs in one process (run it without torchrun)")
    # adapting to a new domain: adapt what the base experiment decodes with (CTC alone, or the beam's mix)
    if decoding and method.kind == "uda" and method.opts.ctc_share is None:
        method.opts.ctc_share = decoding[1]
    method.setup(model, toks)
    # written after the method set the model up, with its resolved options, so the experiment rebuilds
    cfg["adapt"] = method.resolved_config()
    if model.adapter_specs:  # the adapters the method added, so build_model rebuilds them
        cfg["model"]["adapters"] = model.adapter_config()
    return method


def write_experiment(
    cfg: dict, exp: Path, toks: dict[str, Tokenizer], decoding: tuple[Path, float] | None = None
) -> None:
    """The config, command line, log file, tokenizers and the base's recorded ``decoding`` (if any) of
    the experiment (main process only)."""
    (exp / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, exp / "config.yaml")
    write_text(exp / "command.txt", shlex.join(sys.argv) + "\n")
    if decoding:  # the experiment decodes as its base does
        write_text(exp / DECODING_FILE, decoding[0].read_text(encoding="utf-8"))
    _log_to_file(exp / "train.log")
    # a copy inside the experiment makes it self-contained for decoding and transcribe()
    for lang, tok in toks.items():
        tok.save(exp / "tokenizers" / lang)


@dataclass
class TrainState:
    """Where a run is; saved in every checkpoint (as a dict), so a killed run resumes at the next batch.

    Attributes:
        epoch: the epoch under way (from 1; ``epochs + 1`` once training is over).
        batch: batches of it done.
        step: optimiser steps done in all.
        skipped: updates skipped for a non-finite loss.
        best: ``(dev loss, epoch)`` of the epochs kept, best first.
        dev_losses: every finished epoch's dev loss, in order (what ``add-language`` judges the run by;
            absent from checkpoints written before it was kept).

    Example:
        >>> old = {"epoch": 2, "batch": 5, "step": 9, "skipped": 0, "best": [(1.5, 1)]}  # a dict, as saved
        >>> state = TrainState.from_saved(old)
        >>> state.batch, state.dev_losses, TrainState.from_saved(state.to_saved()) == state
        (5, [], True)
    """

    epoch: int = 1
    batch: int = 0
    step: int = 0
    skipped: int = 0
    best: list[tuple[float, int]] = field(default_factory=list)
    dev_losses: list[float] = field(default_factory=list)

    @classmethod
    def from_saved(cls, saved: dict) -> TrainState:
        """The state from a checkpoint's ``state`` entry (a dict, in old checkpoints too)."""
        return cls(**saved)

    def to_saved(self) -> dict:
        """A plain dict (checkpoints load without this class)."""
        return asdict(self)


class Trainer:
    """One training run in phases (the module docstring lists them); subclass to override one.

    Example (the whole run)::

        Trainer(load_config(["conf/model/tiny.yaml", "my.yaml"]), "exp/tiny").run()
    """

    def __init__(self, cfg: dict, exp_dir: str | Path) -> None:
        opts = self.opts = TrainOptions.from_config(cfg.get("train"))
        cfg["train"] = opts.to_config()
        self.cfg, self.exp = cfg, Path(exp_dir)
        self.ckpt_dir = self.exp / "checkpoints"
        info = self.info = init_distributed(opts.device != "cpu" and torch.cuda.is_available())
        if opts.num_threads:
            torch.set_num_threads(opts.num_threads)
        _seed_everything(opts.seed + info.rank)
        self.model, self.toks = starting_model(cfg, self.exp, opts)
        decoding = recorded_decoding(opts.init) if opts.init else None
        self.method = set_up_method(cfg, self.model, self.toks, info, decoding)
        # the base a domain adapter trains on: it must come out of training bit for bit the same
        self.base_fingerprint = self.model.fingerprint() if self.method.domain_adapter else None
        self.train_streams, self.dev_streams = load_streams(cfg, self.method, self.toks, opts.max_utt_frames)
        if info.is_main:
            write_experiment(cfg, self.exp, self.toks, decoding)
        self.model.to(info.device)
        compile_model(self.model, info.device, opts.compile)
        self.method.to(info.device)
        self.temperature = cfg["data"].get("lang_temperature")  # language-balanced sampling (multilingual)
        self.total_steps = opts.epochs * math.ceil(len(self.epoch_steps(1)) / opts.accum_grad)
        params = [*self.model.parameters(), *self.method.parameters()]
        self.params = [p for p in params if p.requires_grad]
        self.optim = build_optimizer(
            self.params, opts.lr, opts.weight_decay, info.device, opts.fused_optimizer
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.optim, build_schedule(opts.scheduler, self.total_steps)
        )
        self.state = TrainState()
        self.pin = info.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if info.device.type == "cuda" and opts.bf16 else None

    def epoch_steps(self, epoch: int) -> list:
        """This rank's steps of ``epoch`` (the same on every run with the same seed)."""
        o, i = self.opts, self.info
        return stream_batches(self.train_streams, o.max_batch_frames, o.seed, epoch, i.world_size, i.rank,
                              self.temperature)  # fmt: skip

    def run(self) -> Path:
        """Resume if there is a checkpoint, train the remaining epochs, return the averaged model's path."""
        self.resume()
        while self.state.epoch <= self.opts.epochs and not self.out_of_patience():
            padded, frames = self.train_one_epoch()
            self.end_epoch(self.validate(), padded, frames)
        return self.finish()

    def out_of_patience(self) -> bool:
        """Whether ``train.patience`` epochs have passed since the best dev loss (never without patience)."""
        if self.state.epoch <= self.opts.min_epochs:
            return False
        return _out_of_patience(self.state.best, self.state.epoch, self.opts.patience)

    def resume(self) -> None:
        """Load ``last.pt`` if it exists; then the non-finite guard, ranks' wrapper and TensorBoard."""
        last, info = self.ckpt_dir / "last.pt", self.info
        if last.exists():
            # the one full unpickling: this run's own resume file (written by save_checkpoint), whose RNG
            # states (numpy's holds an ndarray) the safe loader refuses; no file from anyone else is read here
            ck = torch.load(last, map_location="cpu", weights_only=False)
            self.model.load_state_dict(ck["model"])
            self.optim.load_state_dict(ck["optim"])
            self.sched.load_state_dict(ck["sched"])
            self.method.load_state_dict(ck["method"])
            self.state = TrainState.from_saved(ck["state"])
            _set_rng(ck["rng"][min(info.rank, len(ck["rng"]) - 1)])
            if info.is_main:
                st = self.state
                log.info("resumed from %s at epoch %d batch %d (step %d)", last, st.epoch, st.batch, st.step)
        # the fused optimiser can skip a non-finite step on the device: no host read per batch
        fused = bool(self.optim.defaults["fused"])
        self.guard = NonFiniteGuard(info, device_side=fused, skipped=self.state.skipped)
        self.net, self.manual_sync = wrap_for_ranks(self.model, self.method, info)
        self.writer = SummaryWriter(str(self.exp / "tensorboard")) if info.is_main else None

    def train_one_epoch(self) -> tuple[int, int]:
        """Train from ``state.batch`` to the end of the epoch; return (padded, all) input frames read."""
        st, opts, device = self.state, self.opts, self.info.device
        steps = self.epoch_steps(st.epoch)
        self.net.train()
        self.method.train()
        bar = tqdm(total=len(steps), initial=st.batch, desc=f"epoch {st.epoch}/{opts.epochs}", unit="batch",
                   disable=not self.info.is_main, dynamic_ncols=True)  # fmt: skip
        padded = frames = 0
        for i, collated in enumerate(
            step_loader(steps, st.batch, opts.num_workers, self.pin), start=st.batch
        ):
            pad, total = padding_frames(steps[i])
            padded, frames = padded + pad, frames + total
            batches = {name: b.to(device, non_blocking=self.pin) for name, b in collated.items()}
            ctx = Context("train", st.epoch, st.step, st.step / max(self.total_steps, 1))
            loss, terms = self.batch_forward(batches, ctx)
            finite = self.batch_backward(loss)
            st.batch = i + 1
            bar.update(1)
            if not finite or (i + 1) % opts.accum_grad and i + 1 < len(steps):
                continue
            grad_norm = self.update_parameters()
            if self.writer is not None and st.step % opts.log_every_steps == 0:
                self.log_step(loss, terms, grad_norm, bar)
            if st.step % opts.save_every_steps == 0:
                self.save_checkpoint(self.ckpt_dir / "last.pt")
        bar.close()
        st.skipped = self.guard.skipped
        return padded, frames

    def batch_forward(self, batches: dict[str, Batch], ctx: Context) -> tuple[torch.Tensor, dict]:
        """The weighted loss and the method's unweighted terms of one step."""
        dtype = self.amp_dtype
        with torch.autocast(self.info.device.type, dtype=dtype, enabled=dtype is not None):
            terms = self.method.compute_objectives(self.net, batches, ctx)
        return sum(self.method.weight(name, ctx) * value for name, value in terms.items()), terms

    def batch_backward(self, loss: torch.Tensor) -> bool:
        """Backward if the loss is finite on every rank, else drop the step's gradients; return which."""
        accum = self.opts.accum_grad
        if not self.guard.check(loss):
            self.optim.zero_grad(set_to_none=True)
            return False
        (loss / accum).backward()
        if self.guard.device_side and accum > 1:
            self.guard.drop_gradients(self.params)
        return True

    def update_parameters(self) -> torch.Tensor:
        """Average (if by hand), clip, step the optimiser and the schedule; return the gradient norm."""
        if self.manual_sync:
            _average_gradients(self.params, self.info)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.opts.grad_clip)
        self.guard.arm(self.optim)
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        self.sched.step()
        self.state.step += 1
        return grad_norm

    def log_step(self, loss: torch.Tensor, terms: dict, grad_norm: torch.Tensor, bar: tqdm) -> None:
        """TensorBoard points of this optimiser step: the only host reads of the losses."""
        st, writer, lr = self.state, self.writer, self.sched.get_last_lr()[0]
        st.skipped = self.guard.skipped
        for name, value in terms.items():
            writer.add_scalar(f"train/{name}", value.item(), st.step)
        writer.add_scalar("train/loss", loss.item(), st.step)
        writer.add_scalar("train/grad_norm", float(grad_norm), st.step)
        writer.add_scalar("train/lr", lr, st.step)
        writer.add_scalar("train/skipped_steps", st.skipped, st.step)
        bar.set_postfix(loss=f"{loss.item():.2f}", lr=f"{lr:.2e}")

    def validate(self) -> dict[str, float]:
        """The method's objective on the dev streams (:func:`evaluate`)."""
        o = self.opts
        return evaluate(self.method, self.model, self.dev_streams, o.max_batch_frames, self.info,
                        self.amp_dtype, o.num_workers)  # fmt: skip

    def end_epoch(self, dev: dict[str, float], padded: int, frames: int) -> None:
        """Log the epoch, keep its weights if among the best k, move to the next one, checkpoint."""
        st, keep = self.state, self.opts.keep_best
        if self.info.is_main:
            share = padded / max(frames, 1)
            others = ", ".join(f"{k} {v:.3f}" for k, v in dev.items() if k != "loss")
            log.info("epoch %d: dev loss %.3f (%s; step %d, skipped %d, padding %.1f%% of %d input frames)",
                     st.epoch, dev["loss"], others, st.step, st.skipped, 100 * share, frames)  # fmt: skip
            for name, value in dev.items():
                self.writer.add_scalar(f"dev/{name}", value, st.step)
            self.writer.add_scalar("train/padding_share", share, st.step)
            save_torch({"model": self.model.state_dict()}, self.ckpt_dir / f"epoch{st.epoch}.pt")
        st.best = sorted([*st.best, (dev["loss"], st.epoch)])
        st.dev_losses.append(float(dev["loss"]))
        if self.info.is_main:
            for _, old in st.best[keep:]:
                (self.ckpt_dir / f"epoch{old}.pt").unlink(missing_ok=True)
        st.best = st.best[:keep]
        st.epoch, st.batch = st.epoch + 1, 0
        self.save_checkpoint(self.ckpt_dir / "last.pt")

    def save_checkpoint(self, path: Path) -> None:
        """Everything a resumed run needs, written atomically by the main process."""
        self.state.skipped = self.guard.skipped
        rng = _gather_rng(self.info)
        if self.info.is_main:
            save_torch({"model": self.model.state_dict(), "method": self.method.state_dict(),
                        "optim": self.optim.state_dict(), "sched": self.sched.state_dict(),
                        "state": self.state.to_saved(), "rng": rng}, path)  # fmt: skip

    def finish(self) -> Path:
        """Average the best epochs into ``model.pt``; leave the process group."""
        final, epochs = self.exp / "model.pt", [e for _, e in self.state.best]
        if self.info.is_main:
            best = [self.ckpt_dir / f"epoch{e}.pt" for e in epochs]
            save_torch({"model": average_checkpoints(best), "averaged_epochs": epochs}, final)
            log.info("averaged epochs %s -> %s", epochs, final)
            if self.method.domain_adapter:
                self.write_domain_adapter(final)
            self.writer.close()
        if self.info.world_size > 1:
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        return final

    def write_domain_adapter(self, final: Path) -> Path:
        """``EXP/<domain>.adapter``: the domain adapter of the averaged model, checked to sit on the
        unchanged base (its body and the head it is used with), as a small file of its own."""
        name = self.method.domain_adapter
        self.model.load_state_dict(load_model_state(final))
        if self.model.fingerprint() != self.base_fingerprint:
            raise InputError(
                f"{final}: the base changed during adaptation ({self.base_fingerprint} -> "
                f"{self.model.fingerprint()}): no domain adapter file written"
            )
        langs = sorted({entry["lang"] for entry in self.cfg["data"]["target"]})
        if len(langs) != 1:
            raise InputError(f"data.target: a domain adapter is for one language's head, got {langs}")
        path = self.model.save_adapter(name, self.exp / f"{name}.adapter", langs[0], domain=True)
        log.info("domain adapter %s -> %s (%d bytes)", name, path, path.stat().st_size)
        return path


def train(cfg: dict, exp_dir: str | Path) -> Path:
    """Train (or adapt) the model described by ``cfg`` into ``exp_dir``; return the averaged model path."""
    return Trainer(cfg, exp_dir).run()


def wrap_for_ranks(model: HybridASR, method: Method, info: DistInfo) -> tuple[torch.nn.Module, bool]:
    """``(the module to run, whether gradients are averaged by hand)`` for this many ranks.

    DDP wraps the model unless the method averages by hand (:attr:`Method.averages_gradients_by_hand`);
    then the ranks' weights are made equal here, as DDP's broadcast would.
    """
    if info.world_size == 1:
        return model, False
    if method.averages_gradients_by_hand:
        # ranks were seeded apart (dropout); the weights must start equal
        for tensor in [*model.state_dict().values(), *method.state_dict().values()]:
            torch.distributed.broadcast(tensor, 0)
        return model, True
    unused = len(model.heads) > 1 or method.find_unused_parameters
    return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=unused), False


@torch.no_grad()
def evaluate(
    method: Method,
    model: HybridASR,
    streams: dict[str, list[Utterance]],
    budget: int,
    info: DistInfo,
    amp_dtype: torch.dtype | None,
    num_workers: int = 0,
) -> dict[str, float]:
    """The method's objective on dev data: ``loss`` (weighted sum) and each term, per source utterance.

    Weights are taken at the end of their schedules so epochs compare; summed over ranks. The sums
    stay on the device (float64, as Python floats were) until the end: one host read per pass.
    """
    model.eval()
    method.eval()
    ctx = Context("dev", progress=1.0)
    sums: dict[str, torch.Tensor | float] = {}
    count = 0
    pin = info.device.type == "cuda"
    dev_steps = stream_batches(streams, budget, 0, 0, info.world_size, info.rank)
    for collated in step_loader(dev_steps, 0, num_workers, pin):
        batches = {name: b.to(info.device, non_blocking=pin) for name, b in collated.items()}
        with torch.autocast(info.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            terms = method.compute_objectives(model, batches, ctx)
        n = len(batches["source"].utts)
        terms["loss"] = sum(method.weight(k, ctx) * v for k, v in terms.items())
        for name, value in terms.items():
            value = value.detach().double() if torch.is_tensor(value) else float(value)
            sums[name] = sums.get(name, 0.0) + value * n
        count += n
    names = sorted(sums)
    totals = all_reduce_sum([float(sums[k]) for k in names] + [float(count)], info)
    return {k: v / totals[-1] for k, v in zip(names, totals)}


def _out_of_patience(best: list[tuple[float, int]], epoch: int, patience: int | None) -> bool:
    """Whether ``patience`` epochs have passed since the best dev loss (``best``: (loss, epoch), sorted).

    Example:
        >>> _out_of_patience([(0.5, 2), (0.7, 3), (0.9, 1)], epoch=5, patience=2)
        True
        >>> _out_of_patience([(0.5, 3), (0.7, 2)], epoch=5, patience=2), _out_of_patience([], 9, None)
        (False, False)
    """
    return patience is not None and bool(best) and epoch - 1 - best[0][1] >= patience


def _average_gradients(params: list[torch.nn.Parameter], info: DistInfo) -> None:
    """Average the gradients over ranks (the methods DDP cannot wrap); a missing gradient counts as zero."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)
        p.grad /= info.world_size


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _set_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _gather_rng(info: DistInfo) -> list[dict]:
    """Every rank's RNG state (gathered to rank 0) so each resumes its own dropout stream."""
    if info.world_size == 1:
        return [_rng_state()]
    out: list = [None] * info.world_size
    torch.distributed.all_gather_object(out, _rng_state())
    return out


def _log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.addHandler(logging.StreamHandler(sys.stderr))
    log.setLevel(logging.INFO)
