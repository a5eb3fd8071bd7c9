"""add-language on real (tiny) speech: every method, the adapter file, hot swap, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, cli

from asr_transfer.data.kaldi import DataError, read_table
from asr_transfer.decode import DecodeConfig, Recognizer
from asr_transfer.model.adapters import AdapterFileError

SMALL = ["--model.encoder.num_blocks", "2", "--model.encoder.output_size", "64",
         "--model.encoder.linear_units", "128", "--model.decoder.linear_units", "128",
         "--train.num_threads", "1", "--train.device", "cpu"]  # fmt: skip
GREEDY = DecodeConfig(mode="ctc_greedy")


@pytest.fixture(scope="module")
def base(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 'multilingual' base trained on de only (the tiny corpus has de, en, ro; en and ro are targets)."""
    root = tmp_path_factory.mktemp("xling")
    train, dev = tiny_corpus / "de_train_clean", tiny_corpus / "de_dev_clean"
    assert cli("features", train, dev, "--out", root / "dump") == 0
    assert cli("features", train, "--out", root / "dump", "--cmvn", root / "cmvn.npz") == 0
    assert cli("tokenizer", train, "--lang", "de", "--kind", "char",
               "--out", root / "tok_de") == 0  # fmt: skip
    exp = root / "base"
    assert cli("train", "--config", REPO / "conf/model/tiny.yaml", "--config", REPO / "conf/train/mini.yaml",
               "--exp", exp, "--data.train", f"[{{dump: {root}/dump/{train.name}, lang: de}}]",
               "--data.dev", f"[{{dump: {root}/dump/{dev.name}, lang: de}}]",
               "--data.tokenizers", f"{{de: {root}/tok_de}}", "--data.cmvn", root / "cmvn.npz",
               "--train.epochs", "2", *SMALL) == 0  # fmt: skip
    return exp


def _add(base: Path, corpus: Path, lang: str, method: str, exp: Path, *extra: str) -> int:
    return cli("add-language", "--base", base, "--lang", lang, "--train", corpus / f"{lang}_train_clean",
               "--dev", corpus / f"{lang}_dev_clean", "--method", method, "--exp", exp,
               "--train.epochs", "2", "--train.lr", "0.01", "--adapt.bottleneck", "8",
               # 3 training utterances do not hold every letter of the dev set: the alphabet does
               "--tokenizer.kind", "char", *extra)  # fmt: skip


@pytest.fixture(scope="module")
def adapted(base: Path, tiny_corpus: Path) -> dict[str, Path]:
    out = {}
    for lang, method in (("ro", "adapter"), ("en", "adapter"), ("ro", "head"), ("ro", "full")):
        exp = base.parent / f"{lang}_{method}"
        assert _add(base, tiny_corpus, lang, method, exp) == 0
        out[f"{lang}_{method}"] = exp
    return out


def test_every_method_writes_a_rebuildable_experiment(adapted: dict[str, Path], base: Path, capsys) -> None:
    summaries = {k: yaml.safe_load((exp / "add_language.yaml").read_text()) for k, exp in adapted.items()}
    share = {k: s["trainable_share"] for k, s in summaries.items()}
    assert share["ro_head"] < share["ro_adapter"] < share["ro_full"] == 1.0
    cfg = yaml.safe_load((adapted["ro_adapter"] / "config.yaml").read_text())
    assert cfg["model"]["adapters"] == {
        "ro": {
            "type": "adapter",
            "bottleneck": 8,
            "where": ["encoder"],  # decoded by CTC greedy: CTC alone trains nothing in the decoder
            "enabled": True,
            "order": 0,
        }
    }
    assert {k: cfg["adapt"][k] for k in ("method", "lang", "bottleneck")} == {
        "method": "adapter", "lang": "ro", "bottleneck": 8}  # fmt: skip
    assert cfg["tokenizer"] == {"kind": "char"}
    # the adapter and head methods leave the body bit-identical to the base
    base_body = Recognizer.from_exp(base).model.fingerprint()
    for key in ("ro_adapter", "ro_head"):
        assert Recognizer.from_exp(adapted[key]).model.fingerprint() == base_body
    assert Recognizer.from_exp(adapted["ro_full"]).model.fingerprint() != base_body
    s = summaries["ro_adapter"]
    assert s["adapter_file_bytes"] <= 0.05 * s["model_file_bytes"] and 0 <= s["dev_wer"]
    assert "adapter_file" not in summaries["ro_full"]
    # a finished experiment is skipped on rerun
    capsys.readouterr()
    assert _add(base, adapted["ro_adapter"].parent.parent / "x", "ro", "adapter", adapted["ro_adapter"]) == 0
    assert "exists, skipped" in capsys.readouterr().out


