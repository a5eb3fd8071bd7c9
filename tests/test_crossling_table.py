"""The cross-lingual table: targets x methods, average and share rows, bootstrap against Full-FT."""

from __future__ import annotations

from pathlib import Path

import yaml

from asr_transfer.score import crossling

REF = {f"u{i}": "unu doi trei patru" for i in range(40)}


def _exp(root: Path, lang: str, method: str, wrong: int, share: float) -> Path:
    """An add-language experiment whose test hypotheses get one word wrong in ``wrong`` utterances."""
    exp = root / f"{lang}_{method}"
    d = exp / f"decode_{lang}_test_clean"
    d.mkdir(parents=True)
    hyp = {u: ("unu doi trei cinci" if i < wrong else t) for i, (u, t) in enumerate(REF.items())}
    (d / "ref").write_text("".join(f"{u} {t}\n" for u, t in REF.items()))
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in hyp.items()))
    summary = {"lang": lang, "method": method, "trainable_share": share}
    if method == "adapter":
        summary["adapter_file_share"] = 0.03
    (exp / "add_language.yaml").write_text(yaml.safe_dump(summary))
    return exp


def test_table_rows_columns_average_shares_and_intervals(tmp_path: Path) -> None:
    exps = [
        _exp(tmp_path, "ro", "adapter", 4, 0.025),
        _exp(tmp_path, "ro", "full", 4, 1.0),
        _exp(tmp_path, "ro", "head", 30, 0.01),
        _exp(tmp_path, "cs", "full", 8, 1.0),
        _exp(tmp_path, "cs", "adapter", 6, 0.025),
        _exp(tmp_path, "cs", "head", 30, 0.01),
    ]
    cells = crossling.collect(exps)
    (header, rows), diff = crossling.tables(cells, n_resamples=500)
    assert header == ["target", "Head", "Full-FT", "Adapter"]  # the paper's column order
    by = {r[0]: r for r in rows}
    assert by["ro"][2].startswith("2.50 [") and by["cs"][2].startswith("5.00 [")  # 4 / 160 and 8 / 160 words
    assert by["**average** (2)"][3].startswith("3.12 [")  # (2.50 + 3.75) / 2
    assert by["trainable params (%)"][1:] == ["1.00", "100.00", "2.50"]
    assert by["file / model file (%)"][1:] == ["–", "–", "3.00"]
    dh, drows = diff
    d = {r[0]: r for r in drows}
    assert d["ro"][2] == "–" and d["ro"][3].startswith("+0.00 [")
    assert d["cs"][1].endswith("†")  # head: 30 of 40 utterances wrong against 8: significant
    md, html = crossling.write(cells, tmp_path / "report", notes=["a note"])
    text = md.read_text()
    assert "| ro |" in text and "Difference to Full-FT" in text and "a note" in text
    assert "<table>" in html.read_text()
