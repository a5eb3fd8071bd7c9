"""``asr-transfer crossling-report``: the cross-lingual table (targets x methods) as RESULTS.md + HTML."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("exps", nargs="+", help="add-language experiment dirs (or folders holding them)")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--source", help="the multilingual source experiment (its per-language test WERs)")
    parser.add_argument("--note", action="append", default=[], help="a line of text for the report")


def run(args: argparse.Namespace) -> int:
    from asr_transfer.score import crossling

    exps: list[Path] = []
    for p in map(Path, args.exps):
        found = (
            [p]
            if (p / "add_language.yaml").is_file()
            else sorted(q.parent for q in p.glob("*/add_language.yaml"))
        )
        if not found:
            raise FileNotFoundError(f"{p}: no add_language.yaml: not a finished add-language experiment")
        exps += found
    source = crossling.source_table(Path(args.source)) if args.source else None
    md, html = crossling.write(crossling.collect(exps), Path(args.out), source, args.note)
    print(md.read_text(encoding="utf-8"))
    print(f"crossling-report: {md}, {html}")
    return 0
