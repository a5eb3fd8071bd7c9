"""Write the report as ``RESULTS.md`` and a self-contained ``report.html`` (plots inlined as base64 PNG)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from asr_transfer.score import crossling, plots
from asr_transfer.score.adapt_table import AdaptationTables, AdaptOptions, adaptation_tables, regime_table
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
    load_systems,
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
    systems: list[System],
    options: ScoreOptions,
    out: Path,
    adapt: AdaptOptions | None = None,
    notes: list[str] | tuple[str, ...] = (),
    own_lang: bool = False,
) -> tuple[Path, Path]:
    """Render every section to Markdown and HTML in ``out``; returns both paths.

    The sections of a kind of experiment appear when such experiments are given: the unsupervised
    adaptation tables (:mod:`asr_transfer.score.adapt_table`) for adapted systems, the cross-lingual
    table (:mod:`asr_transfer.score.crossling`) for ``add-language`` runs. ``notes``: lines of text
    for the top; ``own_lang``: each decode was scored in its own language (the report says so).
    """
    comps = comparisons(systems, options)
    adapt = adapt or AdaptOptions()
    adaptation = adaptation_tables(systems, options, adapt)
    regime = regime_table(systems, options, adapt)
    cells, crossling_notes = crossling.collect(systems, options.unit)
    doc = Doc()
    _wer_section(doc, systems, options, comps, notes, own_lang)
    if cells or crossling_notes:
        _crossling_section(doc, systems, cells, crossling_notes, options, out, own_lang)
    if adaptation:
        _adaptation_section(doc, adaptation, options)
    if regime:
        _regime_section(doc, regime, adapt)
    _breakdown_sections(doc, systems, comps)
    for s in systems:
        doc.heading(f"Worst utterances: {s.name}")
        for name, u in worst_utterances(s):
            doc.note(f"{name} / {u.utt}: {u.words.errors} errors in {u.words.ref_len} words")
            doc.pre(aligned(u))
        doc.heading(f"Top confusions: {s.name}")
        doc.table(confusion_table(s))
    doc.heading("Environment")
    doc.table((["item", "value"], [[k, v] for k, v in environment().items()]))
    facts = [[s.name, str(s.path)] + list(system_facts(s.path).values()) for s in systems]
    doc.table((["system", "path", "config sha256", "command"], facts))
    return doc.write(out, f"ASR results: {', '.join(s.name for s in systems)}")


class Doc:
    """The report built twice at once: Markdown lines and HTML body elements."""

    def __init__(self) -> None:
        self.md: list[str] = []
        self.body: list[str] = []

    def heading(self, text: str) -> None:
        self.md.append(f"\n## {text}\n")
        self.body.append(f"<h2>{html.escape(text)}</h2>")

    def note(self, text: str) -> None:
        self.md.append(text + "\n")
        self.body.append(f"<p class='note'>{_inline(text)}</p>")

    def table(self, t: Table) -> None:
        self.md.append(_md_table(t))
        self.body.append(_html_table(t))

    def pre(self, text: str) -> None:
        self.md.append(f"```\n{text}\n```\n")
        self.body.append(f"<pre>{html.escape(text)}</pre>")

    def image(self, png: str | None, alt: str) -> None:
        if png:
            self.body.append(f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{png}'></p>")

    def write(self, out: Path, title: str) -> tuple[Path, Path]:
        """``out/RESULTS.md`` and ``out/report.html``."""
        out.mkdir(parents=True, exist_ok=True)
        md_path, html_path = out / "RESULTS.md", out / "report.html"
        md_path.write_text(f"# {title}\n" + "\n".join(self.md), encoding="utf-8")
        head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style>"
        html_path.write_text(
            f"<!DOCTYPE html>\n<html lang='en'><head>{head}</head><body><h1>{html.escape(title)}</h1>\n"
            + "\n".join(self.body)
            + "\n</body></html>\n",
            encoding="utf-8",
        )
        return md_path, html_path


def _wer_section(
    doc: Doc, systems: list[System], options: ScoreOptions, comps: dict, notes: Iterable[str], own_lang: bool
) -> None:
    """How the report was made, the user's notes, then the WER table and its plot."""
    norm = options.normalizer
    lang = "each decode's own (decode.yaml, utt2lang; else en)" if own_lang else norm.lang
    doc.note(
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Normalisation: lang={lang}, "
        f"Unicode {norm.unicode_form}, lowercase={norm.lowercase}, punctuation removed={norm.remove_punct}. "
        f"Intervals: 95% paired bootstrap over {'speakers' if options.unit == 'spk' else 'utterances'}, "
        f"{options.n_resamples} resamples, seed {options.seed}."
    )
    for text in notes:
        doc.note(text)
    doc.heading("WER (%)")
    if len(systems) > 1:
        doc.note(
            f"Best per row in bold (of at least two values). † = differs from the baseline "
            f"**{systems[0].name}** (95% interval of the difference excludes 0). Average: unweighted mean "
            "over the datasets all systems decoded."
        )
    doc.table(wer_table(systems, comps))
    doc.image(plots.wer_bars(systems), "WER per dataset and system")


