"""``asr-transfer decode``: decode Kaldi data dirs into ``EXP/decode_<dir>/`` (Kaldi text + sclite trn).

Features are computed on the fly from ``wav.scp`` (the same fbank as training),
so any data dir can be decoded without a dump stage. The reference and the
speaker/domain/language tables are copied beside the hypotheses for scoring.
A decode dir is built under ``decode_<dir>.tmp`` and renamed when complete, so a killed run never
leaves one that looks finished; a finished decode dir is skipped on rerun unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from asr_transfer.data.audio import load_audio
from asr_transfer.data.kaldi import load_data_dir, write_table
from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer
from asr_transfer.model.adapters import AdapterFileError

ACCEPTS_OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp", required=True, help="trained experiment dir")
    parser.add_argument("--data", nargs="+", required=True, help="Kaldi data dirs to decode")
    parser.add_argument("--config", action="append", default=[], help="decode YAML (conf/decode/*.yaml)")
    parser.add_argument("--checkpoint", default="model.pt", help="file in EXP (default: averaged model)")
    parser.add_argument("--lang", help="language head (default: utt2lang, or the only head)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--adapter",
        nargs="+",
        default=[],
        help="adapter files (add-language --method adapter) loaded into EXP's model; each data dir's "
        "language (utt2lang or --lang) enables its own adapter, without reloading the model",
    )
    parser.add_argument("--out-root", help="write decode_<dir> here (default: EXP)")


def decode_dir(rec: Recognizer, data_dir: Path, out: Path, lang: str | None) -> float:
    """Decode one data dir into ``out``; return the real-time factor (decode seconds / audio seconds)."""
    data = load_data_dir(data_dir, require_text=False)
    line_of = {u: i for i, u in enumerate(data.wav, start=1)}
    if lang is None and data.utt2lang:
        lang = next(iter(data.utt2lang.values()))
    waves = {
        u: load_audio(data.wav[u], where=f"{data_dir / 'wav.scp'}:{line_of[u]}: utterance '{u}'")
        for u in data.utts
    }
    order = sorted(data.utts, key=lambda u: len(waves[u]))
    hyps: dict[str, str] = {}
    bs = rec.decode_cfg.batch_size
    start = time.perf_counter()
    for i in tqdm(range(0, len(order), bs), desc=f"decode {data_dir.name}", unit="batch", leave=False):
        chunk = order[i : i + bs]
        for utt, text in zip(chunk, rec.transcribe_waves([waves[u] for u in chunk], lang)):
            hyps[utt] = text
    elapsed = time.perf_counter() - start
    audio_s = sum(len(w) for w in waves.values()) / 16000
    final, out = out, out.with_name(out.name + ".tmp")
    shutil.rmtree(out, ignore_errors=True)  # left by a killed run
    out.mkdir(parents=True)
    write_table(out / "text", hyps)
    spk = data.utt2spk
    (out / "hyp.trn").write_text("".join(f"{hyps[u]} ({spk[u]}-{u})\n" for u in data.utts), encoding="utf-8")
    if data.text is not None:
        write_table(out / "ref", data.text)
    for name in ("utt2spk", "utt2lang", "utt2domain"):
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, out / name)
    (out / "decode.yaml").write_text(
        yaml.safe_dump(
            {
                **asdict(rec.decode_cfg),
                "lang": lang,
                "adapter": rec.adapter_of.get(lang),
                "data": str(data_dir),
                "rtf": elapsed / audio_s,
            }
        )
    )
    shutil.rmtree(final, ignore_errors=True)  # an --overwrite
    out.rename(final)
    return elapsed / audio_s


def run(args: argparse.Namespace) -> int:
    try:
        rec = Recognizer.from_exp(
            args.exp,
            args.checkpoint,
            DecodeConfig.for_exp(args.exp, args.config, args.overrides),
            args.device,
            adapter=args.adapter,
        )
    except (AdapterFileError, FileNotFoundError) as err:  # a bad --adapter or --exp: its message says all
        print(f"asr-transfer decode: error: {err}", file=sys.stderr)
        return 1
    for data_dir in map(Path, args.data):
        out = Path(args.out_root or args.exp) / f"decode_{data_dir.name}"
        if (out / "text").exists() and not args.overwrite:
            print(f"decode: {out} exists, skipped")
            continue
        rtf = decode_dir(rec, data_dir, out, args.lang)
        print(f"decode: {data_dir} -> {out} (RTF {rtf:.3f})")
    return 0
