"""Write the report as ``RESULTS.md`` and a self-contained ``report.html`` (plots inlined as base64 PNG)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

from asr_transfer.score import plots
from asr_transfer.score.adapt_table import AdaptOptions, adaptation_tables, regime_table
from asr_transfer.score.api import ScoreOptions
from asr_transfer.score.environment import environment, system_facts
from asr_transfer.score.report import (
    System,
    Table,
    aligned,
    breakdown_table,
    comparisons,
    confusion_table,
    group_table,
    significance_table,
    wer_table,
    worst_utterances,
)

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:6px;
overflow-x:auto}img{max-width:100%;border:1px solid #eee}h2{border-bottom:1px solid #ddd}.note{color:#666}"""


def write_report(
    systems: list[System], options: ScoreOptions, out: Path, adapt: AdaptOptions | None = None
) -> tuple[Path, Path]:
    """Render every section to Markdown and HTML in ``out``; returns both paths.

    The adaptation section (:mod:`asr_transfer.score.adapt_table`) appears when a system is adapted.
    """
    comps = comparisons(systems, options)
    adapt = adapt or AdaptOptions()
    adaptation = adaptation_tables(systems, options, adapt)
    regime = regime_table(systems, options, adapt)
    md: list[str] = []
    body: list[str] = []

    def heading(text: str) -> None:
        md.append(f"\n## {text}\n")
        body.append(f"<h2>{html.escape(text)}</h2>")

    def note(text: str) -> None:
        md.append(text + "\n")
        body.append(f"<p class='note'>{_inline(text)}</p>")

    def table(t: Table) -> None:
        md.append(_md_table(t))
        body.append(_html_table(t))

    def pre(text: str) -> None:
        md.append(f"```\n{text}\n```\n")
        body.append(f"<pre>{html.escape(text)}</pre>")

    def image(png: str | None, alt: str) -> None:
        if png:
            body.append(f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{png}'></p>")

    base = systems[0].name
    norm = options.normalizer
    note(
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Normalisation: lang={norm.lang}, "
        f"Unicode {norm.unicode_form}, lowercase={norm.lowercase}, punctuation removed={norm.remove_punct}. "
        f"Intervals: 95% paired bootstrap over {'speakers' if options.unit == 'spk' else 'utterances'}, "
        f"{options.n_resamples} resamples, seed {options.seed}."
    )
    heading("WER (%)")
    if len(systems) > 1:
        note(
            f"Best per row in bold. † = differs from the baseline **{base}** (95% interval of the "
            f"difference excludes 0). Average: unweighted mean over the datasets all systems decoded."
        )
    table(wer_table(systems, comps))
    image(plots.wer_bars(systems), "WER per dataset and system")
    if adaptation:
        a = adaptation
        heading("Unsupervised adaptation: WER (%) on the target domains")
        note(
            f"Source-only = the source model **{a.source}**; every other column = that method's experiment "
            "adapted to the row's domain, on that domain's test set. Best per row in bold. Averages pool "
            "the utterances of their domains."
        )
        for text in a.notes:
            note(text)
        table(a.wer)
        heading("Relative WER reduction against source-only (%)")
        note(
            "100 × (WER source-only − WER method) / WER source-only, with its 95% paired-bootstrap interval "
            f"over {'speakers' if options.unit == 'spk' else 'utterances'}; † = the interval excludes 0."
        )
        table(a.reduction)
        heading("Forgetting: source-domain test WER (%)")
        table(a.forgetting)
    if regime:
        heading("Regime of the target domains")
        note(
            f"How far each target domain is from the source: the source model's test WER (%) there and its "
            f"ratio to the {adapt.source_domain} test WER (the CMatch paper's source-only WERs are 1.2-2x "
            "in-domain), and the WER (%) of its pseudo-labels against the true transcripts, read for this "
            "report only (never for selection)."
        )
        table(regime)
    if comps:
        heading(f"Significance against {base}")
        table(significance_table(systems, comps))
    for key, title in (("domain", "WER per domain (%)"), ("lang", "WER per language (%)")):
        t = group_table(systems, key)
        if t:
            heading(title)
            table(t)
    heading("Error breakdown")
    table(breakdown_table(systems))
    image(plots.sdi_bars(systems), "substitutions, deletions and insertions")
    missing = [(s.name, name, r.missing) for s in systems for name, (r, _) in s.decodes.items() if r.missing]
    if missing:
        heading("Missing hypotheses (scored as deletions)")
        for sys_name, name, ids in missing:
            note(
                f"{sys_name} / {name}: {len(ids)} missing: "
                f"{', '.join(ids[:20])}{' …' if len(ids) > 20 else ''}"
            )
    heading("Training curves")
    curves = plots.training_curves(systems)
    if curves:
        image(curves, "training curves")
        md.append("(plotted in report.html)\n")
    else:
        note("No TensorBoard event files found under exp/<system>/tensorboard.")
    for s in systems:
        heading(f"Worst utterances: {s.name}")
        for name, u in worst_utterances(s):
            note(f"{name} / {u.utt}: {u.words.errors} errors in {u.words.ref_len} words")
            pre(aligned(u))
        heading(f"Top confusions: {s.name}")
        table(confusion_table(s))
    heading("Environment")
    env = environment()
    table((["item", "value"], [[k, v] for k, v in env.items()]))
    table(
        (
            ["system", "path", "config sha256", "command"],
            [[s.name, str(s.path)] + list(system_facts(s.path).values()) for s in systems],
        )
    )

    out.mkdir(parents=True, exist_ok=True)
    title = f"ASR results: {', '.join(s.name for s in systems)}"
    md_path, html_path = out / "RESULTS.md", out / "report.html"
    md_path.write_text(f"# {title}\n" + "\n".join(md), encoding="utf-8")
    html_path.write_text(
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n"
        + "\n".join(body)
        + "\n</body></html>\n",
        encoding="utf-8",
    )
    return md_path, html_path


def _md_table(t: Table) -> str:
    header, rows = t

    def cell(x: str) -> str:
        return x.replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _inline(text: str) -> str:
    """Escape, then turn Markdown ``**bold**`` into <b>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def _html_table(t: Table) -> str:
    header, rows = t
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
