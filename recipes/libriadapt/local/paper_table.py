#!/usr/bin/env python3
"""The CMatch paper's Libri-Adapt table: one row per adaptation task, one column per method.

``asr-transfer report`` makes one adaptation table per source model (its rows are that model's
target domains); the paper puts the six device pairs and the three noise conditions, which come from
three source models, in one table with their averages. This script collects those cells from the
scored test decodes the per-source reports left behind (``decode_<set>/score/wer.json``):

* Source-only: ``<exp>/<model>_<source>/decode_<accent>_test_<target>``
* a method M:  ``<exp>/adapt/<model>_<source>/<M>_<target>/decode_<accent>_test_<target>``

Averages are plain means of the rows' WERs, as in the paper; a cell whose decode is missing is
``–``, an average over a missing cell too, and a note names the missing files.

Example:
    python local/paper_table.py --exp exp --model tiny --accent en-us \\
        --tasks matrix_clean:pseye_clean respeaker_clean:respeaker_rain \\
        --methods self_training cmatch_ctc_align --out exp/report_adapt/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

#: the paper's device letters (M Matrix Voice, P PlayStation Eye, R ReSpeaker, U USB)
LETTERS = {"matrix": "M", "pseye": "P", "respeaker": "R", "usb": "U", "nexus6": "N", "shure": "S"}


def task_label(source: str, target: str) -> str:
    """The paper's name of a task between domains ``<device>_<noise>``.

    Example:
        >>> task_label("matrix_clean", "pseye_clean"), task_label("respeaker_clean", "respeaker_rain")
        ('M→P', 'R: clean→rain')
        >>> task_label("matrix_clean", "usb_wind")
        'matrix_clean→usb_wind'
    """
    (sd, sn), (td, tn) = source.split("_", 1), target.split("_", 1)
    if sn == tn == "clean" and sd in LETTERS and td in LETTERS:
        return f"{LETTERS[sd]}→{LETTERS[td]}"
    if sd == td and sd in LETTERS:
        return f"{LETTERS[sd]}: {sn}→{tn}"
    return f"{source}→{target}"


def read_wer(decode_dir: Path) -> float | None:
    """The total WER of a scored decode, ``None`` when it is not there (not decoded or not scored)."""
    score = decode_dir / "score" / "wer.json"
    if not score.is_file():
        return None
    return float(json.loads(score.read_text(encoding="utf-8"))["total"]["wer"])


def method_name(exp_dirs: list[Path], method: str) -> str:
    """The method's display name recorded in its experiments (``adapt.name``), else the config name."""
    for config in (d / "config.yaml" for d in exp_dirs):
        if config.is_file():
            adapt = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("adapt") or {}
            if isinstance(adapt, dict) and adapt.get("name"):
                return str(adapt["name"])
    return method


def _cell(x: float, best: float) -> str:
    if math.isnan(x):
        return "–"
    return f"**{x:.2f}**" if x == best else f"{x:.2f}"


def paper_table(exp: Path, model: str, accent: str, tasks: list[str], methods: list[str]) -> str:
    """The table as Markdown: WER per task and method, averages, and relative reductions of the averages."""
    rows: list[tuple[str, bool, list[float]]] = []  # (label, is a noise task, WERs)
    adapted: dict[str, list[Path]] = {m: [] for m in methods}
    missing: list[str] = []
    for task in tasks:
        source, target = task.split(":")
        test = f"decode_{accent}_test_{target}"
        for m in methods:
            adapted[m].append(exp / "adapt" / f"{model}_{source}" / f"{m}_{target}")
        wers = []
        for d in [exp / f"{model}_{source}"] + [adapted[m][-1] for m in methods]:
            wer = read_wer(d / test)
            if wer is None:
                missing.append(str(d / test / "score" / "wer.json"))
            wers.append(math.nan if wer is None else wer)
        noisy = source.split("_", 1)[1] != target.split("_", 1)[1]
        rows.append((task_label(source, target), noisy, wers))
    names = ["Source-only"] + [method_name(adapted[m], m) for m in methods]

    groups = [
        ("Average (devices)", [r for r in rows if not r[1]]),
        ("Average (noise)", [r for r in rows if r[1]]),
    ]
    groups = [(label, members) for label, members in groups if members]
    if len(groups) == 2:
        groups.append(("Average", rows))
    # a plain mean (NaN when a cell is missing), as the paper averages its rows
    averages = [
        (label, [sum(col) / len(col) for col in zip(*(wers for _, _, wers in members))])
        for label, members in groups
    ]

    lines = [
        f"# Libri-Adapt ({accent}): WER % per adaptation task",
        "",
        "| task | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for label, wers in [(label, wers) for label, _, wers in rows] + averages:
        best = min((w for w in wers if not math.isnan(w)), default=math.nan)
        lines.append(f"| {label} | " + " | ".join(_cell(w, best) for w in wers) + " |")
    lines += ["", "Relative WER reduction against Source-only, % (of the averages):", ""]
    lines += ["| average | " + " | ".join(names[1:]) + " |", "|---" * len(names) + "|"]
    for label, wers in averages:
        base = wers[0]
        cells = [
            "–" if math.isnan(base) or math.isnan(w) or base == 0 else f"{100 * (base - w) / base:+.1f}"
            for w in wers[1:]
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if missing:
        lines += ["", f"Missing (decode and report stages 5-10 not run?): {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", type=Path, default=Path("exp"), help="the recipe's exp folder")
    parser.add_argument("--model", required=True, help="source experiments are <exp>/<model>_<source>")
    parser.add_argument("--accent", default="en-us")
    parser.add_argument(
        "--tasks", nargs="+", required=True, help="SOURCE:TARGET domains, e.g. matrix_clean:pseye_clean"
    )
    parser.add_argument("--methods", nargs="+", required=True, help="conf/adapt/<method>.yaml names")
    parser.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    args = parser.parse_args(argv)
    bad = [
        t for t in args.tasks if t.count(":") != 1 or "_" not in t.split(":")[0] or "_" not in t.split(":")[1]
    ]
    if bad:
        parser.error(f"--tasks: {bad[0]!r} is not SOURCE:TARGET over <device>_<noise> domains")
    table = paper_table(args.exp, args.model, args.accent, args.tasks, args.methods)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
