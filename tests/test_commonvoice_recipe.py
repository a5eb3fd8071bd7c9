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
