"""Decode one Kaldi data dir into a decode folder (Kaldi ``text`` + sclite ``hyp.trn``).

Features are computed on the fly from ``wav.scp`` (the same fbank as training), so any data dir
can be decoded without a dump stage. The reference and the speaker/domain/language tables are
copied beside the hypotheses for scoring. The folder is built under ``<out>.tmp`` and renamed
when complete, so a killed run never leaves one that looks finished.
"""

from __future__ import annotations

import itertools
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


def decode_dir(
    rec: Recognizer, data_dir: Path, out: Path, lang: str | None, domain: str | None = None
) -> float:
    """Decode one data dir into ``out``; return the real-time factor (decode seconds / audio seconds).

    With domain adapters loaded (:meth:`Recognizer.load_adapter`) each utterance's domain is
    ``domain`` (``--domain``), else its ``utt2domain`` entry: utterances of a domain with an adapter
    are decoded with it, all others by the base alone.
    """
    data = load_data_dir(data_dir, require_text=False)
    line_of = {u: i for i, u in enumerate(data.wav, start=1)}
    lang = rec.lang_of(data, lang)  # before reading any audio: a missing --lang fails at once
    domain_of = {u: domain for u in data.utts} if domain else data.utt2domain or {}
    if rec.domain_adapters and not domain_of:
        raise ValueError(
            f"{data_dir}: no utt2domain, so no utterance is known to be of a domain with an adapter "
            f"({', '.join(sorted(rec.domain_adapters))}): pass --domain"
        )
    # the domain whose adapter decodes an utterance ("": the base alone), a batch never mixing two
    group = {u: d if (d := domain_of.get(u)) in rec.domain_adapters else "" for u in data.utts}
    waves = {
        u: load_audio(data.wav[u], where=f"{data_dir / 'wav.scp'}:{line_of[u]}: utterance '{u}'")
        for u in data.utts
    }
    order = sorted(data.utts, key=lambda u: (group[u], len(waves[u])))
    bs, chunks = rec.decode_cfg.batch_size, []
    for _, members in itertools.groupby(order, key=group.__getitem__):  # order is sorted by group
        utts = list(members)
        chunks += [utts[i : i + bs] for i in range(0, len(utts), bs)]
    hyps: dict[str, str] = {}
    start = time.perf_counter()
    for chunk in tqdm(chunks, desc=f"decode {data_dir.name}", unit="batch", leave=False):
        waves_of = [waves[u] for u in chunk]
        for utt, text in zip(chunk, rec.transcribe_waves(waves_of, lang, group[chunk[0]] or None)):
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
        used = {g: rec.domain_adapters[g] for g in sorted(set(group.values())) if g}
        made = {**asdict(rec.decode_cfg), "lang": lang, "adapter": rec.adapter_of.get(lang),
                "domain_adapters": used, "data": str(data_dir), "rtf": elapsed / audio_s}  # fmt: skip
        (tmp / "decode.yaml").write_text(yaml.safe_dump(made))
    return elapsed / audio_s
