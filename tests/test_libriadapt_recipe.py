"""recipes/libriadapt/run.sh end to end on CPU, on a tiny tree in exactly the Libri-Adapt release layout:
``<root>/en-us/<noise>/{train,test}_files_<device>.csv`` (DeepSpeech CSVs whose absolute paths are
from the machine that made them) + ``<device>/<split>/<speaker>-<chapter>-<utt>.wav``, one recording
missing, made from real synthesised speech (the tiny synth corpus): Matrix records the clean
rendering at 16 kHz mono, ReSpeaker the room rendering at 48 kHz stereo."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, cli
from scipy.signal import resample_poly

from asr_transfer.data.kaldi import load_data_dir

#: device -> (synth domain it records, sample rate, channels)
DEVICES = {"matrix": ("clean", 16000, 1), "respeaker": ("room", 48000, 2)}
#: where the CSVs say the audio is: the release author's machine, not this one
ELSEWHERE = "/home/someone/libriadapt"
MISSING = "respeaker/train"  # one recording of this folder is missing


def make_release(corpus: Path, root: Path) -> str:
    """Write the release tree from the synth corpus's en data dirs; returns the missing file's name.

    Train = the corpus's train + dev utterances (Libri-Adapt has no dev split), test = its test set;
    every device records the same sentences under the same LibriSpeech names, as in the release.
    """
    splits = {"train": ("train", "dev"), "test": ("test",)}
    speakers: dict[str, str] = {}
    missing = ""
    for device, (domain, rate, channels) in DEVICES.items():
        for split, parts in splits.items():
            rows = []
            for part in parts:
                data = load_data_dir(corpus / f"en_{part}_{domain}")
                for i, utt in enumerate(data.utts):
                    spk = speakers.setdefault(
                        data.utt2spk[utt].removesuffix(f"-{domain}"), str(19 + len(speakers))
                    )
                    name = f"{spk}-{198 + len(part)}-{i:04d}.wav"
                    wave, sr = sf.read(data.wav[utt], dtype="float32")
                    wave = resample_poly(wave, rate // sr, 1) if rate != sr else wave
                    wav = root / "en-us" / "clean" / device / split / name
                    wav.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(wav, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)
                    written = f"{ELSEWHERE}/en-us/clean/{device}/{split}/{name}"
                    rows.append([written, wav.stat().st_size, data.text[utt].upper()])
            if f"{device}/{split}" == MISSING:
                gone = root / "en-us" / "clean" / device / split / Path(rows[1][0]).name
                gone.unlink()
                missing = gone.name
            with (root / "en-us" / "clean" / f"{split}_files_{device}.csv").open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["wav_filename", "wav_filesize", "transcript"])
                writer.writerows(rows)
    return missing


def run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # fmt: skip
    return subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=600
    )


def load_paper_table():
    path = REPO / "recipes/libriadapt/local/paper_table.py"
    spec = importlib.util.spec_from_file_location("libriadapt_paper_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_table_rows_averages_and_missing_cells(tmp_path: Path) -> None:
    """The paper's table from scored decodes: a device pair and a noise task from two source models,
    plain-mean averages, reductions of the averages, and a missing decode named."""
    ref = tmp_path / "ref"
    ref.write_text("u1 a b c d\n")
    hyps = {  # (source, method or "", target) -> hypothesis of the one 4-word utterance
        ("matrix_clean", "", "pseye_clean"): "a b x y",  # 50 %
        ("matrix_clean", "self_training", "pseye_clean"): "a b c y",  # 25 %
        ("respeaker_clean", "", "respeaker_rain"): "x y z w",  # 100 %
        ("respeaker_clean", "self_training", "respeaker_rain"): "a y z w",  # 75 %
    }
    for (source, method, target), hyp in hyps.items():
        exp = tmp_path / "exp" / f"tiny_{source}"
        if method:
            exp = tmp_path / "exp" / "adapt" / f"tiny_{source}" / f"{method}_{target}"
            exp.mkdir(parents=True, exist_ok=True)
            (exp / "config.yaml").write_text("adapt: {method: self_training, name: Self-training}\n")
        decode = exp / f"decode_en-us_test_{target}"
        decode.mkdir(parents=True)
        (decode / "text").write_text(f"u1 {hyp}\n")
        assert cli("score", ref, decode / "text", "--out", decode / "score", "--resamples", "10") == 0
    table = load_paper_table()
    tasks = ["matrix_clean:pseye_clean", "respeaker_clean:respeaker_rain"]
    md = table.paper_table(tmp_path / "exp", "tiny", "en-us", tasks, ["self_training"])
    assert "| task | Source-only | Self-training |" in md
    for row in ("| M→P | 50.00 | **25.00** |", "| R: clean→rain | 100.00 | **75.00** |",
                "| Average (devices) | 50.00 | **25.00** |", "| Average (noise) | 100.00 | **75.00** |",
                "| Average | 75.00 | **50.00** |", "| Average | +33.3 |"):  # fmt: skip
        assert row in md, md
    assert "Missing" not in md
    # a task not decoded yet: its cells and the noise averages are '–', and the file is named
    out = tmp_path / "RESULTS.md"
    args = ["--exp", str(tmp_path / "exp"), "--model", "tiny", "--tasks", *tasks,
            "respeaker_clean:respeaker_wind", "--methods", "self_training", "--out", str(out)]  # fmt: skip
    assert table.main(args) == 0
    md = out.read_text(encoding="utf-8")
    assert "| R: clean→wind | – | – |" in md and "| Average (noise) | – | – |" in md
    assert "| Average (devices) | 50.00 | **25.00** |" in md
    assert "tiny_respeaker_clean/decode_en-us_test_respeaker_wind/score/wer.json" in md


@pytest.mark.slow
def test_libriadapt_recipe_on_a_tiny_release(tiny_corpus: Path, tmp_path: Path) -> None:
    missing = make_release(tiny_corpus, tmp_path / "libriadapt")
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    for name in ("run.sh", "local/data_prep.py", "local/paper_table.py"):
        (recipe / name).write_bytes((REPO / "recipes/libriadapt" / name).read_bytes())
    (recipe / "run.sh").chmod(0o755)
    (recipe / "conf").symlink_to(REPO / "conf")
    (recipe.parent / "common").symlink_to(REPO / "recipes/common")  # the shared option parser
    # one device pair, two methods, one epoch of a 1-block model: the mechanics, not the WERs
    model = "--model.encoder.num_blocks 1 --model.encoder.output_size 64 --model.encoder.linear_units 128"
    args = ["--root", str(tmp_path / "libriadapt"), "--pairs", "matrix:respeaker", "--noises", "",
            "--adapt_methods", "self_training cmatch_ctc_align", "--dev_share", "0.34", "--jobs", "1",
            "--decode_candidates", "conf/decode/ctc_greedy.yaml",
            "--train_args", f"--train.epochs 1 --train.num_threads 1 {model}",
            "--adapt_args", "--train.epochs 1 --train.num_threads 1"]  # fmt: skip
    proc = run(recipe, *args)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    # stage 0: the release's CSVs -> train/dev/test dirs per device; the missing recording is named
    data = recipe / "data"
    assert sorted(p.name for p in data.iterdir() if p.is_dir() and p.name != "audio") == sorted(
        f"en-us_{split}_{device}_clean" for device in DEVICES for split in ("train", "dev", "test")
    )
    assert "data/en-us_train_respeaker_clean: 5 utterances, 1 skipped" in proc.stdout
    assert f"{missing}" in proc.stdout and "train_files_respeaker.csv:3" in proc.stdout
    assert len(load_data_dir(data / "en-us_dev_matrix_clean").utts) == 3
    # 48 kHz stereo recordings were converted, 16 kHz mono ones used where they are
    respeaker = load_data_dir(data / "en-us_test_respeaker_clean")
    assert all(sf.info(p).samplerate == 16000 for p in respeaker.wav.values())
    assert all(
        str(tmp_path / "libriadapt") in p
        for p in load_data_dir(data / "en-us_test_matrix_clean").wav.values()
    )

    # the source model, its decoding chosen on dev, its test decodes and report
    source = recipe / "exp" / "tiny_matrix_clean"
    assert (source / "decode.yaml").is_file()
    assert "en-us_test_respeaker_clean" in (recipe / "exp/report/RESULTS.md").read_text(encoding="utf-8")
    # pseudo-labels of the target's training audio (70 % kept), adapted models, the tables
    pseudo = recipe / "exp/pseudo/tiny_matrix_clean/en-us_train_respeaker_clean"
    assert len((pseudo / "confidence").read_text().splitlines()) == 5
    per_source = (recipe / "exp/report_adapt/tiny_matrix_clean/RESULTS.md").read_text(encoding="utf-8")
    assert "Self-training" in per_source and "CMatch (ctc_align)" in per_source
    table = (recipe / "exp/report_adapt/RESULTS.md").read_text(encoding="utf-8")
    row = next(line for line in table.splitlines() if line.startswith("| M→R |"))
    cells = [c.strip().strip("*") for c in row.strip("|").split("|")][1:]
    assert len(cells) == 3 and all(float(c) >= 0 for c in cells), row  # Source-only + 2 methods, all WERs
    assert "| Average (devices) |" in table and "Missing" not in table
    assert "| task | Source-only | Self-training | CMatch (ctc_align) |" in proc.stdout  # printed at the end

    # stages are idempotent: rerunning data prep, training, labelling and decoding redoes nothing (the
    # cheap stages between, validation, features and tokenizer, are left out to keep CI short)
    made = sorted(recipe.glob("exp/**/model.pt")) + sorted(recipe.glob("exp/**/decode_*/text"))
    made += [pseudo / "text", data / "en-us_train_respeaker_clean" / "wav.scp"]
    stamps = {p: p.stat().st_mtime_ns for p in made}
    assert len(made) == 12, made  # 3 models; 1 dev + 2 test + 2 x 2 test decodes; labels; a data dir
    again = run(recipe, *args, "--stop_stage", "0")
    assert (
        again.returncode == 0
        and "data/prepared records the same release and options, skipped" in again.stdout
    )
    again = run(recipe, *args, "--stage", "4", "--stop_stage", "9")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "train: model ->" not in again.stdout and "model.pt exists, skipped" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in made} == stamps