def _crossling_section(
    doc: Doc,
    systems: list[System],
    cells: dict[tuple[str, str], crossling.Cell],
    notes: list[str],
    options: ScoreOptions,
    out: Path,
    own_lang: bool,
) -> None:
    """Targets x methods with the difference to Full-FT, the base models' own WERs, fusion weights."""
    doc.heading("Cross-lingual transfer: WER (%) per target language and method")
    doc.note(
        "Each add-language experiment on its target's test set (the first decode_<lang>_test*), with 95% "
        f"bootstrap intervals over {'speakers' if options.unit == 'spk' else 'utterances'}; model "
        "selection on each target's dev set. Best per row in bold (of at least two values)."
    )
    for text in notes:
        doc.note(text)
    if not cells:
        return
    seeded = any(len(c.runs) > 1 for c in cells.values())
    if seeded:
        doc.note(
            "Runs of a method on a target that differ in train.seed are its training seeds (row `training "
            "seeds`): a cell is their mean WER, and its intervals resample the seeds as well as the "
            "utterances."
        )
    main, diff = crossling.tables(cells, options.n_resamples, options.seed)
    doc.table(main)
    if diff is not None:
        doc.heading("Difference to Full-FT (WER points, paired bootstrap)")
        doc.note("Negative = better than Full-FT. † = the 95% interval of the difference excludes 0.")
        doc.table(diff)
    if seeded:
        chosen, chosen_notes = crossling.chosen_on_dev(cells)
        doc.heading("Each method's run chosen on dev data among its seeds: WER (%)")
        doc.note(
            "In every cell the seed with the lowest dev WER (the same number of tries for every method where "
            "the seed counts are equal; the choice never sees the test set); intervals over utterances."
        )
        for text in chosen_notes:
            doc.note(text)
        if chosen:
            main, diff = crossling.tables(chosen, options.n_resamples, options.seed)
            doc.table(main)
            if diff is not None:
                doc.note("Difference to Full-FT, runs chosen on dev (WER points, paired; † excludes 0):")
                doc.table(diff)
    given = {s.path.resolve(): s for s in systems}
    for base in crossling.base_dirs(systems):
        doc.heading(f"Base model {base.name}: test WER (%) per source language")
        if base not in given and not any(base.glob("decode_*/text")):
            doc.note(f"{base} has no decodes: decode its source languages' test sets to see them here.")
            continue
        doc.table(crossling.source_table(given.get(base) or load_systems([base], options, own_lang)[0]))
    panels = crossling.fusion_panels(cells)
    if panels:
        doc.heading("SimAdapter fusion weights (mean attention on the target's dev set)")
        doc.note(crossling.FUSION_NOTE)
        for title, weights in panels.items():
            doc.note(f"**{title}**")
            doc.table(crossling.fusion_table(weights))
        png = plots.fusion_weights(panels)
        out.mkdir(parents=True, exist_ok=True)
        (out / "fusion_weights.png").write_bytes(base64.b64decode(png))
        doc.md.append("![fusion weights](fusion_weights.png)\n")
        doc.image(png, "fusion weights")


