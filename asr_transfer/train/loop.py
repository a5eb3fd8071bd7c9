"""The one training loop: read it top to bottom.

    set-up (seed, ranks, tokenizers, model, method; config saved after the method set the model up;
            the method's batch streams; optimiser over the model's and the method's trainable parameters)
    resume from checkpoints/last.pt if it exists (model, method state, optimiser, position, RNG)
    for each epoch: for each step (one batch per stream, deterministic from seed + epoch; read and
                                   padded ahead by data-loader workers, pinned for CUDA):
        autocast forward -> method's named loss terms x their weights -> skip if non-finite on any rank
        backward; every accum_grad steps: clip, step, schedule
        every log_every_steps optimiser steps: the only host reads of losses (no per-step sync)
        every save_every_steps optimiser steps: atomic checkpoint with the position in the epoch
    end of epoch: padding share, the method's dev loss (dev data only), keep the best k, checkpoint
    average the best k into model.pt

A killed run restarts from ``last.pt`` at the batch after the last saved step,
with the same batch order, RNG state and optimiser state.
"""

from __future__ import annotations

import logging
import math
import random
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from asr_transfer.adapt import Context, Method, build_method
from asr_transfer.config import save_config
from asr_transfer.data.dataset import Utterance, load_dump, stream_batches
from asr_transfer.data.features import load_cmvn
from asr_transfer.data.frontend import check_record
from asr_transfer.data.loader import padding_frames, step_loader
from asr_transfer.model.asr import HybridASR, build_model
from asr_transfer.text.tokenizer import Tokenizer
from asr_transfer.train.checkpoint import average_checkpoints, save_atomic
from asr_transfer.train.compile import compile_model
from asr_transfer.train.dist import DistInfo, all_reduce_sum, init_distributed
from asr_transfer.train.init import DECODING_FILE, init_from_base, recorded_decoding
from asr_transfer.train.nonfinite import NonFiniteGuard
from asr_transfer.train.optim import build_optimizer
from asr_transfer.train.options import TrainOptions
from asr_transfer.train.schedule import build_schedule

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


