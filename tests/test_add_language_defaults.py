"""add-language without a config (issue 21): a fine-tuning schedule of its own, not the base's; the
dev set decides the length and the epochs kept; the adapter stays within 3 % of the parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, cli

from asr_transfer.commands.add_language import DEFAULTS

pytestmark = pytest.mark.slow  # 15 s of CPU (a minute at load 8): a base and one 100-step adaptation


@pytest.fixture(scope="module")
def base(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as the recipes build it (not shrunk: the 3 % budget is about its real size), on de."""
    root = tmp_path_factory.mktemp("defaults")
    train, dev = tiny_corpus / "de_train_clean", tiny_corpus / "de_dev_clean"
    assert cli("features", train, dev, "--out", root / "dump", "--cmvn", root / "cmvn.npz") == 0
    assert cli("tokenizer", train, "--lang", "de", "--kind", "char", "--out", root / "tok_de") == 0
    exp = root / "base"
    assert cli("train", "--config", REPO / "conf/model/tiny.yaml", "--config", REPO / "conf/train/mini.yaml",
               "--exp", exp, "--data.train", f"[{{dump: {root}/dump/{train.name}, lang: de}}]",
               "--data.dev", f"[{{dump: {root}/dump/{dev.name}, lang: de}}]",
               "--data.tokenizers", f"{{de: {root}/tok_de}}", "--data.cmvn", root / "cmvn.npz",
               "--train.epochs", "1", "--train.num_threads", "1", "--train.device", "cpu") == 0  # fmt: skip
    return exp


def test_no_config_trains_a_minimum_selects_by_dev_and_keeps_the_adapter_small(
    base: Path, tiny_corpus: Path, capsys: pytest.CaptureFixture
) -> None:
    exp = base.parent / "ro_adapter"
    # no --config, no schedule flag: only the letters the 3 training utterances lack (the alphabet)
    assert cli("add-language", "--base", base, "--lang", "ro", "--method", "adapter", "--exp", exp,
               "--train", tiny_corpus / "ro_train_clean", "--dev", tiny_corpus / "ro_dev_clean",
               "--tokenizer.kind", "char") == 0  # fmt: skip
    out = capsys.readouterr().out
    summary = yaml.safe_load((exp / "add_language.yaml").read_text())
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    run = summary["training"]
    # the fine-tuning schedule, not the base's (mini.yaml: Noam, lr 4e-3, 1 epoch here)
    train = cfg["train"]
    assert train["scheduler"]["type"] == "warmup_exp" and train["lr"] == DEFAULTS.lr["adapter"]
    assert train["patience"] == DEFAULTS.patience and train["device"] == "cpu"  # where the base ran
    # past the minimum number of steps, whatever the dev loss did early on
    assert run["steps"] >= DEFAULTS.min_steps
    assert len(run["dev_losses"]) == run["epochs"] <= run["max_epochs"]
    # selected by dev: the averaged epochs are the best ones by dev loss, and model.pt is their average
    k = DEFAULTS.keep_best
    best = sorted(range(1, run["epochs"] + 1), key=lambda e: run["dev_losses"][e - 1])[:k]
    assert run["averaged_epochs"] == sorted(best)
    assert sorted(torch.load(exp / "model.pt", weights_only=True)["averaged_epochs"]) == sorted(best)
    if run["stopped"] == "patience":  # stopped: the last `patience` epochs brought no better dev loss
        assert min(run["dev_losses"][-DEFAULTS.patience :]) >= min(run["dev_losses"])
    # the adapter within 3 % of the parameters (the multiple-of-8 rule: 8 on this model and vocabulary)
    assert summary["trainable_share"] <= DEFAULTS.adapter_share
    assert cfg["adapt"]["bottleneck"] % 8 == 0 and cfg["adapt"]["bottleneck"] >= 8
    # a 3-utterance language is useless: said in the last line and in the yaml
    assert summary["dev_wer"] > DEFAULTS.poor_wer
    assert any(w.startswith("dev WER") for w in summary["warnings"])
    assert out.strip().splitlines()[-1].startswith("add-language: WARNING:")


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli("add-language", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "full 0.005" in text and "adapter 0.01" in text and "--inherit-train" in text
    assert "at most 3 % of the model's parameters" in text and "3 epochs without a better dev loss" in text
