"""`asr-transfer average` of experiment dirs: a soup that decodes on its own, and what it refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml
from conftest import cli, cli_as_user

from asr_transfer.data.kaldi import read_table


def copy_exp(src: Path, out: Path, noise: float, seed: int) -> Path:
    """A copy of an experiment whose float weights are moved by Gaussian noise (another "training run")."""
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("decode_*", "checkpoints", "tensorboard"))
    g = torch.Generator().manual_seed(seed)
    state = torch.load(out / "model.pt", map_location="cpu")
    state["model"] = {
        k: v + noise * torch.randn(v.shape, generator=g, dtype=v.dtype) if v.is_floating_point() else v
        for k, v in state["model"].items()
    }
    torch.save(state, out / "model.pt")
    return out


def test_a_soup_is_the_weight_mean_and_decodes_without_its_inputs(
    tiny_exp: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    a = copy_exp(tiny_exp, tmp_path / "a", 0.01, 1)
    b = copy_exp(tiny_exp, tmp_path / "b", 0.01, 2)
    soup = tmp_path / "soup"
    assert cli("average", a, b, "--out", soup) == 0
    wa, wb, ws = (torch.load(e / "model.pt", map_location="cpu")["model"] for e in (a, b, soup))
    for key, value in ws.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (wa[key].double() + wb[key].double()).div(2).float())
    assert yaml.safe_load((soup / "soup.yaml").read_text()) == {"experiments": [str(a), str(b)]}
    cfg = yaml.safe_load((soup / "config.yaml").read_text())
    assert cfg["model"] == yaml.safe_load((a / "config.yaml").read_text())["model"]
    assert all(Path(p).parent == soup / "tokenizers" for p in cfg["data"]["tokenizers"].values())
    # self-contained: it decodes with the inputs gone, with their recorded decoding
    shutil.rmtree(a)
    shutil.rmtree(b)
    data = tiny_corpus / "en_test_phone"
    assert cli("decode", "--exp", soup, "--data", data) == 0
    assert sorted(read_table(soup / "decode_en_test_phone" / "text", allow_empty_value=True)) == sorted(
        read_table(data / "text")
    )


def test_runs_of_other_architectures_are_refused(tiny_exp: Path, tmp_path: Path, capsys) -> None:
    a = copy_exp(tiny_exp, tmp_path / "a", 0.0, 1)
    b = copy_exp(tiny_exp, tmp_path / "b", 0.0, 2)
    cfg = yaml.safe_load((b / "config.yaml").read_text())
    cfg["model"]["encoder"]["num_blocks"] += 1
    (b / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert cli_as_user("average", a, b, "--out", tmp_path / "s") == 2
    err = capsys.readouterr().err
    assert f"{b / 'config.yaml'}: its 'model' section differs from {a / 'config.yaml'}'s" in err
    assert not (tmp_path / "s" / "model.pt").exists()
    # checkpoint files and experiment dirs do not mix
    assert cli_as_user("average", a, a / "model.pt", "--out", tmp_path / "s") == 2
    assert "give checkpoint files or experiment directories, not both" in capsys.readouterr().err


def test_checkpoints_of_other_shapes_are_refused_by_name(tmp_path: Path, capsys) -> None:
    """The averaging itself names the parameter that differs (soups and checkpoint files alike)."""
    torch.save({"model": {"w": torch.zeros(2), "b": torch.zeros(1)}}, tmp_path / "a.pt")
    torch.save({"model": {"w": torch.zeros(3), "b": torch.zeros(1)}}, tmp_path / "b.pt")
    assert cli_as_user("average", tmp_path / "a.pt", tmp_path / "b.pt", "--out", tmp_path / "avg.pt") == 2
    assert f"{tmp_path / 'b.pt'}: parameter 'w' differs from {tmp_path / 'a.pt'}'s" in capsys.readouterr().err
    assert not (tmp_path / "avg.pt").exists()


def test_a_soup_of_add_language_runs_is_made_with_a_warning(tiny_exp: Path, tmp_path: Path, capsys) -> None:
    """Add-language runs move far from their start and from each other: averaged, they were worse than
    their mean, so the soup comes with a warning that says so."""
    runs = [copy_exp(tiny_exp, tmp_path / f"ro_full_seed{s}", 0.01, s) for s in (1, 2)]
    for run in runs:
        (run / "add_language.yaml").write_text("lang: ro\nmethod: full\n")
    assert cli("average", *runs, "--out", tmp_path / "soup") == 0
    assert "average: WARNING: add-language runs move far from their start" in capsys.readouterr().err
    assert (tmp_path / "soup" / "model.pt").is_file()
    # a soup of adaptation runs from one source model: no warning
    adapted = [copy_exp(tiny_exp, tmp_path / n, 0.01, 3) for n in "ab"]
    assert cli("average", *adapted, "--out", tmp_path / "s2") == 0
    assert "WARNING" not in capsys.readouterr().err
