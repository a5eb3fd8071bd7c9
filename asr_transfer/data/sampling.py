"""Language-balanced sampling of monolingual batches (multilingual source training).

With temperature ``T``, language ``l`` gets a share ``q_l ∝ n_l^(1/T)`` of an epoch's batches,
``n_l`` its number of batches (its amount of training data): ``T = 1`` keeps the natural
proportions, larger ``T`` moves towards uniform (``T → ∞``), so small languages are seen more
often. The number of batches per epoch is unchanged; a language's batches are drawn in whole
shuffled passes (no batch twice before every batch once). Everything is a function of
``(seed, epoch)``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Protocol


class _HasLang(Protocol):
    lang: str


def language_shares(counts: dict[str, int], temperature: float) -> dict[str, float]:
    """``q_l ∝ n_l^(1/T)``, normalised.

    Example:
        >>> language_shares({"de": 900, "ro": 100}, 1.0)
        {'de': 0.9, 'ro': 0.1}
        >>> {k: round(v, 2) for k, v in language_shares({"de": 900, "ro": 100}, 2.0).items()}
        {'de': 0.75, 'ro': 0.25}
    """
    if temperature <= 0:
        raise ValueError(f"data.lang_temperature must be > 0, got {temperature}")
    weights = {lang: n ** (1.0 / temperature) for lang, n in counts.items()}
    total = sum(weights.values())
    return {lang: w / total for lang, w in weights.items()}


def balance_languages(batches: list[list[_HasLang]], temperature: float, seed: int, epoch: int) -> list:
    """Redraw monolingual ``batches`` so each language gets its temperature share; shuffled.

    Example:
        >>> from types import SimpleNamespace as U
        >>> bs = [[U(lang="de")]] * 9 + [[U(lang="ro")]]
        >>> out = balance_languages(bs, 1000.0, seed=1, epoch=1)
        >>> len(out), sum(b[0].lang == "ro" for b in out)
        (10, 5)
        >>> out == balance_languages(bs, 1000.0, seed=1, epoch=1)
        True
    """
    by_lang: dict[str, list] = defaultdict(list)
    for b in batches:
        by_lang[b[0].lang].append(b)
    langs = sorted(by_lang)
    shares = language_shares({lang: len(by_lang[lang]) for lang in langs}, temperature)
    n = len(batches)
    # largest-remainder rounding: the counts add up to n exactly
    exact = {lang: n * shares[lang] for lang in langs}
    counts = {lang: int(exact[lang]) for lang in langs}
    for lang in sorted(langs, key=lambda g: counts[g] - exact[g])[: n - sum(counts.values())]:
        counts[lang] += 1
    rng = random.Random(seed * 100003 + epoch * 7 + 1)
    out: list = []
    for lang in langs:
        need = counts[lang]
        while need > 0:
            order = by_lang[lang][:]
            rng.shuffle(order)
            out += order[:need]
            need -= len(order[:need])
    rng.shuffle(out)
    return out
