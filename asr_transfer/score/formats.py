"""Score outputs: Kaldi summary lines, sclite ``trn`` files, ``wer.json`` and a readable table."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from asr_transfer.score.bootstrap import Interval
from asr_transfer.score.scoring import Counts, GroupScore, ScoreResult, UttScore
from asr_transfer.text.normalize import Normalizer
from asr_transfer.util.atomic import write_text

GROUP_KEYS = ("spk", "domain", "lang")
_TOP_CONFUSIONS = 100


def kaldi_lines(total: GroupScore, missing: int = 0) -> str:
    """The summary lines of Kaldi's ``compute-wer`` (plus ``%CER``), newline-terminated.

    Example:
        >>> g = GroupScore(Counts(hits=113, sub=19, dels=10, ins=6), Counts(hits=9, sub=1), 300, 198)
        >>> print(kaldi_lines(g), end="")
        %WER 24.65 [ 35 / 142, 6 ins, 10 del, 19 sub ]
        %CER 10.00 [ 1 / 10, 0 ins, 0 del, 1 sub ]
        %SER 66.00 [ 198 / 300 ]
        Scored 300 sentences, 0 not present in hyp.
    """
    lines = [
        f"%{name} {_fmt(c.rate)} [ {c.errors} / {c.ref_len}, {c.ins} ins, {c.dels} del, {c.sub} sub ]"
        for name, c in (("WER", total.words), ("CER", total.chars))
    ]
    lines.append(f"%SER {_fmt(total.ser)} [ {total.sentence_errors} / {total.sentences} ]")
    lines.append(f"Scored {total.sentences} sentences, {missing} not present in hyp.")
    return "\n".join(lines) + "\n"


def trn_lines(texts: dict[str, str], utt2spk: dict[str, str]) -> list[str]:
    """sclite ``trn`` lines ``words (spk-utt)``, the form ESPnet writes.

    Example:
        >>> trn_lines({"s1_u1": "a b", "s1_u2": ""}, {"s1_u1": "s1", "s1_u2": "s1"})
        ['a b (s1-s1_u1)', ' (s1-s1_u2)']
    """
    return [f"{texts[u]} ({utt2spk.get(u, u)}-{u})" for u in sorted(texts)]


def write_outputs(
    result: ScoreResult, out: Path, meta: dict, intervals: dict[str, dict[str, Interval]]
) -> None:
    """Write ``ref.trn``, ``hyp.trn``, ``result.txt`` and ``wer.json`` into ``out``.

    ``intervals`` maps ``"total"`` and each group key to ``{name: Interval}``.
    """
    out.mkdir(parents=True, exist_ok=True)
    spk = {u.utt: u.spk or u.utt for u in result.utts}
    for name, texts in (
        ("ref", {u.utt: u.ref for u in result.utts}),
        ("hyp", {u.utt: u.hyp for u in result.utts}),
    ):
        _write(out / f"{name}.trn", "".join(line + "\n" for line in trn_lines(texts, spk)))
    _write(out / "result.txt", kaldi_lines(result.total, len(result.missing)))
    _write(
        out / "wer.json", json.dumps(to_json(result, meta, intervals), indent=1, ensure_ascii=False) + "\n"
    )


def to_json(result: ScoreResult, meta: dict, intervals: dict[str, dict[str, Interval]]) -> dict:
    """Everything about a score as plain data; :func:`from_json` reads it back."""

    def with_ci(group: GroupScore, ci: Interval | None) -> dict:
        return group.as_dict() | ({"wer_ci": ci.as_dict()} if ci else {})

    return {
        **meta,
        "normalizer": vars(result.normalizer),
        "total": with_ci(result.total, intervals.get("total", {}).get("all")),
        "missing": result.missing,
        "groups": {
            key: {
                name: with_ci(g, intervals.get(key, {}).get(name)) for name, g in result.groups(key).items()
            }
            for key in GROUP_KEYS
        },
        "confusions": [[r, h, n] for (r, h), n in result.confusions.most_common(_TOP_CONFUSIONS)],
        "utterances": [
            {
                "utt": u.utt,
                "spk": u.spk,
                "domain": u.domain,
                "lang": u.lang,
                "missing": u.missing,
                "ref": u.ref,
                "hyp": u.hyp,
                "words": _counts_list(u.words),
                "chars": _counts_list(u.chars),
            }
            for u in result.utts
        ],
    }


def from_json(data: dict) -> ScoreResult:
    """Rebuild a :class:`ScoreResult` from :func:`to_json` output (top confusions only)."""
    utts = [
        UttScore(
            utt=d["utt"],
            ref=d["ref"],
            hyp=d["hyp"],
            words=Counts(*d["words"]),
            chars=Counts(*d["chars"]),
            spk=d["spk"],
            domain=d["domain"],
            lang=d["lang"],
            missing=d["missing"],
        )
        for d in data["utterances"]
    ]
    return ScoreResult(
        utts, Normalizer(**data["normalizer"]), Counter({(r, h): n for r, h, n in data["confusions"]})
    )


def summary_table(result: ScoreResult, intervals: dict[str, dict[str, Interval]]) -> str:
    """A plain-text table: totals, then one row per domain, language and speaker."""
    header = (
        f"{'group':<24} {'#snt':>6} {'#wrd':>7} {'WER':>7} {'95% CI':>15} {'sub':>5} {'del':>5} {'ins':>5} "
        f"{'CER':>7} {'SER':>7}"
    )
    rows = [header, "-" * len(header)]

    def row(label: str, g: GroupScore, ci: Interval | None) -> str:
        ci_text = f"[{ci.low:.2f}, {ci.high:.2f}]" if ci else ""
        return (
            f"{label[:24]:<24} {g.sentences:>6} {g.words.ref_len:>7} {_fmt(g.wer):>7} {ci_text:>15} "
            f"{g.words.sub:>5} {g.words.dels:>5} {g.words.ins:>5} {_fmt(g.cer):>7} {_fmt(g.ser):>7}"
        )

    rows.append(row("all", result.total, intervals.get("total", {}).get("all")))
    for key in ("domain", "lang", "spk"):
        groups = result.groups(key)
        if len(groups) > 1:
            rows.append("")
            rows += [row(f"{key}={name}", g, intervals.get(key, {}).get(name)) for name, g in groups.items()]
    return "\n".join(rows)


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.2f}"


def _counts_list(c: Counts) -> list[int]:
    return [c.hits, c.sub, c.dels, c.ins]


def _write(path: Path, text: str) -> None:
    # atomic, so an interrupted run never leaves a half-written score behind a valid-looking cache
    write_text(path, text)
