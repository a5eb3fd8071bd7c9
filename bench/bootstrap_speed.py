"""Time the vectorised paired bootstrap (10,000 utterances x 10,000 resamples, two systems)
against the slow pure-Python reference on a smaller problem.

Run: .venv/bin/python bench/bootstrap_speed.py [--utts 10000] [--resamples 10000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from asr_transfer.score import bootstrap


def slow_rates(errors: list[list[int]], lengths: list[int], n_resamples: int, seed: int) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    out: list[list[float]] = [[] for _ in errors]
    for _ in range(n_resamples):
        idx = [int(i) for i in rng.integers(0, len(lengths), size=len(lengths))]
        n = sum(lengths[i] for i in idx)
        for k, errs in enumerate(errors):
            out[k].append(100.0 * sum(errs[i] for i in idx) / n if n else math.nan)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--slow-utts", type=int, default=1_000)
    parser.add_argument("--slow-resamples", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, size=args.utts)
    a, b = rng.binomial(lengths, 0.20), rng.binomial(lengths, 0.18)

    start = time.perf_counter()
    c = bootstrap.compare(a, b, lengths, n_resamples=args.resamples)
    fast = time.perf_counter() - start
    print(f"vectorised compare(): {args.utts} utts x {args.resamples} resamples x 2 systems: {fast:.2f} s")
    print(
        f"  A {c.a.value:.2f} [{c.a.low:.2f}, {c.a.high:.2f}]"
        f"  B {c.b.value:.2f} [{c.b.low:.2f}, {c.b.high:.2f}]"
        f"  diff [{c.diff.low:.2f}, {c.diff.high:.2f}]  P(B better) {c.p_improvement:.4f}"
    )

    small = (slice(0, args.slow_utts),)
    start = time.perf_counter()
    bootstrap.resample_rates(np.vstack([a[small], b[small]]), lengths[small], n_resamples=args.slow_resamples)
    fast_small = time.perf_counter() - start
    start = time.perf_counter()
    slow_rates([a[small].tolist(), b[small].tolist()], lengths[small].tolist(), args.slow_resamples, 0)
    slow_small = time.perf_counter() - start
    print(
        f"slow reference: {args.slow_utts} utts x {args.slow_resamples} resamples: {slow_small:.2f} s; "
        f"vectorised on the same: {fast_small:.4f} s; ratio {slow_small / fast_small:.0f}x"
    )
    per_cell = slow_small / (args.slow_utts * args.slow_resamples)
    print(f"slow reference extrapolated to the full size: {per_cell * args.utts * args.resamples:.0f} s")


if __name__ == "__main__":
    main()
