"""Configs: includes, overrides of any key, the resolved config written out."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asr_transfer.config import load_config, parse_overrides, save_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_load_and_override() -> None:
    cfg = load_config([REPO / "conf/model/conformer.yaml"], ["--model.encoder.num_blocks", "2"])
    assert cfg["model"]["encoder"]["type"] == "conformer"
    assert cfg["model"]["encoder"]["num_blocks"] == 2
    assert cfg["model"]["decoder"]["num_blocks"] == 6  # from the included reference config
    ref = load_config([REPO / "conf/model/transformer_ref.yaml"])["model"]
    assert (ref["encoder"]["num_blocks"], ref["decoder"]["num_blocks"], ref["ctc_weight"]) == (12, 6, 0.3)

    # the SpecAugment option is the tiny model plus masks, nothing else
    tiny, aug = (load_config([REPO / f"conf/model/{n}.yaml"]) for n in ("tiny", "tiny_specaug"))
    assert aug["model"].pop("specaug")["num_freq_mask"] == 2 and tiny["model"].pop("specaug") is None
    assert aug == tiny


def test_override_values_are_yaml_typed_and_errors_are_clear(tmp_path: Path) -> None:
    assert parse_overrides(["--a.b", "[1, 2]", "c={x: 1e-3}"]) == [("a.b", [1, 2]), ("c", {"x": 1e-3})]
    with pytest.raises(ValueError, match="has no value"):
        parse_overrides(["--a"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(
        ValueError, match="bad.yaml:2:1: invalid YAML: while parsing a flow node: expected the node"
    ):
        load_config([bad])
    with pytest.raises(ValueError, match="override --a.b: '\\[1' is not a YAML value"):
        parse_overrides(["--a.b", "[1"])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = {"train": {"lr": 0.001}, "model": {"heads": ["en", "ro"]}}
    digest = save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == cfg and len(digest) == 12
