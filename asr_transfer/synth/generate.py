"""Plan, render and write a synthetic corpus: audio under ``OUT/audio``, Kaldi dirs under ``OUT/data``.

Every random choice is drawn from a generator seeded by ``(seed, name)`` where the name says what
it is for (``text/en``, ``utt/<utterance id>/phone``, ...), never from shared state, so a worker
pool renders the same bytes whatever the order in which it picks up utterances.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_transfer.data.kaldi import write_data_dir
from asr_transfer.synth import domains as dom
from asr_transfer.synth import engines_debian
from asr_transfer.synth.engines_debian import EngineMissing, check
from asr_transfer.synth.noise import load_noise_bank, notice
from asr_transfer.synth.presets import HELDOUT, SPLITS, LangPlan, Preset
from asr_transfer.synth.sentences import sentence_pools
from asr_transfer.synth.texts import digit_strings, spoken, transcript
from asr_transfer.synth.voices import (
    HELDOUT_VARIANTS,
    SAMPLE_RATE,
    TEST_VARIANTS,
    TRAIN_VARIANTS,
    Espeak,
    Speaker,
    make_mixed_speakers,
    make_speakers,
)
from asr_transfer.util.atomic import write_text


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the names.

    Example:
        >>> float(rng_for(1, "a").random()) == float(rng_for(1, "a").random())
        True
    """
    digest = hashlib.sha256("/".join(names).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


@dataclass(frozen=True)
class Utterance:
    """One sentence by one speaker, to be rendered in each of ``domains``."""

    key: str
    lang: str
    split: str
    speaker: Speaker
    text: str
    transcript: str
    domains: tuple[str, ...]

    def utt_id(self, domain: str) -> str:
        return f"{self.key}-{domain}"

    def dir_name(self, domain: str) -> str:
        return f"{self.lang}_{self.split}_{domain}"


def plan(
    preset: Preset, seed: int, text_dir: Path | None = None, drop: frozenset[str] = frozenset()
) -> list[Utterance]:
    """All utterances of ``preset``: texts disjoint across splits, test speakers on held-out voices.

    ``text_dir`` holds the sentence sources of ``sentences`` languages; base voices in ``drop``
    (``engine:voice``) are left out.

    Example:
        >>> from asr_transfer.synth.presets import PRESETS
        >>> utts = plan(PRESETS["tiny"], seed=0)
        >>> utts[0].key, utts[0].domains[:2]
        ('en_train_s00-00000', ('clean', 'phone'))
    """
    utts = []
    for lp in preset.langs:
        splits = tuple(lp.sizes)
        if lp.text == "sentences":
            if text_dir is None:
                raise ValueError(f"preset {preset.name} reads sentences and needs a text folder")
            if HELDOUT in splits:
                raise ValueError(f"{lp.lang}: a {HELDOUT} split needs digit strings, not sentences")
            texts = _sentences(lp, seed, text_dir)
        else:
            # drawn in split order, the held-out split last: its strings change no other split's
            strings = digit_strings(lp.sizes, rng_for(seed, "text", lp.lang))
            texts = {split: [(spoken(d, lp.lang), None) for d in strings[split]] for split in splits}
        for split in splits:
            rng = rng_for(seed, "speakers", lp.lang, split)
            pool = {"test": TEST_VARIANTS, HELDOUT: HELDOUT_VARIANTS}.get(split, TRAIN_VARIANTS)
            variants = tuple(pool[i] for i in rng.permutation(len(pool)))
            prefix = f"{lp.lang}_{split}"
            if lp.train_voices:
                listed = lp.test_voices if split == "test" else lp.train_voices
                bases = tuple(v for v in listed if v not in drop)
                if not bases:
                    raise ValueError(f"{prefix}: every base voice is missing ({', '.join(sorted(drop))})")
                speakers = make_mixed_speakers(prefix, lp.lang, bases, variants, lp.speakers[split], rng)
            else:
                speakers = make_speakers(prefix, lp.lang, lp.voice, variants, lp.speakers[split], rng)
            for i, (text, norm) in enumerate(texts[split]):
                spk = speakers[i % len(speakers)]
                utts.append(
                    Utterance(
                        f"{spk.id}-{i:05d}",
                        lp.lang,
                        split,
                        spk,
                        text,
                        norm if norm is not None else transcript(text, lp.lang),
                        lp.domains,
                    )
                )
    return utts


def _sentences(lp: LangPlan, seed: int, text_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """(text, transcript) per split: a seeded shuffle of the split's pool, cycled if it is too small."""
    pools = sentence_pools(text_dir, lp.lang, fortunes=lp.lang == "en")
    out = {}
    for split in SPLITS:
        pool = pools[split]
        if not pool:
            raise ValueError(f"no {split} sentences for {lp.lang} in {text_dir}")
        order = rng_for(seed, "text", lp.lang, split).permutation(len(pool))
        picks = [pool[order[i % len(pool)]] for i in range(lp.sizes[split])]
        out[split] = [(s.text, s.transcript) for s in picks]
    return out


def missing_voices(preset: Preset) -> tuple[frozenset[str], list[str]]:
    """Base voices of optional engines that are not installed, and a warning for each.

    Raises :class:`~asr_transfer.synth.engines_debian.EngineMissing` for a missing required engine.
    """
    drop, warnings = set(), []
    for lp in preset.langs:
        for base in dict.fromkeys(lp.train_voices + lp.test_voices):
            engine, _, voice = base.partition(":")
            try:
                check(engine, voice)
            except EngineMissing as err:
                if engine not in preset.optional_engines:
                    raise
                if base not in drop:
                    warnings.append(f"warning: {err} -- leaving {base} out of {preset.name}")
                drop.add(base)
    return frozenset(drop), warnings


class _Renderer:
    """Per-process state: the engine, the noise clips and the RIR pools (all derived from the seed)."""

    def __init__(
        self,
        out: Path,
        seed: int,
        noise_dir: Path | None,
        domains: tuple[str, ...],
        rir_pool: int,
    ):
        self.out, self.seed = out, seed
        self.espeak = Espeak()
        noisy = [d for d in domains if d in dom.NOISE_SOURCES]
        cats = tuple(sorted({c for d in noisy for c in dom.NOISE_SOURCES[d]}))
        bank = load_noise_bank(noise_dir, cats) if cats and noise_dir else {}
        self.noise = {d: [clip for c in dom.NOISE_SOURCES[d] for _, clip in bank[c]] for d in noisy}
        self.rirs: dict[str, list[np.ndarray]] = {}
        if "farfield" in domains:
            self.rirs["farfield"] = dom.make_rir_pool(rir_pool, rng_for(seed, "rirs"))
        if "room" in domains:
            self.rirs["room"] = dom.room_rir_pool(rir_pool, rng_for(seed, "rirs", "room"))

    def __call__(self, utt: Utterance) -> list[float]:
        """Render and write ``utt`` in each of its domains; the durations in seconds."""
        rng = rng_for(self.seed, "utt", utt.key)
        if utt.speaker.engine == "espeak-ng":
            speech = self.espeak.speak(utt.text, utt.speaker)
        else:
            speech = engines_debian.speak(utt.text, utt.speaker)
        lead, trail = (int(rng.uniform(0.1, 0.3) * SAMPLE_RATE) for _ in range(2))
        clean = np.pad(speech, (lead, trail)) * np.float32(10 ** (-rng.uniform(0, 6) / 20))
        durations = []
        for domain in utt.domains:
            audio = dom.render(
                domain,
                clean,
                rng_for(self.seed, "utt", utt.key, domain),
                self.rirs,
                self.noise,
            )
            path = self.out / "audio" / utt.dir_name(domain) / f"{utt.utt_id(domain)}.flac"
            sf.write(path, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            durations.append(len(audio) / SAMPLE_RATE)
        return durations


_RENDERER: _Renderer | None = None


def _init_worker(*args: object) -> None:
    global _RENDERER
    _RENDERER = _Renderer(*args)  # type: ignore[arg-type]


def _render_in_worker(utt: Utterance) -> list[float]:
    assert _RENDERER is not None
    return _RENDERER(utt)


def generate(
    preset: Preset,
    out: str | os.PathLike,
    *,
    seed: int,
    jobs: int,
    noise_dir: Path | None,
    text_dir: Path | None = None,
) -> dict:
    """Generate ``preset`` into ``out``; returns (and writes to ``out/corpus.json``) its description.

    ``noise_dir`` may be None only for presets without noisy domains, ``text_dir`` only for presets
    without sentences. Base voices of missing optional engines are left out with a warning on stderr.
    """
    out = Path(out).resolve()
    drop, warnings = missing_voices(preset)
    for warning in warnings:
        print(warning, file=sys.stderr)
    utts = plan(preset, seed, text_dir, drop)
    domains = tuple(dict.fromkeys(d for u in utts for d in u.domains))
    if any(d in dom.NOISE_SOURCES for d in domains) and noise_dir is None:
        raise ValueError(f"preset {preset.name} has noisy domains and needs a noise bank")
    for name in sorted({u.dir_name(d) for u in utts for d in u.domains}):
        (out / "audio" / name).mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").unlink(missing_ok=True)  # unfinished until the new one is written
    init = (out, seed, noise_dir, domains, preset.rir_pool)
    if jobs <= 1:
        render = _Renderer(*init)
        durations = [render(u) for u in utts]
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=init) as pool:
            durations = list(pool.map(_render_in_worker, utts, chunksize=8))
    dirs = _write_data_dirs(out, utts, durations)
    corpus = _describe(preset, seed, utts, dirs, noise_dir)
    if drop:
        corpus["voices"]["left_out"] = sorted(drop)
    if noise_dir is not None and (noise_dir / "NOTICE.md").is_file():
        shutil.copyfile(noise_dir / "NOTICE.md", out / "NOISE-NOTICE.md")
    # corpus.json marks a finished corpus (the recipe skips stage 0 when it exists): never half-written
    write_text(out / "corpus.json", json.dumps(corpus, indent=2, ensure_ascii=False) + "\n")
    return corpus


def _write_data_dirs(out: Path, utts: list[Utterance], durations: list[list[float]]) -> dict[str, dict]:
    tables: dict[str, dict[str, dict]] = {}
    for utt, durs in zip(utts, durations, strict=True):
        for domain, dur in zip(utt.domains, durs, strict=True):
            t = tables.setdefault(utt.dir_name(domain), {k: {} for k in ("wav", "text", "spk", "dur")})
            uid = utt.utt_id(domain)
            t["wav"][uid] = str(out / "audio" / utt.dir_name(domain) / f"{uid}.flac")
            t["text"][uid] = utt.transcript
            t["spk"][uid] = utt.speaker.id
            t["dur"][uid] = dur
    summary = {}
    for name, t in sorted(tables.items()):
        lang, split, domain = name.split("_")
        write_data_dir(
            out / "data" / name,
            wav=t["wav"],
            text=t["text"],
            utt2spk=t["spk"],
            utt2lang={u: lang for u in t["wav"]},
            utt2domain={u: domain for u in t["wav"]},
            utt2dur=t["dur"],
        )
        summary[name] = {
            "lang": lang,
            "split": split,
            "domain": domain,
            "utts": len(t["wav"]),
            "speakers": len(set(t["spk"].values())),
            "hours": round(sum(t["dur"].values()) / 3600, 4),
        }
    return summary


_VIA = {
    "mbrola": "Debian espeak-ng --pho + mbrola",
    "mbrola-br": "toolkit Breton G2P (.pho) + mbrola",
    "flite": "Debian flite CLI",
    "festival": "Debian festival text2wave",
}


def _engines(utts: list[Utterance]) -> dict[str, dict[str, object]]:
    """Each engine the corpus used: version, how it ran, licence, hours of clean speech it rendered."""
    used = sorted({u.speaker.engine for u in utts})
    out: dict[str, dict[str, object]] = {}
    for engine in used:
        if engine == "espeak-ng":
            via = f"espeakng-loader {importlib.metadata.version('espeakng-loader')} (in-process, ctypes)"
            ver = Espeak().version()
        else:
            via = _VIA[engine]
            ver = engines_debian.version(engine)
        voices = sorted({u.speaker.voice.partition("+")[0] for u in utts if u.speaker.engine == engine})
        out[engine] = {
            "version": ver,
            "via": via,
            "licence": engines_debian.LICENCES[engine],
            "voices": voices,
        }
    return out


def _text_note(preset: Preset) -> str:
    if all(lp.text == "digits" for lp in preset.langs):
        return (
            "spoken digit strings (3-6 digits), words from data/digits/<lang>.txt; "
            "strings disjoint across splits"
        )
    return (
        "LibreOffice UI translations (libreoffice-l10n-XX .mo catalogs, parallel through the English "
        "msgid) "
        "and, for English, Debian fortunes; 4-20 words, no placeholders; split by a hash of the English "
        "sentence so parallel sentences never cross splits; transcripts disjoint across splits "
        "(asr_transfer/synth/sentences.py)"
    )


def _describe(preset: Preset, seed: int, utts: list[Utterance], dirs: dict, noise_dir: Path | None) -> dict:
    def version(dist: str) -> str:
        return importlib.metadata.version(dist)

    import scipy

    speakers = {u.speaker.id: u.speaker for u in utts}
    noise_files = (
        {
            c: sorted(p.name for p in (noise_dir / c).glob("*.flac"))
            for c in ("rain", "wind", "laugh", "crowd")
        }
        if noise_dir
        else {}
    )
    return {
        "preset": preset.name,
        "description": preset.description,
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "audio_format": "FLAC PCM_16 mono",
        "totals": {
            "utterances": len(utts),
            "files": sum(d["utts"] for d in dirs.values()),
            "hours": round(sum(d["hours"] for d in dirs.values()), 4),
        },
        "dirs": dirs,
        "languages": {lp.lang: {"role": lp.role, "domains": list(lp.domains)} for lp in preset.langs},
        "domains": {d: dom.DESCRIPTIONS[d] for d in dict.fromkeys(d for u in utts for d in u.domains)},
        "engines": _engines(utts),
        "voices": {
            "train_dev_variants": list(TRAIN_VARIANTS),
            "test_variants": list(TEST_VARIANTS),
            "heldout_variants": list(HELDOUT_VARIANTS),
            "base_voices": {
                lp.lang: {"train_dev": sorted(set(lp.train_voices)), "test": sorted(set(lp.test_voices))}
                for lp in preset.langs
                if lp.train_voices
            },
            "speakers": {k: v.as_dict() for k, v in sorted(speakers.items())},
        },
        "text": _text_note(preset),
        "noise": {
            "files": noise_files,
            "notice": notice(noise_dir) if noise_dir else "",
        },
        "licences": {
            "speech": "; ".join(
                f"{e}: {engines_debian.LICENCES[e]}" for e in sorted({u.speaker.engine for u in utts})
            ),
            "text": "LibreOffice translations MPL-2.0; Debian fortunes (public domain / various free)"
            if any(lp.text == "sentences" for lp in preset.langs)
            else "digit words written for the toolkit",
            "noise": "see noise.notice (CC-BY-SA-3.0 and GPL recordings; copied to NOISE-NOTICE.md)",
        },
        "tools": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "soundfile": sf.__version__,
            "libsndfile": sf.__libsndfile_version__,
            "pyroomacoustics": version("pyroomacoustics"),
            "espeakng-loader": version("espeakng-loader"),
        },
    }
