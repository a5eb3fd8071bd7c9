"""GPU-only checks (skipped without CUDA): bf16 autocast training and decoding on the device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import cli, train_args

from asr_transfer.decode import DecodeConfig, Recognizer

pytestmark = pytest.mark.gpu


def test_bf16_training_on_gpu_finishes_with_finite_losses(
    tiny_setup: dict[str, Path], tmp_path: Path
) -> None:
    exp = tmp_path / "gpu"
    args = [a if a != "cpu" else "auto" for a in train_args(tiny_setup, exp, "--train.epochs", "2")]
    assert cli(*args) == 0
    state = torch.load(exp / "checkpoints" / "last.pt", weights_only=False)["state"]
    assert state["skipped"] == 0 and state["step"] > 0


def test_gpu_and_cpu_greedy_decoding_agree(tiny_exp: Path) -> None:
    feats, lens = torch.randn(3, 150, 80), torch.tensor([150, 120, 80])
    cfg = DecodeConfig(mode="ctc_greedy")
    cpu = Recognizer.from_exp(tiny_exp, decode=cfg)
    gpu = Recognizer.from_exp(tiny_exp, decode=cfg, device="cuda")
    from asr_transfer.decode import decode_batch

    assert decode_batch(cpu.model, feats, lens, "en", cfg) == decode_batch(
        gpu.model, feats.cuda(), lens.cuda(), "en", cfg
    )
