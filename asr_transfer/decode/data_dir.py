"""Decode one Kaldi data dir into a decode folder (Kaldi ``text`` + sclite ``hyp.trn``).

Features are computed on the fly from ``wav.scp`` (the same fbank as training), so any data dir
can be decoded without a dump stage. The reference and the speaker/domain/language tables are
copied beside the hypotheses for scoring. The folder is built under ``<out>.tmp`` and renamed
when complete, so a killed run never leaves one that looks finished.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path

import yaml
from tqdm import tqdm

from asr_transfer.data.audio import load_audio
from asr_transfer.data.kaldi import load_data_dir, write_table
from asr_transfer.decode.transcribe import Recognizer
from asr_transfer.util.atomic import atomic_dir


def decode_dir(rec: Recognizer, data_dir: Path, out: Path, lang: str | None) -> float:
    """Decode one data dir into ``out``; return the real-time factor (decode seconds / audio seconds)."""
    data = load_data_dir(data_dir, require_text=False)
    line_of = {u: i for i, u in enumerate(data.wav, start=1)}
    lang = rec.lang_of(data, lang)  # before reading any audio: a missing --lang fails at once
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
    with atomic_dir(out) as tmp:
        write_table(tmp / "text", hyps)
        spk = data.utt2spk
        trn = "".join(f"{hyps[u]} ({spk[u]}-{u})\n" for u in data.utts)
        (tmp / "hyp.trn").write_text(trn, encoding="utf-8")
        if data.text is not None:
            write_table(tmp / "ref", data.text)
        for name in ("utt2spk", "utt2lang", "utt2domain"):
            if (data_dir / name).exists():
                shutil.copyfile(data_dir / name, tmp / name)
        made = {**asdict(rec.decode_cfg), "lang": lang, "adapter": rec.adapter_of.get(lang),
                "data": str(data_dir), "rtf": elapsed / audio_s}  # fmt: skip
        (tmp / "decode.yaml").write_text(yaml.safe_dump(made))
    return elapsed / audio_s
