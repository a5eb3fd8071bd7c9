"""`asr-transfer report` on a small real exp tree built in tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from asr_transfer.cli import main

VOCAB = "the a cat dog sat ran on mat big red house green".split()


def make_system(root: Path, name: str, p_err: float, *, tensorboard: bool, drop_last: bool = False) -> Path:
    """exp/<name> with two decodes (one mixing two domains), config, command and optional event files."""
    exp = root / name
    rng = random.Random(name)
    for dataset, domains in (("en_test_phone", ["phone"]), ("en_test_mix", ["rain", "wind"])):
        d = exp / f"decode_{dataset}"
        d.mkdir(parents=True)
        texts = random.Random(dataset)
        ref, hyp, spk, dom = [], [], [], []
        for s in range(3):
            for i in range(10):
                utt = f"spk{s}-{dataset}-{i:02d}"
                words = [texts.choice(VOCAB) for _ in range(texts.randint(3, 8))]
                out = [
                    w if rng.random() > p_err else rng.choice(VOCAB)
                    for w in words
                    if rng.random() > p_err / 3
                ]
                ref.append(f"{utt} {' '.join(words)}")
                hyp.append(f"{utt} {' '.join(out)}")
                spk.append(f"{utt} spk{s}")
                dom.append(f"{utt} {domains[i % len(domains)]}")
        for file, lines in (
            ("ref", ref),
            ("text", hyp[:-1] if drop_last else hyp),
            ("utt2spk", spk),
            ("utt2domain", dom),
        ):
            (d / file).write_text("\n".join(lines) + "\n")
    (exp / "config.yaml").write_text(f"system: {name}\n")
    (exp / "command.txt").write_text(f"asr-transfer train --config conf/{name}.yaml\n")
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(exp / "tensorboard"))
        for step in range(10):
            writer.add_scalar("train/loss", 40.0 / (step + 1) + p_err, step)
            writer.add_scalar("valid/cer", 30.0 * p_err / (1 + step), step)
        writer.close()
    return exp


@pytest.fixture
def two_systems(tmp_path):
    base = make_system(tmp_path / "exp", "baseline", 0.4, tensorboard=True, drop_last=True)
    adapted = make_system(tmp_path / "exp", "adapted", 0.1, tensorboard=True)
    return base, adapted


def test_report_compares_systems(tmp_path, two_systems, capsys):
    base, adapted = two_systems
    out = tmp_path / "report"
    assert main(["report", str(base), str(adapted), "--out", str(out), "--resamples", "300"]) == 0
    md = (out / "RESULTS.md").read_text()
    assert "| dataset | baseline | adapted |" in md
    phone = next(line for line in md.splitlines() if line.startswith("| en_test_phone |"))  # main table first
    cells = [c.strip() for c in phone.strip("|").split("|")]
    assert (
        cells[2].startswith("**") and "†" in cells[2] and "**" not in cells[1]
    )  # adapted: best, significant
    assert "| average |" in md and "Significance against baseline" in md
    assert "| en_test_mix | rain |" in md and "| en_test_mix | wind |" in md
    assert "spk2-en_test_mix-09" in md  # missing hypothesis listed
    assert "REF: " in md and "HYP: " in md
    assert hashlib.sha256((base / "config.yaml").read_bytes()).hexdigest()[:12] in md
    assert "asr-transfer train --config conf/adapted.yaml" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # WER bars, S/D/I bars, training curves
    assert "<b>" in page and "src='http" not in page  # self-contained
    # scores cached beside each decode, in the score command's formats
    score = base / "decode_en_test_mix" / "score"
    assert (score / "result.txt").read_text().startswith("%WER ")
    assert json.loads((score / "wer.json").read_text())["missing"] == ["spk2-en_test_mix-09"]


def test_bold_marks_the_best_of_at_least_two_values(tmp_path, two_systems):
    base, adapted = two_systems
    # a test set only the adapted system decoded: one value, nothing for it to be best of
    only = adapted / "decode_en_test_only"
    only.mkdir()
    for name in ("ref", "text", "utt2spk"):
        (only / name).write_text((adapted / "decode_en_test_phone" / name).read_text())
    out = tmp_path / "report"
    assert main(["report", str(base), str(adapted), "--out", str(out), "--resamples", "50"]) == 0
    md = (out / "RESULTS.md").read_text()

    def cells(dataset: str) -> list[str]:
        row = next(line for line in md.splitlines() if line.startswith(f"| {dataset} |"))  # main table first
        return [c.strip() for c in row.strip("|").split("|")][1:]

    assert cells("en_test_only")[0] == "–" and "**" not in "".join(cells("en_test_only"))
    assert [c.startswith("**") for c in cells("en_test_phone")] == [False, True]
    page = (out / "report.html").read_text()
    assert "<b>" not in page.split("<td>en_test_only</td>", 1)[1].split("</tr>", 1)[0]


def test_report_reuses_cache_and_rescores_changed_hypotheses(tmp_path):
    exp = make_system(tmp_path / "exp", "only", 0.2, tensorboard=False)
    args = ["report", str(exp), "--out", str(tmp_path / "r"), "--resamples", "100"]
    assert main(args) == 0
    cache = exp / "decode_en_test_phone" / "score" / "wer.json"
    first = cache.stat().st_mtime_ns
    assert main(args) == 0
    assert cache.stat().st_mtime_ns == first
    text = exp / "decode_en_test_phone" / "text"
    text.write_text("".join(line.split()[0] + "\n" for line in text.read_text().splitlines()))
    os.utime(text, ns=(first + 10**9, first + 10**9))
    assert main(args) == 0
    assert json.loads(cache.read_text())["total"]["wer"] == 100.0


def test_report_single_system_without_tensorboard(tmp_path):
    exp = make_system(tmp_path / "exp", "only", 0.2, tensorboard=False)
    out = tmp_path / "r"
    # the parent folder works too: its sub-dirs with decodes are the systems
    assert main(["report", str(tmp_path / "exp"), "--out", str(out), "--resamples", "100"]) == 0
    md = (out / "RESULTS.md").read_text()
    assert "| dataset | only |" in md
    phone = next(line for line in md.splitlines() if line.startswith("| en_test_phone |"))
    assert "[" in phone and "**" not in phone and "†" not in phone  # interval, no ranking, no significance
    assert "Significance" not in md and "No TensorBoard event files" in md
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 2
    assert exp.exists()


def test_report_errors_are_clear(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "no decode_<dataset>/text" in capsys.readouterr().err
    exp = make_system(tmp_path / "exp", "bad", 0.2, tensorboard=False)
    (exp / "decode_en_test_phone" / "text").write_text("nobody hello\n")
    assert main(["report", str(exp), "--out", str(tmp_path / "r")]) == 1
    assert "decode_en_test_phone/text:1: utterance id 'nobody'" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium")


@pytest.mark.slow
@pytest.mark.system_tool
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path, two_systems):
    from PIL import Image

    base, adapted = two_systems
    out = tmp_path / "report"
    assert main(["report", str(base), str(adapted), "--out", str(out), "--resamples", "100"]) == 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            (out / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 10  # not blank
    # the plots are the large non-white areas: several thousand coloured/dark rows of pixels
    assert ((pixels < 200).sum(axis=1) > 50).sum() > 500
