"""The unsupervised adaptation table of the papers: WER per target domain and method, the relative
reduction against source-only with paired-bootstrap intervals, each method against the best one (WER
points, paired interval), and forgetting on the source domain.

It is a section of ``asr-transfer report``, added whenever a system given is adapted::

    asr-transfer report exp/tiny_clean exp/adapt_* --out exp/report \\
        [--source-domain clean] [--noise-domains rain wind laugh drizzle breeze] \\
        [--adaptation-sets '*test*'] [--pseudo-labels exp/pseudo/en_train_*]

A system is *adapted* when its ``config.yaml`` has ``adapt: {method: M, target: D}`` with a method
other than ``supervised``; the *source model* (the Source-only column) is the first system given
that is not adapted, or the one ``--source-model EXP_DIR`` names (adapted or not: e.g. a model that
continued training on the source, adapted from in turn). Columns are methods in the order
source_only, self_training, mmd, adv, cmatch, named by ``adapt.name`` when set, else e.g. ``MMD`` or
``CMatch (ctc_align)`` (``adapt.labels``). Rows are the target domains. Experiments of one method
and target that differ in ``train.seed`` are that cell's seeds: the cell is their mean WER, and the
intervals resample the seeds as well as the utterances (a two-level bootstrap: training runs differ by
as much as methods do, which resampling utterances alone does not see; two runs with the same seed
are an error).

The test set of domain D of a system is its ``decode_<dataset>`` whose dataset name matches
``--adaptation-sets`` and whose utterances are all in domain D (``utt2domain``). Plain Kaldi dirs
have no ``utt2domain``; a test decode without one takes its domain from the experiments
(:func:`resolve_test_sets`): the domain its dataset is named after (``en_test_kiosk``: kiosk), else,
for an adapted experiment with a single such decode, its ``adapt.target``; the source model's decode
of the same data dir then is the source model's test set of that domain. A method's cell for D is
the WER of that method's experiment adapted to D, on D's test set; a missing one is named in a note,
with the file that would place it. The Average rows (all targets; devices and noise separately when
both occur) pool the utterances of their domains, so the relative reduction of an average is a ratio
of pooled error rates with one paired bootstrap over all its utterances. When a column is the
continued-training control (method ``source_only``: the source terms alone, the adaptation schedule,
no target audio; the first such column when several are), a further table gives each method's
reduction against it, the part of a gain that is adaptation rather than more source training; a
control reads no target audio, so one run of it serves every domain but the source one whose test
set it was decoded on (a row of the table then; a run adapted to that domain with the same seed takes
precedence). A domain in ``--noise-domains`` counts as noise, any other as a device (Libri-Adapt
microphone names work unchanged). Forgetting: the source-domain test WER of a method's adapted
experiments (their mean) next to the source model's.

The regime table says how far each target domain is from the source, the first-order lever of
these methods (docs/benchmarks.md, "Paper-regime domains"): the source model's test WER there, its
ratio to the source-domain test WER, and, for the pseudo-label dirs given with ``--pseudo-labels``
(written by ``asr-transfer pseudo-label``), the WER of the kept and of all pseudo-labels against the
true transcripts of the data dir their ``pseudo_label.yaml`` names. Those transcripts are read here,
for the report only: nothing is selected on them.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr_transfer.config import yaml_load
from asr_transfer.data.kaldi import DataError, load_data_dir, read_table
from asr_transfer.score import bootstrap, crossling
from asr_transfer.score.api import ScoreOptions
from asr_transfer.score.report import System, best
from asr_transfer.score.scoring import ScoreResult, score_texts, unit_counts

Table = tuple[list[str], list[list[str]]]

#: column order of the methods, and of the CMatch frame-labelling strategies
METHODS = ("source_only", "self_training", "mmd", "adv", "cmatch")
CMATCH_LABELS = ("frame_average", "ctc_align", "ctc_pred")
_NAMES = {
    "source_only": "Source-only (continued)",
    "self_training": "Self-training",
    "mmd": "MMD",
    "adv": "ADV",
    "cmatch": "CMatch",
}


@dataclass(frozen=True)
class AdaptOptions:
    """Which domain is the source, which are noise (the rest are devices), which decodes are test sets,
    and which pseudo-label dirs to measure for the regime table."""

    source_domain: str = "clean"
    noise_domains: tuple[str, ...] = ("rain", "wind", "laugh", "drizzle", "breeze")
    sets: str = "*test*"
    pseudo_labels: tuple[Path, ...] = ()
    #: the source model's experiment dir when it is not the first non-adapted system (e.g. a model
    #: that continued training on the source with ``source_only``, whose config has an ``adapt``)
    source_model: Path | None = None


@dataclass
class Method:
    """One column: a display name and its adapted systems by target domain, one per training seed."""

    name: str
    order: tuple
    by_target: dict[str, list[System]] = field(default_factory=dict)
    #: each system's ``train.seed`` (by system name), read once
    seed_of: dict[str, object] = field(default_factory=dict)

    @property
    def seeds(self) -> int:
        """The most seeds of any target domain (1: a single run per domain)."""
        return max(map(len, self.by_target.values()), default=1)


def adapt_section(path: Path) -> dict | None:
    """The ``adapt`` section of ``path/config.yaml`` when it names a domain-adaptation method, else
    ``None`` (no config, no section, plain ``supervised`` training, which the loop records too, an
    ``add-language`` run or a source-side run for one: the cross-lingual table's experiments); a
    domain-adaptation method without a ``target`` domain is an error naming the file."""
    config = path / "config.yaml"
    if not config.is_file() or (path / crossling.SUMMARY).is_file():
        return None
    adapt = (yaml_load(config.read_text(encoding="utf-8")) or {}).get("adapt")
    if adapt is None or (isinstance(adapt, dict) and adapt.get("method", "supervised") == "supervised"):
        return None
    if isinstance(adapt, dict) and not adapt.get("target") and not _is_uda(str(adapt.get("method"))):
        return None
    if not isinstance(adapt, dict) or not adapt.get("target"):
        raise ValueError(
            f"{config}: 'adapt' needs a 'target' domain for the adaptation tables (--adapt.target D), "
            f"got {adapt!r}"
        )
    return adapt


def _is_uda(method: str) -> bool:
    """Whether ``method`` is a domain-adaptation method (or unknown here: then the error says more)."""
    # imported only for a section without a target: the methods' registry loads torch and ESPnet
    from asr_transfer.adapt import METHODS

    return method not in METHODS or METHODS[method].kind == "uda"


def method_name(adapt: dict) -> str:
    """The column name of an ``adapt`` section.

    Example:
        >>> method_name({"method": "cmatch", "target": "phone", "labels": "ctc_align"})
        'CMatch (ctc_align)'
        >>> method_name({"method": "cmatch", "target": "phone", "cmatch": {"labels": "ctc_pred"}})
        'CMatch (ctc_pred)'
        >>> method_name({"method": "mmd", "target": "rain"}), method_name({"method": "adv", "name": "DANN"})
        ('MMD', 'DANN')
        >>> method_name({"method": "mmd", "target": "rain", "train": "adapter"})  # a domain adapter only
        'MMD + adapter'
    """
    if adapt.get("name"):
        name = str(adapt["name"])
    else:
        name = _NAMES.get(adapt["method"], str(adapt["method"]))
        labels = _labels(adapt) if adapt["method"] == "cmatch" else None
        name = f"{name} ({labels})" if labels else name
    return f"{name} + adapter" if adapt.get("train") == "adapter" else name


def _labels(adapt: dict) -> str | None:
    """CMatch's frame-labelling strategy: ``adapt.labels`` (its options) or ``adapt.cmatch.labels``."""
    return adapt.get("labels") or (adapt.get("cmatch") or {}).get("labels")


def _order(adapt: dict) -> tuple:
    method = adapt["method"]
    labels = _labels(adapt)
    return (
        METHODS.index(method) if method in METHODS else len(METHODS),
        CMATCH_LABELS.index(labels) if labels in CMATCH_LABELS else len(CMATCH_LABELS),
        method_name(adapt),
    )


def domain_test_sets(system: System, opts: AdaptOptions) -> dict[str, ScoreResult]:
    """``{domain: scored decode}`` of a system's single-domain decodes whose name matches ``opts.sets``."""
    out: dict[str, ScoreResult] = {}
    where: dict[str, str] = {}
    for dataset, (result, _) in sorted(system.decodes.items()):
        domains = {u.domain for u in result.utts}
        if not fnmatch.fnmatchcase(dataset, opts.sets) or len(domains) != 1 or None in domains:
            continue
        (domain,) = domains
        if domain in out:
            raise ValueError(
                f"{system.path}: decode_{where[domain]} and decode_{dataset} are both test sets of domain "
                f"'{domain}': choose one with --adaptation-sets"
            )
        out[domain], where[domain] = result, dataset
    return out


def _undomained(system: System, opts: AdaptOptions) -> list[str]:
    """Datasets of a system's test decodes (name matching ``opts.sets``) that have no ``utt2domain``."""
    return [
        dataset
        for dataset, (result, _) in sorted(system.decodes.items())
        if fnmatch.fnmatchcase(dataset, opts.sets) and all(u.domain is None for u in result.utts)
    ]


def _data_dir(system: System, dataset: str) -> str | None:
    """The data dir ``asr-transfer decode`` decoded into ``decode_<dataset>`` (its ``decode.yaml``)."""
    made = system.path / f"decode_{dataset}" / "decode.yaml"
    data = (yaml_load(made.read_text(encoding="utf-8")) or {}).get("data") if made.is_file() else None
    return os.path.normpath(data) if data else None


def _named_after(dataset: str, domains: set[str]) -> str | None:
    """The one domain among ``domains`` that is a ``_``/``-``/``.``-separated part of ``dataset``.

    Example:
        >>> _named_after("en_test_kiosk", {"kiosk", "clean"}), _named_after("test_a", {"kiosk"})
        ('kiosk', None)
    """
    found = set(re.split(r"[_.-]", dataset)) & domains
    return found.pop() if len(found) == 1 else None


def resolve_test_sets(
    source: System | None, adapted: list[System], adapts: dict[str, dict | None], opts: AdaptOptions
) -> tuple[dict[str, dict[str, ScoreResult]], dict[tuple[str, str], str]]:
    """``{system: {domain: scored test decode}}`` of the source model and the adapted systems, and
    ``{(system, domain): why there is none}`` for each adapted system's target domain left without one.

    A test decode with ``utt2domain`` is placed by it (:func:`domain_test_sets`). One without (a plain
    Kaldi dir) is placed in the domain its dataset is named after, among the target domains and
    ``opts.source_domain``; an adapted experiment's target still without a test set takes the
    experiment's single unplaced test decode. The source model's test set of a target is then its
    decode of the same dataset (the same data dir, by ``decode.yaml``) as the adapted experiments'.
    """
    systems = ([source] if source else []) + adapted
    sets = {s.name: domain_test_sets(s, opts) for s in systems}
    domains = {str(adapts[s.name]["target"]) for s in adapted} | {opts.source_domain}
    why: dict[tuple[str, str], str] = {}
    for s in systems:
        unplaced = []
        for dataset in _undomained(s, opts):
            domain = _named_after(dataset, domains)
            if domain is not None and domain not in sets[s.name]:
                sets[s.name][domain] = s.decodes[dataset][0]
            else:
                unplaced.append(dataset)
        target = str(adapts[s.name]["target"]) if adapts.get(s.name) else None
        if target is None or target in sets[s.name]:
            continue
        if len(unplaced) == 1:
            sets[s.name][target] = s.decodes[unplaced[0]][0]
        elif unplaced:
            where = [_data_dir(s, d) or str(s.path / f"decode_{d}") for d in unplaced]
            why[(s.name, target)] = (
                f"{s.path}: {len(unplaced)} test decodes without utt2domain ({', '.join(unplaced)}), none "
                f"named after '{target}': add utt2domain to {' or '.join(where)} and decode again"
            )
        else:
            why[(s.name, target)] = (
                f"{s.path}: no decode_<dataset> matching '{opts.sets}' of domain '{target}' "
                f"(its utt2domain) or without utt2domain: decode the target's test set"
            )
    if source is None:
        return sets, why
    # the source model's test set of a domain: its decode of a dir the adapted experiments tested it on
    tested: dict[str, set[tuple[str, str | None]]] = {}  # domain -> {(dataset, data dir)}
    for s in adapted:
        for dataset, (result, _) in s.decodes.items():
            for domain in (d for d, r in sets[s.name].items() if r is result):
                tested.setdefault(domain, set()).add((dataset, _data_dir(s, dataset)))
    free = set(_undomained(source, opts))
    for domain, where in sorted(tested.items()):
        if domain in sets[source.name]:
            continue
        same = [d for d, data in sorted(where, key=str) if d in free and data in (None, _data_dir(source, d))]
        if same:
            sets[source.name][domain] = source.decodes[same[0]][0]
        else:
            dirs = sorted({data or f"the dir of decode_{d}" for d, data in where})
            why[(source.name, domain)] = (
                f"{source.path}: no test decode of domain '{domain}': decode {' and '.join(dirs)} with it"
            )
    return sets, why


#: a table cell's decodes: per domain of the row, one scored test decode per training seed
Cell = list[list[ScoreResult]]


def _seed_rows(cells: list[Cell], unit: str) -> tuple[np.ndarray, np.ndarray, list[list[list[int]]]] | None:
    """The cells' decodes over one set of bootstrap units, for :func:`bootstrap.seed_resampled_rates`:
    errors ``(decodes, units)``, lengths ``(units,)`` and per cell its groups of rows (per domain, its
    seeds). ``None`` when they were not all decoded on the same utterances.

    Utterances are keyed by (domain, utt); a speaker stays one unit across domains (their errors are
    correlated), a unit's length is one decode's.
    """
    keyed = [[[unit_counts(result, unit) for result in seeds] for seeds in cell] for cell in cells]
    first = keyed[0]

    def unit_key(domain: int, key: str) -> tuple:
        return (key,) if unit == "spk" else (domain, key)

    lengths: dict[tuple, int] = {}
    for i, seeds in enumerate(first):
        for key, (_, n) in seeds[0].items():
            lengths[unit_key(i, key)] = lengths.get(unit_key(i, key), 0) + n
    order = {u: j for j, u in enumerate(sorted(lengths))}
    rows: list[np.ndarray] = []
    groups: list[list[list[int]]] = []
    for cell in keyed:
        if len(cell) != len(first):
            return None
        groups.append([])
        for i, seeds in enumerate(cell):
            want = {k: n for k, (_, n) in first[i][0].items()}
            groups[-1].append([])
            for counts in seeds:
                if {k: n for k, (_, n) in counts.items()} != want:
                    return None
                row = np.zeros(len(order), dtype=np.int64)
                for key, (e, _) in counts.items():
                    row[order[unit_key(i, key)]] += e
                groups[-1][-1].append(len(rows))
                rows.append(row)
    return np.vstack(rows), np.array([lengths[u] for u in sorted(lengths)]), groups


def _wer(cell: Cell) -> float:
    """The pooled WER of a cell (%) over its domains' utterances, each domain's errors the mean over its
    seeds."""
    errors = sum(sum(u.words.errors for r in seeds for u in r.utts) / len(seeds) for seeds in cell)
    length = sum(u.words.ref_len for seeds in cell for u in seeds[0].utts)
    return 100.0 * errors / length if length else math.nan


def _reduction(base: Cell, other: Cell, options: ScoreOptions) -> str:
    rows = _seed_rows([base, other], options.unit)
    if rows is None:
        return "n/a (different test utterances)"
    errors, lengths, (a, b) = rows
    kw = {"n_resamples": options.n_resamples, "seed": options.seed}
    r = bootstrap.seed_relative_reduction(errors, lengths, a, b, **kw)
    significant = r.low > 0 or r.high < 0
    return f"{r.value:+.1f} [{r.low:+.1f}, {r.high:+.1f}]" + (" †" if significant else "")


def _behind(best: Cell | None, other: Cell | None, options: ScoreOptions) -> str:
    """How many WER points ``other`` is behind ``best``, with its paired-bootstrap interval ("best" for
    the best itself, "–" when either is missing)."""
    if not other or best is None:
        return "–"
    if other is best:
        return "best"
    rows = _seed_rows([best, other], options.unit)
    if rows is None:
        return "n/a (different test utterances)"
    errors, lengths, (a, b) = rows
    d = bootstrap.seed_difference(errors, lengths, a, b, n_resamples=options.n_resamples, seed=options.seed)
    significant = d.low > 0 or d.high < 0
    return f"{d.value:+.2f} [{d.low:+.2f}, {d.high:+.2f}]" + (" †" if significant else "")


@dataclass
class AdaptationTables:
    """What the report shows: the source model's name, the tables and notes.

    ``versus_best``: per row, each method's WER minus the best method's (the row's lowest WER among
    the adaptation methods), in points with a paired-bootstrap interval: whether the best method is
    better than the next with confidence, or only on the point estimate. The continued-training
    control is compared with it but is never the best method (it adapts nothing).
    ``versus_control``: when a column is the continued-training control (method ``source_only``),
    each other method's relative reduction against it: the part of a gain that is adaptation, not
    the further source training the method's run also gives (``None`` without a control).
    """

    source: str
    wer: Table
    reduction: Table
    forgetting: Table
    notes: list[str]
    versus_best: Table
    versus_control: Table | None


def adaptation_tables(
    systems: list[System], options: ScoreOptions, opts: AdaptOptions
) -> AdaptationTables | None:
    """The adaptation tables over report systems; ``None`` when no system is adapted."""
    adapts = {s.name: adapt_section(s.path) for s in systems}
    source = _source(systems, adapts, opts)
    adapted = [s for s in systems if adapts[s.name]]
    if not adapted:
        return None
    if source is None:
        raise ValueError(
            "adapted systems but no source model: give the source experiment (no 'adapt') too, or name "
            "it with --source-model"
        )
    methods = _methods(adapted, adapts)
    columns = sorted(methods.values(), key=lambda m: m.order)
    sets, why = resolve_test_sets(source, adapted, adapts, opts)
    _control_serves_every_target(columns, sets, opts.source_domain)
    noise = set(opts.noise_domains)
    targets = sorted({t for m in columns for t in m.by_target}, key=lambda d: (d in noise, d))
    notes: list[str] = []

    def results(name: str | None, domains: list[str]) -> Cell | None:
        """Test decodes of ``domains`` of the source model (name None) or a method (each of its seeds);
        None if one lacks."""
        out = []
        for d in domains:
            runs = [source] if name is None else methods[name].by_target.get(d, [])
            seeds = [sets[s.name].get(d) for s in runs]
            if not seeds or None in seeds:
                return None
            out.append(seeds)
        return out

    rows: list[tuple[str, list[str]]] = [(d, [d]) for d in targets]
    devices, noisy = [d for d in targets if d not in noise], [d for d in targets if d in noise]
    if len(targets) > 1:
        rows.append(("Average", targets))
    if devices and noisy:
        rows += [("Average (devices)", devices), ("Average (noise)", noisy)]

    header = ["target domain", "Source-only"] + [m.name for m in columns]
    wer_rows, red_rows, best_rows, control_rows = [], [], [], []
    # the first continued-training control among the columns, if any
    control = next((i for i, m in enumerate(columns) if m.order[0] == METHODS.index("source_only")), None)
    for label, domains in rows:
        base = results(None, domains)
        wers = [_wer(base) if base else math.nan]
        reductions = []
        found = [results(m.name, domains) for m in columns]
        for res in found:
            wers.append(_wer(res) if res else math.nan)
            reductions.append(_reduction(base, res, options) if base and res else "–")
        top = best(wers)
        wer_rows.append(
            [label] + ["–" if math.isnan(w) else (f"**{w:.2f}**" if w == top else f"{w:.2f}") for w in wers]
        )
        red_rows.append([label] + reductions)
        # the best adaptation method: source-only is not one, nor is the continued-training control
        # (further source training; its cell then says how far it is from that method)
        decoded = [i for i, res in enumerate(found) if res and i != control]
        decoded = decoded or [i for i, res in enumerate(found) if res]  # the control alone
        compared = sum(not math.isnan(w) for w in wers[1:]) > 1  # a row one system decoded compares nothing
        winner = found[min(decoded, key=lambda i: wers[1 + i])] if decoded and compared else None
        best_rows.append([label] + [_behind(winner, res, options) for res in found])
        if control is not None:
            ctl = found[control]
            control_rows.append(
                [label]
                + [
                    "control" if i == control else _reduction(ctl, res, options) if ctl and res else "–"
                    for i, res in enumerate(found)
                ]
            )
    missing = [
        (f"{m.name} → {d}", why.get((s.name, d)))
        for m in columns
        for d in targets
        for s in m.by_target.get(d, [])
        if d not in sets[s.name]
    ] + [(f"Source-only → {d}", why.get((source.name, d))) for d in targets if d not in sets[source.name]]
    if missing:
        notes.append(
            "No test decode of the target domain for: "
            + "; ".join(f"{cell} ({reason})" if reason else cell for cell, reason in missing)
            + "."
        )

    for m in (m for m in columns if m.seeds > 1):
        seeds = sorted({str(seed) for seed in m.seed_of.values()})
        notes.append(
            f"{m.name}: {m.seeds} training seeds per target domain (train.seed {', '.join(seeds)}); its "
            "cells are the seeds' mean WER, and its intervals resample the seeds as well as the utterances."
        )
    forgetting = _forgetting(columns, sets, sets[source.name].get(opts.source_domain), opts.source_domain)
    by_method = header[:1] + header[2:]
    return AdaptationTables(
        source.name,
        (header, wer_rows),
        (by_method, red_rows),
        forgetting,
        notes,
        (by_method, best_rows),
        (by_method, control_rows) if control is not None else None,
    )


def _control_serves_every_target(
    columns: list[Method], sets: dict[str, dict[str, ScoreResult]], source_domain: str
) -> None:
    """A continued-training control reads no target audio, so one run serves every domain but the
    source one that it was tested on: add it to those domains' cells (a target domain of the table
    then), unless a run of the same seed is there already."""
    for m in (m for m in columns if m.order[0] == METHODS.index("source_only")):
        runs = [s for seeds in list(m.by_target.values()) for s in seeds]
        for s in runs:
            for d in sorted(set(sets[s.name]) - {source_domain}):
                cell = m.by_target.setdefault(d, [])
                if all(m.seed_of[r.name] != m.seed_of[s.name] for r in cell):
                    cell.append(s)


def _source(systems: list[System], adapts: dict[str, dict | None], opts: AdaptOptions) -> System | None:
    """The source model: ``opts.source_model`` (its ``adapt`` section then dropped from ``adapts``: it
    is the baseline, not a method's run), else the first system neither adapted nor add-language."""
    if opts.source_model is None:
        return next((s for s in systems if not adapts[s.name] and not _is_add_language(s)), None)
    want = opts.source_model.resolve()
    source = next((s for s in systems if s.path.resolve() == want), None)
    if source is None:
        raise ValueError(f"--source-model {opts.source_model}: not one of the experiments given")
    adapts[source.name] = None
    return source


def _is_add_language(system: System) -> bool:
    """An ``add-language`` run: never the source model of the adaptation tables."""
    return (system.path / crossling.SUMMARY).is_file()


def _methods(adapted: list[System], adapts: dict[str, dict]) -> dict[str, Method]:
    """The adapted systems grouped by method, each by its target domain: one system per pair, or one
    per training seed (``train.seed``), whose results the tables pool."""
    methods: dict[str, Method] = {}
    for s in adapted:
        a = adapts[s.name]
        m = methods.setdefault(method_name(a), Method(method_name(a), _order(a)))
        runs = m.by_target.setdefault(str(a["target"]), [])
        seed = m.seed_of[s.name] = crossling.seed_of(s.path)
        same = next((r for r in runs if m.seed_of[r.name] == seed), None)
        if same is not None:
            raise ValueError(
                f"{same.path} and {s.path} are both '{m.name}' adapted to '{a['target']}' with train.seed "
                f"{seed}: give one (or set adapt.name to tell them apart; other seeds' runs are pooled)"
            )
        runs.append(s)
    return methods


def _forgetting(
    columns: list[Method], sets: dict[str, dict[str, ScoreResult]], src: ScoreResult | None, domain: str
) -> tuple[list[str], list[list[str]]]:
    """Source-domain test WER after each method's adaptations (mean) against the source model's."""
    rows = []
    for m in columns:
        # a control's run may serve several domains: each run counts once
        runs = list({s.name: s for seeds in m.by_target.values() for s in seeds}.values())
        after = [sets[s.name][domain] for s in runs if domain in sets[s.name]]
        mean = float(np.mean([_wer([[r]]) for r in after])) if after else math.nan
        before = _wer([[src]]) if src else math.nan
        rows.append(
            [
                m.name,
                f"{len(after)} of {len(runs)}",
                "–" if math.isnan(mean) else f"{mean:.2f}",
                "–" if math.isnan(before) else f"{before:.2f}",
                "–" if math.isnan(mean) or math.isnan(before) else f"{mean - before:+.2f}",
            ]
        )
    header = ["method", "experiments", f"{domain} WER after adaptation (mean)", f"{domain} WER source model"]
    return [*header, "change"], rows


@dataclass(frozen=True)
class PseudoLabelScore:
    """How right one pseudo-label dir is: WER of its kept labels and of all it decoded."""

    domain: str
    kept: int
    total: int
    kept_wer: float
    all_wer: float


def pseudo_label_score(
    path: Path, options: ScoreOptions, domains: set[str] = frozenset()
) -> PseudoLabelScore:
    """Score the pseudo-labels in ``path`` against the true transcripts of the dir they label.

    That dir is ``data`` in ``path/pseudo_label.yaml``, as the labeller was given it (a relative path
    is read from the current directory, where the recipe runs both). Utterances the labeller left
    empty count as all deletions in the WER of all labels. Their domain is ``utt2domain``'s or, for
    a plain dir without one, the one of ``domains`` that the labelled dir is named after.
    """
    from asr_transfer.decode.pseudo_label import SUMMARY  # here: that module loads torch

    summary_file = path / SUMMARY
    if not summary_file.is_file():
        raise DataError(f"{path}: not a pseudo-label dir (no {SUMMARY})")
    summary = yaml_load(summary_file.read_text(encoding="utf-8")) or {}
    if not summary.get("data"):
        raise DataError(f"{summary_file}: names no labelled data dir ('data')")
    truth = load_data_dir(Path(summary["data"])).text
    labels = load_data_dir(path)
    if labels.utt2domain:
        found = set(labels.utt2domain.values())
        if len(found) != 1:
            raise DataError(
                f"{path}: pseudo-labels of one domain expected (utt2domain), found {sorted(found)}"
            )
        domain = found.pop()
    else:
        named = _named_after(Path(summary["data"]).name, set(domains))
        if named is None:
            raise DataError(
                f"{path}: no utt2domain, and {summary['data']} is not named after one of the domains "
                f"{', '.join(sorted(domains)) or '(none)'}: add utt2domain to {summary['data']} and "
                "label it again"
            )
        domain = named
    every = read_table(path / "hyp_all", allow_empty_value=True)

    def wer(hyps: dict[str, str]) -> float:
        missing = sorted(set(hyps) - set(truth))
        if missing:
            raise DataError(
                f"{path}: {len(missing)} labelled utterances not in {summary['data']}, e.g. {missing[0]}"
            )
        return score_texts({u: truth[u] for u in hyps}, hyps, normalizer=options.normalizer).total.wer

    return PseudoLabelScore(domain, len(labels.text), len(every), wer(labels.text), wer(every))


def regime_table(systems: list[System], options: ScoreOptions, opts: AdaptOptions) -> Table | None:
    """Per target domain: the source model's test WER, its ratio to the source-domain test WER, and the
    pseudo-label WER (kept, all) where ``opts.pseudo_labels`` has that domain.

    Rows are the adapted systems' target domains and the pseudo-labels' domains; ``None`` when there
    are neither, or no source model (a system without ``adapt``, or ``opts.source_model``).
    """
    adapts = {s.name: adapt_section(s.path) for s in systems}
    source = _source(systems, adapts, opts)
    pseudo: dict[str, PseudoLabelScore] = {}
    named = {str(a["target"]) for a in adapts.values() if a}
    for path in opts.pseudo_labels:
        score = pseudo_label_score(path, options, named)
        if score.domain in pseudo:
            raise ValueError(
                f"two pseudo-label dirs of domain '{score.domain}' (the second: {path}): give one"
            )
        pseudo[score.domain] = score
    targets = {str(a["target"]) for a in adapts.values() if a} | set(pseudo)
    if source is None or not targets:
        return None
    noise = set(opts.noise_domains)
    adapted = [s for s in systems if adapts[s.name]]
    sets = resolve_test_sets(source, adapted, adapts, opts)[0][source.name]
    src = sets.get(opts.source_domain)
    base = _wer([[src]]) if src else math.nan
    d = opts.source_domain
    header = [
        "target domain",
        "Source-only WER",
        f"ratio to {d} WER",
        "pseudo-labels kept",
        "pseudo-label WER, kept",
        "pseudo-label WER, all",
    ]
    rows = []
    for t in sorted(targets, key=lambda t: (t in noise, t)):
        wer = _wer([[sets[t]]]) if t in sets else math.nan
        p = pseudo.get(t)
        rows.append(
            [
                t,
                _cell(wer),
                "–" if math.isnan(wer) or math.isnan(base) or base == 0 else f"{wer / base:.2f}",
                f"{p.kept} of {p.total}" if p else "–",
                _cell(p.kept_wer) if p else "–",
                _cell(p.all_wer) if p else "–",
            ]
        )
    return header, rows


def _cell(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.2f}"
