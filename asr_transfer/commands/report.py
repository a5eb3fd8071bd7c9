"""``asr-transfer report EXP_DIR... --out DIR``: RESULTS.md and report.html comparing experiments.

One report for any set of experiments: each EXP_DIR is ``exp/<system>`` (or a folder of them); the
first system is the baseline. Decodes not yet scored are scored and cached in
``decode_<dataset>/score/``, each in its own language unless ``--lang`` says otherwise. Every report
has the per-set WER table; the tables of a kind of experiment are added when such experiments are
given:

- unsupervised adaptation (a ``config.yaml`` whose ``adapt`` names a domain-adaptation method): the
  adaptation tables (:mod:`asr_transfer.score.adapt_table`; the source model is the one
  ``--source-model`` names, else the first system that is neither adapted nor an add-language run);
- ``add-language`` runs (``add_language.yaml``): the cross-lingual table, targets x methods
  (:mod:`asr_transfer.score.crossling`), with the base model's own WERs, the base being the one
  their ``add_language.yaml`` names.
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
    parser.add_argument("--note", action="append", default=[], help="a line of text for the report's top")
    add_options(parser)
    # a report may span languages (a multilingual base, add-language targets): each decode its own
    parser.set_defaults(lang=None)
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
        "--source-model",
        type=Path,
        default=None,
        metavar="EXP_DIR",
        help="the source model among EXP_DIR... (default: the first one not adapted); may be an adapted "
        "experiment, e.g. a continued-training control that later runs adapted from",
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
        args.source_domain,
        tuple(args.noise_domains),
        args.adaptation_sets,
        tuple(args.pseudo_labels),
        args.source_model,
    )
    own_lang = args.lang is None
    systems = load_systems(args.exp_dirs, options, own_lang)
    md_path, html_path = write_report(systems, options, args.out, adapt, args.note, own_lang)
    print(f"wrote {md_path} and {html_path}")
    return 0
