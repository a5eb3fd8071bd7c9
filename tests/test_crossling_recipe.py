"""A shortened cross-lingual recipe run (two sources, one target, Adapter and Full-FT, a few epochs):
pretrain -> add-language -> decode -> the paper-shaped table. The documented run is in docs/benchmarks.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import NOISE, REPO


@pytest.mark.slow
def test_crossling_recipe_shortened(tmp_path: Path) -> None:
    recipe = tmp_path / "crossling"
    recipe.mkdir()
    (recipe / "run.sh").write_bytes((REPO / "recipes/crossling/run.sh").read_bytes())
    (recipe / "run.sh").chmod(0o755)
    (recipe / "conf").symlink_to(REPO / "conf")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "ASR_TRANSFER_NOISE_DIR": str(NOISE), "PYTHONPATH": str(REPO)}  # fmt: skip
    # the tiny preset (a few utterances per dir: en and de as sources, ro as target); character
    # vocabularies because 3-6 training utterances do not hold every letter of the dev sets
    args = ["--preset", "tiny", "--sources", "en de", "--targets", "ro", "--methods", "full adapter",
            "--source_token_type", "char",
            "--pretrain_args", "--train.epochs 3 --train.num_threads 1",
            "--adapt_args",
            "--train.epochs 3 --train.num_threads 1 --tokenizer.kind char --adapt.bottleneck 8"]  # fmt: skip
    proc = subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = (recipe / "exp/report/RESULTS.md").read_text(encoding="utf-8")
    header = next(line for line in results.splitlines() if line.startswith("| target"))
    assert header.split("|")[2:4] == [" Full-FT ", " Adapter "]
    for row in ("| ro |", "| **average** (1) |", "| trainable params (%) |", "Difference to Full-FT"):
        assert row in results, results
    assert "en_test_clean" in results and "de_test_clean" in results  # the source model's own WERs
    assert (recipe / "exp/report/report.html").stat().st_size > 1000
    assert "| ro |" in proc.stdout  # the table is printed
    share = {m: yaml.safe_load((recipe / f"exp/ro_{m}/add_language.yaml").read_text())["trainable_share"]
             for m in ("full", "adapter")}  # fmt: skip
    assert share["adapter"] < 0.2 < share["full"] == 1.0
    assert (recipe / "exp/ro_adapter/ro.adapter").is_file()
    # idempotent: a rerun skips every finished step
    again = subprocess.run(["./run.sh", "--stage", "2", *args], cwd=recipe, env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("skipped") >= 6, again.stdout
