"""The `standard` corpus parts: Breton G2P rules, sentence filtering and splits, held-out voices,
and (where the Debian engines are installed) MBROLA, Breton, flite and festival rendering."""

from __future__ import annotations

import hashlib
import shutil
import struct
from array import array
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from asr_transfer.data.kaldi import load_data_dir
from asr_transfer.synth import engines_debian
from asr_transfer.synth.breton_g2p import phonemes, to_pho, word_phones
from asr_transfer.synth.engines_debian import EngineMissing, check
from asr_transfer.synth.generate import generate, plan
from asr_transfer.synth.presets import PRESETS, SPLITS, Preset, _standard
from asr_transfer.synth.sentences import (
    SPLIT_FRACTIONS,
    TextSourceError,
    clean_ui_string,
    find_text_dir,
    sentence_pools,
    split_of,
)
from asr_transfer.synth.voices import Speaker

# the phones of the MBROLA bz1 voice (its label.txt)
BZ1_PHONES = set(
    "2 2: 2j 2~ 2~j 9 9: 9j 9~ 9~: 9~j A A: Aj Aw A~ A~: A~w E E: Ej Ew E~ E~: H J L Nk O O: S Z _ b d "
    "e e: ew e~ e~: e~w f g g' h i i: iw i~ i~: j k k' l m n o o: oj ow o~ o~: p r s t u u: v w x y y: "
    "y~ y~: z".split()
)


def syms(word: str) -> list[str]:
    return [p.symbol for p in word_phones(word)]


# --- Breton G2P -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("c'hwec'h", ["x", "w", "E:", "x"]),  # c'h is the velar fricative
        ("chom", ["S", "o:", "m"]),  # ch is [S]
        ("brezhoneg", ["b", "r", "E", "z", "o:", "n", "E", "k"]),  # zh inside a word is [z]
        ("amañ", ["A:", "m", "A~"]),  # vowel + ñ is a nasal vowel, ñ silent (stress: penultimate)
        ("meur", ["m", "2:", "r"]),  # eu
        ("tour", ["t", "u:", "r"]),  # ou
        ("boued", ["b", "w", "E:", "t"]),  # ou before a vowel is a glide
    ],
)
def test_breton_graphemes(word: str, expected: list[str]) -> None:
    assert syms(word) == expected


def test_breton_final_devoicing() -> None:
    assert syms("mab")[-1] == "p"
    assert syms("bras")[-1] == "s" and syms("braz")[-1] == "s"
    assert syms("Breizh".lower())[-1] == "s"  # zh word-finally devoices to [s]
    assert syms("bag")[-1] == "k" and syms("mad")[-1] == "t"
    assert syms("mabig")[1] == "A:" and "b" in syms("mabig")  # only the final consonant devoices


def test_breton_penultimate_stress_lengthens_before_one_consonant_only() -> None:
    word = word_phones("kelenner")  # ke-LEN-ner: stress on the penultimate, nn keeps it short
    stressed = [p for p in word if p.stressed]
    assert [p.symbol for p in stressed] == ["E"]
    assert [p.symbol for p in word_phones("karout") if p.stressed] == ["A:"]  # KA-rout, open syllable
    assert [p.symbol for p in word_phones("dorn") if p.stressed] == ["o"]  # two consonants: short
    assert [p.symbol for p in word_phones("tad") if p.stressed] == ["A:"]  # monosyllable, one consonant


def test_breton_pho_uses_only_bz1_phones_with_pauses_and_falling_pitch() -> None:
    text = "Demat deoc'h, penaos emañ an traoù? Brav eo an amzer hiziv e Breizh."
    pho = to_pho(text, f0=200)
    lines = [ln.split() for ln in pho.splitlines()]
    assert {ln[0] for ln in lines} <= BZ1_PHONES
    assert lines[0][0] == "_" and lines[-1][0] == "_"
    assert sum(ln[0] == "_" for ln in lines) == 4  # start, comma, question mark, end
    f0 = [float(ln[3]) for ln in lines if len(ln) > 2]
    assert f0[0] > f0[-1] >= 0.79 * 200
    assert all(int(ln[1]) > 0 for ln in lines)
    assert to_pho(text, tempo=2.0) != pho


def test_breton_words_outside_the_alphabet_are_skipped() -> None:
    assert phonemes("123 !!") == []
    assert [len(w) for w in phonemes("ti 42 ti")] == [2, 2]


# --- sentences ------------------------------------------------------------------------------------


