"""``asr-transfer decode``: decode Kaldi data dirs into ``EXP/decode_<dir>/`` (Kaldi text + sclite trn).

Each dir is decoded by :func:`~asr_transfer.decode.data_dir.decode_dir` (features on the fly,
built under ``decode_<dir>.tmp`` and renamed when complete); a finished decode dir is skipped on
rerun unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from asr_transfer.decode.data_dir import decode_dir
from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer

ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp", required=True, help="trained experiment dir")
    parser.add_argument("--data", nargs="+", required=True, help="Kaldi data dirs to decode")
    parser.add_argument("--config", action="append", default=[], help="decode YAML (conf/decode/*.yaml)")
    parser.add_argument("--checkpoint", default="model.pt", help="file in EXP (default: averaged model)")
    parser.add_argument("--lang", help="language head (default: utt2lang, or the only head)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--adapter",
        nargs="+",
        default=[],
        help="adapter files (add-language --method adapter) loaded into EXP's model; each data dir's "
        "language (utt2lang or --lang) enables its own adapter, without reloading the model. Domain "
        "adapter files (train --adapt.train adapter) likewise: each utterance's domain (utt2domain or "
        "--domain) enables its own, any other domain is decoded by the base alone",
    )
    parser.add_argument("--domain", help="the domain of every utterance (default: utt2domain)")
    parser.add_argument("--out-root", help="write decode_<dir> here (default: EXP)")


def run(args: argparse.Namespace) -> int:
    rec = Recognizer.from_exp(
        args.exp,
        args.checkpoint,
        DecodeConfig.for_exp(args.exp, args.config, args.overrides),
        args.device,
        adapter=args.adapter,
    )
    for data_dir in map(Path, args.data):
        out = Path(args.out_root or args.exp) / f"decode_{data_dir.name}"
        if (out / "text").exists() and not args.overwrite:
            print(f"decode: {out} exists, skipped")
            continue
        rtf = decode_dir(rec, data_dir, out, args.lang, args.domain)
        print(f"decode: {data_dir} -> {out} (RTF {rtf:.3f})")
    return 0
