"""Scoring counts against hand computations, output formats, bad input, and sclite agreement."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from asr_transfer.cli import main
from asr_transfer.score import score_texts
from asr_transfer.score.formats import kaldi_lines
from asr_transfer.score.scoring import Counts, GroupScore
from asr_transfer.text.normalize import Normalizer

SCLITE = shutil.which("sclite") or (
    "/usr/lib/sctk/bin/sclite" if Path("/usr/lib/sctk/bin/sclite").exists() else None
)


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Textbook unit-cost Levenshtein distance, independent of jiwer."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


# (ref, hyp, hits, sub, del, ins): each alignment is unique, counted by hand
HAND_CASES = [
    ("a b c d", "a b c d", 4, 0, 0, 0),
    ("a b c d", "a x c d", 3, 1, 0, 0),
    ("a b c d", "a c d", 3, 0, 1, 0),
    ("a b c d", "a b y c d", 4, 0, 0, 1),
    ("a b c", "", 0, 0, 3, 0),  # empty hypothesis
    ("", "x y", 0, 0, 0, 2),  # empty reference
    ("", "", 0, 0, 0, 0),
    ("the cat sat", "the the cat sat down", 3, 0, 0, 2),
    ("one two three four five", "one three four five six", 4, 0, 1, 1),
]


@pytest.mark.parametrize(("ref", "hyp", "hits", "sub", "dels", "ins"), HAND_CASES)
def test_counts_match_hand_computation(ref, hyp, hits, sub, dels, ins):
    r = score_texts({"u": ref}, {"u": hyp})
    assert r.total.words == Counts(hits, sub, dels, ins)
    assert r.total.sentence_errors == (1 if sub + dels + ins else 0)


def test_totals_match_independent_edit_distance_on_random_pairs():
    rng = random.Random(3)
    vocab = "a b c d e f".split()
    ref, hyp = {}, {}
    for i in range(200):
        ref[f"u{i:03d}"] = " ".join(rng.choices(vocab, k=rng.randint(1, 8)))
        hyp[f"u{i:03d}"] = " ".join(rng.choices(vocab, k=rng.randint(0, 8)))
    r = score_texts(ref, hyp)
    expected = sum(edit_distance(ref[u].split(), hyp[u].split()) for u in ref)
    assert r.total.words.errors == expected
    assert r.total.words.ref_len == sum(len(t.split()) for t in ref.values())
    chars = sum(edit_distance(list(ref[u]), list(hyp[u])) for u in ref)
    assert r.total.chars.errors == chars
    wrong = sum(edit_distance(ref[u].split(), hyp[u].split()) > 0 for u in ref)
    assert r.total.sentence_errors == wrong
    assert r.total.ser == pytest.approx(100.0 * wrong / 200)  # per sentence, not per word


def test_normalisation_applies_to_both_sides_and_is_configurable():
    ref, hyp = {"u": "Hello, World!"}, {"u": "hello world"}
    assert score_texts(ref, hyp).total.words.errors == 0
    strict = Normalizer("en", lowercase=False, remove_punct=False)
    assert score_texts(ref, hyp, normalizer=strict).total.words.sub == 2


def test_groups_per_speaker_domain_language():
    ref = {"s1-a": "a b", "s1-b": "c d", "s2-a": "e f"}
    hyp = {"s1-a": "a b", "s1-b": "c", "s2-a": "x f"}
    r = score_texts(
        ref,
        hyp,
        utt2spk={"s1-a": "s1", "s1-b": "s1", "s2-a": "s2"},
        utt2domain={"s1-a": "clean", "s1-b": "rain", "s2-a": "rain"},
    )
    spk = r.groups("spk")
    assert (spk["s1"].words.dels, spk["s1"].words.ref_len, spk["s1"].sentence_errors) == (1, 4, 1)
    assert spk["s2"].words.sub == 1
    assert r.groups("domain")["rain"].wer == pytest.approx(50.0)
    assert r.groups("lang") == {}


def test_kaldi_lines_exact_format():
    g = GroupScore(Counts(hits=113, sub=19, dels=10, ins=6), Counts(hits=90, sub=5, dels=3, ins=2), 300, 198)
    lines = kaldi_lines(g, missing=2).splitlines()
    assert lines[0] == "%WER 24.65 [ 35 / 142, 6 ins, 10 del, 19 sub ]"
    assert lines[1] == "%CER 10.20 [ 10 / 98, 2 ins, 3 del, 5 sub ]"
    assert lines[2] == "%SER 66.00 [ 198 / 300 ]"
    assert lines[3] == "Scored 300 sentences, 2 not present in hyp."


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_cli_writes_trn_result_and_json(tmp_path, capsys):
    ref = _write(tmp_path / "data" / "text", "s1-u1 The cat sat\ns1-u2 Hello there\ns2-u1 one two\n")
    _write(tmp_path / "data" / "utt2spk", "s1-u1 s1\ns1-u2 s1\ns2-u1 s2\n")
    hyp = _write(tmp_path / "hyp", "s1-u1 the hat sat on\ns2-u1 one two\n")
    out = tmp_path / "score"
    assert main(["score", str(ref), str(hyp), "--out", str(out), "--resamples", "200"]) == 0
    captured = capsys.readouterr()
    assert "s1-u2" in captured.err and "deletions" in captured.err  # missing utterance listed
    assert "%WER 57.14 [ 4 / 7, 1 ins, 2 del, 1 sub ]" in captured.out
    assert (out / "hyp.trn").read_text().splitlines() == [
        "the hat sat on (s1-s1-u1)",
        " (s1-s1-u2)",
        "one two (s2-s2-u1)",
    ]
    assert (out / "ref.trn").read_text().splitlines()[0] == "the cat sat (s1-s1-u1)"
    assert (out / "result.txt").read_text().splitlines()[2] == "%SER 66.67 [ 2 / 3 ]"
    data = json.loads((out / "wer.json").read_text())
    assert data["missing"] == ["s1-u2"]
    assert data["total"]["words"] == {"hits": 4, "sub": 1, "del": 2, "ins": 1, "ref_len": 7, "errors": 4}
    assert data["total"]["wer_ci"]["low"] <= data["total"]["wer"] <= data["total"]["wer_ci"]["high"]
    assert set(data["groups"]["spk"]) == {"s1", "s2"}
    assert data["utterances"][1]["missing"] is True


@pytest.mark.parametrize(
    ("ref_text", "hyp_text", "message"),
    [
        ("a x\nb y\n", "a x\nc z\n", r"hyp:2: utterance id 'c' is not in the reference"),
        ("a x\nb y\na z\n", "a x\n", r"ref:3: duplicate utterance id 'a' \(first on line 1\)"),
        ("a x\nb y\n", "b y\nb y\n", r"hyp:2: duplicate utterance id 'b'"),
        ("a x\n", b"a ok\n\xff\xfe bad\n", r"hyp:2: not valid UTF-8"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, capsys, ref_text, hyp_text, message):
    ref, hyp = _write(tmp_path / "ref", ref_text), _write(tmp_path / "hyp", hyp_text)
    assert main(["score", str(ref), str(hyp), "--resamples", "10"]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_empty_reference_scored_like_sclite_by_default_with_a_warning(tmp_path, capsys):
    ref, hyp = _write(tmp_path / "ref", "a x\nb\nc !!\n"), _write(tmp_path / "hyp", "a x\nb extra\nc\n")
    assert main(["score", str(ref), str(hyp), "--resamples", "10"]) == 0
    out, err = capsys.readouterr()
    assert "%WER 100.00 [ 1 / 1, 1 ins, 0 del, 0 sub ]" in out
    assert "%SER 33.33 [ 1 / 3 ]" in out  # b (a word where none was said) is wrong; c (nothing) is right
    assert f"warning: 2 empty references in {ref} (after normalisation)" in err and ": b, c" in err
    # the former opt-in flag is still accepted (it is the default now)
    assert main(["score", str(ref), str(hyp), "--allow-empty-ref", "--resamples", "10"]) == 0


@pytest.mark.parametrize(
    ("ref_text", "message"),
    [
        ("a x\nb\n", r"ref:2: empty reference for 'b' \(refused by --strict-empty-ref"),
        ("a x\nb !!\n", r"ref:2: empty reference for 'b' after normalisation"),
    ],
)
def test_strict_option_refuses_empty_references(tmp_path, capsys, ref_text, message):
    ref, hyp = _write(tmp_path / "ref", ref_text), _write(tmp_path / "hyp", "a x\n")
    assert main(["score", str(ref), str(hyp), "--strict-empty-ref", "--resamples", "10"]) == 2
    assert re.search(message, capsys.readouterr().err)


def _sclite_totals(out: Path) -> tuple[int, ...]:
    """sclite's raw ``Sum`` row of out/ref.trn against out/hyp.trn: snt wrd corr sub del ins err s.err."""
    proc = subprocess.run(
        [SCLITE, "-r", str(out / "ref.trn"), "trn", "-h", str(out / "hyp.trn"), "trn",
         "-i", "rm", "-o", "rsum", "stdout"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    # | Sum | #snt #wrd | corr sub del ins err s.err |  (raw counts)
    row = next(line for line in proc.stdout.splitlines() if "Sum" in line)
    return tuple(int(float(x)) for x in re.findall(r"[\d.]+", row))


@pytest.mark.system_tool
@pytest.mark.skipif(SCLITE is None, reason="SCTK sclite not installed (Debian package sctk)")
def test_empty_references_agree_with_sclite_with_no_option(tmp_path, capsys):
    ref = _write(
        tmp_path / "d" / "text",
        "s1-u1 the cat sat\ns1-u2\ns1-u3 !!\ns2-u1 a dog\ns2-u2\ns2-u3\ns2-u4 red mat\n",
    )
    hyp = _write(tmp_path / "hyp", "s1-u1 the hat sat\ns1-u2 big red dog\ns1-u3 a\ns2-u1 a dog\ns2-u2\n")
    out = tmp_path / "score"
    assert main(["score", str(ref), str(hyp), "--out", str(out), "--resamples", "10"]) == 0
    assert "warning: 4 empty references" in capsys.readouterr().err
    ours = json.loads((out / "wer.json").read_text())["total"]
    snt, wrd, corr, sub, dels, ins, err, serr = _sclite_totals(out)
    assert (snt, wrd, err, serr) == (
        ours["sentences"],
        ours["words"]["ref_len"],
        ours["words"]["errors"],
        ours["sentence_errors"],
    )
    assert (sub, dels, ins) == (ours["words"]["sub"], ours["words"]["del"], ours["words"]["ins"])
    assert (ins, serr) == (4, 4)  # 3 + 1 words where nothing was said; u1, u2, u3 of s1 and s2-u4 wrong


@pytest.mark.system_tool
@pytest.mark.skipif(SCLITE is None, reason="SCTK sclite not installed (Debian package sctk)")
def test_totals_equal_sclite(tmp_path):
    rng = random.Random(7)
    vocab = "the a cat dog sat ran on mat big red".split()
    ref_lines, hyp_lines = [], []
    for s in range(5):
        for i in range(20):
            utt = f"spk{s}-u{i:02d}"
            words = rng.choices(vocab, k=rng.randint(1, 10))
            hyp = [w if rng.random() > 0.25 else rng.choice(vocab) for w in words if rng.random() > 0.1]
            hyp += rng.choices(vocab, k=rng.random() < 0.2)
            ref_lines.append(f"{utt} {' '.join(words)}")
            if i != 7:  # one missing utterance per speaker
                hyp_lines.append(f"{utt} {' '.join(hyp)}")
    ref = _write(tmp_path / "d" / "text", "\n".join(ref_lines) + "\n")
    _write(
        tmp_path / "d" / "utt2spk", "".join(f"{line.split()[0]} {line.split('-')[0]}\n" for line in ref_lines)
    )
    hyp = _write(tmp_path / "hyp", "\n".join(hyp_lines) + "\n")
    out = tmp_path / "score"
    assert main(["score", str(ref), str(hyp), "--out", str(out), "--resamples", "10"]) == 0
    ours = json.loads((out / "wer.json").read_text())["total"]
    snt, wrd, corr, sub, dels, ins, err, serr = _sclite_totals(out)
    assert (snt, wrd, err, serr) == (
        ours["sentences"],
        ours["words"]["ref_len"],
        ours["words"]["errors"],
        ours["sentence_errors"],
    )
    # sclite weighs substitutions 4 and insertions/deletions 3, so only the totals must agree
    assert sub + dels + ins == ours["words"]["errors"]


def test_speaker_bootstrap_unit(tmp_path, capsys):
    ref = _write(tmp_path / "d" / "text", "".join(f"s{s}-u{i} a b c d\n" for s in range(4) for i in range(5)))
    _write(tmp_path / "d" / "utt2spk", "".join(f"s{s}-u{i} s{s}\n" for s in range(4) for i in range(5)))
    hyp = _write(
        tmp_path / "hyp",
        "".join(f"s{s}-u{i} a b {'x' if s % 2 else 'c'} d\n" for s in range(4) for i in range(5)),
    )
    out = tmp_path / "o"
    assert (
        main(
            ["score", str(ref), str(hyp), "--bootstrap-unit", "spk", "--resamples", "500", "--out", str(out)]
        )
        == 0
    )
    data = json.loads((out / "wer.json").read_text())
    assert data["options"]["unit"] == "spk"
    assert data["total"]["wer"] == 12.5
    # four speakers, each at 0 % or 25 %: resampled speaker sets give at most 0 % ... 25 %
    assert 0.0 <= data["total"]["wer_ci"]["low"] < 12.5 < data["total"]["wer_ci"]["high"] <= 25.0
