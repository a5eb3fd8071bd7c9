"""add-language without a config (issue 21): a fine-tuning schedule of its own, not the base's; the
dev set decides the length and the epochs kept; the adapter stays within 3 % of the parameters."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, cli

from asr_transfer.adapt import methods_of_kind
from asr_transfer.commands.add_language import DEFAULTS, build_config


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


@pytest.mark.slow  # 15 s of CPU (a minute at load 8): a base and one 100-step adaptation
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
    # decoded by CTC greedy (the default): trained and selected on CTC alone, and the experiment says so
    assert cfg["adapt"]["ctc_share"] == 1.0 and cfg["adapt"]["weights"] == {"ctc": 1.0, "att": 0.0}
    assert yaml.safe_load((exp / "decode.yaml").read_text())["mode"] == "ctc_greedy"
    # ... so the adapter sits in the encoder only: the decoder, which CTC alone never trains, has none
    assert cfg["adapt"]["where"] == ["encoder"]
    state = torch.load(exp / "model.pt", weights_only=True)["model"]
    assert not [k for k in state if ".modules_by_name.ro." in k and not k.startswith("enc_slots.")]


@pytest.mark.slow  # ~30 s of CPU: 68 one-utterance epochs of the head alone
def test_no_config_head_trains_every_epoch_and_averages_the_best(base: Path, tiny_corpus: Path) -> None:
    exp = base.parent / "ro_head"
    assert cli("add-language", "--base", base, "--lang", "ro", "--method", "head", "--exp", exp,
               "--train", tiny_corpus / "ro_train_clean", "--dev", tiny_corpus / "ro_dev_clean",
               "--tokenizer.kind", "char") == 0  # fmt: skip
    run = yaml.safe_load((exp / "add_language.yaml").read_text())["training"]
    train = yaml.safe_load((exp / "config.yaml").read_text())["train"]
    # every epoch of the maximum (raised for 100 steps on 3 utterances), a cosine over them, no patience
    assert train["scheduler"]["type"] == "warmup_decay" and train["patience"] is None
    assert run["stopped"] == "max_epochs" and run["epochs"] == train["epochs"] >= DEFAULTS.max_epochs
    assert run["steps"] >= 2 * DEFAULTS.min_steps
    # the dev loss still chooses the epochs averaged
    best = sorted(range(1, run["epochs"] + 1), key=lambda e: run["dev_losses"][e - 1])[: DEFAULTS.keep_best]
    assert run["averaged_epochs"] == sorted(best)


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli("add-language", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "full 0.005" in text and "adapter 0.01" in text and "--inherit-train" in text
    assert "at most 3 % of the model's parameters" in text and "3 epochs without a better dev loss" in text
    assert "head and full instead train every epoch" in text and "(head 24, full 24, adapter 16," in text


def test_the_defaults_follow_the_data_and_yield_to_a_config(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "utt2num_frames").write_text("".join(f"u{i} 200\n" for i in range(150)))
    base_cfg = {"model": {}, "data": {"tokenizers": {}},
                "train": {"device": "cpu", "num_threads": 1, "epochs": 7,
                          "scheduler": {"type": "noam", "warmup_steps": 56}}}  # fmt: skip
    args = Namespace(base=str(tmp_path / "base"), lang="ro", method="full", config=[], overrides=[],
                     inherit_train=False, decode_config=[])  # fmt: skip

    def train_section(*overrides: str) -> dict:
        args.overrides = list(overrides)
        return build_config(base_cfg, args, tmp_path / "exp", {"train": dump, "dev": dump}, None)["train"]

    assert set(DEFAULTS.lr) == set(methods_of_kind("new_language"))
    assert set(DEFAULTS.fixed_length) <= set(DEFAULTS.lr)
    ours = train_section()
    # 150 x 200 frames: 1/24 a batch, 24 steps an epoch; Full-FT's lr and every epoch (a cosine over
    # them, no stop on the dev loss, which stopped cs Full-FT at 45 % dev WER); where the base ran
    assert (ours["lr"], ours["max_batch_frames"], ours["epochs"], ours["patience"]) == (0.005, 1250, 20, None)
    assert ours["scheduler"] == {"type": "warmup_decay", "warmup_steps": 20, "final_ratio": 0.05}
    assert (ours["device"], ours["num_threads"]) == ("cpu", 1)
    # the adapter methods: 1/16 a batch, at most 20 epochs, the dev loss stops them, not before 100
    # steps (7 epochs)
    args.method = "metaadapter"
    ours = train_section()
    assert (ours["lr"], ours["max_batch_frames"], ours["epochs"]) == (0.01, 1875, 20)
    assert (ours["min_epochs"], ours["patience"]) == (7, 3)
    assert ours["scheduler"] == {"type": "warmup_exp", "warmup_steps": 20, "half_life_steps": 48,
                                 "final_ratio": 0.05}  # fmt: skip
    # a key of the schedule is changed; another kind of schedule replaces ours whole
    assert train_section("--train.scheduler.warmup_steps", "5")["scheduler"]["half_life_steps"] == 48
    noam = train_section("--train.scheduler", "{type: noam, warmup_steps: 50}")
    assert noam["scheduler"] == {"type": "noam", "warmup_steps": 50}
    # --inherit-train: the base's own section, as before the defaults existed
    args.inherit_train = True
    assert train_section()["epochs"] == 7 and train_section()["scheduler"]["type"] == "noam"


def _train_section(tmp_path: Path, method: str, configs: list[Path], overrides: list[str]) -> dict:
    """``build_config``'s ``train:`` for ``method`` on 150 utterances of 200 frames (no base needed)."""
    return _config(tmp_path, method, configs, overrides)["train"]


