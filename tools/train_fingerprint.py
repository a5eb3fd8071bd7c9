"""Hash the models that short training runs produce: the same code must give the same hashes.

Trains on the ``tiny`` synth preset, in one CPU thread: a source model (``supervised``), a
``cmatch`` adaptation of it (two streams and a method state), and ``add-language`` runs
(``head``, ``adapter``, ``source_adapters``, ``meta_train``). Prints one ``name sha256`` line per
run; compare the lines of two code versions (docs/benchmarks.md).

    python tools/train_fingerprint.py --work /tmp/fp
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
SMALL = ["--model.encoder.num_blocks", "2", "--model.encoder.output_size", "64",
         "--model.encoder.linear_units", "128", "--model.decoder.linear_units", "128",
         "--train.num_threads", "1", "--train.device", "cpu"]  # fmt: skip


def cli(*args: object) -> None:
    from asr_transfer.cli import main

    if main([str(a) for a in args]) != 0:
        raise SystemExit(f"failed: {args}")


def model_hash(path: Path) -> str:
    """sha256 over the averaged model's tensors, in name order."""
    state = torch.load(path, map_location="cpu")["model"]
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a new folder for the corpus and runs")
    work = parser.parse_args(argv).work
    cli("synth", "--preset", "tiny", "--out", work / "corpus", "--seed", "3", "--jobs", "1")
    data = work / "corpus" / "data"
    for lang in ("en", "de"):
        train, dev = data / f"{lang}_train_clean", data / f"{lang}_dev_clean"
        cli("features", train, dev, "--out", work / "dump")
        cli("features", train, "--out", work / "dump", "--cmvn", work / f"cmvn_{lang}.npz")
        cli("tokenizer", train, "--lang", lang, "--kind", "char", "--out", work / f"tok_{lang}")
    common = ["--config", REPO / "conf/model/tiny.yaml", "--config", REPO / "conf/train/mini.yaml", *SMALL]
    runs: dict[str, Path] = {}
    for lang in ("en", "de"):
        exp = runs[f"supervised_{lang}"] = work / f"source_{lang}"
        cli(
            "train",
            *common,
            "--exp",
            exp,
            "--train.epochs",
            "2",
            "--data.train",
            f"[{{dump: {work}/dump/{lang}_train_clean, lang: {lang}}}]",
            "--data.dev",
            f"[{{dump: {work}/dump/{lang}_dev_clean, lang: {lang}}}]",
            "--data.tokenizers",
            f"{{{lang}: {work}/tok_{lang}}}",
            "--data.cmvn",
            work / f"cmvn_{lang}.npz",
        )
    source = runs["supervised_en"]
    for split in ("train", "dev"):
        cli(
            "pseudo-label",
            "--exp",
            source,
            "--data",
            data / f"en_{split}_phone",
            "--out",
            work / "pseudo" / f"en_{split}_phone",
            "--keep",
            "1.0",
            "--mode",
            "ctc_greedy",
        )
    cli("features", *(work / "pseudo" / f"en_{s}_phone" for s in ("train", "dev")), "--out", work / "pdump")
    exp = runs["cmatch"] = work / "cmatch"
    cli(
        "train",
        *common,
        "--exp",
        exp,
        "--config",
        REPO / "conf/train/adapt.yaml",
        "--config",
        REPO / "conf/adapt/cmatch_ctc_align.yaml",
        "--adapt.min_frames",
        "1",
        "--train.init",
        source / "model.pt",
        "--train.epochs",
        "2",
        *SMALL,
        "--data.train",
        f"[{{dump: {work}/dump/en_train_clean, lang: en}}]",
        "--data.dev",
        f"[{{dump: {work}/dump/en_dev_clean, lang: en}}]",
        "--data.target",
        f"[{{dump: {work}/pdump/en_train_phone, lang: en}}]",
        "--data.target_dev",
        f"[{{dump: {work}/pdump/en_dev_phone, lang: en}}]",
        "--data.tokenizers",
        f"{{en: {work}/tok_en}}",
        "--data.cmvn",
        work / "cmvn_en.npz",
    )
    base = runs["supervised_de"]
    for method in ("head", "adapter"):
        exp = runs[f"add_language_{method}"] = work / f"ro_{method}"
        cli(
            "add-language",
            "--base",
            base,
            "--lang",
            "ro",
            "--train",
            data / "ro_train_clean",
            "--dev",
            data / "ro_dev_clean",
            "--method",
            method,
            "--exp",
            exp,
            "--train.epochs",
            "2",
            "--train.lr",
            "0.01",
            "--adapt.bottleneck",
            "8",
            "--tokenizer.kind",
            "char",
            # the base's schedule, as before add-language had defaults of its own: the hashes compare
            "--inherit-train",
        )
    for name, exp in runs.items():
        print(name, model_hash(exp / "model.pt"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
