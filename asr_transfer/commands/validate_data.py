"""``asr-transfer validate-data``: check Kaldi data dirs; print every problem, then a summary.

The checks are :func:`~asr_transfer.data.validate.validate_data_dir`'s; the exit status is 1 when
any directory has an error, 2 when a DIR given is not a directory at all (nothing is checked).

Example:
    asr-transfer validate-data data/en_train_clean data/en_test_phone
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr_transfer.data.validate import validate_data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="Kaldi data dirs to check")
    parser.add_argument(
        "--lang",
        help="language of every transcript (default: per utterance from utt2lang)",
    )
    parser.add_argument(
        "--no-audio",
        action="store_true",
        help="check the tables only, do not open audio",
    )
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="decode every file completely (slower) instead of a block at each end",
    )


def run(args: argparse.Namespace) -> int:
    absent = [str(d) for d in args.dirs if not d.is_dir()]
    if absent:  # a mistyped argument, not a data dir with problems
        raise FileNotFoundError(f"not a directory: {', '.join(absent)}")
    failed = 0
    reports = []
    for directory in args.dirs:
        report = validate_data_dir(
            directory,
            lang=args.lang,
            check_audio=not args.no_audio,
            full_decode=args.full_decode,
        )
        for message in report.errors:
            print(f"ERROR {message}")
        for message in report.warnings:
            print(f"WARNING {message}")
        reports.append(report)
        failed += bool(report.errors)
    for report in reports:
        print(report.summary())
    if len(reports) > 1:
        print(f"{len(reports) - failed} of {len(reports)} data dirs OK")
    sys.stdout.flush()
    return 1 if failed else 0
