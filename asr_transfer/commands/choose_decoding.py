"""One decoding per experiment: chosen on dev data, recorded in ``EXP/decode.yaml``, used by default.

``asr-transfer choose-decoding`` decodes dev data dirs (with transcripts) with each candidate
decode config, keeps the one with the lowest WER (the first listed on a tie, so list the cheapest
first) and writes it to ``EXP/decode.yaml``; the dev WER of every candidate goes to
``EXP/choose_decoding/summary.yaml``. From then on ``asr-transfer decode``, ``pseudo-label``,
``transcribe`` and ``Recognizer.from_exp`` decode ``EXP`` with it when no ``--config`` is given,
and an experiment adapted from ``EXP`` (``--train.init EXP/model.pt``) inherits it, its two-domain
methods weighting CTC and attention as that decoding does::

    asr-transfer choose-decoding --exp exp/tiny_clean --data data/en_dev_clean \\
        --candidates conf/decode/ctc_greedy.yaml conf/decode/beam_fast.yaml
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from asr_transfer.data.kaldi import DataError, read_table
from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer
from asr_transfer.score.scoring import score_texts
from asr_transfer.train.init import DECODING_FILE
from asr_transfer.util.atomic import write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp", required=True, type=Path, help="trained experiment dir")
    parser.add_argument("--data", nargs="+", required=True, type=Path, help="dev data dirs (with text)")
    parser.add_argument(
        "--candidates", nargs="+", required=True, type=Path, help="decode YAMLs, cheapest first"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def dev_wer(rec: Recognizer, data_dirs: list[Path], work: Path) -> float:
    """Pooled WER (%) of ``rec`` over ``data_dirs``; decodes go under ``work``."""
    from asr_transfer.decode.data_dir import decode_dir

    ref, hyp = {}, {}
    for data_dir in data_dirs:
        if not (data_dir / "text").is_file():
            raise DataError(f"{data_dir / 'text'}: missing: choosing a decoding needs dev transcripts")
        out = work / f"decode_{data_dir.name}"
        decode_dir(rec, data_dir, out, None)
        ref |= {f"{data_dir.name}/{u}": t for u, t in read_table(data_dir / "text").items()}
        hyp |= {
            f"{data_dir.name}/{u}": t for u, t in read_table(out / "text", allow_empty_value=True).items()
        }
    return score_texts(ref, hyp).total.wer


def choose(exp: Path, data_dirs: list[Path], candidates: list[Path], device: str = "cpu") -> dict:
    """Decode ``data_dirs`` with each candidate, record the best in ``EXP/decode.yaml``; the summary."""
    work = exp / "choose_decoding"
    shutil.rmtree(work, ignore_errors=True)
    results = []
    rec = Recognizer.from_exp(exp, device=device)
    for path in candidates:
        rec.decode_cfg = DecodeConfig.from_config([str(path)], [])
        wer = dev_wer(rec, data_dirs, work / path.stem)
        results.append({"config": str(path), "wer": round(wer, 4), "decode": asdict(rec.decode_cfg)})
    best = min(results, key=lambda r: r["wer"])  # min keeps the first of equal values
    summary = {"data": [str(d) for d in data_dirs], "candidates": results, "chosen": best["config"]}
    write_text(work / "summary.yaml", yaml.safe_dump(summary, sort_keys=False))
    write_text(
        exp / DECODING_FILE,
        f"# chosen on {', '.join(summary['data'])} by asr-transfer choose-decoding "
        f"(dev WER {best['wer']:.2f} %; every candidate in choose_decoding/summary.yaml)\n"
        + yaml.safe_dump(best["decode"], sort_keys=False),
    )
    return summary


def run(args: argparse.Namespace) -> int:
    summary = choose(args.exp, args.data, args.candidates, args.device)
    for r in summary["candidates"]:
        print(f"choose-decoding: {r['config']}: dev WER {r['wer']:.2f} %")
    print(f"choose-decoding: {args.exp / DECODING_FILE} <- {summary['chosen']}")
    return 0
