"""``asr-transfer distance``: how far each data dir's audio is from the source model's training domain.

Reads audio only (no transcript, no training): a sample of ``--source`` (the source model's
training data, or its clean dev set) and of each ``--data`` dir go through the source model's
encoder and CTC layer; the measures of :mod:`asr_transfer.score.distance` are printed as one table.
With ``--wer-from EXP`` (decodes ``EXP/decode_<dir>/`` of the same dirs), the measured WER is a
column and each measure's Spearman rank correlation with it is printed under the table; ``--out``
writes the table as ``distance.json``, ``RESULTS.md`` and ``report.html`` (with a plot).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MEASURE_HELP = {
    "mmd": "MMD^2 of mean-pooled encoder outputs",
    "unit": "per-unit (CTC best token) encoder distance",
    "entropy": "CTC posterior entropy (nats/frame)",
    "blank": "share of blank frames",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp", required=True, help="the source model's experiment dir")
    parser.add_argument("--data", nargs="+", required=True, help="Kaldi data dirs (target audio)")
    parser.add_argument(
        "--source", required=True, help="Kaldi data dir of the source domain (its training or dev data)"
    )
    parser.add_argument("--utts", type=int, default=200, help="utterances sampled per dir (default 200)")
    parser.add_argument("--checkpoint", default="model.pt")
    parser.add_argument("--lang", help="language head (default: the only one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--wer-from",
        type=Path,
        help="experiment dir with decode_<dir>/ of the same dirs: add WER and rank correlations",
    )
    parser.add_argument("--out", type=Path, help="write distance.json, RESULTS.md and report.html here")


def run(args: argparse.Namespace) -> int:
    from asr_transfer.decode.transcribe import Recognizer
    from asr_transfer.score.distance import MEASURES, distances, encode_dir, median_bandwidth

    rec = Recognizer.from_exp(args.exp, args.checkpoint, device=args.device)
    lang = rec.default_lang(args.lang)
    start = time.perf_counter()
    source = encode_dir(rec, Path(args.source), lang, args.utts)
    bandwidth = median_bandwidth(source.pooled)
    rows = []
    for d in map(Path, args.data):
        target = encode_dir(rec, d, lang, args.utts)
        rows.append({"data": d.name, "utts": len(target.pooled), **distances(target, source, bandwidth)})
    elapsed = time.perf_counter() - start
    if args.wer_from:
        for r in rows:
            r["wer"] = _wer(args.wer_from / f"decode_{r['data']}")
    table = _table(rows, MEASURES, args.wer_from is not None)
    rho = _correlations(rows, MEASURES) if args.wer_from else {}
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(cells) + " |" for cells in table[1]]
    if rho:
        lines.append("\nSpearman rho with WER: " + ", ".join(f"{m} {v:+.2f}" for m, v in rho.items()))
    lines.append(f"({len(rows) + 1} dirs, {elapsed:.1f} s; source {Path(args.source).name})")
    print("\n".join(lines))
    if args.out:
        _write(args.out, rows, rho, table, args)
    return 0


def _wer(decode_dir: Path) -> float:
    """The decode's total WER, from its cached score or scored now (nothing written)."""
    cache = decode_dir / "score" / "wer.json"
    if cache.is_file():
        return float(json.loads(cache.read_text(encoding="utf-8"))["total"]["wer"])
    from asr_transfer.score.api import ScoreOptions, score_files

    if not (decode_dir / "text").is_file():
        raise FileNotFoundError(f"--wer-from: no decode {decode_dir}/text")
    result, _ = score_files(decode_dir / "ref", decode_dir / "text", ScoreOptions())
    return result.total.wer


def _table(rows: list[dict], measures: tuple[str, ...], with_wer: bool) -> tuple[list[str], list[list[str]]]:
    cols = ["data", "utts", *measures] + (["wer"] if with_wer else [])
    fmt = {"mmd": "{:.4f}", "unit": "{:.4f}", "entropy": "{:.3f}", "blank": "{:.3f}", "wer": "{:.2f}"}
    return cols, [[fmt.get(c, "{}").format(r[c]) for c in cols] for r in rows]


def _correlations(rows: list[dict], measures: tuple[str, ...]) -> dict[str, float]:
    from asr_transfer.score.distance import spearman

    if len(rows) < 3:
        return {}
    return {m: spearman([r[m] for r in rows], [r["wer"] for r in rows]) for m in measures}


def _write(
    out: Path,
    rows: list[dict],
    rho: dict[str, float],
    table: tuple[list[str], list[list[str]]],
    args: argparse.Namespace,
) -> None:
    from asr_transfer.score.plots import distance_bars
    from asr_transfer.score.render import Doc

    out.mkdir(parents=True, exist_ok=True)
    source = str(args.source)
    (out / "distance.json").write_text(
        json.dumps({"source": source, "rows": rows, "spearman_wer": rho}, indent=1)
    )
    doc = Doc()
    doc.note(f"Source model `{args.exp}`; source sample `{source}`; {args.utts} utterances per dir at most.")
    doc.note("; ".join(f"`{m}`: {h}" for m, h in MEASURE_HELP.items()) + ".")
    doc.table(table)
    if rho:
        doc.note("Spearman rho with WER: " + ", ".join(f"{m} {v:+.2f}" for m, v in rho.items()))
    doc.image(distance_bars(rows, tuple(MEASURE_HELP)), "domain distances per data dir")
    doc.write(out, "Domain distance from the source model's training domain")
