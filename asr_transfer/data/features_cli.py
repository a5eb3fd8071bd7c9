"""``asr-transfer features``: dump features of data dirs (kaldiio ark/scp) and CMVN stats.

Writes ``OUT/feats.ark``, ``OUT/feats.scp``, ``OUT/utt2num_frames`` and ``OUT/frontend.yaml``
(which frontend made them: Kaldi fbank, or with ``--espnet-exp`` that ESPnet2 experiment's own
frontend, for training from it) for each data dir;
with ``--speed-perturb 0.9 1.1`` also perturbed copies (ids prefixed ``sp0.9-``), whose
transcripts are the original ones (``OUT/text``). ``--cmvn FILE`` accumulates global
mean/variance over everything dumped in this call. A finished dump made by the same frontend
is skipped on rerun.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import kaldiio
import torch
from tqdm import tqdm

from asr_transfer.data.audio import load_audio
from asr_transfer.data.features import CMVNStats, speed_perturb
from asr_transfer.data.frontend import build_frontend, check_record, write_record
from asr_transfer.data.kaldi import DataError, load_data_dir, write_table


def dump_features(
    data_dir: str | Path,
    out_dir: str | Path,
    speeds: tuple[float, ...] = (1.0,),
    stats: CMVNStats | None = None,
    features: dict | None = None,
) -> int:
    """Dump features of every utterance of ``data_dir`` into ``out_dir``; return the number written.

    ``features`` is a ``features:`` config section (default: Kaldi fbank, 80 bins).

    The write goes to temporary files renamed at the end, so a killed dump leaves
    no half-written ``feats.scp`` behind and is redone on the next call.
    """
    data = load_data_dir(data_dir, require_text=False)
    frontend = build_frontend(features)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = data.wav.keys()
    line_of = {utt: i for i, utt in enumerate(lines, start=1)}
    frames: dict[str, str] = {}
    text: dict[str, str] = {}
    tmp_ark, tmp_scp = out / "feats.ark.tmp", out / "feats.scp.tmp"
    with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
        for utt in tqdm(data.utts, desc=f"features {Path(data_dir).name}", unit="utt", leave=False):
            wave = load_audio(data.wav[utt], where=f"{Path(data_dir) / 'wav.scp'}:{line_of[utt]}")
            for speed in speeds:
                key = utt if speed == 1.0 else f"sp{speed}-{utt}"
                feats = frontend(wave if speed == 1.0 else speed_perturb(wave, speed))
                if stats is not None:
                    stats.add(feats)
                writer(key, feats.numpy())
                frames[key] = str(feats.shape[0])
                if data.text is not None:
                    text[key] = data.text[utt]
    # the scp names the temporary ark: point it at the final name before renaming
    scp = tmp_scp.read_text().replace(str(tmp_ark), str(out / "feats.ark"))
    os.replace(tmp_ark, out / "feats.ark")
    (out / "feats.scp").write_text(scp)
    tmp_scp.unlink()
    write_table(out / "utt2num_frames", frames)
    write_record(out, features)
    (out / "speed_perturb").write_text(" ".join(map(str, speeds)) + "\n")
    if text:
        write_table(out / "text", text)
    return len(frames)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dirs", nargs="+", help="Kaldi data dirs")
    parser.add_argument("--out", required=True, help="dump root; one folder per data dir name")
    parser.add_argument("--speed-perturb", type=float, nargs="*", default=[], help="e.g. 0.9 1.1")
    parser.add_argument("--cmvn", help="write global CMVN stats of these dirs to this .npz")
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
        n = dump_features(data_dir, out, speeds, stats, features)
        print(f"features: {n} utterances -> {out}")
    if stats is not None:
        stats.save(args.cmvn)
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
