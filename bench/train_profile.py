"""Where a training step's time goes, old loop path vs new, side by side in one process.

Usage:
    python bench/train_profile.py [--config tiny|ref] [--device cpu|cuda] [--steps 4] [--warmup 1]
                                  [--threads 2] [--num-workers N] [--max-batch-frames F]
                                  [--train-config YAML] [--utts 1000] [--corpus DIR] [--work DIR]
                                  [--json OUT]

Both paths train the same model (same initial weights, seed, batches) with our own pieces
(:func:`~asr_transfer.data.loader.step_loader`, :class:`~asr_transfer.train.nonfinite.NonFiniteGuard`,
:func:`~asr_transfer.train.optim.build_optimizer`), as :func:`asr_transfer.train.loop.train` does:

* ``old``: the loop before issue 11: each batch read and padded on the training thread, plain
  ``torch.optim.Adam`` (per-parameter loop on the CPU, foreach on CUDA), the finite flag read back
  every batch (``num_workers 0``, ``fused_optimizer false``).
* ``new``: ``--num-workers`` data-loader workers (pinned memory and non-blocking copies on CUDA),
  Adam fused on CUDA / foreach on the CPU, the non-finite skip on the device (fused only).

A step is split into data (waiting for the batch + copy to the device), forward (autocast bf16 on
CUDA), backward (with the finite check) and optimiser (clip, step, zero_grad). On CUDA the phases
are timed in a pass with a synchronisation after each (shares), and the step time in a second pass
without them (the real s/step, total wall / steps); on the CPU the operations are synchronous and
one pass gives both. In the phase pass the two paths take turns step by step, so the load of a
shared machine falls on both alike (the new path's workers keep reading ahead meanwhile, as they
do while the model computes). Medians over ``--steps`` timed steps after ``--warmup``. The batches
are an epoch's in its order, then the next epoch's (``--utts`` utterances of the mini corpus's
``en_train_clean``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
MODEL_CONFIGS = {"tiny": REPO / "conf/model/tiny.yaml", "ref": REPO / "conf/model/transformer_ref.yaml"}
TRAIN_CONFIGS = {"cpu": REPO / "conf/train/mini.yaml", "cuda": REPO / "conf/train/gpu.yaml"}
PHASES = ("data", "forward", "backward", "optim")


def _steps(utts: list, budget: int, n: int) -> list[dict]:
    """The first ``n`` steps of epochs 1, 2, ... (each epoch in the loop's order)."""
    from asr_transfer.data.dataset import stream_batches

    out: list[dict] = []
    epoch = 1
    while len(out) < n:
        out += stream_batches({"source": utts}, budget, seed=1, epoch=epoch)
        epoch += 1
    return out[:n]


def run_path(
    name: str, args: argparse.Namespace, setup: dict, steps: list[dict], phases: bool
) -> Iterator[dict]:
    """Train ``len(steps)`` steps on ``name``'s path, yielding each step's phase seconds and ``step``.

    With ``phases`` a step's time is its own (the paths can take turns, so that a shared machine's
    load falls on both alike); without, it runs from the end of the previous step (CUDA: the CPU
    runs ahead, and only the last step's synchronisation makes the total real).
    """
    import torch

    from asr_transfer.adapt import Context
    from asr_transfer.data.loader import step_loader
    from asr_transfer.train.dist import DistInfo
    from asr_transfer.train.nonfinite import NonFiniteGuard
    from asr_transfer.train.optim import build_optimizer

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(1)
    model = copy.deepcopy(setup["model"]).to(device).train()
    method = setup["method"]
    params = [p for p in model.parameters() if p.requires_grad]
    old = name == "old"
    if old:
        optim = torch.optim.Adam(params, lr=setup["lr"], betas=(0.9, 0.98), eps=1e-9)
    else:
        optim = build_optimizer(params, setup["lr"], 0.0, device)
    guard = NonFiniteGuard(DistInfo(0, 1, device), device_side=bool(optim.defaults.get("fused")))
    workers, pin = (0, False) if old else (args.num_workers, cuda)
    amp = torch.bfloat16 if cuda and args.bf16 else None

    def sync() -> None:
        if cuda and phases:
            torch.cuda.synchronize()

    it = iter(step_loader(steps, 0, workers, pin))
    t_end = time.perf_counter()
    for i in range(len(steps)):
        t0 = time.perf_counter()
        batches = {k: b.to(device, non_blocking=pin) for k, b in next(it).items()}
        sync()
        t1 = time.perf_counter()
        ctx = Context("train", 1, i, 0.0)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            terms = method.compute_objectives(model, batches, ctx)
        loss = sum(method.weight(k, ctx) * v for k, v in terms.items())
        sync()
        t2 = time.perf_counter()
        if guard.check(loss):
            loss.backward()
        sync()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        guard.arm(optim)
        optim.step()
        optim.zero_grad(set_to_none=True)
        if cuda and not phases and i + 1 == len(steps):
            torch.cuda.synchronize()  # the queued work of the last step counts
        sync()
        t4 = time.perf_counter()
        step = t4 - (t0 if phases else t_end)
        yield {"data": t1 - t0, "forward": t2 - t1, "backward": t3 - t2, "optim": t4 - t3, "step": step}
        t_end = time.perf_counter()
    assert guard.skipped == 0, f"{name}: {guard.skipped} non-finite steps"


def summarise(rows: list[dict], audio: list[float]) -> dict:
    med = {k: statistics.median(r[k] for r in rows) for k in (*PHASES, "step")}
    med["audio_s_per_s"] = sum(audio) / sum(r["step"] for r in rows)
    return med


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(MODEL_CONFIGS), default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per path")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--num-workers", type=int, help="new path's loader workers (default: train config)")
    parser.add_argument("--max-batch-frames", type=int, help="padded frames per batch (default: train cfg)")
    parser.add_argument("--train-config", type=Path, help="default: mini.yaml on cpu, gpu.yaml on cuda")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 on CUDA")
    parser.add_argument("--utts", type=int, default=1000, help="training utterances (en_train_clean subset)")
    parser.add_argument("--corpus", type=Path, help="a synth corpus (default: synthesise mini into --work)")
    parser.add_argument("--work", type=Path, help="cache folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--data-budgets", help="also time reading + padding one batch on the main thread (the old path's "
        "data cost) for these comma-separated frame budgets, e.g. 4000,40000,160000; --steps 0: only that"
    )  # fmt: skip
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from asr_transfer.config import load_config
    from asr_transfer.train.options import TrainOptions
    from asr_transfer.util.atomic import write_text

    tcfg = TrainOptions.from_config(load_config([args.train_config or TRAIN_CONFIGS[args.device]])["train"])
    args.num_workers = tcfg.num_workers if args.num_workers is None else args.num_workers
    budget = args.max_batch_frames or tcfg.max_batch_frames
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        setup, steps = _prepare(args, work, budget, tcfg)
        budgets = [int(b) for b in (args.data_budgets or "").split(",") if b]
        data = data_cost(setup["utts"], budgets, max(args.steps, 3), args.device == "cuda")
        if not args.steps:
            _print_data_cost(data)
            if args.json:
                report = {"bench": "train_profile", "device": args.device, "data_cost": data}
                write_text(args.json, json.dumps(report, indent=2) + "\n")
            return 0
        paths = {name: run_path(name, args, setup, steps, phases=True) for name in ("old", "new")}
        results: dict[str, dict] = {name: {"rows": []} for name in paths}
        for _ in steps:  # the paths take turns, step by step
            for name, path in paths.items():
                results[name]["rows"].append(next(path))
        for name, path in paths.items():
            next(path, None)  # its final checks
            results[name]["rows"] = results[name]["rows"][args.warmup :]
            if args.device == "cuda":  # the real step time, without the phase synchronisations
                results[name]["e2e"] = list(run_path(name, args, setup, steps, phases=False))[args.warmup :]
    report = _report(args, budget, steps, results)
    if data:
        _print_data_cost(data)
        report["data_cost"] = data
    if args.json:
        write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0


