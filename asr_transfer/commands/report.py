"""``asr-transfer report EXP_DIR... --out DIR``: RESULTS.md and report.html comparing systems.

Each EXP_DIR is ``exp/<system>`` (or a folder of them); the first system is the
baseline. Decodes not yet scored are scored and cached in ``decode_<dataset>/score/``.
When a system's ``config.yaml`` has an ``adapt`` section, the unsupervised adaptation tables are
added (:mod:`asr_transfer.score.adapt_table`; the source model is the first system without one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_transfer.commands.score import add_options, options_from


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
    group = parser.add_argument_group(
        "unsupervised adaptation tables (when a system has adapt: in its config)"
    )
    group.add_argument("--source-domain", default="clean", help="domain the source model was trained on")
    group.add_argument(
        "--noise-domains",
        nargs="+",
        default=["rain", "wind", "laugh", "drizzle", "breeze"],
        help="domains averaged as noise; every other target domain counts as a device",
    )
    group.add_argument(
        "--adaptation-sets", default="*test*", help="glob on dataset names of the test-set decodes"
    )
    group.add_argument(
        "--pseudo-labels",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="pseudo-label dirs (asr-transfer pseudo-label) whose WER against the true transcripts the "
        "regime table reports",
    )


def run(args: argparse.Namespace) -> int:
    # imported here so that `--help` does not pay for matplotlib
    from asr_transfer.score.adapt_table import AdaptOptions
    from asr_transfer.score.render import write_report
    from asr_transfer.score.report import load_systems

    options = options_from(args)
    adapt = AdaptOptions(
        args.source_domain, tuple(args.noise_domains), args.adaptation_sets, tuple(args.pseudo_labels)
    )
    systems = load_systems(args.exp_dirs, options)
    md_path, html_path = write_report(systems, options, args.out, adapt)
    print(f"wrote {md_path} and {html_path}")
    return 0