def _config(
    tmp_path: Path, method: str, configs: list[Path], overrides: list[str], decode: list[Path] = ()
) -> dict:
    """``build_config``'s config for ``method`` on 150 utterances of 200 frames, decoded by ``decode``."""
    dump = tmp_path / "dump"
    dump.mkdir(exist_ok=True)
    (dump / "utt2num_frames").write_text("".join(f"u{i} 200\n" for i in range(150)))
    base_cfg = {"model": {}, "data": {"tokenizers": {}}, "train": {"device": "cpu"}}
    # a bottleneck given: its rule needs the base's tokenizers
    args = Namespace(base=str(tmp_path / "base"), lang="ro", method=method, config=[str(c) for c in configs],
                     overrides=["--adapt.bottleneck", "8", *overrides], inherit_train=False,
                     decode_config=[str(d) for d in decode])  # fmt: skip
    cfg = build_config(base_cfg, args, tmp_path / "exp", {"train": dump, "dev": dump}, None)
    assert "add_language" not in cfg  # add-language's rules, not a section of the training config
    return cfg


def test_the_objective_and_the_dev_loss_weigh_ctc_as_the_experiment_decodes(tmp_path: Path) -> None:
    # issue 17: the base's CTC weight 0.3 made the attention loss 70 % of what chose the epochs of a
    # model decoded by CTC greedy. CTC greedy (the default): CTC alone; a joint beam: its CTC weight
    assert _config(tmp_path, "adapter", [], [])["adapt"]["ctc_share"] == 1.0
    beam = REPO / "conf/decode/beam.yaml"
    assert _config(tmp_path, "full", [], [], decode=[beam])["adapt"]["ctc_share"] == 0.3
    # a share given by the user wins, as every other key does
    assert _config(tmp_path, "metaadapter", [], ["--adapt.ctc_share", "0.5"])["adapt"]["ctc_share"] == 0.5


def test_decoded_by_ctc_alone_the_adapter_sits_in_the_encoder_only(tmp_path: Path) -> None:
    # CTC alone (the default CTC greedy decoding) puts no gradient into the decoder: an adapter there
    # would stay at its start, yet count in the 3 % budget and the file
    assert _config(tmp_path, "adapter", [], [])["adapt"]["where"] == ["encoder"]
    # a joint beam trains the decoder: the adapter's own default (both stacks) stays
    beam = REPO / "conf/decode/beam.yaml"
    assert "where" not in _config(tmp_path, "adapter", [], [], decode=[beam])["adapt"]
    # a placement given by the user wins
    given = _config(tmp_path, "adapter", [], ["--adapt.where", "[encoder, decoder]"])["adapt"]["where"]
    assert given == ["encoder", "decoder"]


def test_an_add_language_section_changes_the_rules_not_just_the_values(tmp_path: Path) -> None:
    # issue 17: on the small base the adapter's halving every 3 epochs caps its whole run at ~5 epochs'
    # worth of peak lr; the section puts it on Full-FT's schedule (every epoch, a cosine, 1/24 a batch)
    rules = ["--add_language.fixed_length", "[head, full, adapter]", "--add_language.steps_per_epoch.adapter",
             "24", "--add_language.lr.adapter", "0.02"]  # fmt: skip
    adapter = _train_section(tmp_path, "adapter", [], rules)
    full = _train_section(tmp_path, "full", [], rules)
    assert adapter["lr"] == 0.02 and full["lr"] == DEFAULTS.lr["full"]  # only the method named changes
    same = ("scheduler", "max_batch_frames", "epochs", "patience", "min_epochs", "keep_best")
    assert {k: adapter[k] for k in same} == {k: full[k] for k in same}
    assert (adapter["max_batch_frames"], adapter["patience"]) == (1250, None)
    # a method left out keeps its own rules
    meta = _train_section(tmp_path, "metaadapter", [], rules)
    assert (meta["scheduler"]["type"], meta["patience"], meta["max_batch_frames"]) == ("warmup_exp", 3, 1875)
    # the values of the train: section still win over the rules
    assert _train_section(tmp_path, "adapter", [], [*rules, "--train.lr", "0.003"])["lr"] == 0.003


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--add_language.lr.adaptr", "0.02"], "add_language.lr.adaptr: not a new-language method"),
        (["--add_language.fixed_length", "[head, fulll]"], "add_language.fixed_length.fulll: not a new"),
        (["--add_language.fixed_length", "adapter"], "add_language.fixed_length: a list of methods"),
        (["--add_language.patiense", "2"], "add_language.patiense: unknown option"),
    ],
)
def test_a_mistyped_add_language_rule_is_an_error(tmp_path: Path, override: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _train_section(tmp_path, "adapter", [], override)


def test_the_small_base_config_puts_every_method_on_one_schedule(tmp_path: Path) -> None:
    # conf/train/xling_adapt_small.yaml (recipes/crossling/run.sh --adapt_config on the small base): every
    # method the same batch, epochs and cosine, so the grid's learning rate is the only difference
    small = REPO / "conf/train/xling_adapt_small.yaml"
    sections = {m: _train_section(tmp_path, m, [small], []) for m in methods_of_kind("new_language")}
    same = ("scheduler", "max_batch_frames", "epochs", "patience", "min_epochs", "keep_best")
    assert len({yaml.safe_dump({k: s[k] for k in same}) for s in sections.values()}) == 1
    assert sections["adapter"]["patience"] is None and sections["adapter"]["max_batch_frames"] == 1250
    assert sections["adapter"]["scheduler"]["type"] == "warmup_decay"
