"""Real dataset preparation (Libri-Adapt, Common Voice) on small trees built in their exact layouts."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import MP3

from asr_transfer.cli import main as cli_main
from asr_transfer.data.kaldi import load_data_dir, read_table

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_script(recipe: str):
    path = RECIPES / recipe / "local" / "data_prep.py"
    spec = importlib.util.spec_from_file_location(f"{recipe}_data_prep", path)
    module = importlib.util.module_from_spec(spec)
    # registered so that dataclasses and worker processes can find the module by name
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def speech_like(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


# ---------------------------------------------------------------- Libri-Adapt

LIBRI_UTTS = [  # (LibriSpeech name, transcript as in the CSV)
    ("103-1240-0000", "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED"),
    ("103-1240-0001", "that had its source away back in the woods"),
    ("1034-121119-0000", "it's a strange world, isn't it?"),
]


def make_libriadapt(root: Path, *, moved: bool = False) -> None:
    """<root>/en-us/{clean,rain}/{train,test}_files_<device>.csv + <device>/<split>/*.wav.

    matrix/clean is 16 kHz mono with paths relative to the CSV; usb/rain is 44.1 kHz stereo with
    absolute paths from another machine (``moved``), as DeepSpeech CSVs are written; one row of
    matrix/clean/train points at a recording that does not exist.
    """
    for noise, device, rate, channels in [("clean", "matrix", 16000, 1), ("rain", "usb", 44100, 2)]:
        for split in ("train", "test"):
            base = root / "en-us" / noise
            rows = []
            for i, (name, transcript) in enumerate(LIBRI_UTTS if split == "train" else LIBRI_UTTS[:1]):
                wav = base / device / split / f"{name}.wav"
                wav.parent.mkdir(parents=True, exist_ok=True)
                x = speech_like(0.4 + 0.1 * i, rate, i)
                sf.write(wav, x if channels == 1 else np.stack([x, x], axis=1), rate)
                if moved:
                    written = f"/data/libriadapt/en-us/{noise}/{device}/{split}/{name}.wav"
                else:
                    written = f"{device}/{split}/{name}.wav"
                rows.append([written, wav.stat().st_size, transcript])
            if split == "train" and device == "matrix":
                rows.append([f"{device}/{split}/19-198-0001.wav", 1000, "gone"])
            with (base / f"{split}_files_{device}.csv").open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["wav_filename", "wav_filesize", "transcript"])
                writer.writerows(rows)


def test_libriadapt_prep_writes_valid_dirs(tmp_path, capsys):
    prep = load_script("libriadapt")
    root, out = tmp_path / "libriadapt", tmp_path / "data"
    make_libriadapt(root, moved=True)
    assert prep.main([str(root), str(out)]) == 0
    dirs = sorted(p.name for p in out.iterdir() if p.name != "audio")
    assert dirs == [
        "en-us_test_matrix_clean",
        "en-us_test_usb_rain",
        "en-us_train_matrix_clean",
        "en-us_train_usb_rain",
    ]
    assert "en-us_train_matrix_clean: 3 utterances, 1 skipped" in capsys.readouterr().out

    train = load_data_dir(out / "en-us_train_matrix_clean")
    assert train.utts == [
        "103-1240-0000-en-us-clean-matrix",
        "103-1240-0001-en-us-clean-matrix",
        "1034-121119-0000-en-us-clean-matrix",
    ]
    assert train.text["103-1240-0000-en-us-clean-matrix"] == "chapter one missus rachel lynde is surprised"
    assert train.text["1034-121119-0000-en-us-clean-matrix"] == "it's a strange world isn't it"
    assert train.utt2spk["1034-121119-0000-en-us-clean-matrix"] == "1034"
    assert set(train.utt2domain.values()) == {"matrix_clean"} and set(train.utt2lang.values()) == {"en"}
    # 16 kHz mono recordings are used in place
    assert train.wav["103-1240-0000-en-us-clean-matrix"] == str(
        root / "en-us" / "clean" / "matrix" / "train" / "103-1240-0000.wav"
    )
    # 44.1 kHz stereo recordings are converted to 16 kHz mono FLAC
    rain = load_data_dir(out / "en-us_train_usb_rain")
    converted = Path(rain.wav["103-1240-0001-en-us-rain-usb"])
    assert converted.suffix == ".flac" and sf.info(converted).samplerate == 16000
    assert rain.utt2dur["103-1240-0001-en-us-rain-usb"] == pytest.approx(0.5, abs=0.001)

    assert cli_main(["validate-data", *(str(out / d) for d in dirs)]) == 0
    assert "4 of 4 data dirs OK" in capsys.readouterr().out


def test_libriadapt_filters_and_reports_missing_csvs(tmp_path, capsys):
    prep = load_script("libriadapt")
    root, out = tmp_path / "libriadapt", tmp_path / "data"
    make_libriadapt(root)
    assert prep.main([str(root), str(out), "--noises", "clean", "--devices", "matrix"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["en-us_test_matrix_clean", "en-us_train_matrix_clean"]
    assert prep.main([str(root), str(out), "--accents", "en-gb"]) == 1
    assert "no <accent>/<noise>/{train,test}_files_<device>.csv" in capsys.readouterr().err


def test_libriadapt_bad_header_names_file_and_line(tmp_path):
    prep = load_script("libriadapt")
    csv_path = tmp_path / "en-us" / "clean" / "train_files_usb.csv"
    csv_path.parent.mkdir(parents=True)
    csv_path.write_text("filename,size,text\nx.wav,1,hi\n")
    with pytest.raises(SystemExit, match=rf"{csv_path}:1: header lacks column\(s\) wav_filename"):
        prep.main([str(tmp_path), str(tmp_path / "out")])


# ---------------------------------------------------------------- Common Voice

CV_HEADER = [
    "client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "variant",
    "locale", "segment",
]  # fmt: skip
CV_ROWS = {  # split -> (client_id, clip, sentence)
    "train": [
        ("a" * 128, "common_voice_ro_100.mp3", "Ţara mea e frumoasă."),
        ("a" * 128, "common_voice_ro_101.mp3", 'El a spus: "Bună ziua!"'),
        ("b" * 128, "common_voice_ro_102.mp3", "Am 3 mere."),  # digits: dropped
    ],
    "dev": [("c" * 128, "common_voice_ro_200.mp3", "Și apoi, nimic.")],
    "test": [("d" * 128, "common_voice_ro_300.mp3", "Întâi ușa.")],
}


def make_commonvoice(root: Path) -> None:
    """<root>/ro/{train,dev,test,validated}.tsv and <root>/ro/clips/*.mp3 (48 kHz mono MP3, as released)."""
    lang = root / "ro"
    (lang / "clips").mkdir(parents=True)
    validated = []
    for seed, (split, rows) in enumerate(CV_ROWS.items()):
        lines = ["\t".join(CV_HEADER)]
        for i, (client, clip, sentence) in enumerate(rows):
            sf.write(lang / "clips" / clip, speech_like(0.6 + 0.1 * i, 48000, seed + i), 48000)
            line = f"{client}\t{clip}\t{sentence}\t2\t0\t\t\t\t\tro\t"
            lines.append(line)
            validated.append(line)
        (lang / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (lang / "validated.tsv").write_text(
        "\n".join(["\t".join(CV_HEADER), *validated]) + "\n", encoding="utf-8"
    )


@pytest.mark.system_tool
@MP3
@pytest.mark.parametrize("jobs", [1, 2])
def test_commonvoice_prep_writes_valid_dirs(tmp_path, capsys, jobs):
    prep = load_script("commonvoice")
    root, out = tmp_path / "cv", tmp_path / "data"
    make_commonvoice(root)
    assert prep.main([str(root), str(out), "--jobs", str(jobs)]) == 0
    printed = capsys.readouterr().out
    assert "ro_train_clean: 2 utterances, 1 skipped" in printed
    assert "characters outside the 'ro' set: 3" in printed

    train = load_data_dir(out / "ro_train_clean")
    spk = prep.speaker_id("a" * 128)
    assert len(spk) == 10 and train.utts == [f"{spk}-common_voice_ro_100", f"{spk}-common_voice_ro_101"]
    assert train.text[f"{spk}-common_voice_ro_100"] == "țara mea e frumoasă"  # cedilla mapped to comma below
    assert train.text[f"{spk}-common_voice_ro_101"] == "el a spus bună ziua"
    assert set(train.utt2lang.values()) == {"ro"} and set(train.utt2domain.values()) == {"clean"}
    flac = Path(train.wav[f"{spk}-common_voice_ro_101"])
    info = sf.info(flac)
    assert (flac.suffix, info.samplerate, info.channels) == (".flac", 16000, 1)
    assert abs(info.duration - 0.7) < 0.08  # MP3 encoder delay and padding
    assert read_table(out / "ro_dev_clean" / "text") == {
        f"{prep.speaker_id('c' * 128)}-common_voice_ro_200": "și apoi nimic"
    }

    dirs = [str(out / f"ro_{split}_clean") for split in ("train", "dev", "test")]
    assert cli_main(["validate-data", *dirs]) == 0
    assert "3 of 3 data dirs OK" in capsys.readouterr().out


@pytest.mark.system_tool
@MP3
def test_commonvoice_reuses_converted_clips_and_reports_broken_ones(tmp_path, capsys):
    prep = load_script("commonvoice")
    root, out = tmp_path / "cv", tmp_path / "data"
    make_commonvoice(root)
    assert prep.main([str(root), str(out), "--splits", "dev"]) == 0
    flac = out / "audio" / "ro" / "common_voice_ro_200.flac"
    first = flac.stat().st_mtime_ns
    (root / "ro" / "clips" / "common_voice_ro_300.mp3").write_bytes(b"not an mp3")
    assert prep.main([str(root), str(out), "--splits", "dev", "test", "--keep-out-of-charset"]) == 0
    assert flac.stat().st_mtime_ns == first
    printed = capsys.readouterr().out
    assert "ro_test_clean: 0 utterances, 1 skipped" in printed
    assert "common_voice_ro_300.mp3: corrupt or unreadable audio" in printed


def test_commonvoice_missing_tsv_is_an_error(tmp_path, capsys):
    prep = load_script("commonvoice")
    (tmp_path / "cv" / "br" / "clips").mkdir(parents=True)
    assert prep.main([str(tmp_path / "cv"), str(tmp_path / "out"), "--splits", "train"]) == 1
    assert f"{tmp_path / 'cv' / 'br' / 'train.tsv'}: missing file" in capsys.readouterr().err
