"""The cross-lingual table of the adapter paper: rows = target languages, columns = methods.

A section of ``asr-transfer report``, added whenever an experiment given is an ``add-language``
output (``add_language.yaml`` says its language, method and base model) with a decoded test set
``decode_<lang>_test*``. Cells are test WER (%) with 95 % bootstrap intervals; below them, the
average over languages, each method's trainable share of the parameters and (adapters) its file's
share of the full model file. A second table gives the paired-bootstrap difference of every method
against Full-FT, per language and on the average (the average's resamples are the mean of the
languages' resamples, drawn independently). The base model's own test WERs per source language
follow (the base named in ``add_language.yaml``), and for SimAdapter and SimAdapter+ experiments the
fusion weights per layer and language: a table per experiment and a heatmap.

Runs of one (language, method) that differ in ``train.seed`` are that cell's training seeds: the cell
is their mean WER, and its intervals resample the seeds as well as the utterances (the two-level
bootstrap of :func:`bootstrap.seed_resampled_rates`), because two training runs of one method can
differ by as much as two methods do. With several seeds a third table takes, in every cell, the run
with the lowest dev WER (``dev_wer`` of ``add_language.yaml``): every method gets the same number of
tries, chosen on dev data, as a user choosing among their own runs would.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from asr_transfer.score import bootstrap
from asr_transfer.score.report import System, Table, best
from asr_transfer.score.scoring import unit_counts

#: what ``asr-transfer add-language`` writes into a finished experiment (language, method, base, sizes)
SUMMARY = "add_language.yaml"
#: column order and titles; later methods (MetaAdapter, SimAdapter) get their columns when they appear
METHOD_TITLES = {
    "head": "Head",
    "full": "Full-FT",
    "adapter": "Adapter",
    "metaadapter": "MetaAdapter",
    "simadapter": "SimAdapter",
    "simadapter+": "SimAdapter+",
    # the fusion ablation (adapt.use_sources false): the same fusion layers over the target's adapter alone
    "simadapter_alone": "SimAdapter, target alone",
    "simadapter+_alone": "SimAdapter+, target alone",
}
BASELINE = "full"
FUSION_NOTE = (
    "Rows: fusion layers (encoder blocks enc1..., decoder blocks dec1...); columns: the fused adapters "
    "(source languages, then the target's own); `sources`: their sum. Which languages help the target, and "
    "where."
)


@dataclass
class Run:
    """One add-language experiment: per-utterance ``(errors, ref words)``, its summary, its ``train.seed``."""

    counts: dict[str, tuple[int, int]]
    summary: dict
    seed: int | None = None

    @property
    def wer(self) -> float:
        errors, words = np.array(list(self.counts.values())).sum(0)
        return 100.0 * errors / words


@dataclass
class Cell:
    """One (language, method): its runs, one per training seed (in ``train.seed`` order)."""

    runs: list[Run]

    @property
    def wer(self) -> float:
        """The seeds' mean WER (they share the test set, so their mean errors over its words)."""
        return float(np.mean([r.wer for r in self.runs]))

    @property
    def summary(self) -> dict:
        """The first seed's summary (shares and file sizes are the same for every seed)."""
        return self.runs[0].summary

    @property
    def fusion_weights(self) -> tuple[dict[str, dict[str, float]], int]:
        """SimAdapter's mean attention per layer and fused adapter, averaged over the seeds that
        recorded it (each seed's own fusion attends differently), and how many did (0: none).

        Example:
            >>> seed = lambda de: Run({}, {"fusion_weights": {"enc1": {"de": de, "ro": 1 - de}}})
            >>> Cell([seed(0.25), seed(0.75)]).fusion_weights
            ({'enc1': {'de': 0.5, 'ro': 0.5}}, 2)
        """
        runs = [r.summary["fusion_weights"] for r in self.runs if r.summary.get("fusion_weights")]
        if not runs:
            return {}, 0
        mean = {
            layer: {name: float(np.mean([w[layer][name] for w in runs])) for name in names}
            for layer, names in runs[0].items()
        }
        return mean, len(runs)


def summary_of(path: Path) -> dict | None:
    """``add_language.yaml`` of an experiment dir, or ``None`` when it is no finished add-language run."""
    file = path / SUMMARY
    return yaml.safe_load(file.read_text(encoding="utf-8")) if file.is_file() else None


