"""``asr-transfer features``: dump features of data dirs (kaldiio ark/scp) and CMVN stats.

Each data dir goes to ``OUT/<dir name>`` (:func:`~asr_transfer.data.dump.dump_features`);
with ``--speed-perturb 0.9 1.1`` also perturbed copies (ids prefixed ``sp0.9-``).
``--cmvn FILE`` accumulates global mean/variance over everything dumped in this call. A finished
dump made by the same frontend is skipped on rerun. ``--jobs N`` computes features in N
processes; the output is the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import kaldiio
import torch

from asr_transfer.data.dump import dump_features
from asr_transfer.data.features import CMVNStats
from asr_transfer.data.frontend import check_record
from asr_transfer.data.kaldi import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dirs", nargs="+", help="Kaldi data dirs")
    parser.add_argument("--out", required=True, help="dump root; one folder per data dir name")
    parser.add_argument("--speed-perturb", type=float, nargs="*", default=[], help="e.g. 0.9 1.1")
    parser.add_argument("--cmvn", help="write global CMVN stats of these dirs to this .npz")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (the dump is the same for any number)"
    )
    parser.add_argument(
        "--espnet-exp",
        help="ESPnet2 experiment dir: compute its own frontend's features (to train from it, "
        "train.init_espnet) instead of Kaldi fbank",
    )


def run(args: argparse.Namespace) -> int:
    speeds = (1.0, *args.speed_perturb)
    stats = CMVNStats() if args.cmvn else None
    features = None
    if args.espnet_exp:
        from asr_transfer.model.espnet_loader import espnet_features_config

        features = espnet_features_config(args.espnet_exp)
    for data_dir in args.data_dirs:
        out = Path(args.out) / Path(data_dir).name
        if (out / "feats.scp").exists():
            # reusing a dump made by another frontend or other speeds would train on the wrong data
            check_record(out, features)
            _check_speeds(out, speeds)
            print(f"features: {out} exists, skipped")
            if stats is not None:
                # statistics from the existing dump: no second fbank pass
                for _, mat in kaldiio.load_scp_sequential(str(out / "feats.scp")):
                    stats.add(torch.tensor(mat))
            continue
        n = dump_features(data_dir, out, speeds, stats, features, jobs=args.jobs)
        print(f"features: {n} utterances -> {out}")
    if stats is not None:
        try:
            stats.save(args.cmvn)
        except OSError as err:
            raise DataError(f"features: cannot write {args.cmvn}: {err.strerror or err}") from err
        print(f"features: CMVN stats over {stats.count} frames -> {args.cmvn}")
    return 0


def _check_speeds(dump: Path, speeds: tuple[float, ...]) -> None:
    """A finished dump must hold the speed-perturbed copies asked for (no record: made without any)."""
    record = dump / "speed_perturb"
    made = tuple(map(float, record.read_text().split())) if record.exists() else (1.0,)
    if sorted(made) != sorted(speeds):
        asked = " ".join(map(str, speeds))
        raise DataError(
            f"{record}: dumped with speeds {' '.join(map(str, made))}, asked for {asked}; "
            f"remove {dump} to dump it again"
        )
