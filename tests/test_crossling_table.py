"""The cross-lingual table (targets x methods, average and share rows, bootstrap against Full-FT), and
`asr-transfer report` over add-language experiments, which renders it with the base model's WERs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asr_transfer.cli import main
from asr_transfer.score import crossling
from asr_transfer.score.api import ScoreOptions
from asr_transfer.score.report import load_systems

REF = {f"u{i}": "unu doi trei patru" for i in range(40)}


def _decode(exp: Path, dataset: str, lang: str, wrong: int) -> None:
    """``exp/decode_<dataset>`` as `asr-transfer decode` writes it, ``wrong`` utterances one word off."""
    d = exp / f"decode_{dataset}"
    d.mkdir(parents=True)
    hyp = {u: ("unu doi trei cinci" if i < wrong else t) for i, (u, t) in enumerate(REF.items())}
    (d / "ref").write_text("".join(f"{u} {t}\n" for u, t in REF.items()))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in hyp.items()))
    (d / "decode.yaml").write_text(yaml.safe_dump({"mode": "ctc_greedy", "lang": lang}))


def _exp(root: Path, lang: str, method: str, wrong: int, share: float, tested: bool = True) -> Path:
    """An add-language experiment from the base ``root/multi``: its config (whose ``adapt`` names the
    method and no target domain), its summary, and a decoded test set (else only the dev set)."""
    exp = root / f"{lang}_{method}"
    _decode(exp, f"{lang}_test_clean" if tested else f"{lang}_dev_clean", lang, wrong)
    (exp / "config.yaml").write_text(yaml.safe_dump({"adapt": {"method": method, "lang": lang}}))
    # the base as add-language records it: as given, relative to where it ran (beside the experiments)
    summary = {"lang": lang, "method": method, "base": "multi", "trainable_share": share}
    if method == "adapter":
        summary["adapter_file_share"] = 0.03
    (exp / "add_language.yaml").write_text(yaml.safe_dump(summary))
    return exp


def _experiments(root: Path) -> list[Path]:
    return [
        _exp(root, "ro", "adapter", 4, 0.025),
        _exp(root, "ro", "full", 4, 1.0),
        _exp(root, "ro", "head", 30, 0.01),
        _exp(root, "cs", "full", 8, 1.0),
        _exp(root, "cs", "adapter", 6, 0.025),
        _exp(root, "cs", "head", 30, 0.01),
    ]


def test_table_rows_columns_average_shares_and_intervals(tmp_path: Path) -> None:
    systems = load_systems(_experiments(tmp_path), ScoreOptions(n_resamples=100), own_lang=True)
    cells, notes = crossling.collect(systems)
    assert notes == []
    (header, rows), diff = crossling.tables(cells, n_resamples=500)
    assert header == ["target", "Head", "Full-FT", "Adapter"]  # the paper's column order
    by = {r[0]: r for r in rows}
    # 4 / 160 and 8 / 160 words; the best of each row in bold (a tie: both)
    assert by["ro"][2].startswith("**2.50 [") and by["ro"][3].startswith("**2.50 [")
    assert by["cs"][2].startswith("5.00 [") and by["cs"][3].startswith("**3.75 [")
    assert by["average (2)"][3].startswith("**3.12 [")  # (2.50 + 3.75) / 2
    assert by["trainable params (%)"][1:] == ["1.00", "100.00", "2.50"]
    assert by["file / model file (%)"][1:] == ["–", "–", "3.00"]
    dh, drows = diff
    d = {r[0]: r for r in drows}
    assert d["ro"][2] == "–" and d["ro"][3].startswith("+0.00 [")
    assert d["cs"][1].endswith("†")  # head: 30 of 40 utterances wrong against 8: significant


def test_report_over_add_language_experiments_gives_the_crosslingual_table(tmp_path: Path, capsys) -> None:
    exps = _experiments(tmp_path)
    exps.append(_exp(tmp_path, "cs", "metaadapter", 5, 0.025, tested=False))  # not decoded on test yet
    base = tmp_path / "multi"
    base.mkdir()
    (base / "config.yaml").write_text("model: {}\n")
    _decode(base, "en_test_clean", "en", 2)
    _decode(base, "de_test_clean", "de", 10)
    out = tmp_path / "report"
    args = ["report", *map(str, exps), "--out", str(out), "--resamples", "200", "--note", "Targets: ro cs."]
    assert main(args) == 0
    assert capsys.readouterr().err == ""
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "Targets: ro cs." in md
    names = " | ".join(e.name for e in exps)
    assert f"| dataset | {names} |" in md  # the per-set table of every report
    table = md.split("## Cross-lingual transfer: WER (%) per target language and method\n", 1)[1]
    assert "| target | Head | Full-FT | Adapter |" in table.split("\n## ", 1)[0]
    assert "| ro | 18.75 [" in table  # head: 30 of 40 utterances one word of four off
    assert f"Not decoded on the target's test set yet: {tmp_path / 'cs_metaadapter'}" in md
    assert "## Difference to Full-FT" in md
    # the base named by add_language.yaml, found beside the experiments: its own WERs per language
    source = md.split("## Base model multi: test WER (%) per source language\n", 1)[1].split("\n## ", 1)[0]
    assert "| en_test_clean | 1.25 [" in source and "| de_test_clean | 6.25 [" in source
    assert "Unsupervised adaptation" not in md
    assert "<h2>Cross-lingual transfer" in (out / "report.html").read_text(encoding="utf-8")


def test_report_gives_the_fusion_weights_per_layer_as_a_table(tmp_path: Path, capsys) -> None:
    exps = _experiments(tmp_path)
    sim = _exp(tmp_path, "ro", "simadapter", 3, 0.12)
    summary = yaml.safe_load((sim / "add_language.yaml").read_text())
    summary["fusion_weights"] = {
        "enc1": {"de": 0.3, "pl": 0.1, "ro": 0.6},
        "dec1": {"de": 0.05, "pl": 0.0, "ro": 0.95},
    }
    (sim / "add_language.yaml").write_text(yaml.safe_dump(summary))
    out = tmp_path / "report"
    assert main(["report", *map(str, [*exps, sim]), "--out", str(out), "--resamples", "50"]) == 0
    capsys.readouterr()
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    fusion = md.split("## SimAdapter fusion weights (mean attention on the target's dev set)\n", 1)[1]
    assert "**ro / SimAdapter**" in fusion
    assert "| layer | de | pl | ro | sources |" in fusion
    assert (
        "| enc1 | 0.300 | 0.100 | 0.600 | 0.400 |" in fusion
        and "| dec1 | 0.050 | 0.000 | 0.950 | 0.050 |" in fusion
    )


def test_the_fusion_ablation_gets_a_column_of_its_own(tmp_path: Path) -> None:
    exps = _experiments(tmp_path)
    for name, use_sources, wrong in (("simadapter", True, 3), ("simadapter_alone", False, 5)):
        exp = _exp(tmp_path / name, "ro", "simadapter", wrong, 0.12)
        adapt = {"method": "simadapter", "lang": "ro", "use_sources": use_sources}
        (exp / "config.yaml").write_text(yaml.safe_dump({"adapt": adapt}))
        exps.append(exp)
    systems = load_systems(exps, ScoreOptions(n_resamples=100), own_lang=True)
    cells, _ = crossling.collect(systems)
    (header, rows), _ = crossling.tables(cells, n_resamples=200)
    assert header[-2:] == ["SimAdapter", "SimAdapter, target alone"]
    ro = next(r for r in rows if r[0] == "ro")
    assert ro[-2].startswith("**1.88 [") and ro[-1].startswith("3.12 [")  # 3 and 5 words of 160: the best


def _seeded(root: Path, lang: str, method: str, wrong: int, seed: int, dev_wer: float) -> Path:
    """An add-language experiment trained with ``train.seed`` = ``seed`` that recorded ``dev_wer``."""
    exp = _exp(root / f"seed{seed}", lang, method, wrong, 1.0 if method == "full" else 0.025)
    (exp / "config.yaml").write_text(
        yaml.safe_dump({"adapt": {"method": method, "lang": lang}, "train": {"seed": seed}})
    )
    summary = yaml.safe_load((exp / "add_language.yaml").read_text())
    (exp / "add_language.yaml").write_text(yaml.safe_dump({**summary, "dev_wer": dev_wer}))
    return exp


def test_runs_that_differ_in_seed_pool_and_the_interval_holds_the_seed_spread(tmp_path: Path) -> None:
    # Full-FT: one perfect seed and one with every utterance one word off; the Adapter: one seed in between
    exps = [
        _seeded(tmp_path, "ro", "full", 0, 1, 10.0),
        _seeded(tmp_path, "ro", "full", 40, 2, 20.0),
        _seeded(tmp_path, "ro", "adapter", 8, 1, 15.0),
    ]
    systems = load_systems(exps, ScoreOptions(n_resamples=100), own_lang=True)
    cells, _ = crossling.collect(systems)
    assert [r.seed for r in cells[("ro", "full")].runs] == [1, 2]
    (header, rows), (_, diff) = crossling.tables(cells, n_resamples=1000)
    by = {r[0]: r for r in rows}
    # the seeds' mean, 12.50; the interval runs from the perfect seed to the bad one: a rerun's luck is in it
    assert by["ro"][1] == "12.50 [0.00, 25.00]"
    assert by["training seeds"][1:] == ["2", "1"]
    # the Adapter's 5.00 % against that mean: not significant, though each utterance-level comparison would be
    adapter = {r[0]: r for r in diff}["ro"][2]
    assert adapter.startswith("-7.50 [") and not adapter.endswith("†")
    # a second run with the same seed is no seed: refused, naming both runs
    again = _seeded(tmp_path / "again", "ro", "full", 3, 1, 12.0)
    systems = load_systems([*exps, again], ScoreOptions(n_resamples=100), own_lang=True)
    with pytest.raises(ValueError, match="a second experiment for ro / full with train.seed 1"):
        crossling.collect(systems)


def test_the_report_chooses_each_methods_seed_on_dev_data(tmp_path: Path, capsys) -> None:
    exps = [
        _seeded(tmp_path, "ro", "full", 0, 1, 20.0),  # best on test, worse on dev: not chosen
        _seeded(tmp_path, "ro", "full", 40, 2, 10.0),
        _seeded(tmp_path, "ro", "adapter", 8, 1, 15.0),
        _seeded(tmp_path, "ro", "adapter", 4, 2, 14.0),
    ]
    out = tmp_path / "report"
    assert main(["report", *map(str, exps), "--out", str(out), "--resamples", "200"]) == 0
    capsys.readouterr()
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    pooled = md.split("## Cross-lingual transfer: WER (%) per target language and method\n", 1)[1]
    assert "| ro | 12.50 [0.00, 25.00] | **3.75 [" in pooled.split("\n## ", 1)[0]
    chosen = md.split("## Each method's run chosen on dev data among its seeds: WER (%)\n", 1)[1]
    table = chosen.split("\n## ", 1)[0]
    assert "| ro | 25.00 [" in table and "**2.50 [" in table  # seed 2 of each: 40 and 4 utterances of 40 off
    assert "training seeds" not in table


def test_the_fusion_panel_of_several_seeds_is_their_mean(tmp_path: Path) -> None:
    exps = []
    for seed, de in ((1, 0.1), (2, 0.5)):  # each seed's fusion attends differently
        exp = _seeded(tmp_path, "ro", "simadapter", 3, seed, 12.0)
        summary = yaml.safe_load((exp / "add_language.yaml").read_text())
        summary["fusion_weights"] = {"enc1": {"de": de, "ro": 1 - de}}
        (exp / "add_language.yaml").write_text(yaml.safe_dump(summary))
        exps.append(exp)
    systems = load_systems(exps, ScoreOptions(n_resamples=50), own_lang=True)
    cells, _ = crossling.collect(systems)
    panels = crossling.fusion_panels(cells)
    assert list(panels) == ["ro / SimAdapter (mean of 2 seeds)"]
    assert panels["ro / SimAdapter (mean of 2 seeds)"]["enc1"] == pytest.approx({"de": 0.3, "ro": 0.7})