def column(path: Path, summary: dict) -> str:
    """The table column of an add-language experiment: its method, ``<method>_alone`` for SimAdapter's
    fusion ablation (``adapt.use_sources: false`` in its config)."""
    method = summary["method"]
    cfg = path / "config.yaml"
    if method.startswith("simadapter") and cfg.is_file():
        adapt = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("adapt") or {}
        if adapt.get("use_sources") is False:
            return f"{method}_alone"
    return method


def seed_of(path: Path) -> int | None:
    """The ``train.seed`` of an experiment's ``config.yaml`` (``None`` when it records none)."""
    cfg = path / "config.yaml"
    config = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}) if cfg.is_file() else {}
    return (config.get("train") or {}).get("seed")


def collect(systems: list[System], unit: str = "utt") -> tuple[dict[tuple[str, str], Cell], list[str]]:
    """``{(lang, method): Cell}`` of the add-language systems among ``systems`` (their first test-set
    decode, as scored for the report; runs that differ in ``train.seed`` are a cell's seeds), and notes
    on the ones left out (no test decode yet)."""
    out: dict[tuple[str, str], Cell] = {}
    paths: dict[tuple[str, str, str], Path] = {}
    undecoded = []
    for system in systems:
        summary = summary_of(system.path)
        if summary is None:
            continue
        lang, method = summary["lang"], column(system.path, summary)
        tests = sorted(n for n in system.decodes if fnmatch.fnmatchcase(n, f"{lang}_test*"))
        if not tests:
            undecoded.append(f"{system.path} (decode_{lang}_test*)")
            continue
        seed = seed_of(system.path)
        if (lang, method, str(seed)) in paths:
            raise ValueError(
                f"{system.path}: a second experiment for {lang} / {method} with train.seed {seed} "
                f"(the first: {paths[(lang, method, str(seed))]}); runs of one method pool as seeds only "
                "when their seeds differ"
            )
        paths[(lang, method, str(seed))] = system.path
        run = Run(unit_counts(system.decodes[tests[0]][0], unit), summary, seed)
        out.setdefault((lang, method), Cell([])).runs.append(run)
    for cell in out.values():
        cell.runs.sort(key=lambda r: (r.seed is None, r.seed or 0))  # seed order, unrecorded last
    notes = [f"Not decoded on the target's test set yet: {', '.join(undecoded)}."] if undecoded else []
    return out, notes


def base_dirs(systems: list[System]) -> list[Path]:
    """The base experiments named in the add-language systems' ``add_language.yaml``, found on disk.

    ``base`` is recorded as ``add-language --base`` was given: absolute, or relative to where it ran;
    that is looked for above the experiment dir (``exp/ro_adapter`` and ``exp/multi`` side by side),
    then from the current directory. A base found nowhere is left out.
    """
    found: list[Path] = []
    for system in systems:
        summary = summary_of(system.path)
        if summary is None or not summary.get("base"):
            continue
        base = Path(summary["base"])
        where = [base] if base.is_absolute() else [q / base for q in system.path.resolve().parents] + [base]
        hit = next((d.resolve() for d in where if (d / "config.yaml").is_file()), None)
        if hit is not None and hit not in found:
            found.append(hit)
    return found


def _resamples(
    cells: dict[tuple[str, str], Cell], lang: str, methods: list[str], n: int, seed: int
) -> np.ndarray:
    """Paired resampled WERs ``(methods, n)`` of one language: the same utterance draws for every
    method, then each method's seeds drawn with replacement (one seed: the utterance bootstrap)."""
    runs = [cells[(lang, m)].runs for m in methods]
    keys = sorted(runs[0][0].counts)
    for m, seeds in zip(methods, runs):
        if any(sorted(r.counts) != keys for r in seeds):
            raise ValueError(f"{lang}: {methods[0]} and {m} were decoded on different utterances")
    errors = np.array([[r.counts[k][0] for k in keys] for seeds in runs for r in seeds])
    words = np.array([runs[0][0].counts[k][1] for k in keys])
    rows, first = [], 0
    for seeds in runs:
        rows.append([list(range(first, first + len(seeds)))])
        first += len(seeds)
    return bootstrap.seed_resampled_rates(errors, words, rows, n_resamples=n, seed=seed)[1]


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
        wers = [cells[(lang, m)].wer if (lang, m) in cells else math.nan for m in methods]
        top = best(wers)
        row = [lang]
        for i, w in enumerate(wers):
            text = "–" if math.isnan(w) else ci(w, rates[lang][i]) if lang in rates else f"{w:.2f}"
            row.append(f"**{text}**" if w == top else text)
        rows.append(row)
    if complete:
        mean = np.mean([rates[lang] for lang in complete], axis=0)  # (methods, n)
        avg = [float(np.mean([cells[(lang, m)].wer for lang in complete])) for m in methods]
        top = best(avg)
        rows.append(
            [f"average ({len(complete)})"]
            + [f"**{ci(a, mean[i])}**" if a == top else ci(a, mean[i]) for i, a in enumerate(avg)]
        )
    share = [_mean_of(cells, m, "trainable_share") for m in methods]
    rows.append(["trainable params (%)"] + [_pct(s) for s in share])
    rows.append(["file / model file (%)"] + [_pct(_mean_of(cells, m, "adapter_file_share")) for m in methods])
    if any(len(c.runs) > 1 for c in cells.values()):
        rows.append(["training seeds"] + [_seed_count(cells, m) for m in methods])

    if BASELINE not in methods or not complete:
        return (header, rows), None
    b = methods.index(BASELINE)
    diff_rows = []
    for lang in [*complete, "average"]:
        r = mean if lang == "average" else rates[lang]
        row = [lang if lang != "average" else f"average ({len(complete)})"]
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


