"""Real-time factor of ESPnet's per-utterance beam search vs ours batched over utterances.

Both searches decode the same utterances with the same model and weights (encoder
included in the time); the script also reports how many hypotheses agree.

    .venv/bin/python bench/beam_speed.py --exp exp/tiny --data corpus/tiny/data/en_test_* --max-utts 100
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from asr_transfer.data.audio import SAMPLE_RATE, load_audio
from asr_transfer.data.features import fbank
from asr_transfer.data.kaldi import load_data_dir
from asr_transfer.decode import DecodeConfig, Recognizer, decode_batch


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--exp", type=Path, required=True, help="trained experiment (config.yaml, model.pt)")
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="Kaldi data dirs to decode")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--max-utts", type=int, default=100)
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--ctc-weight", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rec = Recognizer.from_exp(args.exp)
    waves = []
    for d in args.data:
        data = load_data_dir(d, require_text=False)
        waves += [load_audio(data.wav[u]) for u in data.utts]
    waves = sorted(waves[: args.max_utts], key=len)  # as the decode CLI: batches of similar length
    audio_s = sum(len(w) for w in waves) / SAMPLE_RATE
    batches = []
    for i in range(0, len(waves), args.batch_size):
        feats = [fbank(w) for w in waves[i : i + args.batch_size]]
        lens = torch.tensor([f.shape[0] for f in feats])
        batches.append((torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lens))
    print(
        f"{len(waves)} utterances, {audio_s:.1f} s of audio, beam {args.beam}, "
        f"ctc_weight {args.ctc_weight}, batch {args.batch_size}, {args.threads} thread(s)"
    )

    results, rtf = {}, {}
    for mode in ("beam_espnet", "beam"):
        cfg = DecodeConfig(
            mode=mode, beam_size=args.beam, ctc_weight=args.ctc_weight, batch_size=args.batch_size
        )
        start = time.perf_counter()
        results[mode] = [
            h for feats, lens in batches for h in decode_batch(rec.model, feats, lens, args.lang, cfg)
        ]
        rtf[mode] = (time.perf_counter() - start) / audio_s
        print(f"{mode:12s} RTF {rtf[mode]:.4f}  ({rtf[mode] * audio_s:.1f} s)")
    same = sum(a == b for a, b in zip(results["beam_espnet"], results["beam"]))
    print(f"speed-up {rtf['beam_espnet'] / rtf['beam']:.1f}x; identical hypotheses {same}/{len(waves)}")


if __name__ == "__main__":
    main()