def _prepare(args: argparse.Namespace, work: Path, budget: int, tcfg) -> tuple[dict, list[dict]]:  # noqa: ANN001
    import _espnet_exp as espnet

    from asr_transfer.adapt import build_method
    from asr_transfer.config import load_config
    from asr_transfer.data.dataset import load_dump
    from asr_transfer.text.tokenizer import Tokenizer
    from asr_transfer.train.loop import model_from_config

    corpus = espnet.ensure_mini_corpus(work, args.corpus)
    prep = espnet.prepare_subset(corpus.resolve(), work, args.utts, raw=False)
    tok = Tokenizer.load(prep["tokenizer"])
    cfg = load_config([MODEL_CONFIGS[args.config]])
    cfg["data"] = {"cmvn": str(prep["dump"] / "cmvn.npz")}
    model = model_from_config(cfg, {"en": tok})
    method = build_method(None)
    method.setup(model, {"en": tok})
    utts = load_dump(prep["dump"] / "train", "en", tok, tcfg.max_utt_frames)
    steps = _steps(utts, budget, args.warmup + args.steps)
    return {"model": model, "method": method, "lr": float(tcfg.lr), "utts": utts}, steps


def data_cost(utts: list, budgets: list[int], n: int, pin: bool) -> list[dict]:
    """Median seconds to read and pad one step's batch on the calling thread (+ pinning on CUDA)."""
    from asr_transfer.data.dataset import collate
    from asr_transfer.data.loader import padding_frames

    out = []
    for budget in budgets:
        steps = _steps(utts, budget, n)
        times = []
        for step in steps:
            t0 = time.perf_counter()
            batch = collate(step["source"])
            if pin:
                batch.pin_memory()
            times.append(time.perf_counter() - t0)
        pads = [padding_frames(s) for s in steps]
        out.append(
            {
                "max_batch_frames": budget,
                "utts_per_step": statistics.mean(len(s["source"]) for s in steps),
                "audio_s_per_step": statistics.mean(sum(u.frames for u in s["source"]) / 100 for s in steps),
                "collate_s": statistics.median(times),
                "padding_share": sum(p for p, _ in pads) / sum(t for _, t in pads),
            }
        )
    return out


