#!/usr/bin/env python3
"""Libri-Adapt -> Kaldi data dirs, one per accent x noise x device x split.

Reads the per-device DeepSpeech CSV files ``<root>/<accent>/<noise>/{train,test}_files_<device>.csv``
(columns ``wav_filename,wav_filesize,transcript``) and writes
``<out>/<accent>_<split>_<device>_<noise>/`` with ``wav.scp text utt2spk spk2utt utt2dur utt2lang
utt2domain`` (domain ``<device>_<noise>``, language ``en``). See ../README.md for the layout.

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
    csv_path: Path, out_dir: Path, audio_dir: Path, *, accent: str, noise: str, device: str, split: str
) -> PrepResult:
    """Convert one Libri-Adapt CSV into a Kaldi data dir."""
    result = PrepResult(out_dir)
    normalize = Normalizer("en")
    wav: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(
                f"{csv_path}:1: header lacks column(s) {', '.join(missing)}; expected {CSV_COLUMNS}"
            )
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
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
    args = parser.parse_args(argv)

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
        result = prepare_csv(
            csv_path, out_dir, audio_dir, accent=accent, noise=noise, device=device, split=split
        )
        print(f"{out_dir}: {result.num_utts} utterances, {len(result.skipped)} skipped")
        for message in result.skipped[:10]:
            print(f"  skipped: {message}")
        if len(result.skipped) > 10:
            print(f"  ... and {len(result.skipped) - 10} more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
