"""WER of ``Recognizer.transcribe`` on a test set written as users record it: the 16 kHz originals,
44.1 kHz stereo, 48 kHz mono and 8 kHz mono copies (polyphase resampling; the stereo copy's channels
differ but average to the utterance), each read back, averaged and resampled to 16 kHz.

    .venv/bin/python bench/transcribe_rates.py --exp recipes/mini/exp/tiny_clean \\
        --data recipes/mini/data/en_test_clean --max-utts 60
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr_transfer.data.audio import load_audio, resample
from asr_transfer.data.kaldi import load_data_dir
from asr_transfer.decode import Recognizer
from asr_transfer.score import score_texts


def write_copy(wave: np.ndarray, path: Path, rate: int, stereo: bool) -> None:
    y = resample(wave, 16000, rate)
    if stereo:  # channels that differ by a 300 Hz tone, averaging to the utterance
        side = 0.05 * np.sin(2 * np.pi * 300 * np.arange(len(y)) / rate)
        y = np.stack([y + side, y - side], axis=1)
    sf.write(path, y, rate, subtype="PCM_16")


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--exp", type=Path, required=True, help="trained experiment (config.yaml, model.pt)")
    parser.add_argument("--data", type=Path, required=True, help="Kaldi data dir with transcripts")
    parser.add_argument("--max-utts", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rec = Recognizer.from_exp(args.exp)  # the experiment's recorded decoding
    data = load_data_dir(args.data)
    utts = data.utts[: args.max_utts]
    refs = {u: data.text[u] for u in utts}
    conditions = {"16 kHz mono (original)": None, "44.1 kHz stereo": (44100, True),
                  "48 kHz mono": (48000, False), "8 kHz mono": (8000, False)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, how in conditions.items():
            hyps, start = {}, time.perf_counter()
            for u in utts:
                path = Path(data.wav[u])
                if how is not None:
                    path = Path(tmp) / f"{u}.wav"
                    write_copy(load_audio(data.wav[u]), path, *how)
                with contextlib.redirect_stderr(io.StringIO()):  # the once-per-kind note
                    hyps[u] = rec.transcribe(path)
            wer = score_texts(refs, hyps).total.wer
            took = time.perf_counter() - start
            print(f"{name:24s} WER {wer:6.2f} %  ({len(utts)} utterances, {took:.1f} s)")


if __name__ == "__main__":
    main()
