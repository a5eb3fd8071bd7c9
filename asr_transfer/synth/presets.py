"""Corpus presets: which languages, splits, sizes, speakers and domains to generate.

``mini`` is the CI benchmark (pip-only, about a minute on 2 cores); ``tiny`` is a seconds-long
version of the same shape for tests and smoke runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from asr_transfer.synth.domains import DOMAINS

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class LangPlan:
    """What to generate for one language.

    ``sizes`` and ``speakers`` map split -> number of utterances / pseudo-speakers. Test speakers
    use the held-out voice variants; train and dev share the training variants.
    """

    lang: str
    voice: str
    role: str
    sizes: dict[str, int]
    speakers: dict[str, int]
    domains: tuple[str, ...] = ("clean",)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    langs: tuple[LangPlan, ...]
    rir_pool: int = 32


#: espeak-ng voice per language
ESPEAK_VOICES = {
    "en": "en-us", "de": "de", "fr": "fr", "es": "es", "it": "it", "pl": "pl",
    "ro": "ro", "cs": "cs", "uk": "uk", "ar": "ar",
}  # fmt: skip


def _plan(lang: str, role: str, utts: tuple[int, int, int], spks: tuple[int, int, int],
          domains: tuple[str, ...] = ("clean",)) -> LangPlan:  # fmt: skip
    return LangPlan(
        lang=lang,
        voice=ESPEAK_VOICES[lang],
        role=role,
        sizes=dict(zip(SPLITS, utts, strict=True)),
        speakers=dict(zip(SPLITS, spks, strict=True)),
        domains=domains,
    )


PRESETS: dict[str, Preset] = {
    "mini": Preset(
        name="mini",
        description="spoken digit strings: English in 7 device/noise domains, 5 source and 4 target "
        "languages clean; espeak-ng only (pip packages)",
        langs=(
            _plan("en", "source", (1000, 100, 150), (40, 8, 12), DOMAINS),
            *(_plan(lang, "source", (200, 30, 50), (16, 4, 6)) for lang in ("de", "fr", "es", "it", "pl")),
            *(_plan(lang, "target", (50, 30, 100), (8, 4, 8)) for lang in ("ro", "cs", "uk", "ar")),
        ),
    ),
    "tiny": Preset(
        name="tiny",
        description="the shape of mini in a few utterances per data dir, for tests",
        langs=(
            _plan("en", "source", (6, 3, 4), (3, 2, 2), DOMAINS),
            _plan("de", "source", (3, 2, 2), (2, 1, 2)),
            _plan("ro", "target", (3, 2, 2), (2, 1, 2)),
        ),
        rir_pool=4,
    ),
}
