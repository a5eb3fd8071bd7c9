"""Data stages under bad conditions.

- ``features``, ``synth``, ``pseudo-label`` and ``decode`` killed with SIGKILL and rerun give the
  uninterrupted run's output byte for byte; the killed run's half-written output is never taken as finished.
- A read-only output folder or a full disk is one clear error naming the folder.
- A file with non-finite samples stops the feature dump (so training never starts) naming it.
- ``features --jobs 2`` writes the serial dump byte for byte.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
from conftest import REPO, cli, cli_as_user

from asr_transfer.data.kaldi import DataError, load_data_dir, write_data_dir

SPEEDS = ("--speed-perturb", "0.9", "1.1")


def _start(*args: str | os.PathLike) -> subprocess.Popen:
    """``asr-transfer ARGS`` in its own process (so that it can be killed)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "asr_transfer.cli", *map(str, args)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fail if it ends (or the time runs out) before."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, (
            f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        )
        assert time.monotonic() < deadline, "the run never reached the point to kill it at"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with ``root`` itself replaced in the contents."""
    return {
        str(p.relative_to(root)): p.read_bytes().replace(str(root).encode(), b"<ROOT>")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def many(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir of 100 utterances (the tiny training audio, repeated): long enough to kill mid-dump."""
    src = load_data_dir(tiny_corpus / "en_train_clean")
    wav, text, utt2spk = {}, {}, {}
    for i in range(100 // len(src.utts) + 1):
        for utt in src.utts:
            spk = src.utt2spk[utt]
            new = f"{spk}-r{i:03d}-{utt}"
            wav[new], text[new], utt2spk[new] = src.wav[utt], src.text[utt], spk
    out = tmp_path_factory.mktemp("many") / "en_train_many"
    write_data_dir(out, wav=wav, text=text, utt2spk=utt2spk)
    return out


def test_features_jobs_write_the_serial_dump_byte_for_byte(tiny_corpus: Path, tmp_path: Path) -> None:
    data = tiny_corpus / "en_train_clean"
    for jobs in ("1", "2"):
        assert cli("features", data, "--out", tmp_path / jobs, *SPEEDS, "--cmvn", tmp_path / f"{jobs}.npz",
                   "--jobs", jobs) == 0  # fmt: skip
    assert _files(tmp_path / "1") == _files(tmp_path / "2")
    serial, parallel = np.load(tmp_path / "1.npz"), np.load(tmp_path / "2.npz")
    for key in ("mean", "istd", "count"):
        assert np.array_equal(serial[key], parallel[key])


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_features_killed_mid_dump_then_rerun_equal_an_uninterrupted_run(
    many: Path, tmp_path: Path, jobs: str
) -> None:
    ref_root, root = tmp_path / "ref", tmp_path / "run"
    assert cli("features", many, "--out", ref_root, *SPEEDS, "--cmvn", tmp_path / "ref.npz") == 0
    dump = root / many.name
    args = ("features", many, "--out", root, *SPEEDS, "--cmvn", tmp_path / "run.npz", "--jobs", jobs)
    tmp_ark = dump / "feats.ark.tmp"
    _kill_when(_start(*args), lambda: tmp_ark.is_file() and tmp_ark.stat().st_size > 1_000_000)
    assert not (dump / "feats.scp").exists()  # the killed dump is not marked finished ...
    assert cli(*args) == 0  # ... so the rerun dumps it again instead of skipping it
    assert _files(root / many.name) == _files(ref_root / many.name)
    ref, run = np.load(tmp_path / "ref.npz"), np.load(tmp_path / "run.npz")
    assert all(np.array_equal(ref[k], run[k]) for k in ("mean", "istd", "count"))
    feats = dict(kaldiio.load_scp(str(dump / "feats.scp")))
    assert len(feats) == 3 * len(load_data_dir(many).utts)


@pytest.mark.slow
def test_synth_killed_mid_corpus_then_rerun_equals_an_uninterrupted_run(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "corpus"
    args = ("synth", "--preset", "tiny", "--out", out, "--seed", "3", "--jobs", "1")  # as tiny_corpus
    _kill_when(_start(*args), lambda: len(list((out / "audio").rglob("*.flac"))) >= 20)
    assert not (out / "corpus.json").exists()  # what the recipe's stage 0 takes as "finished"
    assert cli(*args) == 0
    assert _files(out) == _files(tiny_corpus.parent)


@pytest.mark.slow
def test_pseudo_label_killed_then_rerun_equals_an_uninterrupted_run(
    tiny_exp: Path, many: Path, tmp_path: Path
) -> None:
    def args(out: Path) -> tuple:
        return ("pseudo-label", "--exp", tiny_exp, "--data", many, "--out", out, "--keep", "0.5",
                "--mode", "ctc_greedy", "--lang", "en")  # fmt: skip

    start = time.monotonic()
    # the same name as the killed run's: the unlabelled part's subfolder is named after it
    ref = _start(*args(tmp_path / "ref" / "pl"))
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()[-2000:]
    wall = time.monotonic() - start
    out = tmp_path / "pl"
    # killed while writing its output (the temporary folder exists) or, failing that, mid-decoding
    start = time.monotonic()
    _kill_when(
        _start(*args(out)),
        lambda: out.with_name("pl.tmp").exists() or time.monotonic() - start > 0.6 * wall,
    )
    assert not (out / "pseudo_label.yaml").exists()  # nothing that looks finished ...
    assert cli(*args(out)) == 0  # ... so the rerun does the work
    ref_files = _files(tmp_path / "ref" / "pl")
    assert ref_files and _files(out) == ref_files


@pytest.mark.slow
def test_decode_killed_then_rerun_equals_an_uninterrupted_run(
    tiny_exp: Path, many: Path, tmp_path: Path
) -> None:
    exps = {name: shutil.copytree(tiny_exp, tmp_path / name) for name in ("ref", "killed")}

    def args(exp: Path) -> tuple:
        return ("decode", "--exp", exp, "--data", many, "--mode", "ctc_greedy", "--lang", "en")

    start = time.monotonic()
    ref = _start(*args(exps["ref"]))
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()[-2000:]
    wall = time.monotonic() - start
    out = exps["killed"] / f"decode_{many.name}"
    start = time.monotonic()
    _kill_when(
        _start(*args(exps["killed"])),
        lambda: out.with_name(out.name + ".tmp").exists() or time.monotonic() - start > 0.6 * wall,
    )
    assert not out.exists()  # nothing that looks finished ...
    assert cli(*args(exps["killed"])) == 0  # ... so the rerun does the work
    ref_files = _files(exps["ref"] / out.name)
    ref_files.pop("decode.yaml")  # holds the measured real-time factor
    killed = _files(out)
    killed.pop("decode.yaml")
    assert ref_files and killed == ref_files


def test_non_finite_audio_stops_the_feature_dump_naming_the_file(tiny_corpus: Path, tmp_path: Path) -> None:
    src = load_data_dir(tiny_corpus / "en_train_clean")
    bad = tmp_path / "nan.wav"
    samples, _ = sf.read(src.wav[src.utts[2]], dtype="float32")
    samples[len(samples) // 2] = np.nan
    sf.write(bad, samples, 16000, subtype="FLOAT")
    data = tmp_path / "train"
    write_data_dir(data, wav={**src.wav, src.utts[2]: str(bad)}, text=src.text, utt2spk=src.utt2spk)
    expected = rf"{data / 'wav.scp'}:3: utterance '{src.utts[2]}': {bad}: 1 non-finite samples \(1 NaN"
    with pytest.raises(DataError, match=expected):
        cli("features", data, "--out", tmp_path / "dump", "--cmvn", tmp_path / "cmvn.npz")
    assert not (tmp_path / "dump" / "train" / "feats.scp").exists()
    assert not (tmp_path / "cmvn.npz").exists()


@pytest.fixture()
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A read-only folder: a read-only tmpfs as root (root ignores file modes), else mode 0555."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (a container without CAP_SYS_ADMIN)")
    yield path
    subprocess.run(["umount", str(path)], check=True)


@pytest.fixture()
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 kB tmpfs: full after a few utterances' features (root only)."""
    path = tmp_path / "full"
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (a container without CAP_SYS_ADMIN)")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_read_only_output_is_a_clear_error(tiny_corpus: Path, unwritable: Path, capsys) -> None:
    data = tiny_corpus / "en_dev_clean"
    with pytest.raises(
        DataError,
        match=rf"features: cannot write the dump {unwritable / data.name}: .*(Read-only|Permission)",
    ):
        cli("features", data, "--out", unwritable)
    assert cli_as_user("synth", "--preset", "tiny", "--out", unwritable / "c", "--jobs", "1") == 2
    err = capsys.readouterr().err
    assert f"asr-transfer synth: error: cannot write {unwritable / 'c'}" in err


def test_full_disk_is_a_clear_error(tiny_corpus: Path, full_disk: Path) -> None:
    with pytest.raises(DataError, match=r"features: cannot write the dump .*: No space left on device"):
        cli("features", tiny_corpus / "en_train_clean", "--out", full_disk, *SPEEDS)
    assert not (full_disk / "en_train_clean" / "feats.scp").exists()
