"""Transcripts for the generated corpus: spoken digit strings in each language.

The words come from ``data/digits/<lang>.txt`` in the repository (ten lines, digit 0 first;
``#`` lines are comments). What the synthesiser is given may carry pronunciation hints
(Arabic harakat); the transcript is that text through :class:`~asr_transfer.text.normalize.Normalizer`,
and must lie inside the language's character set.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from asr_transfer.text.normalize import Normalizer, out_of_charset

#: the repository's resource folder (sentence lists, digit words)
DATA_DIR = Path(__file__).resolve().parents[2] / "data"


@cache
def digit_words(lang: str) -> tuple[str, ...]:
    """The ten digit words of ``lang`` as given to the synthesiser.

    Example:
        >>> digit_words("cs")[:3]
        ('nula', 'jedna', 'dva')
    """
    path = DATA_DIR / "digits" / f"{lang}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no digit words for language {lang!r}: {path} is missing")
    words = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    words = [w for w in words if w and not w.startswith("#")]
    if len(words) != 10:
        raise ValueError(f"{path}: expected 10 digit words, found {len(words)}")
    return tuple(words)


def spoken(digits: tuple[int, ...], lang: str) -> str:
    """The text the synthesiser reads for a digit string.

    Example:
        >>> spoken((3, 1, 4), "en")
        'three one four'
    """
    words = digit_words(lang)
    return " ".join(words[d] for d in digits)


def transcript(text: str, lang: str) -> str:
    """The normalised reference transcript of ``text``; ValueError if it leaves the character set.

    Example:
        >>> transcript("ثَلَاثَة وَاحِد", "ar")
        'ثلاثة واحد'
    """
    norm = Normalizer(lang)(text)
    bad = out_of_charset(norm, lang)
    if bad:
        raise ValueError(f"transcript {norm!r} has characters outside the {lang} character set: {bad}")
    return norm


def digit_strings(
    sizes: dict[str, int], rng: np.random.Generator, min_len: int = 3, max_len: int = 6
) -> dict[str, list[tuple[int, ...]]]:
    """Random digit strings per split, each string used once in the whole language (splits disjoint).

    Example:
        >>> out = digit_strings({"train": 5, "test": 2}, np.random.default_rng(0))
        >>> [len(out["train"]), len(out["test"])], set(out["train"]) & set(out["test"])
        ([5, 2], set())
    """
    seen: set[tuple[int, ...]] = set()
    out: dict[str, list[tuple[int, ...]]] = {}
    for split, n in sizes.items():
        strings: list[tuple[int, ...]] = []
        while len(strings) < n:
            length = int(rng.integers(min_len, max_len + 1))
            s = tuple(int(d) for d in rng.integers(0, 10, size=length))
            if s not in seen:
                seen.add(s)
                strings.append(s)
        out[split] = strings
    return out
