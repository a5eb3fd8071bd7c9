"""Comparison report over experiment dirs: tables as in the papers, then Markdown and HTML.

An experiment dir is ``exp/<system>/`` with ``decode_<dataset>/{text,ref,utt2*}``;
the first system given is the baseline every other system is tested against
(paired bootstrap; a dagger marks an interval of the difference that excludes 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import jiwer
import numpy as np
import yaml

from asr_transfer.data.kaldi import read_table
from asr_transfer.score import bootstrap
from asr_transfer.score.api import ScoreOptions, load_or_score
from asr_transfer.score.scoring import ScoreResult, UttScore, unit_counts

Table = tuple[list[str], list[list[str]]]  # header, rows; "**x**" marks bold


@dataclass
class System:
    """One experiment dir and its scored decodes, ``{dataset: (result, wer.json data)}``."""

    name: str
    path: Path
    decodes: dict[str, tuple[ScoreResult, dict]] = field(default_factory=dict)


def find_systems(paths: list[Path]) -> list[Path]:
    """Experiment dirs among ``paths``: each path itself when it has decodes, else its sub-dirs that do."""
    found: list[Path] = []
    for p in paths:
        if any(p.glob("decode_*/text")):
            found.append(p)
        else:
            found += sorted(d for d in p.iterdir() if d.is_dir() and any(d.glob("decode_*/text")))
    if not found:
        raise ValueError(f"no decode_<dataset>/text under {', '.join(map(str, paths))}")
    return found


def load_systems(paths: list[Path], options: ScoreOptions, own_lang: bool = False) -> list[System]:
    """Score (or read the cached scores of) every decode of every experiment dir.

    With ``own_lang``, each decode is normalised by the rules of its own language
    (:func:`decode_lang`; English when it names none) instead of ``options.normalizer.lang``.
    """
    systems = []
    for path in find_systems(paths):
        system = System(path.name, path)
        for d in sorted(path.glob("decode_*")):
            if (d / "text").is_file() and (d / "ref").is_file():
                opts = options
                if own_lang:
                    norm = replace(options.normalizer, lang=decode_lang(d) or "en")
                    opts = replace(options, normalizer=norm)
                system.decodes[d.name.removeprefix("decode_")] = load_or_score(d, opts)
        systems.append(system)
    return systems


def decode_lang(decode_dir: Path) -> str | None:
    """The language a decode is in: ``lang`` in its ``decode.yaml`` (``asr-transfer decode``), else
    the one language of its ``utt2lang``; ``None`` when neither says.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "utt2lang").write_text("u1 ro\\nu2 ro\\n")
        >>> decode_lang(d)
        'ro'
    """
    made = decode_dir / "decode.yaml"
    lang = (yaml.safe_load(made.read_text(encoding="utf-8")) or {}).get("lang") if made.is_file() else None
    if lang is None and (decode_dir / "utt2lang").is_file():
        langs = set(read_table(decode_dir / "utt2lang").values())
        lang = langs.pop() if len(langs) == 1 else None
    return lang


def datasets(systems: list[System]) -> list[str]:
    return sorted({name for s in systems for name in s.decodes})


def comparisons(systems: list[System], options: ScoreOptions) -> dict[tuple[str, str], bootstrap.Comparison]:
    """Paired bootstrap of each system against the first, per dataset both decoded on the same units."""
    out = {}
    base = systems[0]
    for system in systems[1:]:
        for name in datasets(systems):
            if name in base.decodes and name in system.decodes:
                a = unit_counts(base.decodes[name][0], options.unit)
                b = unit_counts(system.decodes[name][0], options.unit)
                if a.keys() == b.keys() and all(a[k][1] == b[k][1] for k in a):
                    keys = sorted(a)
                    out[(system.name, name)] = bootstrap.compare(
                        np.array([a[k][0] for k in keys]),
                        np.array([b[k][0] for k in keys]),
                        np.array([a[k][1] for k in keys]),
                        n_resamples=options.n_resamples,
                        seed=options.seed,
                    )
    return out


def wer_table(systems: list[System], comps: dict[tuple[str, str], bootstrap.Comparison]) -> Table:
    """Rows: datasets and their average; columns: systems. Best per row in bold; dagger = significant."""
    names = datasets(systems)
    header = ["dataset"] + [s.name for s in systems]
    rows = []
    for name in names:
        wers = [s.decodes[name][0].total.wer if name in s.decodes else math.nan for s in systems]
        top = best(wers)
        cells = []
        for s, w in zip(systems, wers, strict=True):
            if math.isnan(w):
                cells.append("–")
                continue
            text = f"{w:.2f}"
            if len(systems) == 1:
                ci = s.decodes[name][1]["total"].get("wer_ci")
                text += f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else ""
            comp = comps.get((s.name, name))
            text += " †" if comp and comp.significant else ""
            cells.append(_bold(text) if w == top else text)
        rows.append([name] + cells)
    complete = [n for n in names if all(n in s.decodes for s in systems)]
    if len(complete) > 1:
        avgs = [float(np.mean([s.decodes[n][0].total.wer for n in complete])) for s in systems]
        top = best(avgs)
        rows.append(["average"] + [_bold(f"{a:.2f}") if a == top else f"{a:.2f}" for a in avgs])
    return header, rows


def significance_table(systems: list[System], comps: dict[tuple[str, str], bootstrap.Comparison]) -> Table:
    header = ["dataset", "system", f"WER {systems[0].name}", "WER system", "Δ WER [95% CI]", "P(improvement)"]
    rows = [
        [
            name,
            sys_name,
            f"{c.a.value:.2f}",
            f"{c.b.value:.2f}",
            f"{c.diff.value:+.2f} [{c.diff.low:+.2f}, {c.diff.high:+.2f}]" + (" †" if c.significant else ""),
            f"{c.p_improvement:.3f}",
        ]
        for (sys_name, name), c in sorted(comps.items(), key=lambda kv: kv[0][::-1])
    ]
    return header, rows


def breakdown_table(systems: list[System]) -> Table:
    """Per dataset and system: WER with interval, S/D/I, CER, SER, missing hypotheses."""
    header = [
        "dataset",
        "system",
        "WER [95% CI]",
        "sub",
        "del",
        "ins",
        "#words",
        "CER",
        "SER",
        "#snt",
        "missing",
    ]
    rows = []
    for name in datasets(systems):
        for s in systems:
            if name in s.decodes:
                result, data = s.decodes[name]
                t, ci = result.total, data["total"].get("wer_ci")
                rows.append(
                    [
                        name,
                        s.name,
                        f"{t.wer:.2f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else ""),
                        str(t.words.sub),
                        str(t.words.dels),
                        str(t.words.ins),
                        str(t.words.ref_len),
                        f"{t.cer:.2f}",
                        f"{t.ser:.2f}",
                        str(t.sentences),
                        str(len(result.missing)),
                    ]
                )
    return header, rows


def group_table(systems: list[System], key: str) -> Table | None:
    """WER per domain or language within each dataset, where a dataset has more than one."""
    header = ["dataset", key] + [s.name for s in systems]
    rows = []
    for name in datasets(systems):
        groups = sorted({g for s in systems if name in s.decodes for g in s.decodes[name][1]["groups"][key]})
        if len(groups) < 2:
            continue
        for g in groups:
            cells = []
            for s in systems:
                info = s.decodes[name][1]["groups"][key].get(g) if name in s.decodes else None
                ci = info.get("wer_ci") if info else None
                cells.append(
                    "–"
                    if info is None
                    else f"{info['wer']:.2f}" + (f" [{ci['low']:.2f}, {ci['high']:.2f}]" if ci else "")
                )
            rows.append([name, g] + cells)
    return (header, rows) if rows else None


def confusion_table(system: System, top: int = 10) -> Table:
    total: dict[tuple[str, str], int] = {}
    for result, _ in system.decodes.values():
        for pair, n in result.confusions.items():
            total[pair] = total.get(pair, 0) + n
    best = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return ["ref", "hyp", "count"], [[r, h, str(n)] for (r, h), n in best]


def worst_utterances(system: System, top: int = 5) -> list[tuple[str, UttScore]]:
    """The utterances with the most word errors over all of the system's datasets."""
    utts = [(name, u) for name, (result, _) in system.decodes.items() for u in result.utts]
    return sorted(utts, key=lambda x: (-x[1].words.errors, x[0], x[1].utt))[:top]


