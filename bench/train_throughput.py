"""Training throughput, side by side: our loop vs ESPnet's ``espnet2.bin.asr_train``, same model and data.

Usage:
    python bench/train_throughput.py [--config tiny|ref] [--steps 10] [--warmup 2] [--threads 2]
                                     [--corpus DIR] [--utts 1000] [--espnet-input fbank,raw]
                                     [--device cpu|cuda] [--num-workers 1] [--train-config YAML]
                                     [--max-batch-frames F] [--espnet-amp] [--json OUT]

Each system runs its real entry point in a subprocess (ours: ``asr-transfer train``; ESPnet:
``python -m espnet2.bin.asr_train``) with the model class's ``forward`` wrapped by a timer: a step
is the time from one training forward to the next (data loading, forward, backward, clipping,
optimiser step), so start-up (ESPnet's imports take ~11 s) and the dev pass are excluded on both
sides. After ``warmup`` steps, ``steps`` steps are timed and the process exits. Audio per step is
the batch's real audio (ESPnet: ``speech_lengths``; ours: fbank frames x 10 ms + 15 ms).

ESPnet runs twice: ``fbank`` reads our dumped fbank and CMVN (``kaldi_ark`` input, no frontend),
so only the loops differ; ``raw`` is ESPnet's standard set-up (audio files, STFT frontend in the
model, 25 ms / 10 ms so sequence lengths match). Same threads (``torch.set_num_threads`` and
OMP), the same number of data-loader workers (``--num-workers``: ours ``train.num_workers``,
ESPnet ``--num_workers``), the same padded-frames budget per batch (the two samplers fill it
slightly differently, hence the audio column). ``--device cuda``: ours with the train config's
bf16 autocast (default ``conf/train/gpu.yaml``), ESPnet ``--ngpu 1`` (fp32, or ``--use_amp`` with
``--espnet-amp``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = {"tiny": REPO / "conf/model/tiny.yaml", "ref": REPO / "conf/model/transformer_ref.yaml"}
TRAIN_CONFIGS = {"cpu": REPO / "conf/train/mini.yaml", "cuda": REPO / "conf/train/gpu.yaml"}


# ---------------------------------------------------------------------------------------- worker
def _install_timer(cls: type, out: Path, warmup: int, steps: int, audio_of) -> None:  # noqa: ANN001
    """Wrap ``cls.forward``: time stamps of training forwards; exit the process when enough are seen."""
    import torch

    forward = cls.forward
    marks: list[tuple[float, float, int]] = []
    params: list[int] = []

    def timed(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if self.training:
            if not params:
                params.append(sum(p.numel() for p in self.parameters()))
            seconds, utts = audio_of(*args, **kwargs)
            marks.append((time.perf_counter(), seconds, utts))
            if len(marks) > warmup + steps:
                timed_marks = marks[warmup:]
                out.write_text(
                    json.dumps(
                        {
                            "step_s": [b[0] - a[0] for a, b in zip(timed_marks, timed_marks[1:])],
                            "audio_s": [m[1] for m in timed_marks[:-1]],
                            "utts": [m[2] for m in timed_marks[:-1]],
                            "params": params[0],
                            "threads": torch.get_num_threads(),
                        }
                    )
                )
                os._exit(0)
        return forward(self, *args, **kwargs)

    cls.forward = timed


def _worker(args: argparse.Namespace, rest: list[str]) -> int:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.timings)
    if args.worker == "ours":
        from asr_transfer.cli import main
        from asr_transfer.model.asr import HybridASR

        def audio(feats, feat_lens, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
            # fbank frames -> samples: T = 1 + (N - 400) // 160
            return float((feat_lens * 160 + 240).sum()) / 16000, len(feat_lens)

        _install_timer(HybridASR, out, args.warmup, args.steps, audio)
        return main(rest)
    import runpy

    from espnet2.asr.espnet_model import ESPnetASRModel

    def audio(speech, speech_lengths, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        if speech.dim() == 3:  # precomputed fbank frames
            return float((speech_lengths * 160 + 240).sum()) / 16000, len(speech_lengths)
        return float(speech_lengths.sum()) / 16000, len(speech_lengths)

    _install_timer(ESPnetASRModel, out, args.warmup, args.steps, audio)
    sys.argv = ["asr_train", *rest]
    runpy.run_module("espnet2.bin.asr_train", run_name="__main__")
    return 1  # training ended before enough steps were seen


# ---------------------------------------------------------------------------------------- driver
def run_system(name: str, cmd: list[str], args: argparse.Namespace, work: Path) -> dict:
    timings = work / f"timings_{name}.json"
    timings.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    worker = [
        sys.executable,
        __file__,
        "--worker",
        "ours" if name == "ours" else "espnet",
        "--timings",
        str(timings),
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        "--",
    ]
    start = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        rc = subprocess.run(worker + cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work).returncode
    if rc or not timings.exists():
        raise RuntimeError(f"{name}: rc {rc}, no timings; see {work / (name + '.log')}")
    result = json.loads(timings.read_text())
    result["wall_s"] = time.perf_counter() - start
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(MODEL_CONFIGS), default="tiny")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--corpus", type=Path, help="a synth corpus (default: synthesise mini into --work)")
    parser.add_argument("--utts", type=int, default=1000, help="training utterances (en_train_clean subset)")
    parser.add_argument("--espnet-input", default="fbank,raw", help="comma list of fbank, raw")
    parser.add_argument("--work", type=Path, help="cache folder (default: a temporary one)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--num-workers", type=int, default=1, help="data-loader workers, both systems")
    parser.add_argument("--train-config", type=Path, help="default: mini.yaml on cpu, gpu.yaml on cuda")
    parser.add_argument("--max-batch-frames", type=int, help="padded frames per batch (default: train cfg)")
    parser.add_argument("--espnet-amp", action="store_true", help="ESPnet --use_amp true (CUDA)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--worker", choices=["ours", "espnet"], help=argparse.SUPPRESS)
    parser.add_argument("--timings", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.worker:
        return _worker(args, rest[1:] if rest[:1] == ["--"] else rest)
    from asr_transfer.config import load_config
    from asr_transfer.util.atomic import write_text

    args.train_config = args.train_config or TRAIN_CONFIGS[args.device]
    train_cfg = load_config([args.train_config])["train"]
    args.budget = args.max_batch_frames or int(train_cfg["max_batch_frames"])
    args.lr = float(train_cfg["lr"])

    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        import _espnet_exp as espnet

        corpus = espnet.ensure_mini_corpus(work, args.corpus)
        inputs = [s for s in args.espnet_input.split(",") if s]
        prep = espnet.prepare_subset(corpus.resolve(), work, args.utts, "raw" in inputs)
        results = {"ours": run_system("ours", _ours_cmd(args, prep, work), args, work)}
        for kind in inputs:
            name = f"espnet-{kind}"
            results[name] = run_system(name, _espnet_cmd(args, prep, work, kind), args, work)
    report = _print_table(args, results)
    if args.json:
        write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0


def _ours_cmd(args: argparse.Namespace, prep: dict, work: Path) -> list[str]:
    exp = work / "exp_ours"
    subprocess.run(["rm", "-rf", str(exp)], check=True)
    return [
        "train", "--config", str(MODEL_CONFIGS[args.config]), "--config", str(args.train_config),
        "--exp", str(exp),
        "--data.train", f"[{{dump: {prep['dump'] / 'train'}, lang: en}}]",
        "--data.dev", f"[{{dump: {prep['dump'] / 'dev'}, lang: en}}]",
        "--data.tokenizers", f"{{en: {prep['tokenizer']}}}", "--data.cmvn", str(prep["dump"] / "cmvn.npz"),
        "--train.device", "cpu" if args.device == "cpu" else "auto", "--train.num_threads", str(args.threads),
        "--train.epochs", "100", "--train.save_every_steps", "100000",
        "--train.max_batch_frames", str(args.budget), "--train.num_workers", str(args.num_workers),
    ]  # fmt: skip


def _espnet_cmd(args: argparse.Namespace, prep: dict, work: Path, kind: str) -> list[str]:
    import yaml

    sys.path.insert(0, str(REPO / "bench"))
    import _espnet_exp as espnet

    model = yaml.safe_load(MODEL_CONFIGS[args.config].read_text())["model"]
    budget = args.budget
    data = prep[kind]
    cfg = espnet.espnet_config(
        model,
        data["train"]["feats_stats.npz"],
        raw_audio=kind == "raw",
        batch_bins=budget * (160 if kind == "raw" else 1),
        max_epoch=100,
        lr=args.lr,
        warmup_steps=100,
    )
    exp = work / f"exp_espnet_{kind}"
    subprocess.run(["rm", "-rf", str(exp)], check=True)
    cuda = args.device == "cuda"
    cmd = espnet.train_command(
        cfg, data["train"], data["dev"], exp, num_workers=args.num_workers, ngpu=int(cuda)
    )
    cmd += ["--use_amp", "true"] if cuda and args.espnet_amp else []
    return cmd[3:]  # drop "python -m module"


def _print_table(args: argparse.Namespace, results: dict) -> dict:
    import statistics

    load = os.getloadavg()[0]
    print(
        f"\ntrain throughput: config {args.config}, device {args.device}, {args.steps} timed steps after "
        f"{args.warmup} warm-up, {args.threads} threads, {args.num_workers} loader workers, budget "
        f"{args.budget} frames, load average {load:.2f}"
    )
    print(
        f"{'system':<13} {'params':>10} {'utts/step':>9} {'audio s/step':>12} {'s/step':>7} "
        f"{'audio s/s':>9} {'ours/this':>9}"
    )
    speed = {}
    for name, r in results.items():
        speed[name] = sum(r["audio_s"]) / sum(r["step_s"])
    for name, r in results.items():
        print(
            f"{name:<13} {r['params']:>10,} {statistics.mean(r['utts']):>9.1f} "
            f"{statistics.mean(r['audio_s']):>12.1f} {statistics.mean(r['step_s']):>7.3f} "
            f"{speed[name]:>9.1f} {speed['ours'] / speed[name]:>9.2f}"
        )
    return {
        "bench": "train_throughput",
        "config": args.config,
        "device": args.device,
        "threads": args.threads,
        "num_workers": args.num_workers,
        "max_batch_frames": args.budget,
        "steps": args.steps,
        "warmup": args.warmup,
        "load_average": load,
        "systems": {
            name: {
                "params": r["params"],
                "utts_per_step": statistics.mean(r["utts"]),
                "audio_s_per_step": statistics.mean(r["audio_s"]),
                "s_per_step": statistics.mean(r["step_s"]),
                "median_s_per_step": statistics.median(r["step_s"]),
                "audio_s_per_s": speed[name],
                "ours_over_this": speed["ours"] / speed[name],
            }
            for name, r in results.items()
        },
    }


if __name__ == "__main__":
    sys.exit(main())