def write_mo(path: Path, messages: dict[str, str]) -> None:
    """A gettext .mo file (the layout CPython's msgfmt writes), UTF-8 header included."""
    messages = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(messages)
    ids, strs, offsets = b"", b"", []
    for k in keys:
        kb, vb = k.encode(), messages[k].encode()
        offsets.append((len(ids), len(kb), len(strs), len(vb)))
        ids += kb + b"\0"
        strs += vb + b"\0"
    n = len(keys)
    keystart = 7 * 4 + 16 * n
    koffsets, voffsets = [], []
    for o1, l1, o2, l2 in offsets:
        koffsets += [l1, o1 + keystart]
        voffsets += [l2, o2 + keystart + len(ids)]
    header = struct.pack("Iiiiiii", 0x950412DE, 0, n, 7 * 4, 7 * 4 + n * 8, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array("i", koffsets + voffsets).tobytes() + ids + strs)


ENGLISH = [
    f"Please open the {w} file now" for w in ("red", "blue", "green", "small", "large", "old", "new")
] + [
    f"Select all the {w} cells in this sheet"
    for w in ("empty", "hidden", "locked", "merged", "visible", "odd")
]
GERMAN = {
    e: e.replace("Please open the", "Bitte jetzt die").replace("file now", "Datei öffnen") for e in ENGLISH
}


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("texts")
    write_mo(
        root / "libreoffice" / "de" / "a.mo", {**GERMAN, "ctx\x04Insert %1 rows here now": "Zeilen %1 x y z"}
    )
    more = {"Open file": "Datei öffnen", "~Delete the selected rows": "Die ausgewählten ~Zeilen löschen"}
    write_mo(root / "libreoffice" / "de" / "b.mo", more)
    (root / "fortunes").mkdir()
    (root / "fortunes" / "misc").write_text(
        "A fool and his money are soon parted.\n%\nSee http://x.org for 42 more.\n%\n"
        "Time flies like an arrow. Fruit flies like a banana.\n%\n",
        encoding="latin-1",
    )
    return root


