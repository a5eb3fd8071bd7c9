"""Shared fixtures: a tiny real corpus (espeak-ng speech), its features and tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]  # tests of this conftest's own hooks (tests/test_ci_tools.py)

# tests share 2 cores; one thread per process keeps them from fighting
torch.set_num_threads(1)

#: In CI (``CI=true``) the system tools are installed by ./test.sh, so a test marked ``system_tool``
#: that skips for a missing tool is an error there; elsewhere it stays a skip with its reason.
#: MP3 in libsndfile counts as one: the pinned soundfile wheel bundles a libsndfile that has it.
TOOLS_REQUIRED = os.environ.get("CI", "").lower() in ("true", "1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "system_tool: needs a system tool that ./test.sh installs as root (sctk, chromium, the speech "
        "engines) or MP3 in libsndfile (the pinned soundfile wheel's); skipped without it, an error when "
        "CI=true",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and TOOLS_REQUIRED and item.get_closest_marker("system_tool"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true, and a system tool is missing: {reason} (./test.sh installs it as root)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


#: soundfile 0.14.0 (setup.cfg) bundles libsndfile 1.2.2, which reads and writes MP3; a soundfile
#: using an older system libsndfile (< 1.1) cannot
MP3 = pytest.mark.skipif(
    "MP3" not in sf.available_formats(),
    reason=f"libsndfile {sf.__libsndfile_version__} cannot write MP3 (the pinned soundfile wheel's can: "
    "tools/setup_env.sh)",
)


def cli(*args: str | os.PathLike) -> int:
    """Run an ``asr-transfer`` subcommand in-process with ``--debug``: an error raises, so a test can
    check its type and message (the one-line form of ``main`` without it: tests/test_cli.py)."""
    from asr_transfer.cli import main

    return main(["--debug", *map(str, args)])


def cli_as_user(*args: str | os.PathLike) -> int:
    """Run an ``asr-transfer`` subcommand in-process as a user does: an expected error is one line on
    stderr and status 2."""
    from asr_transfer.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` synth preset: a few real synthesised utterances per data dir."""
    out = tmp_path_factory.mktemp("tiny") / "corpus"
    assert cli("synth", "--preset", "tiny", "--out", out, "--seed", "3", "--jobs", "1") == 0
    return out / "data"


@pytest.fixture(scope="session")
def tiny_setup(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Dumped features + CMVN + char tokenizer for en_train_clean / en_dev_clean."""
    root = tmp_path_factory.mktemp("setup")
    train, dev = tiny_corpus / "en_train_clean", tiny_corpus / "en_dev_clean"
    assert cli("features", train, dev, "--out", root / "dump") == 0
    assert cli("features", train, "--out", root / "dump", "--cmvn", root / "cmvn.npz") == 0
    assert cli("tokenizer", train, "--lang", "en", "--kind", "char", "--out", root / "tok") == 0
    return {
        "root": root,
        "train": root / "dump" / train.name,
        "dev": root / "dump" / dev.name,
        "cmvn": root / "cmvn.npz",
        "tok": root / "tok",
        "data": tiny_corpus,
    }


def train_args(setup: dict[str, Path], exp: Path, *extra: str) -> list[str]:
    """A complete ``asr-transfer train`` command line for the tiny set-up and a 2-block model."""
    return [
        "train", "--config", str(REPO / "conf/model/tiny.yaml"),
        "--config", str(REPO / "conf/train/mini.yaml"),
        "--exp", str(exp),
        "--data.train", f"[{{dump: {setup['train']}, lang: en}}]",
        "--data.dev", f"[{{dump: {setup['dev']}, lang: en}}]",
        "--data.tokenizers", f"{{en: {setup['tok']}}}", "--data.cmvn", str(setup["cmvn"]),
        "--model.encoder.num_blocks", "2", "--model.encoder.output_size", "64",
        "--model.encoder.linear_units", "128",
        "--model.decoder.linear_units", "128", "--train.num_threads", "1", "--train.device", "cpu",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_exp(tiny_setup: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained for 2 epochs (what it says is nonsense; decoding mechanics are real)."""
    exp = tmp_path_factory.mktemp("exp") / "tiny"
    assert cli(*train_args(tiny_setup, exp, "--train.epochs", "2")) == 0
    return exp
