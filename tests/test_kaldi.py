"""Kaldi data dir tables: parsing, writing, and problems named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli, cli_as_user

from asr_transfer.data.kaldi import (
    DataError,
    check_data_dir,
    load_data_dir,
    read_table,
    write_data_dir,
    write_table,
)


def test_read_table_keeps_file_order_and_values_with_spaces(tmp_path):
    path = tmp_path / "text"
    path.write_text("b hello  world\na x\n")
    assert read_table(path) == {"b": "hello  world", "a": "x"}


def test_read_table_duplicate_id_names_both_lines(tmp_path):
    path = tmp_path / "text"
    path.write_text("a one\nb two\na three\n")
    with pytest.raises(DataError, match=rf"^{path}:3: duplicate utterance id 'a' \(first on line 1\)$"):
        read_table(path)


@pytest.mark.parametrize(
    ("content", "line", "what"),
    [("a one\nb\n", 2, "utterance 'b': line has an id but no value"), ("a one\n\nb two\n", 2, "empty line")],
)
def test_read_table_malformed_line(tmp_path, content, line, what):
    path = tmp_path / "utt2spk"
    path.write_text(content)
    with pytest.raises(DataError, match=f"^{path}:{line}: {what}$"):
        read_table(path)


def test_read_table_allows_empty_values_when_asked(tmp_path):
    path = tmp_path / "text"
    path.write_text("a\n")
    assert read_table(path, allow_empty_value=True) == {"a": ""}


def test_read_table_missing_file(tmp_path):
    with pytest.raises(DataError, match="missing file"):
        read_table(tmp_path / "nope")


def test_write_table_sorts_and_leaves_no_temporary_file(tmp_path):
    write_table(tmp_path / "t", {"b": "2", "a": "1", "A": "0"})
    assert (tmp_path / "t").read_text() == "A 0\na 1\nb 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_write_table_rejects_ids_with_spaces(tmp_path):
    with pytest.raises(DataError, match="whitespace"):
        write_table(tmp_path / "t", {"a b": "1"})


def test_write_then_load_round_trip(tmp_path):
    d = tmp_path / "d"
    write_data_dir(
        d,
        wav={"s2-b": "/x/b.flac", "s1-a": "/x/a.flac", "s1-c": "/x/c.flac"},
        text={"s2-b": "two", "s1-a": "one", "s1-c": "three"},
        utt2spk={"s2-b": "s2", "s1-a": "s1", "s1-c": "s1"},
        utt2lang={"s2-b": "en", "s1-a": "en", "s1-c": "en"},
        utt2domain={"s2-b": "clean", "s1-a": "clean", "s1-c": "rain"},
        utt2dur={"s2-b": 1.5, "s1-a": 0.25, "s1-c": 2.0},
    )
    assert (d / "spk2utt").read_text() == "s1 s1-a s1-c\ns2 s2-b\n"
    data = load_data_dir(d)
    assert data.utts == ["s1-a", "s1-c", "s2-b"]
    assert data.utt2dur == {"s1-a": 0.25, "s1-c": 2.0, "s2-b": 1.5}
    assert data.utt2domain["s1-c"] == "rain"


def test_write_data_dir_removes_stale_optional_tables(tmp_path):
    common = {"wav": {"s1-a": "/x/a.flac"}, "utt2spk": {"s1-a": "s1"}}
    write_data_dir(tmp_path, text={"s1-a": "hi"}, utt2lang={"s1-a": "en"}, **common)
    write_data_dir(tmp_path, text={"s1-a": "hi"}, **common)
    assert not (tmp_path / "utt2lang").exists()


def test_write_data_dir_rejects_mismatched_tables(tmp_path):
    with pytest.raises(DataError, match="ids differ from wav.scp"):
        write_data_dir(tmp_path, wav={"s1-a": "/a"}, text={"s1-b": "x"}, utt2spk={"s1-a": "s1"})


def _write(d, **files):
    d.mkdir(exist_ok=True)
    for name, content in files.items():
        (d / name.replace("_scp", ".scp")).write_text(content)


def test_load_names_ids_missing_from_wav_scp_and_vice_versa(tmp_path):
    _write(
        tmp_path,
        wav_scp="s1-a /a.wav\ns1-b /b.wav\n",
        text="s1-a hi\ns1-c extra\n",
        utt2spk="s1-a s1\ns1-b s1\n",
        spk2utt="s1 s1-a s1-b\n",
    )
    with pytest.raises(DataError) as err:
        load_data_dir(tmp_path)
    message = str(err.value)
    assert f"{tmp_path / 'text'}:2: utterance 's1-c' is not in wav.scp" in message
    assert f"{tmp_path / 'wav.scp'}:2: utterance 's1-b' has no entry in text" in message


def test_check_collects_every_problem(tmp_path):
    _write(
        tmp_path,
        wav_scp="s1-b /b.wav\ns1-a /a.wav\ns1-a /c.wav\ns1-d cmd |\n",
        text="s1-b hi\ns1-a yo\ns1-d x\n",
        utt2spk="s1-b s1\ns1-a s1\ns1-d s1\n",
        spk2utt="s1 s1-a s1-b\n",
        utt2dur="s1-b 1\ns1-a zero\ns1-d 0\n",
    )
    data, problems = check_data_dir(tmp_path)
    assert data is not None
    wav = tmp_path / "wav.scp"
    expected = [
        f"{wav}:3: duplicate utterance id 's1-a' (first on line 2)",
        f"{wav}:2: id 's1-a' is out of order (after 's1-b' on line 1)",
        f"{wav}:4: piped commands are not supported",
        f"{tmp_path / 'utt2dur'}:2: utterance 's1-a': duration 'zero' is not a number",
        f"{tmp_path / 'utt2dur'}:3: utterance 's1-d': duration 0 is not positive",
        f"{tmp_path / 'spk2utt'}:1: utterances of speaker 's1' differ from utt2spk",
    ]
    for message in expected:
        assert any(p.startswith(message) for p in problems), (message, problems)


def test_missing_required_files_are_named(tmp_path):
    _write(tmp_path, wav_scp="s1-a /a.wav\n")
    data, problems = check_data_dir(tmp_path)
    assert data is None
    assert f"{tmp_path / 'text'}: missing file" in problems
    assert f"{tmp_path / 'utt2spk'}: missing file" in problems


def test_text_is_optional_when_not_required(tmp_path):
    write_data_dir(tmp_path, wav={"s1-a": "/a.wav"}, utt2spk={"s1-a": "s1"})
    assert load_data_dir(tmp_path, require_text=False).text is None
    with pytest.raises(DataError, match="text: missing file"):
        load_data_dir(tmp_path)


def test_subset_cuts_every_table_of_a_real_data_dir_to_a_seeded_draw(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    src = tiny_corpus / "en_train_clean"
    whole = load_data_dir(src)
    n = len(whole.utts) // 2
    assert cli("subset", src, "--utts", n, "--out", tmp_path / "half") == 0
    half = load_data_dir(tmp_path / "half")
    assert len(half.utts) == n and set(half.utts) < set(whole.utts)
    for table in ("wav", "text", "utt2spk", "utt2lang", "utt2domain"):
        assert getattr(half, table) == {u: getattr(whole, table)[u] for u in half.utts}, table
    assert half.utt2dur == pytest.approx({u: whole.utt2dur[u] for u in half.utts}, rel=1e-5)
    # the same seed, the same draw; another seed, another draw; no temporary dir left behind
    assert cli("subset", src, "--utts", n, "--out", tmp_path / "again") == 0
    assert load_data_dir(tmp_path / "again").utts == half.utts
    assert cli("subset", src, "--utts", n, "--seed", "3", "--out", tmp_path / "other") == 0
    assert load_data_dir(tmp_path / "other").utts != half.utts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "half", "other"]
    # more utterances than the dir holds: one line naming the dir, nothing written
    assert cli_as_user("subset", src, "--utts", len(whole.utts) + 1, "--out", tmp_path / "more") == 2
    assert not (tmp_path / "more").exists()
