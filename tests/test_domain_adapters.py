"""Domain adapters: a domain-adaptation method trains a per-domain adapter on the frozen base
(``--adapt.train adapter``), written as a small ``<domain>.adapter`` file that ``decode --adapter`` and
``Recognizer`` swap in for audio of that domain; the source domain is decoded by the base as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asr_transfer.adapt import Context, build_method
from asr_transfer.data.dataset import Batch
from asr_transfer.decode import DecodeConfig, Recognizer
from asr_transfer.model import build_model
from asr_transfer.model.adapters import AdapterFileError, body_fingerprint, read_adapter_file
from asr_transfer.text.tokenizer import Tokenizer
from tests.conftest import REPO, cli
from tests.test_adapt import adapt_args, pseudo_labelled_target

TINY = {
    "encoder": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2},
    "decoder": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1},
}
METHODS = {
    "self_training": {},
    "mmd": {},
    "adv": {},
    "cmatch": {"labels": "ctc_pred", "threshold": 0.0, "min_frames": 1},
}
TOK = Tokenizer.train_char(["one two three four"], "en")


def _batch(seed: int, labelled: bool = True) -> Batch:
    torch.manual_seed(seed)
    ys = torch.tensor([[3, 4, 5], [6, 7, -1]]) if labelled else None
    return Batch(torch.randn(2, 40, 80), torch.tensor([40, 31]), ys, "en", ["a", "b"])


def _domain_model(names: tuple[str, ...] = ("room",), seed: int = 0) -> torch.nn.Module:
    """A base with domain adapters ``names`` whose weights are not the identity."""
    torch.manual_seed(seed)
    model = build_model(TINY, {"en": TOK.vocab_size})
    for name in names:
        model.add_adapter(name, bottleneck=4, where=["encoder"], enabled=False)
        for p in model.adapter_parameters(name):
            torch.nn.init.normal_(p, std=0.3)
    return model.eval()


def _base_of(model: torch.nn.Module) -> torch.nn.Module:
    """A fresh model holding ``model``'s base alone (no adapter)."""
    base = build_model(TINY, {"en": TOK.vocab_size})
    base.load_state_dict({k: v for k, v in model.state_dict().items() if ".modules_by_name." not in k})
    return base.eval()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_train_adapter_trains_the_domain_adapter_alone_and_reads_the_source_through_the_base(
    name: str,
) -> None:
    tok = TOK
    torch.manual_seed(0)
    model = build_model(TINY, {"en": tok.vocab_size})
    method = build_method(
        {"method": name, "train": "adapter", "target": "room", "bottleneck": 4, **METHODS[name]}
    )
    method.setup(model, {"en": tok})
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(k.startswith("enc_slots.") and ".modules_by_name.room." in k for k in trainable)
    assert model.enabled_adapters() == ["room"] and method.domain_adapter == "room"
    assert method.resolved_config()["train"] == "adapter"
    for p in model.adapter_parameters("room"):  # an adapter that changes the features
        torch.nn.init.normal_(p, std=0.3)
    model.eval()
    batches = {"source": _batch(1), "target": _batch(2)}
    terms = method.compute_objectives(model, batches, Context(progress=0.5))
    # the source is read by the base alone, as it is decoded: its terms are the base's, without gradient
    base = _base_of(model)
    out = base(batches["source"].feats, batches["source"].feat_lens, batches["source"].ys, "en")
    assert not terms["ctc"].requires_grad and torch.allclose(terms["ctc"], out.loss_ctc * 2 / 5)
    assert model.enabled_adapters() == ["room"]  # switched back on after the source's forward
    loss = sum(method.weight(k, Context()) * v for k, v in terms.items())
    loss.backward()
    assert all(p.grad is None for k, p in model.named_parameters() if k not in trainable)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.adapter_parameters("room"))


def test_adapter_source_trains_the_adapter_on_the_source_stream_too() -> None:
    model = build_model(TINY, {"en": TOK.vocab_size})
    method = build_method({"method": "mmd", "train": "adapter", "target": "room", "adapter_source": True})
    method.setup(model)
    terms = method.compute_objectives(model.eval(), {"source": _batch(1), "target": _batch(2)}, Context())
    terms["ctc"].backward()
    assert all(p.grad is not None for p in model.adapter_parameters("room"))


def test_a_bad_train_option_is_an_error_naming_the_key() -> None:
    model = build_model(TINY, {"en": TOK.vocab_size})
    bad = [
        ({"train": "adaptor", "target": "room"}, "adapt.train: 'adaptor'; choose from model, adapter"),
        ({"train": "adapter"}, "adapt.target names the domain adapter"),
        ({"train": "adapter", "target": "room.a"}, "letters, digits"),
        ({"train": "adapter", "target": "room", "train_only": ["encoder.*"]}, "no adapt.train_only/freeze"),
    ]
    for cfg, message in bad:
        with pytest.raises(ValueError, match=message):
            build_method({"method": "mmd", **cfg}).setup(model)
    assert build_method({"method": "mmd", "target": "room"}).domain_adapter is None  # default: the model


