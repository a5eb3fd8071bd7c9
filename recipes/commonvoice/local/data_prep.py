#!/usr/bin/env python3
"""Common Voice -> Kaldi data dirs ``<lang>_<split>_clean``, audio decoded to 16 kHz mono FLAC.

Reads a release folder per language, ``<root>/<lang>/{train,dev,test,validated}.tsv`` and
``<root>/<lang>/clips/*.mp3`` (tab-separated, header row, columns ``client_id path sentence ...``,
no quoting), and writes ``<out>/<lang>_<split>_clean/`` with ``wav.scp text utt2spk spk2utt
utt2dur utt2lang utt2domain``. Speakers are short hashes of ``client_id``; utterance ids are
``<speaker>-<clip name>``. Transcripts are normalised with ``Normalizer(lang)``; those left empty,
or (unless ``--keep-out-of-charset``) holding characters outside the language's character set,
are dropped and counted. See ../README.md for the layout.

Converted clips are reused when they already exist, so an interrupted run resumes.

Example:
    python recipes/commonvoice/local/data_prep.py /data/cv-corpus-17.0 data/cv --langs ro cs --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from asr_transfer.data.audio import SAMPLE_RATE, AudioError, audio_info, convert_audio
from asr_transfer.data.kaldi import write_data_dir
from asr_transfer.text.normalize import Normalizer, out_of_charset

SPLITS = ("train", "dev", "test")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
SPEAKER_HASH_CHARS = 10


@dataclass
class PrepResult:
    """What one TSV produced."""

    data_dir: Path
    num_utts: int = 0
    skipped: list[str] = field(default_factory=list)


def speaker_id(client_id: str) -> str:
    """A short, stable speaker id: client ids are 128-hex-digit hashes, too long for ids.

    Example:
        >>> speaker_id("abc")
        'ba7816bf8f'
    """
    return hashlib.sha256(client_id.encode("utf-8")).hexdigest()[:SPEAKER_HASH_CHARS]


def _convert(job: tuple[Path, Path]) -> tuple[float, str]:
    """Convert one clip (or reuse an earlier conversion); (duration, error message)."""
    src, dst = job
    if dst.is_file():
        try:
            return audio_info(dst).duration, ""
        except AudioError:
            pass  # a half-written file from an interrupted run: convert again
    try:
        return convert_audio(src, dst) / SAMPLE_RATE, ""
    except AudioError as err:
        return 0.0, str(err)
    except (RuntimeError, ValueError) as err:
        return 0.0, f"{src}: cannot convert: {err}"


def read_tsv(tsv: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; Common Voice TSVs are unquoted, so quotes are plain characters."""
    with tsv.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(
                f"{tsv}:1: header lacks column(s) {', '.join(missing)}; expected {REQUIRED_COLUMNS}"
            )
        return [(reader.line_num, row) for row in reader]


def prepare_split(
    lang_dir: Path,
    lang: str,
    split: str,
    out_dir: Path,
    audio_dir: Path,
    *,
    jobs: int = 1,
    keep_out_of_charset: bool = False,
) -> PrepResult:
    """Convert one ``<split>.tsv`` and its clips into a Kaldi data dir."""
    tsv = lang_dir / f"{split}.tsv"
    result = PrepResult(out_dir)
    normalize = Normalizer(lang)
    rows: list[tuple[str, str, str, Path, Path]] = []  # utt, speaker, text, mp3, flac
    seen: set[str] = set()
    for line, row in read_tsv(tsv):
        where = f"{tsv}:{line}"
        sentence = normalize(row["sentence"] or "")
        clip = Path(row["path"] or "")
        if not sentence:
            result.skipped.append(f"{where}: empty transcript")
            continue
        bad = out_of_charset(sentence, lang)
        if bad and not keep_out_of_charset:
            result.skipped.append(f"{where}: characters outside the '{lang}' set: {' '.join(bad)}")
            continue
        speaker = speaker_id(row["client_id"])
        utt = f"{speaker}-{clip.stem}"
        if utt in seen:
            result.skipped.append(f"{where}: clip {clip.name} listed twice")
            continue
        seen.add(utt)
        rows.append(
            (utt, speaker, sentence, lang_dir / "clips" / clip.name, audio_dir / lang / f"{clip.stem}.flac")
        )

    jobs_list = [(src, dst) for *_, src, dst in rows]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            converted = list(pool.map(_convert, jobs_list, chunksize=16))
    else:
        converted = [_convert(job) for job in jobs_list]

    wav: dict[str, str] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, float] = {}
    for (utt, speaker, sentence, _, dst), (duration, error) in zip(rows, converted, strict=True):
        if error:
            result.skipped.append(error)
            continue
        wav[utt], text[utt], utt2spk[utt], utt2dur[utt] = str(dst.resolve()), sentence, speaker, duration
    write_data_dir(
        out_dir,
        wav=wav,
        text=text,
        utt2spk=utt2spk,
        utt2lang=dict.fromkeys(wav, lang),
        utt2domain=dict.fromkeys(wav, "clean"),
        utt2dur=utt2dur,
    )
    result.num_utts = len(wav)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="Common Voice release root (holds one folder per language)")
    parser.add_argument("out", type=Path, help="where the data dirs are written")
    parser.add_argument("--langs", nargs="+", help="language folders to prepare (default: every one found)")
    parser.add_argument(
        "--splits", nargs="+", default=list(SPLITS), choices=(*SPLITS, "validated"), help="TSVs to prepare"
    )
    parser.add_argument("--audio-dir", type=Path, help="where the 16 kHz FLAC clips go (default OUT/audio)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel decoding processes")
    parser.add_argument(
        "--keep-out-of-charset",
        action="store_true",
        help="keep transcripts with characters outside the language's set (validate-data then reports them)",
    )
    args = parser.parse_args(argv)

    langs = args.langs or sorted(p.name for p in args.root.iterdir() if (p / "clips").is_dir())
    audio_dir = args.audio_dir or args.out / "audio"
    status = 0
    for lang in langs:
        for split in args.splits:
            tsv = args.root / lang / f"{split}.tsv"
            if not tsv.is_file():
                print(f"error: {tsv}: missing file", file=sys.stderr)
                status = 1
                continue
            out_dir = args.out / f"{lang}_{split}_clean"
            result = prepare_split(
                args.root / lang,
                lang,
                split,
                out_dir,
                audio_dir,
                jobs=args.jobs,
                keep_out_of_charset=args.keep_out_of_charset,
            )
            print(f"{out_dir}: {result.num_utts} utterances, {len(result.skipped)} skipped")
            for message in result.skipped[:10]:
                print(f"  skipped: {message}")
            if len(result.skipped) > 10:
                print(f"  ... and {len(result.skipped) - 10} more")
    return status


if __name__ == "__main__":
    sys.exit(main())
