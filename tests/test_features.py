"""Features: Kaldi fbank, CMVN stats, speed-perturbed dumps."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from conftest import cli

from asr_transfer.data.features import fbank, load_cmvn
from asr_transfer.data.kaldi import DataError, read_table


def test_fbank_matches_torchaudio_kaldi_and_is_deterministic() -> None:
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
    a, b = fbank(wave), fbank(wave)
    assert a.shape == (98, 80) and torch.equal(a, b)


def test_speed_perturbed_dump_and_cmvn(tiny_corpus: Path, tmp_path: Path) -> None:
    data = tiny_corpus / "en_train_clean"
    assert (
        cli(
            "features", data, "--out", tmp_path, "--speed-perturb", "0.9", "1.1", "--cmvn", tmp_path / "c.npz"
        )
        == 0
    )
    out = tmp_path / data.name
    frames = {k: int(v) for k, v in read_table(out / "utt2num_frames").items()}
    utt = next(iter(read_table(data / "text")))
    assert frames[f"sp0.9-{utt}"] > frames[utt] > frames[f"sp1.1-{utt}"]
    assert read_table(out / "text")[f"sp1.1-{utt}"] == read_table(data / "text")[utt]
    feats = dict(kaldiio.load_scp(str(out / "feats.scp")))
    assert feats[utt].shape == (frames[utt], 80)
    mean, istd = load_cmvn(tmp_path / "c.npz")
    stacked = np.concatenate(list(feats.values()))
    assert np.allclose(mean.numpy(), stacked.mean(0), atol=1e-3)
    assert np.allclose(1 / istd.numpy(), stacked.std(0), rtol=1e-3)
    # a rerun with the same speeds skips the dump and re-reads the same statistics
    args = [
        "features",
        data,
        "--out",
        tmp_path,
        "--speed-perturb",
        "0.9",
        "1.1",
        "--cmvn",
        tmp_path / "c.npz",
    ]
    assert cli(*args) == 0
    assert np.allclose(load_cmvn(tmp_path / "c.npz")[0], mean)
    # other speeds than the dump holds: an error naming its record, never a silent reuse
    with pytest.raises(DataError, match=r"speed_perturb: dumped with speeds 1.0 0.9 1.1, asked for 1.0"):
        cli("features", data, "--out", tmp_path)