def test_a_domain_adapter_file_holds_the_adapter_alone_and_fits_only_its_base(tmp_path: Path) -> None:
    model = _domain_model()
    method = build_method({"method": "adv", "train": "adapter", "target": "room"})
    method.setup(_base_of(model))  # a discriminator of its own: never part of the file
    path = model.save_adapter("room", tmp_path / "room.adapter", "en", domain=True)
    data = read_adapter_file(path)
    assert data["domain"] == data["name"] == "room" and data["head"] == {} and "tokenizer" not in data
    assert set(data["adapter"]) == set(model.slot_state_dict("room"))
    assert all(k.startswith("enc_slots.") for k in data["adapter"])
    torch.save({"model": model.state_dict()}, tmp_path / "model.pt")
    assert path.stat().st_size < 0.05 * (tmp_path / "model.pt").stat().st_size

    base = _base_of(model)
    base.load_adapter(path)
    assert torch.equal(base.heads["en"].ctc.ctc_lo.weight, model.heads["en"].ctc.ctc_lo.weight)
    other_head = _base_of(model)
    torch.nn.init.normal_(other_head.heads["en"].ctc.ctc_lo.weight)
    with pytest.raises(AdapterFileError, match=r"room.adapter: made for a en head \w+, this model's is"):
        other_head.load_adapter(path)
    other_body = build_model(TINY, {"en": TOK.vocab_size})
    with pytest.raises(AdapterFileError, match="room.adapter: made for base model"):
        other_body.load_adapter(path)
    assert other_body.adapter_specs == {}  # a refused file leaves the model as it was


def test_the_recognizer_swaps_domain_adapters_per_domain_and_the_base_decodes_the_rest(
    tmp_path: Path,
) -> None:
    model = _domain_model(("room", "mic"))
    paths = [model.save_adapter(n, tmp_path / f"{n}.adapter", "en", domain=True) for n in ("room", "mic")]
    tok = TOK
    greedy = DecodeConfig(mode="ctc_greedy")
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 12000)]

    def scores(enabled: list[str]) -> list[float]:
        model.set_enabled(enabled)
        return Recognizer(model, {"en": tok}, greedy).transcribe_waves_scored(waves)[1]

    expected = {"room": scores(["room"]), "mic": scores(["mic"]), None: scores([])}
    assert expected["room"] != expected[None] and expected["mic"] != expected[None]
    rec = Recognizer(_base_of(model), {"en": tok}, greedy)
    assert [rec.load_adapter(p) for p in paths] == ["room", "mic"]
    assert rec.tokenizers == {"en": tok}  # a domain adapter brings no head or tokenizer
    # any order, any number of times: each domain gets its adapter, any other domain the base alone
    for domain in ("room", None, "mic", "clean", "room"):
        assert rec.transcribe_waves_scored(waves, domain=domain)[1] == expected.get(domain, expected[None])


