"""Kaldi data directories: read and write the ``<id> <value>`` tables, load a whole dir.

A data dir holds ``wav.scp``, ``text`` and ``utt2spk``, and optionally ``spk2utt`` (derived from
``utt2spk`` when absent, checked against it when present), ``utt2dur``, ``utt2lang`` and
``utt2domain``. Every problem is reported as ``<file>:<line>: <what>`` so a user
can jump straight to it; :func:`check_data_dir` collects all problems, :func:`load_data_dir`
raises them as one :class:`DataError`.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from asr_transfer.util.atomic import atomic_dir, write_text

#: Tables that :func:`write_data_dir` manages (spk2utt is derived from utt2spk).
OPTIONAL_TABLES = ("text", "utt2lang", "utt2domain", "utt2dur")


class DataError(ValueError):
    """A problem in a data dir or an audio file; the message names the file and line."""


@dataclass(frozen=True)
class Entry:
    """One parsed table line; ``line`` is 1-based."""

    line: int
    key: str
    value: str


def parse_table(path: str | os.PathLike, *, allow_empty_value: bool = False) -> tuple[list[Entry], list[str]]:
    """Parse a table leniently: every well-formed line, and a message for each bad one.

    Duplicates are reported (the first occurrence is kept). A missing file is one problem.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "text"
        >>> _ = p.write_text("a hello\\nb\\na again\\n")
        >>> entries, problems = parse_table(p)
        >>> [(e.line, e.key, e.value) for e in entries]
        [(1, 'a', 'hello')]
        >>> [q.split(": ", 1)[1] for q in problems]
        ["utterance 'b': line has an id but no value", "duplicate utterance id 'a' (first on line 1)"]
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], [f"{path}: missing file"]
    except OSError as err:
        return [], [f"{path}: cannot read: {err.strerror or err}"]
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        return [], [f"{path}:{line}: not valid UTF-8"]
    entries: list[Entry] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    kind = "speaker" if path.name == "spk2utt" else "utterance"
    lines = content.split("\n")
    if lines[-1] == "":
        lines.pop()  # what follows the final newline
    for lineno, line in enumerate(lines, start=1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            problems.append(f"{path}:{lineno}: empty line")
            continue
        key = parts[0]
        value = parts[1].strip() if len(parts) > 1 else ""
        if not value and not allow_empty_value:
            problems.append(f"{path}:{lineno}: {kind} '{key}': line has an id but no value")
            continue
        if key in first_line:
            problems.append(f"{path}:{lineno}: duplicate {kind} id '{key}' (first on line {first_line[key]})")
            continue
        first_line[key] = lineno
        entries.append(Entry(lineno, key, value))
    return entries, problems


def read_table(path: str | os.PathLike, *, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a ``<id> <value>`` table in file order; :class:`DataError` on the first problem.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "utt2spk"
        >>> _ = p.write_text("s1-a s1\\ns1-b s1\\n")
        >>> read_table(p)
        {'s1-a': 's1', 's1-b': 's1'}
    """
    entries, problems = parse_table(path, allow_empty_value=allow_empty_value)
    if problems:
        raise DataError(problems[0])
    return {e.key: e.value for e in entries}


def write_table(path: str | os.PathLike, mapping: Mapping[str, str]) -> None:
    """Write ``mapping`` sorted by key, atomically (:func:`~asr_transfer.util.atomic.write_text`).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "text"
        >>> write_table(p, {"b": "two", "a": "one"})
        >>> p.read_text()
        'a one\\nb two\\n'
    """
    path = Path(path)
    lines = []
    for key in sorted(mapping):
        value = str(mapping[key])
        if not key or any(ch.isspace() for ch in key):
            raise DataError(f"{path}: id {key!r} is empty or contains whitespace")
        if "\n" in value or "\r" in value:
            raise DataError(f"{path}: value of {key!r} contains a line break")
        lines.append(f"{key} {value}".rstrip() + "\n")
    write_text(path, "".join(lines))


@dataclass
class DataDir:
    """An in-memory Kaldi data dir; tables map utterance id to value."""

    path: Path
    wav: dict[str, str]
    text: dict[str, str] | None
    utt2spk: dict[str, str]
    utt2lang: dict[str, str] | None = None
    utt2domain: dict[str, str] | None = None
    utt2dur: dict[str, float] | None = None

    @property
    def utts(self) -> list[str]:
        """Utterance ids, sorted."""
        return sorted(self.wav)

    def audio_path(self, utt: str) -> Path:
        """The audio file of ``utt``; relative paths resolve against the current directory, as in Kaldi."""
        return Path(self.wav[utt])


def check_data_dir(
    path: str | os.PathLike, *, require_text: bool = True, skip_text: bool = False
) -> tuple[DataDir | None, list[str]]:
    """Read a data dir and collect every table-level problem (audio is not opened).

    ``skip_text``: never open ``text`` (then ``text`` is ``None``), so that unsupervised
    adaptation provably cannot read the target domain's transcripts.

    Returns the dir (``None`` when ``wav.scp`` or ``utt2spk`` is unusable) and the problems,
    each naming file and line: malformed lines, duplicate or unsorted ids, ids of one table
    missing from ``wav.scp`` and vice versa, an inconsistent ``spk2utt``, piped ``wav.scp``
    entries, and non-numeric or non-positive durations.
    """
    path = Path(path)
    problems: list[str] = []
    if not path.is_dir():
        return None, [f"{path}: not a directory"]

    def table(name: str, *, optional: bool) -> list[Entry] | None:
        file = path / name
        if not file.exists():
            if not optional:
                problems.append(f"{file}: missing file")
            return None
        entries, found = parse_table(file)
        problems.extend(found)
        problems.extend(_order_problems(file, entries))
        return entries

    wav_e = table("wav.scp", optional=False)
    text_e = None if skip_text else table("text", optional=not require_text)
    spk_e = table("utt2spk", optional=False)
    tables = {name: table(name, optional=True) for name in ("utt2lang", "utt2domain", "utt2dur")}
    if wav_e is None or spk_e is None:
        return None, problems

    wav_ids = {e.key for e in wav_e}
    for e in wav_e:
        if e.value.endswith("|") or e.value.startswith("|"):
            problems.append(f"{path / 'wav.scp'}:{e.line}: piped commands are not supported: {e.value!r}")
    for name, entries in [("text", text_e), ("utt2spk", spk_e), *tables.items()]:
        if entries is None:
            continue
        ids = {e.key for e in entries}
        for e in entries:
            if e.key not in wav_ids:
                problems.append(f"{path / name}:{e.line}: utterance '{e.key}' is not in wav.scp")
        for e in wav_e:
            if e.key not in ids:
                problems.append(f"{path / 'wav.scp'}:{e.line}: utterance '{e.key}' has no entry in {name}")

    utt2dur: dict[str, float] | None = None
    if tables["utt2dur"] is not None:
        utt2dur = {}
        for e in tables["utt2dur"]:
            where = f"{path / 'utt2dur'}:{e.line}: utterance '{e.key}'"
            try:
                utt2dur[e.key] = float(e.value)
            except ValueError:
                problems.append(f"{where}: duration {e.value!r} is not a number")
                continue
            if not utt2dur[e.key] > 0:
                problems.append(f"{where}: duration {e.value} is not positive")

    utt2spk = {e.key: e.value for e in spk_e}
    problems.extend(_spk2utt_problems(path / "spk2utt", utt2spk))

    def as_dict(entries: list[Entry] | None) -> dict[str, str] | None:
        return None if entries is None else {e.key: e.value for e in entries}

    data = DataDir(
        path=path,
        wav=as_dict(wav_e) or {},
        text=as_dict(text_e),
        utt2spk=utt2spk,
        utt2lang=as_dict(tables["utt2lang"]),
        utt2domain=as_dict(tables["utt2domain"]),
        utt2dur=utt2dur,
    )
    return data, problems


def _order_problems(file: Path, entries: list[Entry]) -> list[str]:
    # Kaldi tools merge tables by walking them in C-locale order, so unsorted files break them silently.
    return [
        f"{file}:{cur.line}: id '{cur.key}' is out of order (after '{prev.key}' on line {prev.line})"
        for prev, cur in itertools.pairwise(entries)
        if cur.key < prev.key
    ]


def _spk2utt_problems(file: Path, utt2spk: dict[str, str]) -> list[str]:
    if not file.exists():
        return []  # nothing here reads it: it is utt2spk inverted (utils/utt2spk_to_spk2utt.pl)
    entries, problems = parse_table(file)
    problems = problems + _order_problems(file, entries)
    expected = _spk2utt(utt2spk)
    for e in entries:
        utts = e.value.split()
        if e.key not in expected:
            problems.append(f"{file}:{e.line}: speaker '{e.key}' does not appear in utt2spk")
        elif sorted(utts) != expected[e.key].split():
            problems.append(f"{file}:{e.line}: utterances of speaker '{e.key}' differ from utt2spk")
    listed = {e.key for e in entries}
    problems.extend(
        f"{file}: speaker '{spk}' of utt2spk is missing" for spk in sorted(set(expected) - listed)
    )
    return problems


def load_data_dir(path: str | os.PathLike, *, require_text: bool = True, skip_text: bool = False) -> DataDir:
    """Load a data dir; :class:`DataError` listing every problem (each with file and line).

    ``skip_text``: do not open ``text`` at all (see :func:`check_data_dir`).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> write_data_dir(d, wav={"s1-a": "/x/a.flac"}, text={"s1-a": "hi"}, utt2spk={"s1-a": "s1"})
        >>> load_data_dir(d).utts
        ['s1-a']
        >>> _ = (Path(d) / "text").write_bytes(b"\\xff garbage")
        >>> load_data_dir(d, skip_text=True).text is None
        True
    """
    data, problems = check_data_dir(path, require_text=require_text, skip_text=skip_text)
    if problems or data is None:
        raise DataError("\n".join(problems))
    return data


def write_data_dir(
    path: str | os.PathLike,
    *,
    wav: Mapping[str, str],
    text: Mapping[str, str] | None = None,
    utt2spk: Mapping[str, str],
    utt2lang: Mapping[str, str] | None = None,
    utt2domain: Mapping[str, str] | None = None,
    utt2dur: Mapping[str, float] | None = None,
) -> None:
    """Write a data dir (sorted tables and the derived ``spk2utt``).

    Every table must cover exactly the ids of ``wav``. Optional tables that are not given are
    removed, so a rewritten dir never keeps a stale table from an earlier run.
    """
    path = Path(path)
    tables: dict[str, Mapping[str, str] | None] = {
        "text": text,
        "utt2spk": utt2spk,
        "utt2lang": utt2lang,
        "utt2domain": utt2domain,
        "utt2dur": None if utt2dur is None else {k: f"{float(v):.6g}" for k, v in utt2dur.items()},
    }
    for name, mapping in tables.items():
        if mapping is not None and set(mapping) != set(wav):
            extra, missing = (
                sorted(set(mapping) - set(wav)),
                sorted(set(wav) - set(mapping)),
            )
            raise DataError(
                f"{path / name}: ids differ from wav.scp (extra: {extra[:5]}, missing: {missing[:5]})"
            )
    write_table(path / "wav.scp", wav)
    for name, mapping in tables.items():
        if mapping is not None:
            write_table(path / name, mapping)
        elif name in OPTIONAL_TABLES:
            (path / name).unlink(missing_ok=True)
    write_table(path / "spk2utt", _spk2utt(utt2spk))


def _spk2utt(utt2spk: Mapping[str, str]) -> dict[str, str]:
    spk2utts: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        spk2utts.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utts.items()}


def subset_data_dir(src: str | os.PathLike, out: str | os.PathLike, utts: int, seed: int = 17) -> list[str]:
    """Write ``out``: the data dir ``src`` cut to ``utts`` utterances drawn at random (Kaldi's
    ``utils/subset_data_dir.sh``), every table filtered; returns the chosen ids, sorted.

    The draw is ``random.Random(seed).sample`` over the sorted ids: the same subset on every machine.
    ``out`` appears whole or not at all (:func:`~asr_transfer.util.atomic.atomic_dir`).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> ids = [f"s{i % 3}-u{i}" for i in range(10)]
        >>> write_data_dir(d / "all", wav={u: f"{u}.wav" for u in ids}, text=dict.fromkeys(ids, "hi"),
        ...                utt2spk={u: u.split("-")[0] for u in ids})
        >>> chosen = subset_data_dir(d / "all", d / "four", 4)
        >>> len(chosen), load_data_dir(d / "four").utts == chosen
        (4, True)
        >>> subset_data_dir(d / "all", d / "again", 4) == chosen  # seeded: the same draw
        True
    """
    data = load_data_dir(src, require_text=False)
    if not 0 < utts <= len(data.wav):
        raise DataError(f"{src}: {utts} utterances asked, it holds {len(data.wav)}")
    chosen = sorted(random.Random(seed).sample(data.utts, utts))

    def cut(table: Mapping | None) -> dict | None:
        return None if table is None else {u: table[u] for u in chosen}

    tables = {
        "text": data.text,
        "utt2lang": data.utt2lang,
        "utt2domain": data.utt2domain,
        "utt2dur": data.utt2dur,
    }
    with atomic_dir(out) as tmp:
        write_data_dir(
            tmp, wav=cut(data.wav), utt2spk=cut(data.utt2spk), **{k: cut(v) for k, v in tables.items()}
        )
    return chosen
