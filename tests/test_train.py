"""The training loop on real (tiny) data: outputs, kill + resume, 2-process DDP, bad input."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, cli, train_args

from asr_transfer.data.dataset import load_dump
from asr_transfer.data.kaldi import DataError, read_table
from asr_transfer.text.tokenizer import Tokenizer


def test_training_writes_model_resolved_config_and_tensorboard(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    exp = tmp_path / "exp"
    assert cli(*train_args(tiny_setup, exp, "--train.epochs", "3", "--train.keep_best", "2")) == 0
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["model"]["encoder"]["num_blocks"] == 2 and cfg["train"]["epochs"] == 3
    assert list((exp / "tensorboard").glob("events.out.tfevents.*"))
    averaged = torch.load(exp / "model.pt")
    assert len(averaged["averaged_epochs"]) == 2
    assert len(list((exp / "checkpoints").glob("epoch*.pt"))) == 2  # only the best k are kept
    assert (exp / "tokenizers" / "en" / "tokens.txt").exists()
    state = torch.load(exp / "checkpoints" / "last.pt", weights_only=False)["state"]
    assert state["epoch"] == 4 and state["skipped"] == 0 and state["step"] > 0
    # rerunning a finished experiment resumes past the last epoch and only re-averages
    assert cli(*train_args(tiny_setup, exp, "--train.epochs", "3", "--train.keep_best", "2")) == 0
    assert "resumed from" in (exp / "train.log").read_text()


def test_patience_stops_when_the_dev_loss_stops_improving(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    # a learning rate of 0 keeps the dev loss equal: epoch 1 stays the best, one more epoch and out
    exp = tmp_path / "exp"
    args = train_args(tiny_setup, exp, "--train.epochs", "6", "--train.patience", "1", "--train.lr", "0")
    assert cli(*args) == 0
    epochs = re.findall(r"epoch (\d+): dev loss", (exp / "train.log").read_text())
    assert epochs == ["1", "2"]
    assert torch.load(exp / "model.pt")["averaged_epochs"] == [1, 2]


def test_transcripts_outside_the_vocabulary_name_file_and_line(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    for name in ("feats.scp", "utt2num_frames"):
        (dump / name).write_text((tiny_setup["train"] / name).read_text())
    lines = (tiny_setup["train"] / "text").read_text().splitlines()
    lines[1] = lines[1] + " ø"
    (dump / "text").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"text:2: characters outside the en vocabulary: ø"):
        load_dump(dump, "en", Tokenizer.load(tiny_setup["tok"]))


def test_an_upper_case_vocabulary_gets_upper_case_transcripts(tiny_setup: dict[str, Path]) -> None:
    """ESPnet's English models often spell in capitals; our normaliser lower-cases."""
    tok = Tokenizer.load(tiny_setup["tok"])
    upper = Tokenizer([t if t.startswith("<") else t.upper() for t in tok.tokens], lang="en")
    lower_utts, upper_utts = (
        load_dump(tiny_setup["train"], "en", tok),
        load_dump(tiny_setup["train"], "en", upper),
    )
    assert upper.upper_case and not tok.upper_case
    assert [u.tokens for u in upper_utts] == [u.tokens for u in lower_utts]  # same ids, capital units
    assert upper.decode(upper_utts[0].tokens) == tok.decode(lower_utts[0].tokens).upper()


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
    )


def _torchrun(cli_args: list[str], timeout: int = 400) -> str:
    """``asr-transfer CLI_ARGS`` in 2 processes (torch.distributed.run); the test fails unless both exit 0."""
    proc = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                 "-m", "asr_transfer.cli", *cli_args])  # fmt: skip
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"2-process run hung: {cli_args[:1]}")
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_resumes_and_matches_an_uninterrupted_run(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    # one utterance per batch and a checkpoint every step: many places to be killed in
    extra = ["--train.epochs", "3", "--train.max_batch_frames", "400", "--train.save_every_steps", "1"]
    cmd = [sys.executable, "-m", "asr_transfer.cli", *train_args(tiny_setup, tmp_path / "killed", *extra)]
    proc = _run(cmd)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline:
        if last.exists():
            state = torch.load(last, weights_only=False)["state"]
            if state["epoch"] == 2 and state["batch"] >= 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=False)["state"]
    assert killed_at["epoch"] == 2 and not (tmp_path / "killed" / "model.pt").exists()

    out = _run(cmd).communicate()[0]
    assert "resumed from" in out, out[-2000:]
    cmd_ref = [sys.executable, "-m", "asr_transfer.cli", *train_args(tiny_setup, tmp_path / "ref", *extra)]
    ref_out = _run(cmd_ref).communicate()[0]
    resumed = torch.load(tmp_path / "killed" / "model.pt")["model"]
    reference = torch.load(tmp_path / "ref" / "model.pt")["model"]
    assert (tmp_path / "ref" / "model.pt").exists(), ref_out[-2000:]
    # same data order, optimiser and RNG state: the resumed run ends where an uninterrupted one does
    for key, value in reference.items():
        assert torch.allclose(resumed[key], value, atol=1e-5), key


