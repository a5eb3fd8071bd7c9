"""WER of two decodings of the same data dirs, per dir and pooled, with paired-bootstrap intervals.

Used for the SUTA table of ``docs/benchmarks.md``: the source model decoded without and with
test-time adaptation (``asr-transfer decode --out-root``), each dataset a ``decode_<name>`` folder.

Usage:
    python bench/tta_compare.py BASE_ROOT OTHER_ROOT --sets en_test_mic en_test_room ...
        [--pool en_test_mic,en_test_room,...] [--json OUT]

Per set: WER without / with, the paired difference with its 95 % interval (utterances resampled,
``asr_transfer.score.bootstrap.compare``), the real-time factor each decoding recorded. ``--pool``:
the named sets' utterances scored together (equal reference words per set in the benchmark, so
this is their average), the same paired interval.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from asr_transfer.score import bootstrap
from asr_transfer.score.api import ScoreOptions, load_or_score
from asr_transfer.score.scoring import unit_counts


def counts(root: Path, name: str, options: ScoreOptions) -> dict[str, tuple[int, int]]:
    result, _ = load_or_score(root / f"decode_{name}", options)
    return {f"{name}/{k}": v for k, v in unit_counts(result, "utt").items()}


def row(label: str, a: dict, b: dict, rtf: tuple[str, str]) -> dict:
    keys = sorted(a)
    assert keys == sorted(b), f"{label}: the two decodings cover different utterances"
    comp = bootstrap.compare(
        np.array([a[k][0] for k in keys]),
        np.array([b[k][0] for k in keys]),
        np.array([a[k][1] for k in keys]),
    )
    return {"set": label, **comp.as_dict(), "rtf_base": rtf[0], "rtf_other": rtf[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("other", type=Path)
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--pool", action="append", default=[], help="comma-separated sets scored together")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    options = ScoreOptions()
    base = {s: counts(args.base, s, options) for s in args.sets}
    other = {s: counts(args.other, s, options) for s in args.sets}

    def rtf(root: Path, name: str) -> str:
        return f"{yaml.safe_load((root / f'decode_{name}' / 'decode.yaml').read_text())['rtf']:.3f}"

    rows = [row(s, base[s], other[s], (rtf(args.base, s), rtf(args.other, s))) for s in args.sets]
    for pool in args.pool:
        names = pool.split(",")
        a = {k: v for s in names for k, v in base[s].items()}
        b = {k: v for s in names for k, v in other[s].items()}
        rows.append(row("pooled " + pool, a, b, ("-", "-")))
    print("| set | WER without | WER with | difference [95 % CI] | RTF without | RTF with |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        d = r["diff"]
        print(
            f"| {r['set']} | {r['a']['value']:.2f} | {r['b']['value']:.2f} | "
            f"{d['value']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] | {r['rtf_base']} | {r['rtf_other']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
