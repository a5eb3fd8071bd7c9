"""Time ``asr-transfer synth`` for a preset and print wall time, utterances, files, hours and MB.

Usage:
    python bench/synth_speed.py [--preset mini] [--jobs 2] [--seed 0] [--out DIR] [--noise-dir DIR]

Runs the real command line in a subprocess (so imports and pool start-up are counted) into a
fresh folder (a temporary one unless --out), then reads the sizes from corpus.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="keep the corpus here (default: a temporary folder)")
    parser.add_argument("--noise-dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / args.preset)
        cmd = [sys.executable, "-m", "asr_transfer.cli", "synth", "--preset", args.preset, "--out", str(out),
               "--seed", str(args.seed), "--jobs", str(args.jobs)]  # fmt: skip
        if args.noise_dir:
            cmd += ["--noise-dir", args.noise_dir]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
        corpus = json.loads((out / "corpus.json").read_text())
        audio_mb = sum(p.stat().st_size for p in (out / "audio").rglob("*.flac")) / 1e6
    totals = corpus["totals"]
    print(f"command: {' '.join(cmd[1:])}")
    print(f"preset={args.preset} jobs={args.jobs} seed={args.seed}")
    print(f"wall_s={wall:.1f} utterances={totals['utterances']} files={totals['files']} "
          f"dirs={len(corpus['dirs'])} hours={totals['hours']:.2f} flac_MB={audio_mb:.0f} "
          f"realtime_x={totals['hours'] * 3600 / wall:.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
