"""``asr-transfer distance``: the domain-distance table, its rank correlation with WER, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli


def test_distance_is_zero_for_the_source_itself_and_correlates_with_measured_wer(
    tiny_exp: Path, tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tiny_corpus / "en_dev_clean"
    targets = [tiny_corpus / f"en_test_{d}" for d in ("clean", "phone", "rain")]
    dec = ["decode", "--exp", tiny_exp, "--data", *targets, "--out-root", tmp_path / "dec"]
    assert cli(*dec, "--mode", "ctc_greedy", "--device", "cpu") == 0
    capsys.readouterr()
    args = ["distance", "--exp", tiny_exp, "--source", source, "--out", tmp_path / "report"]
    assert cli(*args, "--data", source, *targets, "--wer-from", tmp_path / "dec") == 1
    assert "--wer-from: no decode" in capsys.readouterr().err  # the source dir was not decoded
    assert cli(*args, "--data", source, *targets) == 0
    rows = {r["data"]: r for r in json.loads((tmp_path / "report" / "distance.json").read_text())["rows"]}
    # the source sample against itself: no per-unit distance, MMD at its unbiased estimate's floor
    assert rows["en_dev_clean"]["unit"] == 0.0
    assert rows["en_dev_clean"]["mmd"] < rows["en_test_phone"]["mmd"]
    assert all(0 <= r["blank"] <= 1 and r["entropy"] >= 0 for r in rows.values())
    assert "data:image/png;base64," in (tmp_path / "report" / "report.html").read_text()
    capsys.readouterr()
    assert cli(*args, "--data", *targets, "--wer-from", tmp_path / "dec") == 0
    out = capsys.readouterr().out
    assert "| en_test_phone |" in out and "Spearman rho with WER: mmd " in out
    rho = json.loads((tmp_path / "report" / "distance.json").read_text())["spearman_wer"]
    assert set(rho) == {"mmd", "unit", "entropy", "blank"}


def test_distance_names_a_missing_data_dir(tiny_exp: Path, tiny_corpus: Path, tmp_path: Path, capsys) -> None:
    code = cli(
        "distance", "--exp", tiny_exp, "--source", tiny_corpus / "en_dev_clean", "--data", tmp_path / "nope"
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("asr-transfer distance: error:") and "nope" in err
