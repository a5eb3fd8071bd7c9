"""Rule-based Breton (peurunvan spelling) grapheme-to-phoneme for the MBROLA ``bz1`` voice.

No speech engine has a Breton front end, so the toolkit converts text to the SAMPA-like phones
of ``bz1`` itself and writes MBROLA ``.pho`` lines. The rules are the regular correspondences of the
unified spelling, not a lexicon; a Breton speaker should review them before results are trusted.

- digraphs: ``c'h`` -> ``x``, ``ch`` -> ``S``, ``zh`` -> ``z``, ``gn`` -> ``J``, ``lh`` -> ``L``,
  ``j`` -> ``Z``, ``y`` -> ``j``, ``w`` -> ``w``
- vowels: ``eu`` -> ``2``, ``ou`` -> ``u`` (``w`` before a vowel), ``ae`` -> ``E``, ``ao`` -> ``o``,
  ``aou`` -> ``Aw``, ``u``/``ù`` -> ``y``/``u``; circumflex vowels are long
- nasalisation: vowel + ``ñ`` -> nasal vowel (``añ`` -> ``A~``, ``eñ`` -> ``e~`` ...), ``ñ`` itself silent
- final devoicing: word-final ``b d g z v Z`` -> ``p t k s f S``
- stress on the penultimate syllable (the only one in a monosyllable); a stressed vowel before
  at most one consonant is long (``:``); double consonants are single phones and keep the vowel short
- prosody: phone durations by class, F0 falling from ``f0`` to 80 % of it over the sentence with a
  rise on each stressed vowel; commas and sentence ends become pauses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VOWELS = frozenset({"A", "E", "e", "i", "o", "O", "u", "y", "2", "9", "Aw", "Ej"})
_DIPHTHONGS = frozenset({"Aw", "Ej"})  # bz1 has no long versions of these
_NASAL = {"A": "A~", "E": "e~", "e": "e~", "i": "i~", "o": "o~", "O": "o~", "u": "o~", "y": "y~", "2": "9~"}
_DEVOICE = {"b": "p", "d": "t", "g": "k", "z": "s", "v": "f", "Z": "S"}
# multi-letter graphemes first: the longest match wins
_GRAPHEMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("c'h", ("x",)), ("aou", ("Aw",)), ("eu", ("2",)), ("ou", ("u",)), ("ae", ("E",)), ("ao", ("o",)),
    ("ei", ("Ej",)), ("ui", ("H", "i")), ("oa", ("w", "A")), ("ch", ("S",)), ("zh", ("z",)),
    ("gn", ("J",)), ("lh", ("L",)), ("ph", ("f",)), ("qu", ("k",)),
    ("a", ("A",)), ("â", ("A:",)), ("e", ("E",)), ("ê", ("E:",)), ("i", ("i",)), ("î", ("i:",)),
    ("o", ("o",)), ("ô", ("o:",)), ("u", ("y",)), ("û", ("y:",)), ("ù", ("u",)),
    ("b", ("b",)), ("c", ("k",)), ("d", ("d",)), ("f", ("f",)), ("g", ("g",)), ("h", ("h",)),
    ("j", ("Z",)), ("k", ("k",)), ("l", ("l",)), ("m", ("m",)), ("n", ("n",)), ("p", ("p",)),
    ("q", ("k",)), ("r", ("r",)), ("s", ("s",)), ("t", ("t",)), ("v", ("v",)), ("w", ("w",)),
    ("x", ("k", "s")), ("y", ("j",)), ("z", ("z",)), ("ñ", ("~",)),
)  # fmt: skip
_WORD = re.compile(r"[a-zñùâêîôû']+")
#: durations in ms of a short vowel, a long vowel, a consonant, and a pause
DURATIONS = {"short": 75, "long": 150, "consonant": 65, "pause": 180}


@dataclass(frozen=True)
class Phone:
    """One phone of the ``bz1`` set; ``stressed`` marks the vowel of the stressed syllable."""

    symbol: str
    stressed: bool = False

    @property
    def is_vowel(self) -> bool:
        return _base(self.symbol) in VOWELS


def word_phones(word: str) -> list[Phone]:
    """Phones of one lower-case word, with stress and length.

    Example:
        >>> " ".join(p.symbol for p in word_phones("brezhoneg"))
        'b r E z o: n E k'
        >>> " ".join(p.symbol for p in word_phones("c'hoari"))
        'x w A: r i'
    """
    syms: list[str] = []
    doubled: set[int] = set()  # indexes of phones written with a doubled letter (short vowel before)
    i = 0
    while i < len(word):
        for graph, phones in _GRAPHEMES:
            if word.startswith(graph, i):
                if graph == "ñ":
                    if syms and syms[-1] in _NASAL:
                        syms[-1] = _NASAL[syms[-1]]
                elif len(graph) == 1 and i > 0 and word[i - 1] == graph and _base(phones[0]) not in VOWELS:
                    doubled.add(len(syms) - 1)
                else:
                    syms.extend(phones)
                i += len(graph)
                break
        else:
            i += 1  # apostrophes and letters outside the spelling are silent
    # ou before a vowel is the glide w (boued, ouenn)
    for k in range(len(syms) - 1):
        if syms[k] == "u" and _base(syms[k + 1]) in VOWELS:
            syms[k] = "w"
    if syms and syms[-1] in _DEVOICE:
        syms[-1] = _DEVOICE[syms[-1]]
    vowel_idx = [k for k, s in enumerate(syms) if _base(s) in VOWELS]
    stressed = vowel_idx[-2] if len(vowel_idx) >= 2 else (vowel_idx[0] if vowel_idx else -1)
    out = []
    for k, s in enumerate(syms):
        if k == stressed and not s.endswith(":") and s not in _DIPHTHONGS:
            cluster = 0
            for t in syms[k + 1 :]:
                if _base(t) in VOWELS:
                    break
                cluster += 1
            if cluster <= 1 and k + 1 not in doubled:
                s += ":"
        out.append(Phone(s, k == stressed))
    return out


def _base(sym: str) -> str:
    return sym.replace(":", "").replace("~", "")


def phonemes(text: str) -> list[list[Phone]]:
    """Phones per word of ``text`` (lower-cased; punctuation other than apostrophes ignored).

    Example:
        >>> [[p.symbol for p in w] for w in phonemes("Mat an traoù!")]
        [['m', 'A:', 't'], ['A:', 'n'], ['t', 'r', 'o:', 'u']]
    """
    return [word_phones(w) for w in _WORD.findall(text.lower().replace("\u2019", "'"))]


def to_pho(text: str, *, f0: float = 190.0, tempo: float = 1.0) -> str:
    """MBROLA ``.pho`` lines for ``text``: pauses at commas and ends, durations scaled by ``1 / tempo``.

    Example:
        >>> print(to_pho("Ti", f0=200))
        _ 180
        t 65
        i: 150 0 180 50 198 100 180
        _ 180
    """
    chunks = [c for c in re.split(r"[,;:.!?]+", text) if _WORD.search(c.lower())]
    words_per_chunk = [[w for w in phonemes(c) if w] for c in chunks]
    total = sum(len(p) for ws in words_per_chunk for p in ws) or 1
    lines = [f"_ {DURATIONS['pause']}"]
    done = 0
    for words in words_per_chunk:
        for word in words:
            for ph in word:
                # declination: the pitch falls to 80 % of f0 by the end of the sentence
                level = f0 * (1.0 - 0.2 * done / total)
                done += 1
                if ph.is_vowel:
                    kind = "long" if ph.symbol.endswith(":") else "short"
                    dur = round(DURATIONS[kind] / tempo)
                    peak = level * (1.1 if ph.stressed else 1.0)
                    lines.append(f"{ph.symbol} {dur} 0 {level:.0f} 50 {peak:.0f} 100 {level:.0f}")
                else:
                    lines.append(f"{ph.symbol} {round(DURATIONS['consonant'] / tempo)}")
        lines.append(f"_ {DURATIONS['pause']}")
    return "\n".join(lines)
