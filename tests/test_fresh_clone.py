"""A fresh clone with nothing beside it runs the default recipe's first stages and a test fixture.

A user's clone has no ``../shared`` (or anything else) next to it: everything the default recipe
needs at run time must be in the repository or installed by its set-up. The clone reuses this
interpreter (its packages are what ``tools/setup_env.sh`` installs) with the clone first on the
path, so the code, data and configuration all come from the clone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


def _git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_fresh_clone_runs_the_first_stages_and_a_fixture(tmp_path: Path) -> None:
    if shutil.which("git") is None or _git("rev-parse", "--git-dir", cwd=REPO).returncode != 0:
        pytest.skip("needs git and a git checkout of the project to clone")
    box = tmp_path / "box"  # the clone's parent holds nothing else: no ../shared
    box.mkdir()
    clone = box / "asr-transfer"
    cloned = _git("clone", "--quiet", "--no-hardlinks", str(REPO), str(clone), cwd=tmp_path)
    assert cloned.returncode == 0, cloned.stderr
    assert [p.name for p in box.iterdir()] == ["asr-transfer"]

    # `asr-transfer` of the clone, run by this interpreter (the installed one may be another checkout)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "asr-transfer"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m asr_transfer.cli "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASR_TRANSFER_")}
    env.update(PATH=f"{bin_dir}:{Path(sys.executable).parent}:{env['PATH']}", PYTHONPATH=str(clone))

    where = subprocess.run(
        [sys.executable, "-c", "import asr_transfer; print(asr_transfer.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(clone)

    recipe = clone / "recipes" / "mini"
    run = subprocess.run(
        ["./run.sh", "--preset", "tiny", "--stage", "0", "--stop_stage", "1"],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "data dirs OK" in run.stdout and "FAILED" not in run.stdout
    corpus = json.loads((recipe / "corpus" / "corpus.json").read_text())
    assert corpus["noise"]["files"]["rain"]  # the noisy domains used the shipped recordings
    assert (recipe / "corpus" / "NOISE-NOTICE.md").read_text() == (clone / "data/noise/NOTICE.md").read_text()

    # one test of the suite with its session fixtures (synth of the tiny corpus, feature dump)
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_features.py::test_speed_perturbed_dump_and_cmvn"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert test.returncode == 0 and "1 passed" in test.stdout, test.stdout[-3000:] + test.stderr[-3000:]