def _adaptation_section(doc: Doc, a: AdaptationTables, options: ScoreOptions) -> None:
    """Target-domain WER per method, the reduction against source-only, and forgetting."""
    doc.heading("Unsupervised adaptation: WER (%) on the target domains")
    doc.note(
        f"Source-only = the source model **{a.source}**; every other column = that method's experiment "
        "adapted to the row's domain, on that domain's test set. Best per row in bold (of at least two "
        "values). Averages pool the utterances of their domains."
    )
    for text in a.notes:
        doc.note(text)
    doc.table(a.wer)
    doc.heading("Relative WER reduction against source-only (%)")
    doc.note(
        "100 × (WER source-only − WER method) / WER source-only, with its 95% paired-bootstrap interval "
        f"over {'speakers' if options.unit == 'spk' else 'utterances'}; † = the interval excludes 0."
    )
    doc.table(a.reduction)
    doc.heading("Against the best method (WER points)")
    doc.note(
        "Per row, each method's WER minus that of the adaptation method with the lowest WER (best), "
        "with its 95% paired-bootstrap interval; † = the interval excludes 0: the best method is "
        "better with confidence, not only on the point estimate. The continued-training control is "
        "never the best method (it adapts nothing): a negative value in its column means it is ahead."
    )
    doc.table(a.versus_best)
    if a.versus_control is not None:
        doc.heading("Relative WER reduction against the continued-training control (%)")
        doc.note(
            "100 × (WER control − WER method) / WER control, with its 95% paired-bootstrap interval; "
            "† = the interval excludes 0. The control trains the source model further on the source "
            "data alone, with the adaptation schedule and no target audio: a gain against it is "
            "adaptation, not source training the source model had not had."
        )
        doc.table(a.versus_control)
    doc.heading("Forgetting: source-domain test WER (%)")
    doc.table(a.forgetting)


def _regime_section(doc: Doc, regime: Table, adapt: AdaptOptions) -> None:
    """How far each target domain is from the source, and how right its pseudo-labels are."""
    doc.heading("Regime of the target domains")
    doc.note(
        f"How far each target domain is from the source: the source model's test WER (%) there and its "
        f"ratio to the {adapt.source_domain} test WER (the CMatch paper's source-only WERs are 1.2-2x "
        "in-domain), and the WER (%) of its pseudo-labels against the true transcripts, read for this "
        "report only (never for selection)."
    )
    doc.table(regime)


def _breakdown_sections(doc: Doc, systems: list[System], comps: dict) -> None:
    """Significance, WER per domain and language, errors by kind, missing hypotheses, curves."""
    if comps:
        doc.heading(f"Significance against {systems[0].name}")
        doc.table(significance_table(systems, comps))
    for key, title in (("domain", "WER per domain (%)"), ("lang", "WER per language (%)")):
        t = group_table(systems, key)
        if t:
            doc.heading(title)
            doc.table(t)
    doc.heading("Error breakdown")
    doc.table(breakdown_table(systems))
    doc.image(plots.sdi_bars(systems), "substitutions, deletions and insertions")
    missing = [(s.name, name, r.missing) for s in systems for name, (r, _) in s.decodes.items() if r.missing]
    if missing:
        doc.heading("Missing hypotheses (scored as deletions)")
        for sys_name, name, ids in missing:
            more = " …" if len(ids) > 20 else ""
            doc.note(f"{sys_name} / {name}: {len(ids)} missing: {', '.join(ids[:20])}{more}")
    doc.heading("Training curves")
    curves = plots.training_curves(systems)
    if curves:
        doc.image(curves, "training curves")
        doc.md.append("(plotted in report.html)\n")
    else:
        doc.note("No TensorBoard event files found under exp/<system>/tensorboard.")


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
