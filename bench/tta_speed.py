"""Real-time factor of decoding without and with SUTA test-time adaptation, per thread count (CPU).

Usage:
    python bench/tta_speed.py EXP DATA_DIR [--utts 100] [--threads 1 2]
        [--config conf/decode/ctc_greedy_suta.yaml]

The same ``--utts`` utterances (the data dir's first, in its order) are decoded in batches of the
config's ``batch_size`` by :class:`~asr_transfer.decode.transcribe.Recognizer` (features included),
after one warm-up batch; RTF = wall seconds / audio seconds, and the process's CPU seconds per audio
second beside it (on a shared machine the CPU figure varies less).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from asr_transfer.data.audio import load_audio
from asr_transfer.data.kaldi import load_data_dir
from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exp")
    parser.add_argument("data")
    parser.add_argument("--utts", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--config", default="conf/decode/ctc_greedy_suta.yaml")
    args = parser.parse_args()
    data = load_data_dir(args.data, require_text=False)
    waves = [load_audio(data.wav[u]) for u in data.utts[: args.utts]]
    audio_s = sum(len(w) for w in waves) / 16000
    suta = DecodeConfig.from_config([args.config], [])
    print(f"{len(waves)} utterances, {audio_s:.0f} s of audio")
    print("| threads | decoding | RTF (wall) | CPU s per audio s |")
    print("|---:|---|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, cfg in (("without", dataclasses.replace(suta, tta="none")), ("SUTA", suta)):
            rec = Recognizer.from_exp(args.exp, decode=cfg, device="cpu")
            bs = cfg.batch_size
            rec.transcribe_waves(waves[:bs])  # warm-up
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(waves), bs):
                rec.transcribe_waves(waves[i : i + bs])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"| {threads} | {name} | {wall / audio_s:.3f} | {cpu / audio_s:.3f} |")


if __name__ == "__main__":
    main()
