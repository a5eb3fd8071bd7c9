"""bench/gpu_suite.sh: its CPU smoke mode runs every part (step profile included) and writes every figure;
a failing part is logged and the rest still runs; a run out of time still writes every part."""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "bench" / "gpu_suite.sh"


def _suite_module():
    spec = importlib.util.spec_from_file_location("gpu_suite", REPO / "bench" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_driver_doctests() -> None:
    """bench/ is outside the doctest paths: its parsers and process-group timeout are checked here."""
    result = doctest.testmod(_suite_module())
    assert result.attempted >= 6 and result.failed == 0


def test_a_run_out_of_time_still_reports_every_part(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, REPO / "bench/gpu_suite.py", "--device", "cpu", "--time-limit", "5"]
    cmd += ["--out", out, "--work", tmp_path / "work"]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, timeout=60)
    parts = json.loads((out / "gpu_suite.json").read_text())["parts"]
    assert list(parts) == [
        "setup", "machine", "imports", "data", "gpu_tests",
        "train_b2000", "train_b2000_amp", "train_b4000", "train_b4000_amp", "profile", "decode",
    ]  # fmt: skip
    assert all(
        p["status"] == "skipped" and "no time left" in p["error"] for n, p in parts.items() if n != "setup"
    )
    assert "| decode | skipped |" in (out / "gpu_suite.md").read_text()


@pytest.mark.slow
def test_cpu_smoke_run_has_every_part_and_survives_a_failing_one(tmp_path: Path) -> None:
    out, work, no_wheels = tmp_path / "out", tmp_path / "work", tmp_path / "no_wheels"
    no_wheels.mkdir()
    env = {**os.environ, "PYTHON": sys.executable, "GPU_SUITE_FAIL": "imports"}
    # one budget (the default CPU run has two: same code, twice the training processes)
    cmd = [SUITE, "--device", "cpu", "--out", out, "--work", work, "--wheels", no_wheels, "--budgets", "4000"]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((out / "gpu_suite.json").read_text())
    parts = result["parts"]
    assert list(parts) == [
        "setup", "machine", "imports", "data", "gpu_tests", "train_b4000", "train_b4000_amp", "profile",
        "decode",
    ]  # fmt: skip
    for name, p in parts.items():
        assert p["status"] in ("ok", "failed", "timeout", "skipped"), name
        assert p["seconds"] >= 0, name

    # the forced failure is logged with its error, and every later part still ran
    imports = parts["imports"]
    assert imports["status"] == "failed" and "forced failure" in imports["error"]
    assert "forced failure" in Path(imports["log"]).read_text()
    with tarfile.open(out / "gpu_suite_logs.tar.gz") as tar:
        assert {"logs/setup.log", "logs/imports.log", "logs/decode.log"} <= set(tar.getnames())

    assert parts["setup"]["status"] == "ok" and parts["setup"]["figures"]["wheels_installed"] == 0
    machine = parts["machine"]
    assert machine["status"] == "ok" and machine["figures"]["torch"] and machine["figures"]["cpu_count"] >= 1
    assert result["machine"] == machine["figures"]
    assert parts["data"]["status"] == "ok" and parts["data"]["figures"]["en_train_clean_utts"] > 0
    tests = parts["gpu_tests"]
    assert tests["status"] == "ok" and tests["figures"]["tests"] >= 2
    assert tests["figures"]["failed"] == tests["figures"]["errors"] == 0

    train = parts["train_b4000"]
    assert train["status"] == "ok", train.get("error")
    assert train["figures"]["budget_frames"] == 4000
    systems = train["figures"]["systems"]
    espnet = [s for s in systems if s.startswith("espnet")]
    assert "ours" in systems and espnet
    for s in systems.values():
        assert s["audio_s_per_s"] > 0 and s["s_per_step"] > 0
    # the same model on both sides
    assert {s["params"] for s in systems.values()} == {systems["ours"]["params"]}
    # ESPnet's --use_amp is CUDA-only: the part is there, skipped, saying why
    amp = parts["train_b4000_amp"]
    assert amp["status"] == "skipped" and "CUDA" in amp["error"]

    # old vs new step path, at the first budget, one step each: every phase timed, shares of a step
    profile = parts["profile"]
    assert profile["status"] == "ok", profile.get("error")
    assert profile["figures"]["budget_frames"] == 4000 and profile["figures"]["new_over_old"] > 0
    paths = profile["figures"]["systems"]
    assert set(paths) == {"old", "new"}
    for r in paths.values():
        assert r["s_per_step"] > 0 and r["forward"] > 0 and r["backward"] > 0
        shares = [r[f"{p}_share"] for p in ("data", "forward", "backward", "optim")]
        assert min(shares) >= 0 and sum(shares) == pytest.approx(1)
    exact = profile["figures"]["script_json"]["paths"]  # the script's --json, unrounded
    assert set(exact) == {"old", "new"} and all(r["audio_s_per_s"] > 0 for r in exact.values())
    for path, r in paths.items():
        for key in ("data", "forward", "backward", "optim"):
            assert r[key] == pytest.approx(exact[path][key], abs=6e-5), (path, key)

    decode = parts["decode"]
    assert decode["status"] == "ok", decode.get("error")
    rows = decode["figures"]["systems"]
    assert any(name.startswith("ESPnet") for name in rows) and any("ctc_greedy" in name for name in rows)
    for r in rows.values():
        assert r["rtf"] > 0 and r["utts"] == decode["figures"]["utts"] > 0
    # the printed table is read column by column as the script's own --json has it
    exact = {r["name"]: r for r in decode["figures"]["script_json"]["systems"]}
    assert set(rows) == set(exact)
    for name, r in rows.items():
        assert r["seconds"] == pytest.approx(exact[name]["seconds"], abs=0.006), name

    table = (out / "gpu_suite.md").read_text()
    assert "| imports | failed |" in table and "| ours |" in table and "ctc_greedy" in table
    assert "| profile | ok |" in table and "| old | " in table and "| new | " in table