def _print_data_cost(rows: list[dict]) -> None:
    print("\nreading + padding one batch on the training thread (the old path's data phase), medians")
    print(f"{'budget':>8} {'utts/step':>9} {'audio s/step':>12} {'collate s':>9} {'padding':>8}")
    for r in rows:
        print(
            f"{r['max_batch_frames']:>8} {r['utts_per_step']:>9.1f} {r['audio_s_per_step']:>12.1f} "
            f"{r['collate_s']:>9.4f} {100 * r['padding_share']:>7.1f}%"
        )


def _report(args: argparse.Namespace, budget: int, steps: list[dict], results: dict) -> dict:
    from asr_transfer.data.loader import padding_frames

    timed = steps[args.warmup :]
    audio = [sum(u.frames * 0.01 + 0.015 for u in s["source"]) for s in timed]
    pads = [padding_frames(s) for s in timed]
    report = {
        "bench": "train_profile",
        "config": args.config,
        "device": args.device,
        "device_name": _device_name(args.device),
        "threads": args.threads,
        "num_workers_new": args.num_workers,
        "max_batch_frames": budget,
        "steps": args.steps,
        "warmup": args.warmup,
        "utts_per_step": statistics.mean(len(s["source"]) for s in timed),
        "audio_s_per_step": statistics.mean(audio),
        "padding_share": sum(p for p, _ in pads) / sum(t for _, t in pads),
        "load_average": os.getloadavg()[0],
        "paths": {},
    }
    for name, res in results.items():
        med = summarise(res["rows"], audio)
        if "e2e" in res:  # the CPU runs ahead of the GPU: only the total over the steps is real
            wall = sum(r["step"] for r in res["e2e"])
            med["phase_step_s"], med["step"] = med["step"], wall / len(res["e2e"])
            med["audio_s_per_s"] = sum(audio) / wall
        report["paths"][name] = med
    old, new = report["paths"]["old"], report["paths"]["new"]
    report["speedup_new_over_old"] = new["audio_s_per_s"] / old["audio_s_per_s"]
    print(
        f"\ntrain profile: config {args.config}, device {report['device_name']}, {args.steps} timed steps "
        f"after {args.warmup}, {args.threads} threads, budget {budget} frames, "
        f"{report['utts_per_step']:.1f} utts / {report['audio_s_per_step']:.1f} s audio per step, "
        f"padding {100 * report['padding_share']:.1f}%, load average {report['load_average']:.2f}"
    )
    print("medians, seconds per step (share of the phase sum)")
    print(f"{'path':<10}" + "".join(f"{p:>16}" for p in PHASES) + f"{'s/step':>9}{'audio s/s':>11}")
    for name, med in report["paths"].items():
        total = sum(med[p] for p in PHASES)
        cells = "".join(f"{med[p]:>8.4f} ({100 * med[p] / total:>3.0f}%)" for p in PHASES)
        print(f"{name + ' path':<10}{cells}{med['step']:>9.4f}{med['audio_s_per_s']:>11.1f}")
    ratios = "".join(f"{old[p] / max(new[p], 1e-9):>16.2f}" for p in PHASES)
    print(f"{'old/new':<10}{ratios}{old['step'] / new['step']:>9.2f}{report['speedup_new_over_old']:>11.2f}")
    return report


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu ({os.cpu_count()} cores)"


if __name__ == "__main__":
    sys.exit(main())
