"""Every ``asr-transfer`` subcommand answers bad input with one line naming what is wrong and exit
status 2, never a traceback (``--debug`` shows it), and no command prints import noise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from asr_transfer.cli import SUBCOMMANDS, main


def bad_arguments(tmp: Path) -> dict[str, list[str]]:
    """For each subcommand, a command line naming a path that does not exist (``tmp/missing``)."""
    m, out = str(tmp / "missing"), str(tmp / "out")
    return {
        "synth": ["--preset", "tiny", "--out", out, "--noise-dir", m],
        "validate-data": [m],
        "subset": [m, "--utts", "5", "--out", out],
        "features": [m, "--out", out],
        "tokenizer": [m, "--lang", "en", "--out", out],
        "train": ["--config", m, "--exp", out],
        "add-language": [
            "--base",
            m,
            "--lang",
            "ro",
            "--train",
            m,
            "--dev",
            m,
            "--method",
            "head",
            "--exp",
            out,
        ],
        "convert-adapter": [m, out],
        "decode": ["--exp", m, "--data", m],
        "transcribe": [m, "--exp", m],
        "pseudo-label": ["--exp", m, "--data", m, "--out", out],
        "distance": ["--exp", m, "--data", m, "--source", m],
        "choose-decoding": ["--exp", m, "--data", m, "--candidates", m],
        "average": [m, "--out", out],
        "score": [m, m],
        "report": [m, "--out", out],
    }


def test_the_list_covers_every_subcommand(tmp_path: Path) -> None:
    assert sorted(bad_arguments(tmp_path)) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_a_missing_path_is_one_line_and_status_2(command: str, tmp_path: Path, capsys) -> None:
    assert main([command, *bad_arguments(tmp_path)[command]]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"asr-transfer {command}: error: ") and err.count("\n") == 1, err
    assert str(tmp_path / "missing") in err and "Traceback" not in err


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "asr_transfer.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_real_process_says_one_line_without_noise_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    # decode imports torch and ESPnet's attention, whose import announces a missing flash-attn
    proc = _run("decode", "--exp", str(tmp_path / "missing"), "--data", str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr.startswith("asr-transfer decode: error: ") and proc.stderr.count("\n") == 1, (
        proc.stderr
    )
    assert "Flash Attention" not in proc.stderr + proc.stdout
    # ... although the command did import the module that prints it (through our quiet loader)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    code = (
        "import sys, asr_transfer.commands.decode; "
        "print(type(sys.modules['espnet.nets.pytorch_backend.transformer.attention'].__loader__).__name__)"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert (imported.stdout, imported.stderr) == ("_QuietLoader\n", "")
    debug = _run("--debug", "score", str(tmp_path / "ref"), str(tmp_path / "hyp"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and str(tmp_path / "ref") in debug.stderr


def test_one_line_names_the_file_and_line_of_yaml_and_data_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [1e-3\n")
    assert main(["train", "--config", str(bad), "--exp", str(tmp_path / "e")]) == 2
    assert f"{bad}:2:1: invalid YAML: " in capsys.readouterr().err
    assert main(["train", "--config", str(REPO / "conf/train/mini.yaml"), "--exp", str(tmp_path / "e"),
                 "--train.lr", "[1"]) == 2  # fmt: skip
    assert "override --train.lr: '[1' is not a YAML value" in capsys.readouterr().err
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("b x.wav\na y.wav\n")
    (data / "text").write_text("a hi\nb ho\n")
    (data / "utt2spk").write_text("a s\nb s\n")
    assert main(["features", str(data), "--out", str(tmp_path / "dump")]) == 2
    err = capsys.readouterr().err  # the first problem; validate-data lists every one
    assert err.count("\n") == 1 and f"{data / 'wav.scp'}:2: id 'a' is out of order" in err
    (tmp_path / "x.pt").write_text("not a checkpoint")
    assert main(["average", str(tmp_path / "x.pt"), "--out", str(tmp_path / "avg.pt")]) == 2
    assert capsys.readouterr().err == (
        f"asr-transfer average: error: {tmp_path / 'x.pt'}: not a model checkpoint "
        "(not a torch file of tensors)\n"
    )


@pytest.mark.parametrize(("user", "seen"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_commands_run_with_a_passive_openmp_wait_unless_the_user_chose_one(
    tmp_path: Path, user: str | None, seen: str
) -> None:
    (tmp_path / "ref").write_text("u1 one two\n")
    (tmp_path / "hyp").write_text("u1 one\n")
    code = (
        "import os, sys; from asr_transfer.cli import main; "
        f"main(['score', {str(tmp_path / 'ref')!r}, {str(tmp_path / 'hyp')!r}]); "
        "print(os.environ['OMP_WAIT_POLICY'], file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | (
        {"OMP_WAIT_POLICY": user} if user else {}
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stderr.splitlines()[-1] == seen, out.stderr