def _seed_count(cells: dict[tuple[str, str], Cell], method: str) -> str:
    counts = sorted({len(c.runs) for (_, m), c in cells.items() if m == method})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def chosen_on_dev(cells: dict[tuple[str, str], Cell]) -> tuple[dict[tuple[str, str], Cell], list[str]]:
    """Each cell's run with the lowest dev WER among its seeds (``dev_wer`` of ``add_language.yaml``;
    a tie keeps the first seed), and notes on cells whose runs do not all record one (left out).

    Example:
        >>> runs = [Run({"u": (1, 4)}, {"dev_wer": 30.0}, 1), Run({"u": (2, 4)}, {"dev_wer": 20.0}, 2)]
        >>> chosen, notes = chosen_on_dev({("ro", "full"): Cell(runs)})
        >>> chosen[("ro", "full")].runs[0].seed, notes
        (2, [])
    """
    chosen, missing = {}, []
    for key, cell in cells.items():
        if any("dev_wer" not in r.summary for r in cell.runs):
            missing.append(" / ".join(key))
            continue
        chosen[key] = Cell([min(cell.runs, key=lambda r: r.summary["dev_wer"])])
    notes = [f"No dev WER recorded in every run of: {', '.join(missing)} (left out)."] if missing else []
    return chosen, notes


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.2f}"


def fusion_panels(cells: dict[tuple[str, str], Cell]) -> dict[str, dict]:
    """``{"<lang> / <method>": fusion weights}`` of the SimAdapter experiments (for the heatmap); a cell
    of several seeds shows their mean, and its title says over how many."""
    panels = {}
    for (lang, m), c in sorted(cells.items()):
        weights, n = c.fusion_weights
        # a fusion over one adapter (the ablation) gives it all the attention: nothing to show
        if n and len(next(iter(weights.values()))) > 1:
            panels[f"{lang} / {METHOD_TITLES.get(m, m)}{f' (mean of {n} seeds)' if n > 1 else ''}"] = weights
    return panels


def fusion_table(weights: dict[str, dict[str, float]]) -> Table:
    """One panel's mean attention per fusion layer (rows) and fused adapter (columns), and the sources' share.

    The sources' share is what the layer gives to every choice but the last (the target's own adapter,
    fused last) and the un-adapted output (``<base>``).

    Example:
        >>> header, rows = fusion_table({"enc1": {"de": 0.25, "ro": 0.75}, "dec1": {"de": 0.1, "ro": 0.9}})
        >>> header, rows[0]
        (['layer', 'de', 'ro', 'sources'], ['enc1', '0.250', '0.750', '0.250'])
    """
    names = list(next(iter(weights.values())))
    own = (names[-1], "<base>")
    rows = [
        [layer, *(f"{w[n]:.3f}" for n in names), f"{sum(v for n, v in w.items() if n not in own):.3f}"]
        for layer, w in weights.items()
    ]
    return ["layer", *names, "sources"], rows


def source_table(base: System) -> Table:
    """Per-language test WER of the multilingual base model (its ``decode_*_test*`` decodes)."""
    rows = []
    for name, (result, data) in sorted(base.decodes.items()):
        if fnmatch.fnmatchcase(name, "*_test*"):
            ci = data["total"].get("wer_ci") or {}
            span = f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else ""
            rows.append([name, f"{result.total.wer:.2f}{span}"])
    return ["test set", "WER (%)"], rows
