"""Named adapters: config round trip, enable/freeze, the adapter file (its fit checks, round trip,
size, and that loading a hostile one runs nothing), init."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml
from conftest import REPO, cli, cli_as_user

from asr_transfer.decode import DecodeConfig, Recognizer
from asr_transfer.model import build_model
from asr_transfer.model.adapters import (
    FORMAT,
    META_KEY,
    OLD_FORMAT,
    AdapterFileError,
    convert_adapter_file,
    read_adapter_file,
    save_adapter_file,
)
from asr_transfer.model.slots import set_trainable
from asr_transfer.text.tokenizer import Tokenizer
from asr_transfer.train.init import init_from_base

CFG = {
    "encoder": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 3},
    "decoder": {"attention_heads": 2, "linear_units": 64, "num_blocks": 2},
}


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(2, 60, 80), torch.tensor([60, 45]), torch.tensor([[3, 4, 5], [6, 7, -1]])


def _adapted(seed: int = 0) -> torch.nn.Module:
    """A base with heads de/ro and two adapter sets whose weights are not the identity."""
    torch.manual_seed(seed)
    model = build_model(CFG, {"de": 12, "ro": 9})
    model.add_adapter("meta", bottleneck=4, where=["encoder"], enabled=False)
    model.add_adapter("ro", bottleneck=8)
    for p in model.adapter_parameters("ro") + model.adapter_parameters("meta"):
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


def test_adapters_persist_in_the_model_config_and_rebuild_exactly() -> None:
    model = _adapted()
    model.enable_adapter("meta")  # applied after ro: the order is part of the config
    cfg = {**CFG, "adapters": model.adapter_config()}
    assert cfg["adapters"]["ro"] == {
        "type": "adapter", "bottleneck": 8, "where": ["encoder", "decoder"], "enabled": True, "order": 0,
    }  # fmt: skip
    assert cfg["adapters"]["meta"]["order"] == 1 and cfg["adapters"]["meta"]["where"] == ["encoder"]
    rebuilt = build_model(cfg, {"de": 12, "ro": 9}).eval()
    rebuilt.load_state_dict(model.state_dict())  # strict: same modules in the same slots
    assert rebuilt.enabled_adapters() == ["ro", "meta"]
    feats, lens, ys = _batch()
    assert torch.equal(model(feats, lens, ys, "ro").loss, rebuilt(feats, lens, ys, "ro").loss)
    # without the adapters in the config the checkpoint does not fit (what used to happen)
    with pytest.raises(RuntimeError, match="modules_by_name"):
        build_model(CFG, {"de": 12, "ro": 9}).load_state_dict(model.state_dict())


def test_enable_disable_freeze_and_bad_specs() -> None:
    model = _adapted()
    feats, lens, ys = _batch()
    on = model(feats, lens, ys, "ro").loss
    model.enable_adapter("ro", False)
    assert model.enabled_adapters() == []
    off = model(feats, lens, ys, "ro").loss
    assert not torch.equal(on, off)
    model.freeze()
    assert not any(p.requires_grad for p in model.parameters())
    model.unfreeze_adapters(["ro"])
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable == {k for k, _ in model.named_adapter_parameters("ro")} and trainable
    with pytest.raises(KeyError, match="no adapter 'cs'"):
        model.unfreeze_adapters(["cs"])
    model.add_adapter("ro", bottleneck=8)  # the same spec again: a no-op that enables it
    assert model.enabled_adapters() == ["ro"]
    with pytest.raises(ValueError, match="exists"):
        model.add_adapter("ro", bottleneck=16)
    with pytest.raises(ValueError, match="unknown type"):
        build_model({**CFG, "adapters": {"x": {"type": "lora"}}}, {"de": 4})
    with pytest.raises(KeyError, match="no adapter"):
        model.enable_adapter("cs")


def test_adapter_file_holds_one_language_and_checks_its_base(tmp_path: Path) -> None:
    model = _adapted()
    tok = {"tokens": ["<blank>", "a"], "kind": "char", "lang": "ro", "sp_model": None}
    path = model.save_adapter("ro", tmp_path / "ro.adapter", extra={"tokenizer": tok})
    data = read_adapter_file(path)
    assert all(".modules_by_name.ro." in k for k in data["adapter"]) and data["adapter"]
    assert set(data["head"]) == {
        k.removeprefix("heads.ro.") for k in model.state_dict() if k.startswith("heads.ro.")
    }
    assert data["tokenizer"] == tok

    # the same base without the ro head or adapter: loading restores the adapted model exactly
    torch.manual_seed(0)
    base = build_model(CFG, {"de": 12}).eval()
    base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("heads.ro.")
                          and ".modules_by_name." not in k})  # fmt: skip
    base.load_adapter(path)
    assert base.enabled_adapters() == ["ro"]
    feats, lens, ys = _batch()
    model.set_enabled(["ro"])
    assert torch.equal(model(feats, lens, ys, "ro").loss, base(feats, lens, ys, "ro").loss)

    # another base (different body weights): a clear error naming the file
    other = _adapted(seed=1)
    with pytest.raises(AdapterFileError, match=r"ro\.adapter: made for base model"):
        other.load_adapter(path)
    small = build_model({**CFG, "encoder": {**CFG["encoder"], "num_blocks": 2}}, {"de": 12})
    with pytest.raises(AdapterFileError, match="sizes"):
        small.load_adapter(path)
    # a file whose weights do not match its own spec: an error, and the model is left as it was
    bad = {**data, "spec": {**data["spec"], "where": ["encoder"]}}
    save_adapter_file(bad, tmp_path / "bad.adapter")
    fresh = build_model(CFG, {"de": 12})
    fresh.load_state_dict(base.state_dict(), strict=False)
    with pytest.raises(AdapterFileError, match="bad.adapter: adapter 'ro' does not match its spec"):
        fresh.load_adapter(tmp_path / "bad.adapter")
    assert "ro" not in fresh.heads and not fresh.adapter_specs
    (tmp_path / "junk.adapter").write_bytes(b"not a checkpoint")
    with pytest.raises(AdapterFileError, match="junk.adapter: not an adapter file"):
        base.load_adapter(tmp_path / "junk.adapter")
    torch.save({"model": {}}, tmp_path / "model.pt")
    with pytest.raises(AdapterFileError, match="model.pt: not an adapter file .* but a pickle"):
        base.load_adapter(tmp_path / "model.pt")
    # a safetensors file that is not ours, or that misses part of an adapter file
    safetensors.torch.save_file({"w": torch.ones(2)}, tmp_path / "other.safetensors")
    with pytest.raises(AdapterFileError, match=rf"other.safetensors: not an adapter file \(format {FORMAT}"):
        base.load_adapter(tmp_path / "other.safetensors")
    meta = {"format": FORMAT, META_KEY: json.dumps({"name": None, "lang": "ro", "spec": None})}
    safetensors.torch.save_file({"head/w": torch.ones(2)}, tmp_path / "half.adapter", metadata=meta)
    with pytest.raises(AdapterFileError, match=r"half.adapter: .*malformed: vocab_size, base\)$"):
        base.load_adapter(tmp_path / "half.adapter")


class _RunsCode:
    """Unpickling this calls ``call(*args)``: what a hostile 'adapter file' carries."""

    def __init__(self, call: Callable, *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple:
        return self.call, self.args


def _exp(root: Path) -> Path:
    """A finished experiment as ``Recognizer.from_exp`` and ``decode --exp`` read it (untrained)."""
    tok = Tokenizer.train_char(["ein zwei drei"], "de")
    tok.save(root / "tokenizers" / "de")
    (root / "config.yaml").write_text(yaml.safe_dump({"model": CFG}))
    torch.save({"model": build_model(CFG, {"de": tok.vocab_size}).state_dict()}, root / "model.pt")
    return root


@pytest.mark.parametrize("how", ["path.touch", "os.system"])
def test_a_hostile_adapter_file_runs_nothing_wherever_it_is_loaded(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "PWNED"
    if how == "os.system":
        payload = _RunsCode(os.system, f"touch {shlex.quote(str(marker))}")
    else:
        payload = _RunsCode(pathlib.Path.touch, marker)
    evil = tmp_path / "evil.adapter"
    torch.save({"format": "x", "payload": payload}, evil)
    old_evil = tmp_path / "evil_v1.adapter"  # claims the old format: what convert-adapter reads
    torch.save({"format": OLD_FORMAT, "payload": payload}, old_evil)
    exp = _exp(tmp_path / "exp")

    errors: dict[str, str] = {}
    with pytest.raises(AdapterFileError) as err:
        build_model(CFG, {"de": 12}).load_adapter(evil)
    errors["load_adapter"] = str(err.value)
    with pytest.raises(AdapterFileError) as err:
        Recognizer.from_exp(exp, adapter=evil)
    errors["Recognizer"] = str(err.value)
    capsys.readouterr()
    assert cli_as_user("decode", "--exp", exp, "--data", tmp_path / "data", "--adapter", evil) == 2
    errors["decode"] = capsys.readouterr().err
    assert cli_as_user("convert-adapter", old_evil, tmp_path / "converted.adapter") == 2
    errors["convert-adapter"] = capsys.readouterr().err

    assert not marker.exists()
    for where, message in errors.items():
        assert message.rstrip("\n").count("\n") == 0 and "Traceback" not in message, where
        assert str(old_evil if where == "convert-adapter" else evil) in message, where
    assert errors["decode"].startswith("asr-transfer decode: error: ")
    assert "but a pickle" in errors["load_adapter"] and "convert-adapter" in errors["load_adapter"]
    assert "torch's safe loader (weights_only=True) refused it" in errors["convert-adapter"]
    assert not (tmp_path / "converted.adapter").exists()
    # the files are hostile indeed: fully unpickled (what reading an adapter file used to do), they run
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_round_trip_and_conversion_keep_the_hypotheses_and_the_file_stays_small(tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "conf/model/tiny.yaml").read_text())["model"]
    ro = Tokenizer.train_sentencepiece(["unu doi trei patru cinci"] * 5, "ro", 30, normalization="identity")
    de = Tokenizer.train_char(["ein zwei drei"], "de")
    torch.manual_seed(0)
    model = build_model(cfg, {"de": de.vocab_size, "ro": ro.vocab_size})
    model.add_adapter("ro", bottleneck=16)
    for p in model.adapter_parameters("ro"):
        torch.nn.init.normal_(p, std=0.3)
    torch.save({"model": model.state_dict()}, tmp_path / "model.pt")
    tok = {"tokens": ro.tokens, "kind": ro.kind, "lang": ro.lang, "sp_model": ro.sp_model}
    path = model.save_adapter("ro", tmp_path / "ro.adapter", extra={"tokenizer": tok})
    assert path.stat().st_size <= 0.05 * (tmp_path / "model.pt").stat().st_size

    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 12000, 20000)]
    greedy = DecodeConfig(mode="ctc_greedy")
    own = Recognizer(model, {"de": de, "ro": ro}, greedy).transcribe_waves(waves, "ro")
    assert any(own)

    def base_recognizer() -> Recognizer:
        base = build_model(cfg, {"de": de.vocab_size})
        base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("heads.ro.")
                              and ".modules_by_name." not in k})  # fmt: skip
        return Recognizer(base, {"de": de}, greedy)

    rec = base_recognizer()
    assert rec.load_adapter(path) == "ro"
    assert rec.tokenizers["ro"].sp_model == ro.sp_model and rec.tokenizers["ro"].tokens == ro.tokens
    assert rec.transcribe_waves(waves, "ro") == own

    # the same file as the old, pickled format wrote it: refused, then converted, it decodes the same
    old = tmp_path / "old.adapter"
    torch.save({**read_adapter_file(path), "format": OLD_FORMAT}, old)
    rec = base_recognizer()
    with pytest.raises(AdapterFileError, match=rf"old.adapter: .*convert-adapter {re.escape(str(old))} NEW"):
        rec.load_adapter(old)
    assert cli("convert-adapter", old, tmp_path / "new.adapter") == 0
    assert rec.load_adapter(tmp_path / "new.adapter") == "ro"
    assert rec.transcribe_waves(waves, "ro") == own
    with pytest.raises(AdapterFileError, match="new.adapter: not a torch.save file"):
        convert_adapter_file(tmp_path / "new.adapter", tmp_path / "again.adapter")


def test_init_from_base_allows_only_new_heads(tmp_path: Path) -> None:
    base = build_model(CFG, {"de": 12})
    torch.save({"model": base.state_dict()}, tmp_path / "base.pt")
    target = build_model(CFG, {"de": 12, "ro": 9})
    assert init_from_base(target, tmp_path / "base.pt") == ["ro"]
    assert torch.equal(target.encoder.embed.conv[0].weight, base.encoder.embed.conv[0].weight)
    # a base whose body has other sizes, or extra modules, fails loudly
    with pytest.raises(RuntimeError, match="size mismatch"):
        init_from_base(build_model({**CFG, "encoder": {**CFG["encoder"], "linear_units": 32}}, {"de": 12}),
                       tmp_path / "base.pt")  # fmt: skip
    with pytest.raises(RuntimeError, match=r"base\.pt: does not fit"):
        init_from_base(build_model({**CFG, "encoder": {**CFG["encoder"], "num_blocks": 4}}, {"de": 12}),
                       tmp_path / "base.pt")  # fmt: skip
    bigger = build_model(CFG, {"de": 12})
    bigger.add_adapter("x", bottleneck=2)
    torch.save({"model": bigger.state_dict()}, tmp_path / "bigger.pt")
    with pytest.raises(RuntimeError, match="unexpected"):
        init_from_base(build_model(CFG, {"de": 12}), tmp_path / "bigger.pt")


def test_set_trainable_still_works_with_named_adapters() -> None:
    model = _adapted()
    set_trainable(model, ["*"], False)
    # 5 slots x 4 tensors (norm weight and bias, down, up)
    assert set_trainable(model, ["*.modules_by_name.ro.*"], True) == 5 * 4


def test_a_front_end_adapter_sits_after_the_subsampling_and_rebuilds_from_its_spec(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(CFG, {"de": 12, "ro": 9}).eval()
    feats, lens, ys = _batch()
    with torch.no_grad():
        plain = model.encode(feats, lens)[0]
    model.add_adapter("ro", bottleneck=4, where=["frontend", "encoder"])
    # one module after the subsampling and one per encoder block: 1 + 3 slots, none in the decoder
    labels = [label for label, _ in model.slot_modules("ro")]
    assert labels == ["front1", "enc1", "enc2", "enc3"]
    front = model.front_slots[0].modules_by_name["ro"]
    torch.nn.init.normal_(front.up.weight, std=0.3)
    # the front-end adapter changes what the first block sees: the output moves
    seen: list[torch.Tensor] = []
    hook = model.encoder.encoders[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        adapted = model.encode(feats, lens)[0]
        embedded = model.encoder.embed(model.cmvn(feats), ~torch.zeros(2, 1, 60, dtype=torch.bool))[0]
    hook.remove()
    assert not torch.allclose(plain, adapted)
    # (the first utterance: the second's padding is zeroed before the subsampling)
    assert torch.allclose(seen[0][0], front(embedded)[0], atol=1e-5)
    # in the model config like any adapter: the experiment rebuilds and loads strictly
    cfg = {**CFG, "adapters": model.adapter_config()}
    assert cfg["adapters"]["ro"]["where"] == ["frontend", "encoder"]
    rebuilt = build_model(cfg, {"de": 12, "ro": 9}).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.encode(feats, lens)[0], adapted)
    # the base's fingerprint ignores it; its adapter file holds it and loads into a bare base
    bare = build_model(CFG, {"de": 12})
    bare.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("heads.ro.")
                          and ".modules_by_name." not in k})  # fmt: skip
    assert bare.fingerprint() == model.fingerprint()
    path = model.save_adapter("ro", tmp_path / "ro.adapter")
    assert "front_slots.0.modules_by_name.ro.up.weight" in read_adapter_file(path)["adapter"]
    bare.load_adapter(path)
    bare.eval()
    with torch.no_grad():
        assert torch.equal(bare(feats, lens, ys, "ro").loss, model(feats, lens, ys, "ro").loss)
    model.remove_adapter("ro")
    assert model.enabled_adapters() == [] and not model.front_slots[0].modules_by_name
    with pytest.raises(
        ValueError, match=r"where: \['front'\] \(choose from \['frontend', 'encoder', 'decoder'\]\)"
    ):
        model.add_adapter("cs", where=["front"])
