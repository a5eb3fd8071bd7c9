"""``asr-transfer validate-data``: every problem is reported with its file and line."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from asr_transfer.cli import main
from asr_transfer.data.audio import write_audio
from asr_transfer.data.kaldi import write_data_dir
from asr_transfer.data.validate import validate_data_dir

UTTS = ["s1-a", "s1-b", "s2-c", "s2-d"]


def tone(seconds: float = 0.5, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def make_dir(root, name="d"):
    """A valid 4-utterance English data dir with its audio; line i of each table is UTTS[i - 1]."""
    d = root / name
    wav = {}
    for utt in UTTS:
        wav[utt] = str(root / "audio" / f"{utt}.flac")
        write_audio(wav[utt], tone())
    write_data_dir(
        d,
        wav=wav,
        text={u: "hello world" for u in UTTS},
        utt2spk={u: u.split("-")[0] for u in UTTS},
        utt2lang=dict.fromkeys(UTTS, "en"),
        utt2domain=dict.fromkeys(UTTS, "clean"),
        utt2dur=dict.fromkeys(UTTS, 0.5),
    )
    return d


def run_cli(capsys, *args):
    status = main(["validate-data", *map(str, args)])
    return status, capsys.readouterr().out


def test_valid_dir_passes(tmp_path, capsys):
    d = make_dir(tmp_path)
    status, out = run_cli(capsys, d)
    assert status == 0, out
    assert f"{d}: OK: 4 utterances, 2 speakers" in out
    assert "0 errors" in out


def test_no_audio_mode_skips_audio(tmp_path, capsys):
    d = make_dir(tmp_path)
    (tmp_path / "audio" / "s1-a.flac").unlink()
    assert run_cli(capsys, "--no-audio", d)[0] == 0
    assert run_cli(capsys, d)[0] == 1


@pytest.mark.parametrize(
    ("damage", "line", "what"),
    [
        ("corrupt", 2, "corrupt or unreadable audio"),
        ("empty", 2, "audio is empty"),
        ("8k", 2, "sample rate is 8000 Hz, expected 16000 Hz"),
        ("stereo", 2, "audio has 2 channels, expected mono"),
        ("missing", 2, "audio file is missing"),
    ],
)
def test_bad_audio_named_with_wav_scp_line(tmp_path, capsys, damage, line, what):
    d = make_dir(tmp_path)
    audio = tmp_path / "audio" / "s1-b.flac"
    if damage == "corrupt":
        audio.write_bytes(b"\0garbage" * 500)
    elif damage == "empty":
        sf.write(audio, np.zeros(0, dtype=np.float32), 16000)
    elif damage == "8k":
        sf.write(audio, tone(rate=8000), 8000)
    elif damage == "stereo":
        sf.write(audio, np.stack([tone(), tone()], axis=1), 16000)
    else:
        audio.unlink()
    status, out = run_cli(capsys, d)
    assert status == 1
    assert f"ERROR {d / 'wav.scp'}:{line}: utterance 's1-b': {audio}: {what}" in out
    assert f"{d}: FAILED" in out


@pytest.mark.parametrize("full_decode", [False, True])
@pytest.mark.parametrize(("value", "what"), [(np.nan, "1 NaN, 0 inf"), (-np.inf, "0 NaN, 1 inf")])
def test_non_finite_samples_are_errors_in_every_decoding_mode(tmp_path, capsys, full_decode, value, what):
    d = make_dir(tmp_path)
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 160_000).astype(np.float32)
    samples[80_000] = value  # mid-file: beyond the blocks the quick check decodes at each end
    wav = tmp_path / "audio" / "s2-c.wav"
    sf.write(wav, samples, 16000, subtype="FLOAT")
    (d / "wav.scp").write_text((d / "wav.scp").read_text().replace(str(wav.with_suffix(".flac")), str(wav)))
    (d / "utt2dur").write_text("".join(f"{u} {10.0 if u == 's2-c' else 0.5}\n" for u in UTTS))
    status, out = run_cli(capsys, d, *(["--full-decode"] if full_decode else []))
    assert status == 1
    where = f"ERROR {d / 'wav.scp'}:3: utterance 's2-c': {wav}"
    assert f"{where}: 1 non-finite samples ({what}), first at sample 80000" in out
    assert out.count("ERROR") == 1, out


def test_undecodable_bytes_give_one_clear_error_and_no_decoder_noise(tmp_path, capfd):
    d = make_dir(tmp_path)
    audio = tmp_path / "audio" / "s1-a.flac"
    # random bytes make libsndfile try its MP3 decoder, whose library prints warnings itself
    audio.write_bytes(np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    status = main(["validate-data", str(d)])
    out, err = capfd.readouterr()
    assert status == 1
    assert f"ERROR {d / 'wav.scp'}:1: utterance 's1-a': {audio}: corrupt or unreadable audio" in out
    assert err == "", err  # nothing from libmpg123 ("Note: Illegal Audio-MPEG-Header ...")


def test_upper_case_english_validates_as_training_normalises_it(tmp_path, capsys):
    d = make_dir(tmp_path)
    # LibriSpeech / Libri-Adapt style: upper case, apostrophes; punctuation is dropped by training too
    (d / "text").write_text("s1-a HELLO WORLD\ns1-b IT'S A WORLD\ns2-c Hello, world!\ns2-d ...\n")
    (d / "utt2lang").unlink()
    status, out = run_cli(capsys, "--lang", "en", d)
    assert status == 1
    assert out.count("ERROR") == 1, out  # only the transcript with no word left
    assert f"ERROR {d / 'text'}:4: utterance 's2-d': transcript '...' is empty once normalised" in out
    (d / "text").write_text("s1-a HELLO WORLD\ns1-b IT'S A WORLD\ns2-c Hello, world!\ns2-d HÉLLO 2\n")
    status, out = run_cli(capsys, "--lang", "en", d)
    assert f"{d / 'text'}:4: utterance 's2-d': characters outside the 'en' character set: '2' 'é'" in out
    assert out.count("ERROR") == 1, out


def test_duplicate_id_named_with_both_lines(tmp_path, capsys):
    d = make_dir(tmp_path)
    with open(d / "text", "a") as f:
        f.write("s2-c again\n")
    status, out = run_cli(capsys, d)
    assert status == 1
    assert f"{d / 'text'}:5: duplicate utterance id 's2-c' (first on line 3)" in out


def test_missing_transcript_named(tmp_path, capsys):
    d = make_dir(tmp_path)
    (d / "text").write_text("s1-a hello\ns2-c hello\ns2-d hello\n")
    status, out = run_cli(capsys, d)
    assert status == 1
    assert f"{d / 'wav.scp'}:2: utterance 's1-b' has no entry in text" in out


def test_empty_transcript_named(tmp_path, capsys):
    d = make_dir(tmp_path)
    (d / "text").write_text("s1-a hello\ns1-b\ns2-c hello\ns2-d hello\n")
    status, out = run_cli(capsys, d)
    assert status == 1
    assert f"{d / 'text'}:2: utterance 's1-b': line has an id but no value" in out


def test_out_of_charset_characters_listed(tmp_path, capsys):
    d = make_dir(tmp_path)
    (d / "text").write_text("s1-a hello\ns1-b hello\ns2-c höllo 42\ns2-d hello\n")
    status, out = run_cli(capsys, d)
    assert status == 1
    assert f"{d / 'text'}:3: utterance 's2-c': characters outside the 'en' character set: '2' '4' 'ö'" in out
    assert "characters outside the character set: '2'x1 '4'x1 'ö'x1" in out


def test_lang_option_overrides_utt2lang(tmp_path, capsys):
    d = make_dir(tmp_path)
    (d / "text").write_text("".join(f"{u} țara\n" for u in UTTS))
    assert run_cli(capsys, d)[0] == 1
    assert run_cli(capsys, "--lang", "ro", d)[0] == 0


def test_unsorted_and_speaker_prefix_problems(tmp_path, capsys):
    d = make_dir(tmp_path)
    (d / "utt2spk").write_text("s1-a s1\ns1-b s2\ns2-c s2\ns2-d s2\n")
    (d / "spk2utt").write_text("s2 s1-b s2-c s2-d\ns1 s1-a\n")
    status, out = run_cli(capsys, d)
    assert status == 1
    assert f"{d / 'utt2spk'}:2: utterance id 's1-b' does not start with its speaker id 's2'" in out
    assert f"{d / 'spk2utt'}:2: id 's1' is out of order (after 's2' on line 1)" in out


def test_stale_utt2dur_named(tmp_path, capsys):
    d = make_dir(tmp_path)
    (d / "utt2dur").write_text("s1-a 0.5\ns1-b 0.5\ns2-c 3.25\ns2-d 0.5\n")
    status, out = run_cli(capsys, d)
    assert status == 1
    assert f"{d / 'utt2dur'}:3: duration of 's2-c' is 3.25 s but its audio lasts 0.5000 s" in out


def test_all_problems_collected_across_dirs(tmp_path, capsys):
    good = make_dir(tmp_path, "good")
    bad = make_dir(tmp_path, "bad")
    (tmp_path / "audio" / "s1-a.flac").write_bytes(b"broken")  # shared by both dirs
    (bad / "text").write_text("s1-a hello\ns1-b hello 1\ns2-c hello\ns2-d hello\ns2-d hello\n")
    status, out = run_cli(capsys, good, bad)
    assert status == 1
    assert out.count("corrupt or unreadable audio") == 2
    assert f"{bad / 'text'}:2:" in out and f"{bad / 'text'}:5: duplicate" in out
    assert "0 of 2 data dirs OK" in out


def test_damage_inside_a_flac_found_by_full_decode(tmp_path):
    d = make_dir(tmp_path)
    audio = tmp_path / "audio" / "s1-a.flac"
    write_audio(audio, np.random.default_rng(0).uniform(-0.5, 0.5, 64000).astype(np.float32))
    data = bytearray(audio.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4000] = bytes(4000)
    audio.write_bytes(bytes(data))
    (d / "utt2dur").write_text("".join(f"{u} {4.0 if u == 's1-a' else 0.5}\n" for u in UTTS))
    report = validate_data_dir(d, full_decode=True)
    where = f"{d / 'wav.scp'}:1: utterance 's1-a': {audio}"
    assert any(e.startswith(f"{where}: corrupt") for e in report.errors), report.errors
