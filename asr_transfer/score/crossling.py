"""The cross-lingual table of the adapter paper: rows = target languages, columns = methods.

Each experiment is an ``add-language`` output (``add_language.yaml`` says its language and
method) with a decoded test set ``decode_<lang>_test*``. Cells are test WER (%) with 95 %
bootstrap intervals; below them, the average over languages, each method's trainable share of
the parameters and (adapters) its file's share of the full model file. A second table gives the
paired-bootstrap difference of every method against Full-FT, per language and on the average
(the average's resamples are the mean of the languages' resamples, drawn independently). For
SimAdapter and SimAdapter+ experiments, a heatmap of the fusion weights per layer and language.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from asr_transfer.score import bootstrap
from asr_transfer.score.api import ScoreOptions, load_or_score
from asr_transfer.score.render import _CSS, _html_table, _md_table
from asr_transfer.score.report import Table
from asr_transfer.score.scoring import unit_counts
from asr_transfer.text.normalize import Normalizer

#: column order and titles; later methods (MetaAdapter, SimAdapter) get their columns when they appear
METHOD_TITLES = {
    "head": "Head",
    "full": "Full-FT",
    "adapter": "Adapter",
    "metaadapter": "MetaAdapter",
    "simadapter": "SimAdapter",
    "simadapter+": "SimAdapter+",
}
BASELINE = "full"
FUSION_NOTE = (
    "Rows: fusion layers (encoder blocks enc1..., decoder blocks dec1...); columns: the fused adapters "
    "(source languages, then the target's own). Which languages help the target, and where."
)


@dataclass
class Cell:
    """One (language, method) experiment: per-utterance ``(errors, ref words)`` and its summary."""

    counts: dict[str, tuple[int, int]]
    summary: dict

    @property
    def wer(self) -> float:
        errors, words = np.array(list(self.counts.values())).sum(0)
        return 100.0 * errors / words


def collect(exps: list[Path], options: ScoreOptions | None = None) -> dict[tuple[str, str], Cell]:
    """``{(lang, method): Cell}`` from add-language experiment dirs (their test-set decodes)."""
    cells: dict[tuple[str, str], Cell] = {}
    for exp in exps:
        summary = yaml.safe_load((exp / "add_language.yaml").read_text())
        lang, method = summary["lang"], summary["method"]
        decodes = sorted(d for d in exp.glob(f"decode_{lang}_test*") if (d / "text").is_file())
        if not decodes:
            raise FileNotFoundError(f"{exp}: no decode_{lang}_test*/text: decode the target's test set first")
        opts = options or ScoreOptions(normalizer=Normalizer(lang))
        result, _ = load_or_score(decodes[0], opts)
        if (lang, method) in cells:
            raise ValueError(f"{exp}: a second experiment for {lang} / {method}")
        cells[(lang, method)] = Cell(unit_counts(result, opts.unit), summary)
    return cells


def _resamples(
    cells: dict[tuple[str, str], Cell], lang: str, methods: list[str], n: int, seed: int
) -> np.ndarray:
    """Paired resampled WERs ``(methods, n)`` of one language (the same draws for every method)."""
    keys = sorted(cells[(lang, methods[0])].counts)
    for m in methods[1:]:
        if sorted(cells[(lang, m)].counts) != keys:
            raise ValueError(f"{lang}: {methods[0]} and {m} were decoded on different utterances")
    errors = np.array([[cells[(lang, m)].counts[k][0] for k in keys] for m in methods])
    words = np.array([cells[(lang, methods[0])].counts[k][1] for k in keys])
    return bootstrap.resample_rates(errors, words, n_resamples=n, seed=seed)


def tables(
    cells: dict[tuple[str, str], Cell], n_resamples: int = bootstrap.N_RESAMPLES, seed: int = bootstrap.SEED
) -> tuple[Table, Table | None]:
    """The paper-shaped WER table and the table of differences against Full-FT."""
    langs = sorted({lang for lang, _ in cells})
    methods = [m for m in METHOD_TITLES if any(k[1] == m for k in cells)]
    methods += sorted({m for _, m in cells} - set(methods))
    complete = [lang for lang in langs if all((lang, m) in cells for m in methods)]
    rates = {lang: _resamples(cells, lang, methods, n_resamples, seed) for lang in complete}

    def ci(value: float, samples: np.ndarray) -> str:
        low, high = np.nanpercentile(samples, [2.5, 97.5])
        return f"{value:.2f} [{low:.2f}, {high:.2f}]"

    header = ["target"] + [METHOD_TITLES.get(m, m) for m in methods]
    rows = []
    for lang in langs:
        row = [lang]
        for i, m in enumerate(methods):
            cell = cells.get((lang, m))
            row.append(
                "–" if cell is None else ci(cell.wer, rates[lang][i]) if lang in rates else f"{cell.wer:.2f}"
            )
        rows.append(row)
    if complete:
        mean = np.mean([rates[lang] for lang in complete], axis=0)  # (methods, n)
        avg = [np.mean([cells[(lang, m)].wer for lang in complete]) for m in methods]
        rows.append([f"**average** ({len(complete)})"] + [ci(a, mean[i]) for i, a in enumerate(avg)])
    share = [_mean_of(cells, m, "trainable_share") for m in methods]
    rows.append(["trainable params (%)"] + [_pct(s) for s in share])
    rows.append(["file / model file (%)"] + [_pct(_mean_of(cells, m, "adapter_file_share")) for m in methods])

    if BASELINE not in methods or not complete:
        return (header, rows), None
    b = methods.index(BASELINE)
    diff_rows = []
    for lang in [*complete, "average"]:
        r = mean if lang == "average" else rates[lang]
        row = [lang if lang != "average" else f"**average** ({len(complete)})"]
        for i, m in enumerate(methods):
            if m == BASELINE:
                row.append("–")
                continue
            d = r[i] - r[b]
            point = (
                (avg[i] - avg[b]) if lang == "average" else cells[(lang, m)].wer - cells[(lang, BASELINE)].wer
            )
            low, high = np.nanpercentile(d, [2.5, 97.5])
            mark = " †" if low > 0 or high < 0 else ""
            row.append(f"{point:+.2f} [{low:+.2f}, {high:+.2f}]{mark}")
        diff_rows.append(row)
    return (header, rows), (header, diff_rows)


def _mean_of(cells: dict[tuple[str, str], Cell], method: str, key: str) -> float:
    values = [c.summary[key] for (_, m), c in cells.items() if m == method and key in c.summary]
    return float(np.mean(values)) if values else math.nan


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.2f}"


def write(
    cells: dict[tuple[str, str], Cell], out: Path, source: Table | None = None, notes: list[str] = ()
) -> tuple[Path, Path]:
    """``out/RESULTS.md`` and ``out/report.html`` with the tables (and the source model's WERs)."""
    main, diff = tables(cells)
    parts: list[tuple[str, str | Table]] = [
        (
            "note",
            f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Test-set WER (%) with 95% bootstrap "
            f"intervals over utterances ({bootstrap.N_RESAMPLES} resamples, seed {bootstrap.SEED}); "
            "model selection on each target's dev set.",
        ),  # fmt: skip
        *(("note", n) for n in notes),
        ("h", "Cross-lingual transfer: WER (%) per target language and method"),
        ("table", main),
    ]
    if diff is not None:
        parts += [
            ("h", "Difference to Full-FT (WER points, paired bootstrap)"),
            ("note", "Negative = better than Full-FT. † = the 95% interval of the difference excludes 0."),
            ("table", diff),
        ]
    if source is not None:
        parts += [("h", "Multilingual source model: test WER (%) per source language"), ("table", source)]
    panels = {
        f"{lang} / {METHOD_TITLES.get(m, m)}": c.summary["fusion_weights"]
        for (lang, m), c in sorted(cells.items())
        if c.summary.get("fusion_weights")
    }
    if panels:
        from asr_transfer.score.plots import fusion_weights

        parts += [
            ("h", "SimAdapter fusion weights (mean attention on the target's dev set)"),
            ("note", FUSION_NOTE),
            ("img", fusion_weights(panels)),
        ]
    md, body = [], []
    for kind, item in parts:
        if kind == "h":
            md.append(f"\n## {item}\n")
            body.append(f"<h2>{html.escape(item)}</h2>")
        elif kind == "note":
            md.append(f"{item}\n")
            body.append(f"<p class='note'>{html.escape(item)}</p>")
        elif kind == "img":
            out.mkdir(parents=True, exist_ok=True)
            (out / "fusion_weights.png").write_bytes(base64.b64decode(item))
            md.append("![fusion weights](fusion_weights.png)\n")
            body.append(f"<img alt='fusion weights' src='data:image/png;base64,{item}'>")
        else:
            md.append(_md_table(item))
            body.append(_html_table(item))
    out.mkdir(parents=True, exist_ok=True)
    title = "Cross-lingual transfer"
    md_path, html_path = out / "RESULTS.md", out / "report.html"
    md_path.write_text(f"# {title}\n" + "\n".join(md), encoding="utf-8")
    html_path.write_text(
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_CSS}</style></head><body><h1>{title}</h1>\n" + "\n".join(body) + "\n</body></html>\n",
        encoding="utf-8",
    )
    return md_path, html_path


def source_table(exp: Path) -> Table:
    """Per-language test WER of the multilingual source model (its ``decode_<lang>_test*`` dirs)."""
    rows = []
    for d in sorted(exp.glob("decode_*_test*")):
        if (d / "text").is_file():
            lang = d.name.removeprefix("decode_").split("_")[0]
            result, data = load_or_score(d, ScoreOptions(normalizer=Normalizer(lang)))
            ci = data["total"].get("wer_ci") or {}
            span = f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else ""
            rows.append([d.name.removeprefix("decode_"), f"{result.total.wer:.2f}{span}"])
    return ["test set", "WER (%)"], rows
