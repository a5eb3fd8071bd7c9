"""Named adapters: config round trip, enable/freeze, the adapter file and its fit checks, init."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asr_transfer.model import build_model
from asr_transfer.model.adapters import AdapterFileError
from asr_transfer.model.slots import set_trainable
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
    path = model.save_adapter("ro", tmp_path / "ro.adapter", extra={"tokenizer": {"tokens": ["a"]}})
    data = torch.load(path, weights_only=False)
    assert all(".modules_by_name.ro." in k for k in data["adapter"]) and data["adapter"]
    assert set(data["head"]) == {
        k.removeprefix("heads.ro.") for k in model.state_dict() if k.startswith("heads.ro.")
    }
    assert data["tokenizer"] == {"tokens": ["a"]}

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
    torch.save(bad, tmp_path / "bad.adapter")
    fresh = build_model(CFG, {"de": 12})
    fresh.load_state_dict(base.state_dict(), strict=False)
    with pytest.raises(AdapterFileError, match="bad.adapter: adapter 'ro' does not match its spec"):
        fresh.load_adapter(tmp_path / "bad.adapter")
    assert "ro" not in fresh.heads and not fresh.adapter_specs
    (tmp_path / "junk.adapter").write_bytes(b"not a checkpoint")
    with pytest.raises(AdapterFileError, match="junk.adapter: not an adapter file"):
        base.load_adapter(tmp_path / "junk.adapter")
    torch.save({"model": {}}, tmp_path / "model.pt")
    with pytest.raises(AdapterFileError, match="model.pt: not an adapter file"):
        base.load_adapter(tmp_path / "model.pt")


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
