"""``asr-transfer transcribe``: print the transcript of audio files with a trained experiment."""

from __future__ import annotations

import argparse

import torch

from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer

ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", help="16 kHz mono WAV/FLAC files")
    parser.add_argument("--exp", required=True, help="trained experiment dir")
    parser.add_argument("--config", action="append", default=[], help="decode YAML (conf/decode/*.yaml)")
    parser.add_argument("--checkpoint", default="model.pt")
    parser.add_argument("--lang", help="language head (default: the only one)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    rec = Recognizer.from_exp(
        args.exp, args.checkpoint, DecodeConfig.for_exp(args.exp, args.config, args.overrides), args.device
    )
    for path in args.audio:
        print(f"{path}\t{rec.transcribe(path, args.lang)}")
    return 0
