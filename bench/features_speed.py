"""Time the feature dump (``asr-transfer features`` with speed perturbation) against torchaudio's
Kaldi fbank alone, and split our time into its parts.

Usage:
    python bench/features_speed.py [--utts 1000] [--seconds 2.0] [--jobs 1 2] [--repeats 3]

Builds a data dir of ``--utts`` FLAC files of ``--seconds`` each (speech-like: noise bursts under
a moving tone; fbank's cost does not depend on what is said), then times, in this process:

- ``torchaudio fbank alone``: ``torchaudio.compliance.kaldi.fbank`` (80 bins, the dump's settings)
  on the in-memory waveforms of every copy the dump writes (original, 0.9 and 1.1), nothing else;
- our parts, serially: decoding the FLAC files, speed perturbation, our fbank (fbank plus the
  seeded dither);
- ``dump_features`` end to end (what ``asr-transfer features --speed-perturb 0.9 1.1 --jobs N``
  runs: decode, perturb, fbank, write ark/scp, CMVN statistics) for each ``--jobs``.

With ``--other ROOT`` (a checkout of another version, e.g. ``git worktree add /tmp/old c50508a``) it
also times that version's ``dump_features`` and this one's, each in a fresh process, taking turns,
and says whether their ``feats.ark`` are byte-identical.

Each figure is the best of ``--repeats`` runs; the ratio column is against fbank alone. Torch runs
with one thread in this process (``--threads``), as the dump's own processes do; ``--threads 2`` shows
what torch's default (a thread per core) costs on a busy machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from asr_transfer.data.audio import SAMPLE_RATE, load_audio, write_audio
from asr_transfer.data.dump import dump_features
from asr_transfer.data.features import CMVNStats, fbank, speed_perturb
from asr_transfer.data.kaldi import write_data_dir

SPEEDS = (1.0, 0.9, 1.1)


def make_data_dir(root: Path, n: int, seconds: float) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wav, text, spk = {}, {}, {}
    for i in range(n):
        f0 = 120 + 80 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)
        env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None)
        x = 0.3 * env * np.sin(2 * np.pi * np.cumsum(f0) / SAMPLE_RATE) + 0.02 * rng.standard_normal(len(t))
        utt = f"s{i % 20:02d}-u{i:05d}"
        wav[utt] = str(root / "audio" / f"{utt}.flac")
        write_audio(wav[utt], x.astype(np.float32))
        text[utt], spk[utt] = "one two three", utt.split("-")[0]
    write_data_dir(root / "data", wav=wav, text=text, utt2spk=spk)
    return root / "data"


_DUMP = """
import sys, time
sys.path.insert(0, {root!r})
from asr_transfer.data.features import CMVNStats
from asr_transfer.data.dump import dump_features
import scipy.signal  # imported before the clock starts in both versions
start = time.perf_counter()
dump_features({data!r}, {out!r}, (1.0, 0.9, 1.1), CMVNStats(){extra})
print(time.perf_counter() - start)
"""


def compare(other: Path, data: Path, root: Path, repeats: int) -> None:
    """Time ``other``'s dump and this checkout's (``--jobs 1``, ``2``) in fresh processes, in turn."""
    here = Path(__file__).resolve().parents[1]
    versions = {
        f"{other}": (other, ""),
        "this, --jobs 1": (here, ", jobs=1"),
        "this, --jobs 2": (here, ", jobs=2"),
    }
    runs: dict[str, list[float]] = {name: [] for name in versions}
    for rep in range(repeats):
        for i, (name, (code_root, extra)) in enumerate(versions.items()):
            out = root / f"cmp{i}_{rep}"
            src = _DUMP.format(root=str(code_root), data=str(data), out=str(out), extra=extra)
            proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, check=True)
            runs[name].append(float(proc.stdout.split()[-1]))
    for name, times in runs.items():
        print(f"{name:36s} best {min(times):7.2f} s, runs {' '.join(f'{t:.1f}' for t in times)}")
    ark = [(root / f"cmp{i}_0" / "feats.ark").read_bytes() for i in (0, 2)]
    same = ark[0] == ark[1]
    print(f"feats.ark byte-identical between {other} and this --jobs 2: {same}")


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--other", type=Path, help="a checkout of another version to compare with")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of this process (default 1, as in the dump)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_data_dir(root, args.utts, args.seconds)
        paths = sorted((root / "audio").glob("*.flac"))
        waves = [load_audio(p) for p in paths]
        copies = [w if s == 1.0 else speed_perturb(w, s) for w in waves for s in SPEEDS]

        def fbank_alone() -> None:
            for w in copies:
                kaldi.fbank(
                    torch.from_numpy(w * 32768.0).unsqueeze(0),
                    num_mel_bins=80, sample_frequency=SAMPLE_RATE, dither=0.0, energy_floor=0.0,
                )  # fmt: skip

        rows = [("torchaudio fbank alone", best(fbank_alone, args.repeats))]
        rows.append(("  our: decode FLAC", best(lambda: [load_audio(p) for p in paths], args.repeats)))
        rows.append(
            (
                "  our: speed perturbation",
                best(lambda: [speed_perturb(w, s) for w in waves for s in SPEEDS[1:]], args.repeats),
            )
        )
        rows.append(
            ("  our: fbank (with seeded dither)", best(lambda: [fbank(w) for w in copies], args.repeats))
        )
        for jobs in args.jobs:
            run = 0

            def dump(jobs: int = jobs) -> None:
                nonlocal run
                run += 1
                dump_features(data, root / f"dump{jobs}_{run}", SPEEDS, CMVNStats(), jobs=jobs)

            rows.append((f"dump_features, --jobs {jobs}", best(dump, args.repeats)))
        if args.other:
            compare(args.other.resolve(), data, root, args.repeats)
    base = rows[0][1]
    frames = len(copies)
    speeds = " ".join(map(str, SPEEDS))
    print(f"{args.utts} utterances of {args.seconds} s, speeds {speeds} ({frames} fbanks), "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats}")  # fmt: skip
    print(f"{'':36s} {'seconds':>8s} {'x fbank alone':>14s}")
    for name, seconds in rows:
        print(f"{name:36s} {seconds:8.2f} {seconds / base:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
