"""`recipes/mini/run.sh --adapt_jobs N`: stage 8's adaptation chains run N at a time, each into its own
log, and a chain that fails fails the stage, naming its log, after the others finished. The recipe
runs with a stand-in `asr-transfer` that records its calls (the real runs: tests/test_recipe_e2e.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import REPO

# records each call with its start and end; `train` into a run dir named *mmd* fails
STAND_IN = """#!/bin/sh
echo "start $*" >> "$CALLS"
sleep 1
case "$*" in *"--exp exp/adapt/mmd_"*) echo "mmd broke" >&2; exit 3;; esac
echo "end $*" >> "$CALLS"
"""


def stage_8(
    tmp_path: Path, methods: str, jobs: str, *extra: str
) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "asr-transfer").write_text(STAND_IN)
    (bin_dir / "asr-transfer").chmod(0o755)
    recipe = tmp_path / "mini"
    recipe.mkdir(exist_ok=True)
    (recipe / "run.sh").write_bytes((REPO / "recipes/mini/run.sh").read_bytes())
    (recipe / "run.sh").chmod(0o755)
    if not (recipe / "conf").exists():
        (recipe / "conf").symlink_to(REPO / "conf")
        (tmp_path / "common").symlink_to(REPO / "recipes/common")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(
        ["bash", "./run.sh", "--stage", "8", "--stop_stage", "8", "--adapt_domains", "room mic",
         "--adapt_methods", methods, "--adapt_jobs", jobs, *extra],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
    return proc, calls


def test_adaptation_chains_run_two_at_a_time_each_into_its_log(tmp_path: Path) -> None:
    proc, calls = stage_8(tmp_path, "self_training cmatch_ctc_pred", "2")
    assert proc.returncode == 0, proc.stderr
    runs = ["self_training_room", "cmatch_ctc_pred_room", "self_training_mic", "cmatch_ctc_pred_mic"]
    assert sorted(
        c.split("--exp exp/adapt/")[1].split()[0] for c in calls if c.startswith("end train")
    ) == sorted(runs)
    # two chains overlap: the second starts before the first ends
    assert calls[0].startswith("start train") and calls[1].startswith("start train"), calls
    for run in runs:
        log = (tmp_path / "mini/exp/adapt/log" / f"{run}.log").read_text()
        assert f"-> exp/adapt/{run}" in log  # the chain's own progress, in its own log


def test_a_failed_chain_fails_the_stage_after_the_others_and_names_its_log(tmp_path: Path) -> None:
    proc, calls = stage_8(tmp_path, "mmd self_training", "2")
    assert proc.returncode == 1
    assert (
        "stage 8: 2 job(s) failed, see: exp/adapt/log/mmd_room.log exp/adapt/log/mmd_mic.log" in proc.stderr
    )
    assert "mmd broke" in (tmp_path / "mini/exp/adapt/log/mmd_room.log").read_text()
    assert sum(c.startswith("end train") and "self_training_" in c for c in calls) == 2  # the others ran
    # one job at a time is the plain serial run: the first failure stops the stage at once
    (tmp_path / "serial").mkdir()
    one, serial_calls = stage_8(tmp_path / "serial", "mmd self_training", "1")
    assert one.returncode != 0 and "mmd broke" in one.stderr
    assert serial_calls == [c for c in serial_calls if "mmd_room" in c]  # nothing after the failure
    # a number of jobs that is none is refused before any work
    (tmp_path / "none").mkdir()
    zero, none_calls = stage_8(tmp_path / "none", "mmd", "0")
    assert (
        zero.returncode == 2
        and "--adapt_jobs 0: a positive number of jobs" in zero.stderr
        and none_calls == []
    )


def test_the_control_is_not_re_labelled_between_rounds(tmp_path: Path) -> None:
    """The control reads no target audio: its later rounds train on as they are, with no pseudo-labelling
    (which would cost minutes a round for labels nothing reads); a method's rounds re-label."""
    proc, calls = stage_8(tmp_path, "source_only self_training", "1", "--pl_rounds", "3")
    assert proc.returncode == 0, proc.stderr
    control = [c for c in calls if c.startswith("start") and "source_only" in c]
    assert len(control) == 3 and all(c.startswith("start train") for c in control), control
    assert all("--data.target [{dump: dump/pseudo/en_train_room, lang: en}]" in c for c in control)
    relabel = [c for c in calls if c.startswith("start pseudo-label")]
    assert len(relabel) == 2 * 2 * 2, relabel  # self_training: rounds 2 and 3, train and dev, room and mic
    assert all("--exp exp/adapt/self_training_" in c for c in relabel)


def test_a_jobs_status_outlives_bash_forgetting_its_pid(tmp_path: Path) -> None:
    """In a stage of hours the shell spawns more processes than pid_max, a finished job's PID is reused and
    bash forgets its status ('wait: pid N is not a child of this shell'): the whole table's stage 8 then
    failed after every chain had finished. A plain `wait` makes bash forget the same way."""
    script = f"""adapt_jobs=2
. {REPO}/recipes/common/jobs.sh
run_job {tmp_path}/bad.log false
run_job {tmp_path}/good.log true
run_job {tmp_path}/slow.log sleep 1
wait
finish_jobs 8
"""
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"stage 8: 1 job(s) failed, see: {tmp_path}/bad.log" in proc.stderr, proc.stderr
