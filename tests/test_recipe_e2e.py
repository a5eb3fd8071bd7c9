"""One real end-to-end run of the mini recipe on CPU: synth -> validate -> features -> tokenizer ->
train (tiny model, few epochs) -> decode every domain -> score/report, with a WER bound."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

# Clean-test WER the recipe must reach even in this shortened run (the full recipe's figure is
# recorded in docs/benchmarks.md); far above it means training or decoding is broken.
WER_BOUND = 25.0


@pytest.mark.slow
def test_mini_recipe_end_to_end(tmp_path: Path) -> None:
    recipe = tmp_path / "mini"
    recipe.mkdir()
    shutil.copy(REPO / "recipes/mini/run.sh", recipe / "run.sh")
    (recipe / "conf").symlink_to(REPO / "conf")
    (recipe.parent / "common").symlink_to(REPO / "recipes/common")  # the shared option parser
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    # without speed perturbation and with ~half the recipe's steps, to keep CI short;
    # the full recipe's WER is in docs/benchmarks.md
    proc = subprocess.run(
        [
            "./run.sh",
            "--speed_perturb",
            "",
            "--train_args",
            "--train.epochs 10",
            "--adapt_args",
            "--train.epochs 2",
        ],
        cwd=recipe,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    exp = recipe / "exp" / "tiny_clean"
    domains = ["clean", "phone", "laptop", "farfield", "rain", "wind", "laugh"]
    wer = {}
    for d in domains:
        score = json.loads((exp / f"decode_en_test_{d}" / "score" / "wer.json").read_text())
        wer[d] = score["total"]["wer"]
        assert score["total"]["sentences"] == 600
    print("WER per domain:", wer)
    assert wer["clean"] <= WER_BOUND, wer
    results = (recipe / "exp" / "report" / "RESULTS.md").read_text()
    assert "en_test_clean" in results and "en_test_farfield" in results
    assert (recipe / "exp" / "report" / "report.html").stat().st_size > 10_000
    assert "| clean" in proc.stdout or "en_test_clean" in proc.stdout  # the table is printed
    # stages 7-10: pseudo-labels of the room domain (the paper's regime), CMatch adaptation, its table
    # against source-only
    pseudo = recipe / "exp" / "pseudo" / "en_train_room"
    kept = len((pseudo / "text").read_text().splitlines())
    assert kept == 700 and len((pseudo / "confidence").read_text().splitlines()) == 1000
    assert len((pseudo / "en_train_room_unlabelled" / "wav.scp").read_text().splitlines()) == 300
    adapted = recipe / "exp" / "adapt" / "cmatch_ctc_pred_room"
    assert (recipe / "exp" / "tiny_clean" / "decode.yaml").exists()  # the decoding chosen on dev
    for test_set in ("en_test_room", "en_test_clean"):
        assert (adapted / f"decode_{test_set}" / "score" / "wer.json").exists()
    # the adaptation's dev criterion reads the held-out voices' split (neither trained on nor tested)
    saved = yaml.safe_load((adapted / "config.yaml").read_text())
    data = saved["data"]
    assert data["dev"] == [{"dump": "dump/en_heldout_clean", "lang": "en"}]
    assert data["target_dev"] == [{"dump": "dump/pseudo/en_heldout_room", "lang": "en"}]
    assert len((recipe / "exp/pseudo/en_heldout_room/confidence").read_text().splitlines()) == 300
    # the method's own tuned point (conf/adapt/<method>.yaml: lr and weight)
    assert saved["train"]["lr"] == 0.002 and saved["adapt"]["weights"]["cmatch"] == 0.5
    assert saved["adapt"]["kernel"] == "gaussian"
    table = (recipe / "exp" / "report_adapt" / "RESULTS.md").read_text()
    assert "CMatch (ctc_pred)" in table and "Source-only" in table and "room" in table
    assert "CMatch (ctc_pred)" in proc.stdout  # printed at the end of the run
    # iterative pseudo-labelling: round 2 re-labels the target with round 1's model and adapts from it;
    # with two adaptation seeds, each seed has its own rounds (two chains at a time), and the table pools
    # the seeds; their soup (the weight average of the seeds' final models) is a column of its own
    rounds = ["./run.sh", "--stage", "8", "--stop_stage", "10", "--speed_perturb", "", "--adapt_methods",
              "self_training", "--pl_rounds", "2", "--adapt_seeds", "1 2", "--adapt_soup", "true",
              "--adapt_args", "--train.epochs 1", "--adapt_jobs", "2"]  # fmt: skip
    two = subprocess.run(rounds, cwd=recipe, env=env, capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    for seed, sfx in ((1, ""), (2, "_seed2")):
        final = recipe / f"exp/adapt/self_training_room{sfx}"
        round1 = final.parent / f"{final.name}_round1"
        relabelled = recipe / f"exp/pseudo_self_training{sfx}_round2/en_train_room"
        assert (round1 / "model.pt").exists() and (final / "model.pt").exists()
        made_by = yaml.safe_load((relabelled / "pseudo_label.yaml").read_text())
        assert made_by["exp"] == f"exp/adapt/self_training_room{sfx}_round1" and made_by["kept"] == 700
        # ... and says how much it changed round 1's labels of the same audio
        change = made_by["change_from_previous"]
        assert change["previous"] == "exp/pseudo/en_train_room" and change["utts"] == 1000
        assert 0 < change["word_change"] and 0 < change["utts_changed"] <= 100  # a new model, new labels
        command = (final / "command.txt").read_text()
        assert f"--train.init exp/adapt/self_training_room{sfx}_round1/model.pt" in command
        train = yaml.safe_load((final / "config.yaml").read_text())["train"]
        assert train["seed"] == seed and train["lr"] == 0.002  # self-training's tuned lr, not 5e-4
        assert (final / "decode_en_test_room" / "score" / "wer.json").exists()
        # the two seeds' chains ran side by side (--adapt_jobs 2), each logging into its own file
        assert (
            f"-> exp/adapt/self_training_room{sfx}"
            in (recipe / f"exp/adapt/log/self_training_room{sfx}.log").read_text()
        )
    table = (recipe / "exp" / "report_adapt" / "RESULTS.md").read_text()
    assert "Self-training: 2 training seeds per target domain (train.seed 1, 2)" in table
    soup = recipe / "exp/adapt/self_training_room_soup"
    assert yaml.safe_load((soup / "soup.yaml").read_text())["experiments"] == [
        "exp/adapt/self_training_room", "exp/adapt/self_training_room_seed2"]  # fmt: skip
    assert (soup / "decode_en_test_room" / "score" / "wer.json").exists()
    assert "| Self-training soup |" in table.split("## Forgetting", 1)[1]
    # every stage is idempotent: a rerun of the same command skips all work and succeeds
    rerun = ["./run.sh", "--stage", "2", "--stop_stage", "5", "--speed_perturb", ""]
    again = subprocess.run(rerun, cwd=recipe, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "skipped" in again.stdout, again.stdout[-2000:] + again.stderr[-2000:]
    # ... while other options than the dump was made with stop at stage 2, naming the dump's record
    other = subprocess.run(["./run.sh", "--stage", "2", "--stop_stage", "2"], cwd=recipe, env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert (
        other.returncode != 0
        and "speed_perturb: dumped with speeds 1.0, asked for 1.0 0.9 1.1" in other.stderr
    )
