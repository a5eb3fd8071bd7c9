"""``asr-transfer train``: train or adapt from YAML configs plus command-line overrides.

Run under ``torchrun --nproc_per_node N`` for DDP. Rerunning the same command
after a kill resumes from ``EXP/checkpoints/last.pt``.
"""

from __future__ import annotations

import argparse

from asr_transfer.config import load_config

ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", required=True, help="YAML file (repeatable; later wins)")
    parser.add_argument("--exp", required=True, help="experiment dir (checkpoints, logs, resolved config)")


def run(args: argparse.Namespace) -> int:
    from asr_transfer.train.loop import train

    cfg = load_config(args.config, args.overrides)
    path = train(cfg, args.exp)
    print(f"train: model -> {path}")
    return 0