def aligned(u: UttScore) -> str:
    """sclite-style REF/HYP lines: errors upper-cased, gaps as asterisks.

    Example:
        >>> from asr_transfer.score import score_texts
        >>> print(aligned(score_texts({"u": "the cat sat"}, {"u": "the hat sat on"}).utts[0]))
        REF: the CAT sat **
        HYP: the HAT sat ON
                 S       I
    """
    out = jiwer.process_words(u.ref, u.hyp)
    ref_w, hyp_w = out.references[0], out.hypotheses[0]
    ref_t, hyp_t, ops = [], [], []
    for c in out.alignments[0]:
        rs, hs = ref_w[c.ref_start_idx : c.ref_end_idx], hyp_w[c.hyp_start_idx : c.hyp_end_idx]
        for i in range(max(len(rs), len(hs))):
            r, h = (rs[i] if i < len(rs) else None), (hs[i] if i < len(hs) else None)
            if c.type == "equal":
                r_, h_, op = r, h, ""
            else:
                r_, h_ = (r or "").upper(), (h or "").upper()
                r_ = r_ or "*" * len(h_)
                h_ = h_ or "*" * len(r_)
                op = {"substitute": "S", "delete": "D", "insert": "I"}[c.type]
            width = max(len(r_), len(h_), len(op))
            ref_t.append(r_.ljust(width))
            hyp_t.append(h_.ljust(width))
            ops.append(op.ljust(width))
    return "\n".join(
        f"{tag}{' '.join(parts)}".rstrip()
        for tag, parts in (("REF: ", ref_t), ("HYP: ", hyp_t), ("     ", ops))
    )


def best(values: list[float]) -> float | None:
    """The value a WER row marks in bold: the lowest of at least two that are not NaN, else ``None``
    (a row that only one system decoded has nothing to compare).

    Example:
        >>> best([3.0, 2.5, math.nan]), best([3.0, math.nan]), best([4.0])
        (2.5, None, None)
    """
    finite = [v for v in values if not math.isnan(v)]
    return min(finite) if len(finite) >= 2 else None


def _bold(text: str) -> str:
    return f"**{text}**"
