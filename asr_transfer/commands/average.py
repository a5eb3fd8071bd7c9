"""``asr-transfer average``: average chosen checkpoints of an experiment into one model file."""

from __future__ import annotations

import argparse

from asr_transfer.train.checkpoint import average_checkpoints
from asr_transfer.util.atomic import save_torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files (each with a 'model' state dict)")
    parser.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> int:
    save_torch({"model": average_checkpoints(args.checkpoints)}, args.out)
    print(f"average: {len(args.checkpoints)} checkpoints -> {args.out}")
    return 0