def test_hot_swap_ro_en_ro_gives_each_adapted_experiments_hypotheses(
    adapted: dict[str, Path], base: Path, tiny_corpus: Path
) -> None:
    waves = {
        lang: list(read_table(tiny_corpus / f"{lang}_test_clean" / "wav.scp").values())
        for lang in ("ro", "en")
    }
    own = {
        lang: [
            Recognizer.from_exp(adapted[f"{lang}_adapter"], decode=GREEDY).transcribe(w, lang)
            for w in waves[lang]
        ]
        for lang in ("ro", "en")
    }
    rec = Recognizer.from_exp(base, decode=GREEDY, adapter=adapted["ro_adapter"] / "ro.adapter")
    body = rec.model.encoder.embed.conv[0].weight
    assert rec.load_adapter(adapted["en_adapter"] / "en.adapter") == "en"
    for lang in ("ro", "en", "ro"):
        assert [rec.transcribe(w, lang) for w in waves[lang]] == own[lang], lang
    assert rec.model.encoder.embed.conv[0].weight is body  # the base was never reloaded
    # the head-only file plugs in the same way
    rec.load_adapter(adapted["ro_head"] / "ro.adapter")
    head_own = Recognizer.from_exp(adapted["ro_head"], decode=GREEDY)
    assert [rec.transcribe(w, "ro") for w in waves["ro"]] == [
        head_own.transcribe(w, "ro") for w in waves["ro"]
    ]
    # the CLI: one process, two languages, each with its own adapter
    out = base.parent / "swap"
    assert cli("decode", "--exp", base, "--data", tiny_corpus / "ro_test_clean",
               tiny_corpus / "en_test_clean", "--mode", "ctc_greedy",
               "--adapter", adapted["ro_adapter"] / "ro.adapter", adapted["en_adapter"] / "en.adapter",
               "--out-root", out) == 0  # fmt: skip
    for lang in ("ro", "en"):
        assert cli("decode", "--exp", adapted[f"{lang}_adapter"],
                   "--data", tiny_corpus / f"{lang}_test_clean", "--mode", "ctc_greedy") == 0  # fmt: skip
        mine = read_table(out / f"decode_{lang}_test_clean" / "text", allow_empty_value=True)
        theirs = read_table(
            adapted[f"{lang}_adapter"] / f"decode_{lang}_test_clean" / "text", allow_empty_value=True
        )
        assert mine == theirs
    # a full fine-tune changed the body: its model is no base for the ro adapter
    with pytest.raises(AdapterFileError, match=r"ro\.adapter: made for base model"):
        Recognizer.from_exp(adapted["ro_full"], adapter=adapted["ro_adapter"] / "ro.adapter")


def test_bad_input_is_a_clear_error_and_nothing_looks_finished(
    base: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    exp = tmp_path / "bad"
    with pytest.raises(ValueError, match="--method 'lora': unknown"):
        _add(base, tiny_corpus, "ro", "lora", exp)
    missing = tmp_path / "nodev"
    with pytest.raises(FileNotFoundError, match=f"--dev {missing}"):
        cli("add-language", "--base", base, "--lang", "ro", "--train", tiny_corpus / "ro_train_clean",
            "--dev", missing, "--method", "adapter", "--exp", exp)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="config.yaml missing: not a finished experiment"):
        _add(tmp_path, tiny_corpus, "ro", "adapter", exp)
    # a dev transcript with a character the training text never had: error naming file, line, utterance
    dev = tmp_path / "ro_dev_clean"
    shutil.copytree(tiny_corpus / "ro_dev_clean", dev)
    lines = (dev / "text").read_text(encoding="utf-8").splitlines()
    utt = lines[1].split()[0]
    lines[1] = f"{utt} ĳsselmeer"
    (dev / "text").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"ro_dev_clean/text:2: utterance '{utt}': characters .*ĳ"):
        cli("add-language", "--base", base, "--lang", "ro", "--train", tiny_corpus / "ro_train_clean",
            "--dev", dev, "--method", "adapter", "--exp", exp)  # fmt: skip
    assert not (exp / "add_language.yaml").exists() and not (exp / "model.pt").exists()
    assert not list(exp.glob("*.adapter")) if exp.exists() else True
    assert torch.load(base / "model.pt")["model"]  # the base is untouched and still loads
    # an unfinished experiment started from another base is not resumed on top of this one
    started = tmp_path / "started"
    started.mkdir()
    (started / "base_fingerprint").write_text("0123456789abcdef\n")
    with pytest.raises(RuntimeError, match="base_fingerprint: .* was started from another base model"):
        _add(base, tiny_corpus, "ro", "adapter", started)
