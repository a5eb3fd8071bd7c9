#!/usr/bin/env python3
"""Time ``validate-data`` on a generated data dir: tables only, header + end blocks, full decode.

Usage: python bench/bench_validate_data.py [--utts 2000] [--seconds 3.0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from asr_transfer.data.audio import write_audio
from asr_transfer.data.kaldi import write_data_dir
from asr_transfer.data.validate import validate_data_dir


def make_dir(root: Path, utts: int, seconds: float) -> Path:
    rng = np.random.default_rng(0)
    wav, text, utt2spk, utt2dur = {}, {}, {}, {}
    for i in range(utts):
        utt = f"spk{i % 50:03d}-{i:06d}"
        path = root / "audio" / f"{utt}.flac"
        write_audio(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32))
        wav[utt], text[utt], utt2spk[utt], utt2dur[utt] = str(path), "hello world", utt[:6], seconds
    data = root / "data"
    write_data_dir(
        data, wav=wav, text=text, utt2spk=utt2spk, utt2lang=dict.fromkeys(wav, "en"), utt2dur=utt2dur
    )
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_dir(Path(tmp), args.utts, args.seconds)
        hours = args.utts * args.seconds / 3600
        print(f"data dir: {args.utts} utterances, {hours:.2f} h of 16 kHz FLAC")
        for label, kwargs in [
            ("tables only (--no-audio)", {"check_audio": False}),
            ("header + end blocks (default)", {}),
            ("full decode (--full-decode)", {"full_decode": True}),
        ]:
            start = time.perf_counter()
            report = validate_data_dir(data, **kwargs)
            elapsed = time.perf_counter() - start
            assert not report.errors, report.errors[:3]
            print(f"{label:32s} {elapsed:7.2f} s  {args.utts / elapsed:8.0f} utt/s")


if __name__ == "__main__":
    main()