@pytest.mark.slow
def test_two_process_gloo_ddp_trains(tiny_setup: dict[str, Path], tmp_path: Path) -> None:
    exp = tmp_path / "ddp"
    _torchrun(train_args(tiny_setup, exp, "--train.epochs", "2", "--train.max_batch_frames", "700"))
    assert (exp / "model.pt").exists()
    state = torch.load(exp / "checkpoints" / "last.pt", weights_only=False)["state"]
    assert state["epoch"] == 3


def test_training_with_data_loader_workers_gives_the_model_trained_without(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    models = {}
    for workers in (0, 2):
        exp = tmp_path / f"w{workers}"
        assert cli(*train_args(tiny_setup, exp, "--train.epochs", "2", "--train.max_batch_frames", "700",
                               "--train.num_workers", str(workers))) == 0  # fmt: skip
        models[workers] = torch.load(exp / "model.pt")["model"]
    for key, value in models[0].items():
        assert torch.equal(value, models[2][key]), key
    log = (tmp_path / "w2" / "train.log").read_text()
    assert re.search(r"padding \d+\.\d% of \d+ input frames", log), log


def _poisoned_dump(src: Path, dst: Path) -> str:
    """A copy of the dump ``src`` whose shortest utterance's features are NaN; returns its id."""
    shutil.copytree(src, dst)
    feats = dict(kaldiio.load_scp(str(src / "feats.scp")))
    frames = {u: int(n) for u, n in read_table(src / "utt2num_frames").items()}
    bad = min(frames, key=frames.get)
    mats = {u: np.full_like(m, np.nan) if u == bad else np.asarray(m) for u, m in feats.items()}
    kaldiio.save_ark(str(dst / "feats.ark"), mats, scp=str(dst / "feats.scp"))
    return bad


def test_a_non_finite_loss_skips_its_update_with_and_without_a_host_sync(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    # one utterance per batch, one of them NaN: one skipped batch per epoch; constant lr, so the
    # device-side skip (fused Adam, no host read; its schedule advances) must give the host-side model
    setup = {**tiny_setup, "train": tmp_path / "dump"}
    _poisoned_dump(tiny_setup["train"], setup["train"])
    runs = {}
    for fused in ("false", "true"):
        exp = tmp_path / f"fused_{fused}"
        assert cli(*train_args(setup, exp, "--train.epochs", "2", "--train.max_batch_frames", "400",
                               "--train.accum_grad", "2", "--train.scheduler", "{type: constant}",
                               "--train.lr", "0.001", "--train.fused_optimizer", fused)) == 0  # fmt: skip
        ck = torch.load(exp / "checkpoints" / "last.pt", weights_only=False)
        runs[fused] = ck, torch.load(exp / "model.pt")["model"]
    (host, host_model), (device, device_model) = runs["false"], runs["true"]
    assert host["state"]["skipped"] == device["state"]["skipped"] == 2
    assert device["state"]["step"] >= host["state"]["step"] > 0
    for key, value in host_model.items():
        # fused and foreach kernels round differently; a key bias has a gradient that is zero but for
        # rounding, which Adam (eps 1e-9) turns into lr-sized steps of either sign
        atol = 4 * 0.001 if key.endswith("linear_k.bias") else 1e-5
        assert torch.isfinite(value).all() and torch.allclose(value, device_model[key], atol=atol), key
    for moments in device["optim"]["state"].values():
        assert all(torch.isfinite(t).all() for t in moments.values())


@pytest.mark.slow
def test_two_process_ddp_skips_a_batch_non_finite_on_one_rank_on_both_without_a_host_read(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    # the poisoned batch lands on one rank (seed 1: rank 0 in epoch 1, rank 1 in epoch 2); the
    # device-side flag is all-reduced, so both skip it, and rank 0's saved count is 2
    setup = {**tiny_setup, "train": tmp_path / "dump"}
    _poisoned_dump(tiny_setup["train"], setup["train"])
    exp = tmp_path / "ddp"
    _torchrun(train_args(setup, exp, "--train.epochs", "2", "--train.max_batch_frames", "400",
                         "--train.fused_optimizer", "true"))  # fmt: skip
    ck = torch.load(exp / "checkpoints" / "last.pt", weights_only=False)
    assert ck["state"]["skipped"] == 2 and ck["state"]["step"] > 0
    assert all(torch.isfinite(v).all() for v in torch.load(exp / "model.pt")["model"].values())
