"""Training time with OpenMP's default (spinning) wait policy against ``OMP_WAIT_POLICY=PASSIVE``.

On a machine whose cores are shared with other jobs, torch's OpenMP threads spin at the end of
every parallel region waiting for a thread that another process has taken off its core; with
thousands of small ops per step that can cost several times the step. This bench trains the same
model for one epoch with each policy, alternating, in a recipe folder after its stage 4 (dumps,
tokenizer), and prints the medians and the ratio. Run it once on a quiet machine and once with
another job on a core.

Example (a mini recipe after ``./run.sh --stop_stage 4``):
    python bench/omp_wait_policy.py --recipe recipes/mini --threads 2 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train_seconds(recipe: Path, policy: str | None, threads: int, out: Path) -> float:
    """Wall seconds of one epoch of the tiny model on the recipe's clean training dump."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    cmd = [
        sys.executable, "-m", "asr_transfer.cli", "train",
        "--config", "conf/train/mini.yaml", "--config", "conf/model/tiny.yaml",
        "--data.tokenizers", "{en: exp/tokenizer/en_unigram}", "--data.cmvn", "dump/cmvn.npz",
        "--data.train", "[{dump: dump/en_train_clean, lang: en}]",
        "--data.dev", "[{dump: dump/en_dev_clean, lang: en}]",
        "--exp", str(out), "--train.epochs", "1", "--train.device", "cpu",
        "--train.num_threads", str(threads),
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=recipe, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", type=Path, required=True, help="a recipe folder after stage 4")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"default": [], "PASSIVE": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in times:
                out = Path(tmp) / f"{name}_{r}"
                times[name].append(train_seconds(args.recipe.resolve(), None if name == "default" else name,
                                                 args.threads, out))  # fmt: skip
                print(f"{name:8s} run {r + 1}: {times[name][-1]:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()[0]
    print(f"median one epoch, {args.threads} threads: default {med['default']:.1f} s, "
          f"PASSIVE {med['PASSIVE']:.1f} s, default / PASSIVE = {med['default'] / med['PASSIVE']:.2f} "
          f"(load average at the end {load:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
