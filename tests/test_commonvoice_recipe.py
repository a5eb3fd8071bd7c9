"""recipes/commonvoice/run.sh end to end on a tiny tree in exactly the Common Voice layout
(<root>/<lang>/{train,dev,test}.tsv + clips/*.mp3 at 48 kHz), made from real synthesised speech."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from conftest import MP3, REPO
from scipy.signal import resample_poly

from asr_transfer.data.kaldi import load_data_dir

HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"


def make_cv_tree(corpus: Path, root: Path, langs: tuple[str, ...]) -> None:
    """One Common Voice language folder per ``lang`` from the synth corpus's clean data dirs."""
    for lang in langs:
        (root / lang / "clips").mkdir(parents=True)
        for split in ("train", "dev", "test"):
            data = load_data_dir(corpus / f"{lang}_{split}_clean")
            lines = [HEADER]
            for i, utt in enumerate(data.utts):
                wave, rate = sf.read(data.wav[utt], dtype="float32")
                clip = f"common_voice_{lang}_{split}{i:04d}.mp3"
                sf.write(root / lang / "clips" / clip, resample_poly(wave, 48000 // rate, 1), 48000)
                sentence = data.text[utt].capitalize() + "."  # as users type it: normalised by data_prep
                client = data.utt2spk[utt].encode().hex().ljust(64, "0")
                lines.append(f"{client}\t{clip}\t{sentence}\t2\t0\t\t\t\t\t{lang}\t")
            (root / lang / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
@pytest.mark.system_tool
@MP3
def test_commonvoice_recipe_on_a_tiny_release(tiny_corpus: Path, tmp_path: Path) -> None:
    make_cv_tree(tiny_corpus, tmp_path / "cv-corpus", ("en", "de", "ro"))
    recipe = tmp_path / "commonvoice"
    (recipe / "local").mkdir(parents=True)
    for name in ("run.sh", "local/data_prep.py"):
        (recipe / name).write_bytes((REPO / "recipes/commonvoice" / name).read_bytes())
    (recipe / "run.sh").chmod(0o755)
    (tmp_path / "crossling").mkdir()
    (tmp_path / "crossling/run.sh").write_bytes((REPO / "recipes/crossling/run.sh").read_bytes())
    (tmp_path / "crossling/run.sh").chmod(0o755)
    (recipe / "conf").symlink_to(REPO / "conf")
    (recipe.parent / "common").symlink_to(REPO / "recipes/common")  # the shared option parser
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    args = ["--cv_root", str(tmp_path / "cv-corpus"), "--sources", "en de", "--targets", "ro",
            "--methods", "full adapter", "--source_token_type", "char", "--jobs", "1",
            "--pretrain_args", "--train.epochs 2 --train.num_threads 1",
            "--adapt_args", "--train.epochs 2 --train.num_threads 1 --tokenizer.kind char"]  # fmt: skip
    proc = subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in (recipe / "cv/data").iterdir() if p.name != "audio") == sorted(
        f"{lang}_{split}_clean" for lang in ("en", "de", "ro") for split in ("train", "dev", "test")
    )
    results = (recipe / "exp/report/RESULTS.md").read_text(encoding="utf-8")
    assert "| ro |" in results and "Full-FT" in results and "Adapter" in results
    assert "en_test_clean" in results  # the source model's own test WERs
    assert (recipe / "exp/ro_adapter/ro.adapter").is_file()


def commonvoice_stage_6(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run recipes/commonvoice's stage 6 (which is recipes/crossling's) with a stand-in asr-transfer
    that records its arguments, one line per call, in ``tmp_path/calls``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "asr-transfer").write_text('#!/bin/sh\necho "$@" >> "$CALLS"\n')
    (bin_dir / "asr-transfer").chmod(0o755)
    for recipe in ("commonvoice", "crossling"):
        (tmp_path / recipe).mkdir()
        (tmp_path / recipe / "run.sh").write_bytes((REPO / "recipes" / recipe / "run.sh").read_bytes())
        (tmp_path / recipe / "run.sh").chmod(0o755)
    (tmp_path / "commonvoice/conf").symlink_to(REPO / "conf")
    (tmp_path / "common").symlink_to(REPO / "recipes/common")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}
    return subprocess.run(
        ["./run.sh", "--stage", "6", "--stop_stage", "6", "--targets", "ro", *args],
        cwd=tmp_path / "commonvoice", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_options_it_does_not_define_go_to_the_crossling_recipe(tmp_path: Path) -> None:
    proc = commonvoice_stage_6(
        tmp_path, "--methods", "adapter", "--adapt_seeds", "1 2", "--train_utts=50", "--expdir", "exp_cv"
    )
    assert proc.returncode == 0, proc.stderr
    cut, seed1, seed2 = (tmp_path / "calls").read_text().splitlines()
    assert cut == "subset cv/data/ro_train_clean --utts 50 --out cv/data/ro_train50_clean"
    assert "--exp exp_cv/ro_adapter_u50 " in seed1 and "--train.seed 1" in seed1
    assert "--exp exp_cv/ro_adapter_u50_seed2 " in seed2 and "--train.seed 2" in seed2
    assert all("--train cv/data/ro_train50_clean " in call for call in (seed1, seed2))


def test_an_option_neither_recipe_knows_is_refused_by_name(tmp_path: Path) -> None:
    proc = commonvoice_stage_6(tmp_path, "--adapt_sedes", "1 2")
    assert proc.returncode == 2
    assert "crossling/run.sh: unknown option --adapt_sedes" in proc.stderr
    assert not (tmp_path / "calls").exists()