def train(cfg: dict, exp_dir: str | Path) -> Path:
    """Train (or adapt) the model described by ``cfg`` into ``exp_dir``; return the averaged model path."""
    opts = TrainOptions.from_config(cfg.get("train"))
    cfg["train"] = opts.to_config()
    exp = Path(exp_dir)
    info = init_distributed(opts.device != "cpu" and torch.cuda.is_available())
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    seed = opts.seed
    _seed_everything(seed + info.rank)
    ckpt_dir = exp / "checkpoints"
    if opts.init_espnet:
        model, toks = start_from_espnet(cfg, exp)
    else:
        toks = load_tokenizers(cfg)
        model = model_from_config(cfg, toks)
        if opts.init:
            # strict except for whole heads of new languages: a misfit fails loudly, never loads nothing
            init_from_base(model, opts.init)
    method = build_method(cfg.get("adapt"))
    decoding = recorded_decoding(opts.init) if opts.init else None
    # adapting to a new domain: adapt what the base experiment decodes with (CTC alone, or the beam's mix)
    if decoding and "target" in method.streams and method.opts.ctc_share is None:
        method.opts.ctc_share = decoding[1]
    method.tokenizers = toks
    method.setup(model)
    # written after the method set the model up, with its resolved options, so the experiment rebuilds
    cfg["adapt"] = method.resolved_config()
    if model.adapter_specs:  # the adapters the method added, so build_model rebuilds them
        cfg["model"]["adapters"] = model.adapter_config()
    train_streams, dev_streams = load_streams(cfg, method, toks, opts.max_utt_frames)
    if info.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, exp / "config.yaml")
        (exp / "command.txt").write_text(shlex.join(sys.argv) + "\n")
        if decoding:  # the experiment decodes as its base does
            shutil.copyfile(decoding[0], exp / DECODING_FILE)
        _log_to_file(exp / "train.log")
        # a copy inside the experiment makes it self-contained for decoding and transcribe()
        for lang, tok in toks.items():
            tok.save(exp / "tokenizers" / lang)
    model.to(info.device)
    compile_model(model, info.device, opts.compile)
    method.to(info.device)

    budget, epochs, accum = opts.max_batch_frames, opts.epochs, opts.accum_grad
    temperature = cfg["data"].get("lang_temperature")  # language-balanced sampling (multilingual)
    steps_per_epoch = len(
        stream_batches(train_streams, budget, seed, 1, info.world_size, info.rank, temperature)
    )
    total_steps = epochs * math.ceil(steps_per_epoch / accum)
    params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
    optim = build_optimizer(params, opts.lr, opts.weight_decay, info.device, opts.fused_optimizer)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, build_schedule(opts.scheduler, total_steps))

    state = {"epoch": 1, "batch": 0, "step": 0, "skipped": 0, "best": []}
    last = ckpt_dir / "last.pt"
    if last.exists():
        # the one full unpickling: this run's own resume file (written below), whose RNG states (numpy's
        # state holds an ndarray) the safe loader refuses; no file from anyone else is read here
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        optim.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        method.load_state_dict(ck["method"])
        state = ck["state"]
        _set_rng(ck["rng"][min(info.rank, len(ck["rng"]) - 1)])
        if info.is_main:
            log.info(
                "resumed from %s at epoch %d batch %d (step %d)",
                last,
                state["epoch"],
                state["batch"],
                state["step"],
            )

    # the fused optimiser can skip a non-finite step on the device: no host read per batch
    guard = NonFiniteGuard(info, device_side=bool(optim.defaults["fused"]), skipped=state["skipped"])
    pin = info.device.type == "cuda"
    net: torch.nn.Module = model
    # DDP expects one forward per backward and knows only the model's parameters: a method with
    # several streams or modules of its own gets its gradients averaged by hand instead
    manual_sync = info.world_size > 1 and (len(method.streams) > 1 or any(True for _ in method.parameters()))
    if manual_sync:
        # ranks were seeded apart (dropout); the weights must start equal, as DDP's broadcast makes them
        for tensor in [*model.state_dict().values(), *method.state_dict().values()]:
            torch.distributed.broadcast(tensor, 0)
    if info.world_size > 1 and not manual_sync:
        net = torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=len(model.heads) > 1 or method.name != "supervised"
        )
    amp_dtype = torch.bfloat16 if info.device.type == "cuda" and opts.bf16 else None
    writer = SummaryWriter(str(exp / "tensorboard")) if info.is_main else None
    clip, save_every, log_every, keep = (
        opts.grad_clip,
        opts.save_every_steps,
        opts.log_every_steps,
        opts.keep_best,
    )

    def checkpoint(path: Path) -> None:
        state["skipped"] = guard.skipped
        rng = _gather_rng(info)
        if info.is_main:
            save_atomic(
                {
                    "model": model.state_dict(),
                    "method": method.state_dict(),
                    "optim": optim.state_dict(),
                    "sched": sched.state_dict(),
                    "state": state,
                    "rng": rng,
                },
                path,
            )

    while state["epoch"] <= epochs and not _out_of_patience(state["best"], state["epoch"], opts.patience):
        epoch = state["epoch"]
        steps = stream_batches(train_streams, budget, seed, epoch, info.world_size, info.rank, temperature)
        net.train()
        method.train()
        bar = tqdm(
            total=len(steps),
            initial=state["batch"],
            desc=f"epoch {epoch}/{epochs}",
            unit="batch",
            disable=not info.is_main,
            dynamic_ncols=True,
        )
        padded = frames = 0
        loader = step_loader(steps, state["batch"], opts.num_workers, pin)
        for i, collated in enumerate(loader, start=state["batch"]):
            pad, total = padding_frames(steps[i])
            padded, frames = padded + pad, frames + total
            batches = {name: b.to(info.device, non_blocking=pin) for name, b in collated.items()}
            ctx = Context("train", epoch, state["step"], state["step"] / max(total_steps, 1))
            with torch.autocast(info.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                terms = method.compute_objectives(net, batches, ctx)
            loss = sum(method.weight(name, ctx) * value for name, value in terms.items())
            finite = guard.check(loss)
            if finite:
                (loss / accum).backward()
                if guard.device_side and accum > 1:
                    guard.drop_gradients(params)
            else:
                optim.zero_grad(set_to_none=True)
            state["batch"] = i + 1
            bar.update(1)
            if not finite or (i + 1) % accum and i + 1 < len(steps):
                continue
            if manual_sync:
                _average_gradients(params, info)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
            guard.arm(optim)
            optim.step()
            optim.zero_grad(set_to_none=True)
            sched.step()
            state["step"] += 1
            if writer is not None and state["step"] % log_every == 0:
                state["skipped"] = guard.skipped
                for name, value in terms.items():
                    writer.add_scalar(f"train/{name}", value.item(), state["step"])
                writer.add_scalar("train/loss", loss.item(), state["step"])
                writer.add_scalar("train/grad_norm", float(grad_norm), state["step"])
                writer.add_scalar("train/lr", sched.get_last_lr()[0], state["step"])
                writer.add_scalar("train/skipped_steps", state["skipped"], state["step"])
                bar.set_postfix(loss=f"{loss.item():.2f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if state["step"] % save_every == 0:
                checkpoint(last)
        bar.close()

        state["skipped"] = guard.skipped
        dev = evaluate(method, model, dev_streams, budget, info, amp_dtype, opts.num_workers)
        dev_loss = dev["loss"]
        if info.is_main:
            share = padded / max(frames, 1)
            log.info(
                "epoch %d: dev loss %.3f (%s; step %d, skipped %d, padding %.1f%% of %d input frames)",
                epoch,
                dev_loss,
                ", ".join(f"{k} {v:.3f}" for k, v in dev.items() if k != "loss"),
                state["step"],
                state["skipped"],
                100 * share,
                frames,
            )
            for name, value in dev.items():
                writer.add_scalar(f"dev/{name}", value, state["step"])
            writer.add_scalar("train/padding_share", share, state["step"])
            save_atomic({"model": model.state_dict()}, ckpt_dir / f"epoch{epoch}.pt")
        state["best"] = sorted([*state["best"], (dev_loss, epoch)])
        if info.is_main:
            for _, old in state["best"][keep:]:
                (ckpt_dir / f"epoch{old}.pt").unlink(missing_ok=True)
        state["best"] = state["best"][:keep]
        state["epoch"], state["batch"] = epoch + 1, 0
        checkpoint(last)

    final = exp / "model.pt"
    if info.is_main:
        best = [ckpt_dir / f"epoch{e}.pt" for _, e in state["best"]]
        save_atomic(
            {"model": average_checkpoints(best), "averaged_epochs": [e for _, e in state["best"]]}, final
        )
        log.info("averaged epochs %s -> %s", [e for _, e in state["best"]], final)
        writer.close()
    if info.world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return final


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
