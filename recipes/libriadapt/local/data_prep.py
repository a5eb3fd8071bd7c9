#!/usr/bin/env python3
"""Libri-Adapt -> Kaldi data dirs, one per accent x noise x device x split.

Reads the per-device DeepSpeech CSV files ``<root>/<accent>/<noise>/{train,test}_files_<device>.csv``
(columns ``wav_filename,wav_filesize,transcript``) and writes
``<out>/<accent>_<split>_<device>_<noise>/`` with ``wav.scp text utt2spk spk2utt utt2dur utt2lang
utt2domain`` (domain ``<device>_<noise>``, language ``en``). See ../README.md for the layout.
With ``--dev-share S`` the last share S of each training CSV's rows becomes
``<out>/<accent>_dev_<device>_<noise>/`` instead (Libri-Adapt has no dev split).

16 kHz mono files are referenced where they are; any other rate or channel count is converted to
16 kHz mono FLAC under ``--audio-dir``. Missing or unreadable recordings are skipped and counted
(the dataset's own README warns that some recordings may be incomplete).

Example:
    python recipes/libriadapt/local/data_prep.py /data/libriadapt data/libriadapt --devices matrix respeaker
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

from asr_transfer.data.audio import SAMPLE_RATE, AudioError, audio_info, convert_audio
from asr_transfer.data.kaldi import write_data_dir
from asr_transfer.text.normalize import Normalizer

ACCENTS = ("en-us", "en-gb", "en-in")
NOISES = ("clean", "rain", "wind", "laughter")
DEVICES = ("matrix", "pseye", "respeaker", "usb", "nexus6", "shure")
SPLITS = ("train", "test")
CSV_COLUMNS = ("wav_filename", "wav_filesize", "transcript")


@dataclass
class PrepResult:
    """What one CSV produced."""

    data_dir: Path
    num_utts: int = 0
    skipped: list[str] = field(default_factory=list)


def find_csvs(
    root: Path, accents: tuple[str, ...], noises: tuple[str, ...], devices: tuple[str, ...]
) -> list[tuple[str, str, str, str, Path]]:
    """(accent, noise, device, split, csv path) for every CSV present, in a stable order."""
    return [
        (accent, noise, device, split, root / accent / noise / f"{split}_files_{device}.csv")
        for accent in accents
        for noise in noises
        for device in devices
        for split in SPLITS
        if (root / accent / noise / f"{split}_files_{device}.csv").is_file()
    ]


def resolve_wav(csv_path: Path, wav_filename: str, device: str, split: str) -> Path:
    """Where a CSV row's audio is: as written, relative to the CSV, or moved with the dataset.

    DeepSpeech CSVs hold absolute paths from the machine that made them; when the dataset was
    moved, the file is found at ``<csv dir>/<device>/<split>/<basename>`` instead.
    """
    written = Path(wav_filename)
    candidates = [written] if written.is_absolute() else [csv_path.parent / written]
    candidates.append(csv_path.parent / device / split / written.name)
    return next((c for c in candidates if c.is_file()), candidates[0])


def prepare_csv(
    csv_path: Path,
    out_dir: Path,
    audio_dir: Path,
    *,
    accent: str,
    noise: str,
    device: str,
    split: str,
    dev_dir: Path | None = None,
    dev_share: float = 0.0,
) -> list[PrepResult]:
    """Convert one Libri-Adapt CSV into a Kaldi data dir (and, for ``dev_dir``, a dev dir).

    With ``dev_dir``, the last ``dev_share`` of the CSV's rows (counted before any is skipped, so
    every device splits the same sentences the same way) go to ``dev_dir``: Libri-Adapt has no dev
    split, and CMatch held out the end of the training list.
    """
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(
                f"{csv_path}:1: header lacks column(s) {', '.join(missing)}; expected {CSV_COLUMNS}"
            )
        rows = [(reader.line_num, row) for row in reader]
    num_dev = round(len(rows) * dev_share) if dev_dir is not None else 0
    parts = [(out_dir, rows[: len(rows) - num_dev])]
    if dev_dir is not None:
        parts.append((dev_dir, rows[len(rows) - num_dev :]))
    return [
        _write_part(csv_path, part, dir_, audio_dir, accent=accent, noise=noise, device=device, split=split)
        for dir_, part in parts
    ]


def _write_part(
    csv_path: Path,
    rows: list[tuple[int, dict[str, str]]],
    out_dir: Path,
    audio_dir: Path,
    *,
    accent: str,
    noise: str,
    device: str,
    split: str,
) -> PrepResult:
    """One data dir from rows (line number, row) of ``csv_path``; ``split`` is the CSV's (where the
    audio lies), not the data dir's."""
    result = PrepResult(out_dir)
    normalize = Normalizer("en")
    wav: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    for line, row in rows:
        where = f"{csv_path}:{line}"
        path = resolve_wav(csv_path, row["wav_filename"], device, split)
        # LibriSpeech names: <speaker>-<chapter>-<utterance>.wav
        stem = path.stem
        speaker = stem.split("-", 1)[0]
        utt = f"{stem}-{accent}-{noise}-{device}"
        sentence = normalize(row["transcript"])
        if not sentence:
            result.skipped.append(f"{where}: empty transcript")
            continue
        if utt in wav:
            result.skipped.append(f"{where}: duplicate file {path.name}")
            continue
        try:
            info = audio_info(path, sample_rate=None, where=where, mono=False)
        except AudioError as err:
            result.skipped.append(str(err))
            continue
        if info.sample_rate == SAMPLE_RATE and info.channels == 1:
            wav[utt], utt2dur[utt] = str(path.resolve()), info.duration
        else:
            target = audio_dir / accent / noise / device / split / f"{stem}.flac"
            try:
                frames = convert_audio(path, target)
            except AudioError as err:
                result.skipped.append(f"{where}: {err}")
                continue
            wav[utt], utt2dur[utt] = str(target.resolve()), frames / SAMPLE_RATE
        text[utt], utt2spk[utt] = sentence, speaker
    write_data_dir(
        out_dir,
        wav=wav,
        text=text,
        utt2spk=utt2spk,
        utt2lang=dict.fromkeys(wav, "en"),
        utt2domain=dict.fromkeys(wav, f"{device}_{noise}"),
        utt2dur=utt2dur,
    )
    result.num_utts = len(wav)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="Libri-Adapt root (holds en-us/, en-gb/, en-in/)")
    parser.add_argument("out", type=Path, help="where the data dirs are written")
    parser.add_argument("--accents", nargs="+", default=list(ACCENTS), choices=ACCENTS)
    parser.add_argument("--noises", nargs="+", default=list(NOISES), choices=NOISES)
    parser.add_argument("--devices", nargs="+", default=list(DEVICES), choices=DEVICES)
    parser.add_argument(
        "--audio-dir",
        type=Path,
        help="where converted (non-16 kHz or multi-channel) audio goes (default OUT/audio)",
    )
    parser.add_argument(
        "--dev-share",
        type=float,
        default=0.0,
        help="last share of each training CSV's rows written to <accent>_dev_<device>_<noise> "
        "instead (CMatch: 0.1); 0: no dev dir",
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.dev_share < 1.0:
        parser.error(f"--dev-share {args.dev_share}: a share in [0, 1) expected")

    csvs = find_csvs(args.root, tuple(args.accents), tuple(args.noises), tuple(args.devices))
    if not csvs:
        print(
            f"error: no <accent>/<noise>/{{train,test}}_files_<device>.csv under {args.root} "
            f"for accents {args.accents}, noises {args.noises}, devices {args.devices}",
            file=sys.stderr,
        )
        return 1
    audio_dir = args.audio_dir or args.out / "audio"
    for accent, noise, device, split, csv_path in csvs:
        out_dir = args.out / f"{accent}_{split}_{device}_{noise}"
        dev_dir = args.out / f"{accent}_dev_{device}_{noise}" if split == "train" and args.dev_share else None
        results = prepare_csv(
            csv_path, out_dir, audio_dir, accent=accent, noise=noise, device=device, split=split,
            dev_dir=dev_dir, dev_share=args.dev_share,
        )  # fmt: skip
        for result in results:
            print(f"{result.data_dir}: {result.num_utts} utterances, {len(result.skipped)} skipped")
            for message in result.skipped[:10]:
                print(f"  skipped: {message}")
            if len(result.skipped) > 10:
                print(f"  ... and {len(result.skipped) - 10} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
