"""``asr-transfer transcribe``: print the transcript of audio files with a trained experiment.

Any sample rate and channel count soundfile reads is taken: channels are averaged and the audio
resampled to the model's rate, said once on stderr per kind of file (an 8 kHz call: upsampled, so
expect a higher WER). A file that cannot be read is a one-line error naming it; the other files are
still transcribed, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys

import torch

from asr_transfer.data.audio import AudioError
from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer

ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3 where libsndfile has it), any rate"
    )
    parser.add_argument("--exp", required=True, help="trained experiment dir")
    parser.add_argument("--config", action="append", default=[], help="decode YAML (conf/decode/*.yaml)")
    parser.add_argument("--checkpoint", default="model.pt")
    parser.add_argument("--lang", help="language head (default: the only one)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    rec = Recognizer.from_exp(
        args.exp, args.checkpoint, DecodeConfig.for_exp(args.exp, args.config, args.overrides), args.device
    )
    try:
        lang = rec.default_lang(args.lang)
    except ValueError as err:
        print(f"asr-transfer transcribe: error: --exp {args.exp}: {err}", file=sys.stderr)
        return 1
    failed = 0
    for path in args.audio:
        try:
            print(f"{path}\t{rec.transcribe(path, lang)}", flush=True)
        except AudioError as err:  # names the file itself
            print(f"asr-transfer transcribe: error: {err}", file=sys.stderr)
            failed += 1
        except ValueError as err:  # too short for one frame, or for the model's subsampling
            print(f"asr-transfer transcribe: error: {path}: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0
