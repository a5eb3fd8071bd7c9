"""Per-language text normalisation, shared by corpus generation, training and scoring.

The rules, applied in this order (each switchable):

1. Unicode normal form (NFC by default) so that "é" typed two ways compares equal.
2. Case folding to lower case (``str.lower``; Turkish-style dotless i is not special-cased).
3. Punctuation removal: every character whose Unicode category starts with ``P`` or ``S``
   becomes a space, except the apostrophe family inside words (``don't``, Breton ``c'h``),
   which is mapped to ``'``. Arabic tatweel and diacritics (harakat) are removed for ``ar``.
4. Whitespace collapsed to single spaces and stripped.

The same :class:`Normalizer` is applied to references and hypotheses when scoring.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

APOSTROPHES = "'\u2019\u02bc\u2018`\u00b4"
_ARABIC_MARKS = re.compile("[\u0640\u064b-\u0652\u0670]")
_SPACES = re.compile(r"\s+")

#: Letters each language's transcripts may contain after normalisation (besides space).
CHARSETS: dict[str, str] = {
    "en": "abcdefghijklmnopqrstuvwxyz'",
    "de": "abcdefghijklmnopqrstuvwxyzäöüß'",
    "fr": "abcdefghijklmnopqrstuvwxyzàâæçéèêëîïôœùûüÿ'",
    "es": "abcdefghijklmnopqrstuvwxyzáéíñóúü'",
    "it": "abcdefghijklmnopqrstuvwxyzàèéìíîòóùú'",
    "pl": "abcdefghijklmnopqrstuvwxyząćęłńóśźż'",
    "nl": "abcdefghijklmnopqrstuvwxyzäëïöüé'",
    "pt": "abcdefghijklmnopqrstuvwxyzáâãàçéêíóôõú'",
    "ro": "abcdefghijklmnopqrstuvwxyzăâîșț'",
    "cs": "abcdefghijklmnopqrstuvwxyzáčďéěíňóřšťúůýž'",
    "br": "abcdefghijklmnopqrstuvwxyzñùêâîôû'",
    "uk": "абвгґдеєжзиіїйклмнопрстуфхцчшщьюя'",
    "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя'",
    "ar": "ءآأؤإئابةتثجحخدذرزسشصضطظعغفقكلمنهوىي",
}


@dataclass(frozen=True)
class Normalizer:
    """Normalise transcripts the same way everywhere.

    Example:
        >>> Normalizer("en")("Hello,  World! Don’t")
        "hello world don't"
        >>> Normalizer("ro")("Țara e frumoasă.")
        'țara e frumoasă'
        >>> Normalizer("en", lowercase=False, remove_punct=False)("A, b")
        'A, b'
    """

    lang: str = "en"
    unicode_form: str | None = "NFC"
    lowercase: bool = True
    remove_punct: bool = True

    def __call__(self, text: str) -> str:
        if self.unicode_form:
            text = unicodedata.normalize(self.unicode_form, text)
        # Romanian: the cedilla forms are legacy encodings of the comma-below letters.
        if self.lang == "ro":
            text = text.translate(str.maketrans("şţŞŢ", "șțȘȚ"))
        if self.lowercase:
            text = text.lower()
        if self.lang == "ar":
            text = _ARABIC_MARKS.sub("", text)
        if self.remove_punct:
            text = "".join(_map_punct(ch) for ch in text)
            # an apostrophe that is not between letters is punctuation, not part of a word
            text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
        return _SPACES.sub(" ", text).strip()


def _map_punct(ch: str) -> str:
    if ch in APOSTROPHES:
        return "'"
    cat = unicodedata.category(ch)
    return " " if cat[0] in "PS" else ch


def out_of_charset(text: str, lang: str) -> list[str]:
    """Characters of ``text`` (spaces aside) outside ``lang``'s character set, sorted.

    Digits count as outside: transcripts should spell numbers out.

    Example:
        >>> out_of_charset("hello wörld 3", "en")
        ['3', 'ö']
        >>> out_of_charset("anything", "xx")
        []
    """
    allowed = CHARSETS.get(lang)
    if allowed is None:
        return []
    return sorted({ch for ch in text if ch != " " and ch not in allowed})
