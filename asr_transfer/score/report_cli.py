"""``asr-transfer report EXP_DIR... --out DIR``: RESULTS.md and report.html comparing systems.

Each EXP_DIR is ``exp/<system>`` (or a folder of them); the first system is the
baseline. Decodes not yet scored are scored and cached in ``decode_<dataset>/score/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr_transfer.data.kaldi import DataError
from asr_transfer.score.cli import add_options, options_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "exp_dirs",
        nargs="+",
        type=Path,
        metavar="EXP_DIR",
        help="exp/<system> dirs, baseline first (or a dir holding several)",
    )
    parser.add_argument("--out", type=Path, required=True, help="where RESULTS.md and report.html go")
    add_options(parser)


def run(args: argparse.Namespace) -> int:
    # imported here so that `--help` does not pay for matplotlib
    from asr_transfer.score.render import write_report
    from asr_transfer.score.report import load_systems

    options = options_from(args)
    try:
        systems = load_systems(args.exp_dirs, options)
    except (DataError, ValueError, OSError) as err:
        print(f"asr-transfer report: error: {err}", file=sys.stderr)
        return 1
    md_path, html_path = write_report(systems, options, args.out)
    print(f"wrote {md_path} and {html_path}")
    return 0