def test_ui_strings_are_filtered_and_mnemonics_removed() -> None:
    assert clean_ui_string("~Delete the selected rows") == "Delete the selected rows"
    assert clean_ui_string("_Save the document as") == "Save the document as"
    for bad in ("Insert %1 rows now", "Use $(ARG1) for this", "<b>Bold</b> text is here", "Open file",
                "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                "sixteen seventeen eighteen nineteen twenty twentyone", "Page 1 of the book"):  # fmt: skip
        assert clean_ui_string(bad) is None, bad


def test_split_is_a_stable_function_of_the_english_sentence() -> None:
    keys = [f"sentence number {w}" for w in range(2000)]
    splits = [split_of(k) for k in keys]
    assert splits == [split_of(k) for k in keys]
    for split, frac in SPLIT_FRACTIONS.items():
        assert abs(splits.count(split) / len(keys) - frac) < 0.04


def test_sentence_pools_are_parallel_disjoint_normalised(text_dir: Path) -> None:
    de = sentence_pools(text_dir, "de")
    en = sentence_pools(text_dir, "en", fortunes=True)
    for split in SPLITS:
        # a German sentence sits in the split of its English original, as the English one does
        assert all(split_of(s.key) == split for s in de[split] + en[split])
    transcripts = [s.transcript for split in SPLITS for s in de[split]]
    assert len(transcripts) == len(set(transcripts))
    assert "die ausgewählten zeilen löschen" in transcripts  # mnemonic gone, lower case, no punctuation
    assert not any("%" in t or "1" in t for t in transcripts)
    english = {s.transcript for split in SPLITS for s in en[split]}
    assert {"a fool and his money are soon parted", "fruit flies like a banana"} <= english
    assert not any("http" in t for t in english)


def test_missing_texts_name_the_script(tmp_path: Path) -> None:
    with pytest.raises(TextSourceError, match="get_texts.sh"):
        find_text_dir(tmp_path)


# --- standard preset plan -------------------------------------------------------------------------


def test_standard_preset_shape_and_held_out_base_voices() -> None:
    std = PRESETS["standard"]
    langs = {lp.lang: lp for lp in std.langs}
    assert {"ro", "cs", "ar", "uk", "br"} <= set(langs) and len(langs) >= 10
    assert sum(lp.role == "source" for lp in std.langs) >= 5
    assert len(langs["en"].domains) == 7
    for lp in std.langs:
        if lp.lang not in ("ru", "uk", "br"):  # these have a single base voice
            assert set(lp.train_voices).isdisjoint(lp.test_voices), lp.lang
    assert langs["br"].train_voices == langs["br"].test_voices == ("mbrola-br:bz1",)


def test_plan_with_sentences_keeps_splits_parallel_and_test_voices_held_out(text_dir: Path) -> None:
    preset = Preset(
        name="t",
        description="",
        langs=(
            replace(
                _standard("de", "source", (6, 2, 3), (3, 1, 2)),
                train_voices=("espeak-ng:de",),
                test_voices=("espeak-ng:de",),
            ),
            replace(
                _standard("en", "source", (6, 2, 3), (3, 1, 2)),
                train_voices=("espeak-ng:en-us",),
                test_voices=("espeak-ng:en-gb-x-rp",),
            ),
        ),  # fmt: skip
    )
    utts = plan(preset, 0, text_dir)
    assert plan(preset, 0, text_dir) == utts
    by_split = {s: {u.transcript for u in utts if u.split == s} for s in SPLITS}
    assert by_split["train"].isdisjoint(by_split["test"]) and by_split["dev"].isdisjoint(by_split["test"])
    en = [u for u in utts if u.lang == "en"]
    assert {u.speaker.voice.partition("+")[0] for u in en if u.split == "test"} == {"en-gb-x-rp"}
    assert {u.speaker.voice.partition("+")[0] for u in en if u.split != "test"} == {"en-us"}


def test_missing_engine_names_the_install_script() -> None:
    with pytest.raises(EngineMissing, match="install_synth_tools.sh"):
        check("mbrola", "no-such-voice")
    with pytest.raises(ValueError, match="unknown engine"):
        check("sapi", "x")


# --- Debian engines (skipped where recipes/common/install_synth_tools.sh has not run) --------------


def _has(engine: str, voice: str) -> bool:
    try:
        check(engine, voice)
    except EngineMissing:
        return False
    return True


ENGINE_CASES = [
    ("mbrola-br", "bz1", "br", "Demat deoc'h, penaos emañ an traoù?"),
    ("mbrola", "us1", "en", "Select the cells you want to format."),
    ("mbrola", "cz1", "cs", "Vyberte buňky, které chcete formátovat."),
    ("flite", "slt", "en", "Select the cells you want to format."),
    ("festival", "czech_dita", "cs", "Vyberte buňky, které chcete formátovat."),
]


@pytest.mark.system_tool
@pytest.mark.parametrize(("engine", "voice", "lang", "text"), ENGINE_CASES)
def test_debian_engine_speaks_deterministically(engine: str, voice: str, lang: str, text: str) -> None:
    if not _has(engine, voice):
        pytest.skip(f"{engine} {voice} not installed (recipes/common/install_synth_tools.sh)")
    spk = Speaker("x_s000", lang, voice, pitch=50, rate=170, range_=50, warp=1.04, engine=engine)
    a = engines_debian.speak(text, spk)
    assert a.dtype == np.float32 and 1.0 < len(a) / 16000 < 8.0
    assert abs(float(np.max(np.abs(a))) - 0.5) < 1e-3
    assert (
        hashlib.sha256(engines_debian.speak(text, spk).tobytes()).digest()
        == hashlib.sha256(a.tobytes()).digest()
    )
    slower = engines_debian.speak(text, replace(spk, rate=120))
    assert len(slower) > len(a)


@pytest.mark.system_tool
@pytest.mark.skipif(shutil.which("mbrola") is None, reason="mbrola not installed")
def test_generate_with_debian_engines_writes_valid_dirs(text_dir: Path, tmp_path: Path) -> None:
    if not (_has("mbrola", "de1") and _has("mbrola-br", "bz1")):
        pytest.skip("MBROLA voices de1/bz1 not installed")
    preset = Preset(
        name="t",
        description="",
        langs=(
            replace(
                _standard("de", "source", (4, 2, 2), (2, 1, 2)),
                train_voices=("espeak-ng:de", "mbrola:de1"),
                test_voices=("mbrola:de2", "mbrola:de1"),
            ),
        ),  # fmt: skip
    )
    corpus = generate(preset, tmp_path / "c", seed=0, jobs=1, noise_dir=None, text_dir=text_dir)
    assert set(corpus["engines"]) == {"espeak-ng", "mbrola"}
    assert "NON-FREE" in corpus["licences"]["speech"]
    for name in corpus["dirs"]:
        d = load_data_dir(tmp_path / "c" / "data" / name)
        assert all(Path(p).is_file() for p in d.wav.values())
    assert corpus["voices"]["base_voices"]["de"]["test"] == ["mbrola:de1", "mbrola:de2"]


def test_cli_without_texts_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from asr_transfer.cli import main

    args = ["--out", str(tmp_path / "c"), "--text-dir", str(tmp_path), "--noise-dir", str(tmp_path)]
    rc = main(["synth", "--preset", "standard", *args])
    assert rc == 2
    assert "recipes/common/get_texts.sh" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
