"""One freezing API (``model.freeze`` / ``unfreeze*``): every method trains exactly the parameters
it trained when each wrote its own glob patterns (the old rules, spelled out here)."""

from __future__ import annotations

import fnmatch

import pytest
import torch

from asr_transfer.adapt import METHODS, build_method, methods_of_kind, needs_sources
from asr_transfer.model.asr import HybridASR, build_model

SIZES = {
    "encoder": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2},
    "decoder": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1},
}


def _model() -> HybridASR:
    torch.manual_seed(0)
    return build_model(SIZES, {"de": 7, "en": 6, "ro": 5})


def _by_old_rules(model: HybridASR, patterns: list[str]) -> set[str]:
    """What ``set_trainable(["*"], False)`` then ``set_trainable(patterns, True)`` left trainable."""
    return {n for n, _ in model.named_parameters() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}


def _trainable(model: HybridASR) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# method, its options, adapters an experiment rebuilt from its config already holds, the old patterns
CASES = [
    ("head", {"lang": "ro"}, [], ["heads.ro.*"]),
    ("full", {"lang": "ro"}, [], ["*"]),
    ("adapter", {"lang": "ro", "bottleneck": 4}, [], ["heads.ro.*", "*.modules_by_name.ro.*"]),
    ("metaadapter", {"lang": "ro", "meta": "unused"}, ["ro"], ["heads.ro.*", "*.modules_by_name.ro.*"]),
    ("simadapter", {"lang": "ro"}, ["de", "ro", "fusion"], ["heads.ro.*", "*.modules_by_name.fusion.*"]),
    ("simadapter+", {"lang": "ro"}, ["de", "ro", "fusion"], ["heads.ro.*", "*.modules_by_name.fusion.*"]),
    ("source_adapters", {"langs": ["de", "en"], "bottleneck": 4}, [],
     ["heads.de.*", "*.modules_by_name.de.*", "heads.en.*", "*.modules_by_name.en.*"]),
    ("meta_train", {"bottleneck": 4}, [], ["heads.*", "*.modules_by_name.meta.*"]),
    ("supervised", {"train_only": ["encoder.*", "heads.*"]}, [], ["encoder.*", "heads.*"]),
]  # fmt: skip


@pytest.mark.parametrize(("method", "opts", "present", "patterns"), CASES, ids=[c[0] for c in CASES])
def test_every_method_trains_the_parameters_the_old_glob_rules_chose(
    method: str, opts: dict, present: list[str], patterns: list[str]
) -> None:
    model = _model()
    for name in present:
        if name == "fusion":
            model.add_adapter(name, type="fusion", fuses=["de", "ro"], where=["encoder", "decoder"])
        else:
            model.add_adapter(name, bottleneck=4)
    build_method({"method": method, **opts}).setup(model, {})
    assert _trainable(model) == _by_old_rules(model, patterns)
    assert _trainable(model)


def test_freeze_after_train_only_freezes_the_matches() -> None:
    model = _model()
    build_method({"train_only": ["encoder.*"], "freeze": ["encoder.embed.*"]}).setup(model)
    old = _by_old_rules(model, ["encoder.*"]) - _by_old_rules(model, ["encoder.embed.*"])
    assert _trainable(model) == old and old


def test_the_registry_answers_kinds_and_needs() -> None:
    assert methods_of_kind("new_language") == ["head", "full", "adapter", "metaadapter", "simadapter",
                                               "simadapter+"]  # fmt: skip
    assert methods_of_kind("uda") == ["source_only", "self_training", "mmd", "adv", "cmatch"]
    assert [m for m in METHODS if needs_sources(m)] == ["metaadapter", "simadapter", "simadapter+"]
    assert not METHODS["meta_train"].supports_multiprocess
    assert [m for m, cls in METHODS.items() if not cls.find_unused_parameters] == ["supervised"]
    with pytest.raises(ValueError, match="method kind 'nope'"):
        methods_of_kind("nope")