# the whole run: adapt with an adapter, decode with it swapped in ------------------------------------
def test_adapter_adaptation_forgets_nothing_and_its_file_swaps_into_the_source_model(
    tiny_setup: dict[str, Path], tiny_exp: Path, tmp_path: Path
) -> None:
    data = {split: tiny_setup["data"] / f"en_{split}_phone" for split in ("train", "dev")}
    target = pseudo_labelled_target(tiny_exp, data, tmp_path / "pseudo")
    exp = tmp_path / "adapted"
    args = adapt_args(tiny_setup, tiny_exp, target, exp, "--config", REPO / "conf/adapt/cmatch_ctc_pred.yaml",
                      "--adapt.train", "adapter", "--adapt.target", "phone", "--adapt.bottleneck", "8",
                      "--train.lr", "1e-2", "--train.epochs", "1")  # fmt: skip
    assert cli(*map(str, args)) == 0
    # the base is bit-identical after adaptation: every tensor of the source model, the adapter aside
    source = torch.load(tiny_exp / "model.pt", weights_only=True)["model"]
    adapted = torch.load(exp / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(source[k], adapted[k]) for k in source)
    assert {k for k in adapted if k not in source} == {k for k in adapted if ".modules_by_name.phone." in k}
    assert body_fingerprint(source) == read_adapter_file(exp / "phone.adapter")["base"]["fingerprint"]
    up = [v for k, v in adapted.items() if k.endswith("phone.up.weight")]
    assert up and all(v.abs().sum() > 0 for v in up)  # the adapter trained
    assert (exp / "phone.adapter").stat().st_size < 0.05 * (tiny_exp / "model.pt").stat().st_size
    spec = yaml.safe_load((exp / "config.yaml").read_text())["model"]["adapters"]["phone"]
    assert spec["where"] == ["encoder"] and spec["bottleneck"] == 8

    test = [tiny_setup["data"] / f"en_test_{d}" for d in ("phone", "clean")]
    swapped, plain = tmp_path / "swapped", tmp_path / "plain"
    assert cli("decode", "--exp", tiny_exp, "--adapter", exp / "phone.adapter", "--out-root", swapped,
               "--data", *test) == 0  # fmt: skip
    assert cli("decode", "--exp", tiny_exp, "--out-root", plain, "--data", *test) == 0
    assert cli("decode", "--exp", exp, "--data", test[0]) == 0

    def hyps(folder: Path) -> str:
        return (folder / "text").read_text()

    # the source domain without the adapter: exactly the source model's hypotheses
    assert hyps(swapped / "decode_en_test_clean") == hyps(plain / "decode_en_test_clean")
    # the target domain with the adapter swapped in: exactly the adapted experiment's own
    assert hyps(swapped / "decode_en_test_phone") == hyps(exp / "decode_en_test_phone")
    made = {d: yaml.safe_load((swapped / f"decode_en_test_{d}" / "decode.yaml").read_text())
            for d in ("phone", "clean")}  # fmt: skip
    assert made["phone"]["domain_adapters"] == {"phone": "phone"} and made["clean"]["domain_adapters"] == {}
    # a data dir that does not say its domain: an error asking for --domain, then --domain applies it
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("wav.scp", "text", "utt2spk"):
        (bare / name).write_text((test[0] / name).read_text())
    swap = ("decode", "--exp", tiny_exp, "--adapter", exp / "phone.adapter", "--out-root", swapped, "--data")
    with pytest.raises(ValueError, match=r"bare: no utt2domain.*\(phone\): pass --domain"):
        cli(*swap, bare)
    assert cli(*swap, bare, "--domain", "phone") == 0
    assert hyps(swapped / "decode_bare") == hyps(swapped / "decode_en_test_phone")


@pytest.mark.slow
def test_the_recipe_adapts_with_an_adapter_and_reports_zero_forgetting(
    tiny_setup: dict[str, Path], tiny_exp: Path, tmp_path: Path
) -> None:
    import os
    import shutil
    import subprocess
    import sys

    recipe = tmp_path / "mini"
    (recipe / "exp").mkdir(parents=True)
    shutil.copy(REPO / "recipes/mini/run.sh", recipe / "run.sh")
    (recipe / "conf").symlink_to(REPO / "conf")
    (recipe.parent / "common").symlink_to(REPO / "recipes/common")  # the shared option parser
    (recipe / "corpus").symlink_to(tiny_setup["data"].parent)
    shutil.copytree(tiny_exp, recipe / "exp/tiny_clean")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
    }
    # stages 5-6 decode the source model (the report's source-only column), 7-10 adapt with an adapter
    args = ["./run.sh", "--stage", "5", "--stop_stage", "10", "--adapt_train", "adapter",
            "--adapt_domains", "phone", "--adapt_methods", "cmatch_ctc_pred",
            "--decode_config", "conf/decode/ctc_greedy.yaml",
            "--adapt_args", "--train.epochs 1 --train.num_threads 1 --adapt.min_frames 1"]  # fmt: skip
    proc = subprocess.run(args, cwd=recipe, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = recipe / "exp/adapt/cmatch_ctc_pred_adapter_phone"
    assert (out / "phone.adapter").is_file()
    saved = yaml.safe_load((out / "config.yaml").read_text())["adapt"]
    assert saved["train"] == "adapter" and saved["bottleneck"] == 128 and saved["target"] == "phone"
    # stage 9 decoded the source model with the adapter swapped in for the phone domain only: the
    # source domain's hypotheses are stage 5's of the source model
    clean = (out / "decode_en_test_clean" / "text").read_text()
    assert clean == (recipe / "exp/tiny_clean/decode_en_test_clean/text").read_text()
    made = yaml.safe_load((out / "decode_en_test_phone" / "decode.yaml").read_text())
    assert made["domain_adapters"] == {"phone": "phone"}
    table = (recipe / "exp/report_adapt/RESULTS.md").read_text()
    assert "CMatch (ctc_pred) + adapter" in table
    assert "| CMatch (ctc_pred) + adapter | 1 of 1 |" in table and "| +0.00 |" in table
    bad = subprocess.run(["./run.sh", "--stage", "8", "--adapt_train", "adapters"], cwd=recipe, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "--adapt_train adapters: model or adapter" in bad.stderr
