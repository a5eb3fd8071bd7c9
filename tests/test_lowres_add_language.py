"""The low-resource methods end to end on real (tiny) speech: source adapters and the MetaAdapter on
a frozen de+en base, then ro by metaadapter, simadapter and simadapter+ through add-language; a
SimAdapter+ experiment rebuilds and decodes from its own folder alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, cli

from asr_transfer.data.kaldi import read_table
from asr_transfer.decode import DecodeConfig, Recognizer

pytestmark = pytest.mark.slow  # about 25 s: five short trainings

SMALL = ["--model.encoder.num_blocks", "2", "--model.encoder.output_size", "64",
         "--model.encoder.linear_units", "128", "--model.decoder.linear_units", "128",
         "--train.num_threads", "1", "--train.device", "cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lowres")
    tr, dv, tk = [], [], []
    for lang in ("de", "en"):
        train, dev = tiny_corpus / f"{lang}_train_clean", tiny_corpus / f"{lang}_dev_clean"
        assert cli("features", train, dev, "--out", root / "dump") == 0
        assert cli("tokenizer", train, "--lang", lang, "--kind", "char", "--out", root / f"tok_{lang}") == 0
        tr.append(f"{{dump: {root}/dump/{train.name}, lang: {lang}}}")
        dv.append(f"{{dump: {root}/dump/{dev.name}, lang: {lang}}}")
        tk.append(f"{lang}: {root}/tok_{lang}")
    trains = [tiny_corpus / f"{lang}_train_clean" for lang in ("de", "en")]
    assert cli("features", *trains, "--out", root / "dump", "--cmvn", root / "cmvn.npz") == 0
    base = root / "base"
    assert cli("train", "--config", REPO / "conf/model/tiny.yaml", "--config", REPO / "conf/train/mini.yaml",
               "--exp", base, "--data.train", f"[{', '.join(tr)}]", "--data.dev", f"[{', '.join(dv)}]",
               "--data.tokenizers", f"{{{', '.join(tk)}}}", "--data.cmvn", root / "cmvn.npz",
               "--train.epochs", "2", *SMALL) == 0  # fmt: skip
    out = {"root": root, "base": base}
    for name, conf in (("src", "xling_source_adapters.yaml"), ("meta", "xling_meta.yaml")):
        out[name] = root / name
        assert cli("train", "--config", base / "config.yaml", "--config", REPO / "conf/train" / conf,
                   "--exp", out[name], "--train.init", base / "model.pt", "--train.epochs", "2",
                   "--train.accum_grad", "2", "--adapt.bottleneck", "8", "--train.lr", "0.01",
                   "--train.num_threads", "1") == 0  # fmt: skip
    for name, method, extra in (
        # both stacks, as the meta-trained adapter: the fusion and its decoder slot are checked below
        ("adapter", "adapter", ["--adapt.where", "[encoder, decoder]"]),
        ("metaadapter", "metaadapter", ["--adapt.meta", out["meta"]]),
        ("simadapter", "simadapter",
         ["--adapt.sources", out["src"], "--adapt.target_adapter", root / "ro_adapter"]),
        ("simadapter+", "simadapter+",
         ["--adapt.sources", out["src"], "--adapt.target_adapter", root / "ro_metaadapter"]),
        # the ablation: the same fusion over the target's adapter alone
        ("alone", "simadapter",
         ["--adapt.use_sources", "false", "--adapt.target_adapter", root / "ro_adapter"]),
    ):  # fmt: skip
        out[name] = root / f"ro_{name}"
        assert cli("add-language", "--base", base, "--lang", "ro", "--method", method, "--exp", out[name],
                   "--train", tiny_corpus / "ro_train_clean", "--dev", tiny_corpus / "ro_dev_clean",
                   "--train.epochs", "2", "--train.lr", "0.01", "--adapt.bottleneck", "8",
                   "--tokenizer.kind", "char", *extra) == 0  # fmt: skip
    return out


def _state(exp: Path) -> dict[str, torch.Tensor]:
    return torch.load(exp / "model.pt", map_location="cpu")["model"]


def test_source_side_runs_keep_the_body_and_train_their_adapters(runs: dict[str, Path]) -> None:
    base_fp = Recognizer.from_exp(runs["base"]).model.fingerprint()
    for name in ("src", "meta", "adapter", "metaadapter", "simadapter", "simadapter+"):
        assert Recognizer.from_exp(runs[name]).model.fingerprint() == base_fp, name
    src, meta = _state(runs["src"]), _state(runs["meta"])
    cfg = yaml.safe_load((runs["src"] / "config.yaml").read_text())
    assert sorted(cfg["model"]["adapters"]) == ["de", "en"] and cfg["adapt"]["langs"] == ["de", "en"]
    for lang in ("de", "en"):  # every source adapter moved away from its zero-initialised W_up
        assert src[f"enc_slots.0.modules_by_name.{lang}.up.weight"].abs().sum() > 0
    assert meta["enc_slots.0.modules_by_name.meta.up.weight"].abs().sum() > 0
    mcfg = yaml.safe_load((runs["meta"] / "config.yaml").read_text())
    assert mcfg["adapt"]["algorithm"] == "fomaml" and mcfg["model"]["adapters"]["meta"]["enabled"]
    # the target's MetaAdapter started from the meta-trained one and was fine-tuned from there
    fine = _state(runs["metaadapter"])["enc_slots.0.modules_by_name.ro.up.weight"]
    assert fine.shape == meta["enc_slots.0.modules_by_name.meta.up.weight"].shape
    assert not torch.equal(fine, meta["enc_slots.0.modules_by_name.meta.up.weight"])
    assert (runs["metaadapter"] / "ro.adapter").is_file()


def test_simadapter_trains_only_fusion_and_head_and_reports_fusion_weights(
    runs: dict[str, Path], tiny_corpus: Path
) -> None:
    summaries = {m: yaml.safe_load((runs[m] / "add_language.yaml").read_text())
                 for m in ("adapter", "metaadapter", "simadapter", "simadapter+")}  # fmt: skip
    assert summaries["metaadapter"]["trainable_params"] == summaries["adapter"]["trainable_params"]
    for m in ("simadapter", "simadapter+"):
        weights = summaries[m]["fusion_weights"]
        assert list(weights) == ["enc1", "enc2", "dec1"]
        for layer in weights.values():
            assert list(layer) == ["de", "en", "ro"] and sum(layer.values()) == pytest.approx(1, abs=1e-3)
    sim = Recognizer.from_exp(runs["simadapter"]).model
    assert sim.enabled_adapters() == ["fusion"]
    assert sim.adapter_specs["fusion"]["fuses"] == ["de", "en", "ro"]
    # the fused adapters are the source run's and the target adapter run's, unchanged
    src, sim_state, ada = _state(runs["src"]), _state(runs["simadapter"]), _state(runs["adapter"])
    key = "dec_slots.0.modules_by_name.{}.down.weight"
    assert torch.equal(sim_state[key.format("de")], src[key.format("de")])
    assert torch.equal(sim_state[key.format("ro")], ada[key.format("ro")])
    # trained on CTC alone (the default CTC greedy decoding), the target adapter's decoder modules never
    # moved from their start (W_up zero: the identity); why add-language puts it in the encoder only
    assert not ada["dec_slots.0.modules_by_name.ro.up.weight"].any()
    assert ada["enc_slots.0.modules_by_name.ro.up.weight"].any()
    plus = _state(runs["simadapter+"])
    assert torch.equal(plus[key.format("ro")], _state(runs["metaadapter"])[key.format("ro")])
    # simadapter+ refuses a plain adapter experiment as its target adapter
    with pytest.raises(ValueError, match="simadapter\\+ fuses the target's metaadapter experiment"):
        cli("add-language", "--base", runs["base"], "--lang", "ro", "--method", "simadapter+",
            "--exp", runs["root"] / "bad", "--train", tiny_corpus / "ro_train_clean",
            "--dev", tiny_corpus / "ro_dev_clean", "--adapt.sources", runs["src"],
            "--adapt.target_adapter", runs["adapter"], "--tokenizer.kind", "char")  # fmt: skip
    assert not (runs["root"] / "bad" / "add_language.yaml").exists()


def test_the_fusion_ablation_fuses_the_target_adapter_alone_with_the_same_trainable_parameters(
    runs: dict[str, Path],
) -> None:
    sim, alone = (
        yaml.safe_load((runs[m] / "add_language.yaml").read_text()) for m in ("simadapter", "alone")
    )
    assert alone["trainable_params"] == sim["trainable_params"]
    assert all(layer == {"ro": 1.0} for layer in alone["fusion_weights"].values())
    model = Recognizer.from_exp(runs["alone"]).model
    assert model.adapter_specs["fusion"]["fuses"] == ["ro"]
    assert sorted(model.adapter_specs) == ["fusion", "ro"]
    cfg = yaml.safe_load((runs["alone"] / "config.yaml").read_text())["adapt"]
    assert (cfg["use_sources"], cfg["source_langs"], cfg["guide"]) == (False, [], "mean_ce")


def test_simadapter_plus_rebuilds_and_decodes_from_its_folder_alone(
    runs: dict[str, Path], tiny_corpus: Path, tmp_path: Path
) -> None:
    exp = tmp_path / "moved"
    shutil.copytree(runs["simadapter+"], exp)
    dev = tiny_corpus / "ro_dev_clean"
    theirs = read_table(runs["simadapter+"] / f"decode_{dev.name}" / "text", allow_empty_value=True)
    # every other experiment (base, source adapters, MetaAdapter, target adapters) out of reach
    hidden = runs["root"].with_name(runs["root"].name + "_hidden")
    runs["root"].rename(hidden)
    try:
        rec = Recognizer.from_exp(exp, decode=DecodeConfig(mode="ctc_greedy"))
        wavs = read_table(dev / "wav.scp")
        mine = {utt: rec.transcribe(wav, "ro") for utt, wav in wavs.items()}
    finally:
        hidden.rename(runs["root"])
    assert mine == {u: theirs[u] for u in mine}
    assert rec.model.enabled_adapters() == ["fusion"]


def test_a_language_adaptive_base_decodes_each_source_through_its_adapter_and_is_simadapters_sources(
    runs: dict[str, Path], tiny_corpus: Path
) -> None:
    # the base trained from scratch with an adapter per language (recipes/crossling --lang_adapters true)
    root, base = runs["root"], runs["root"] / "base_la"
    # the plain base's model, data and schedule (its config), from scratch with the adapters
    assert cli("train", "--config", runs["base"] / "config.yaml", "--config",
               REPO / "conf/train/xling_lang_adapters.yaml", "--exp", base, "--adapt.bottleneck", "8",
               "--train.epochs", "2", *SMALL) == 0  # fmt: skip
    state = _state(base)
    for lang in ("de", "en"):  # body and adapters trained together: each adapter moved
        assert state[f"enc_slots.0.modules_by_name.{lang}.up.weight"].abs().sum() > 0
    rec = Recognizer.from_exp(base, decode=DecodeConfig(mode="ctc_greedy"))
    assert rec.adapter_of == {"de": "de", "en": "en"} and rec.model.enabled_adapters() == []
    dev = tiny_corpus / "de_dev_clean"
    assert cli("decode", "--exp", base, "--data", dev, "--lang", "de") == 0
    assert yaml.safe_load((base / f"decode_{dev.name}" / "decode.yaml").read_text())["adapter"] == "de"
    # a target's adapter, then SimAdapter fusing the base's own source adapters with it
    common = ["--base", base, "--lang", "ro", "--train", tiny_corpus / "ro_train_clean", "--dev",
              tiny_corpus / "ro_dev_clean", "--train.epochs", "2", "--train.lr", "0.01",
              "--tokenizer.kind", "char"]  # fmt: skip
    assert cli("add-language", *common, "--method", "adapter", "--exp", root / "la_ro_adapter",
               "--adapt.bottleneck", "8") == 0  # fmt: skip
    assert cli("add-language", *common, "--method", "simadapter", "--exp", root / "la_ro_sim",
               "--adapt.sources", base, "--adapt.target_adapter", root / "la_ro_adapter") == 0  # fmt: skip
    sim = Recognizer.from_exp(root / "la_ro_sim").model
    assert sim.adapter_specs["fusion"]["fuses"] == ["de", "en", "ro"] and sim.enabled_adapters() == ["fusion"]
    key = "dec_slots.0.modules_by_name.de.down.weight"
    assert torch.equal(_state(root / "la_ro_sim")[key], state[key])
