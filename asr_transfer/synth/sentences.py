"""Real sentences for the ``standard`` corpus: LibreOffice UI translations and English fortunes.

``recipes/common/get_texts.sh`` fetches them into a text folder (``--text-dir``,
``$ASR_TRANSFER_TEXT_DIR``, else ``~/.cache/asr-transfer/texts``):

- ``libreoffice/<lang>/*.mo``: gettext catalogs (MPL-2.0). The msgid is the English original, so
  every translation is keyed by its English sentence and the languages are parallel.
- ``fortunes/*``: Debian's English fortune files (``%``-separated), split into sentences.

Rules, in order: drop plural and empty entries; reject strings with placeholders or markup
(``%1``, ``$(ARG)``, ``{x}``, ``<b>``, ``\\n``, digits, ``/`` ``\\`` ``|`` ``@`` ``#`` ``=`` ``[``); remove
mnemonic markers (``~`` and ``_`` before a letter); keep 4-20 words; the transcript is the string
through :class:`~asr_transfer.text.normalize.Normalizer` and must lie inside ``CHARSETS[lang]``.
Each English sentence goes to a split by a hash of its text (:func:`split_of`), in every language,
so parallel sentences never cross splits; a transcript kept for test is removed from dev and train,
one kept for dev from train.
"""

from __future__ import annotations

import gettext
import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from asr_transfer.text.normalize import Normalizer, out_of_charset

TEXT_ENV = "ASR_TRANSFER_TEXT_DIR"
DEFAULT_TEXT_DIR = Path.home() / ".cache" / "asr-transfer" / "texts"
GET_SCRIPT = "recipes/common/get_texts.sh"
#: share of the English sentences (and so of their translations) in each split
SPLIT_FRACTIONS = {"test": 0.2, "dev": 0.1, "train": 0.7}
MIN_WORDS, MAX_WORDS = 4, 20

_REJECT = re.compile(r"[%$\{\}<>\\/|@#=\[\]\d\n\t&*^+]|\.\.\.|…|https?:|www\.")
_PROSE = re.compile(r"[A-Z][A-Za-z ,;:'!?.-]+[.!?]")
_MNEMONIC = re.compile(r"[~_](?=\w)")


class TextSourceError(FileNotFoundError):
    """The sentence sources are missing."""


@dataclass(frozen=True)
class Sentence:
    """A sentence to synthesise: ``key`` is its English original (the split key), ``text`` what is
    read aloud, ``transcript`` the normalised reference."""

    key: str
    text: str
    transcript: str


def find_text_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The text folder: ``explicit``, else ``$ASR_TRANSFER_TEXT_DIR``, else the default cache.

    Example:
        >>> find_text_dir("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        TextSourceError: no LibreOffice catalogs in /nonexistent/libreoffice; run ...
    """
    path = Path(explicit or os.environ.get(TEXT_ENV) or DEFAULT_TEXT_DIR)
    if not any((path / "libreoffice").glob("*/*.mo")):
        raise TextSourceError(
            f"no LibreOffice catalogs in {path / 'libreoffice'}; run `{GET_SCRIPT} {path}` "
            f"(apt-get download + dpkg-deb -x, no root) and pass --text-dir {path} or set {TEXT_ENV}"
        )
    return path


def clean_ui_string(s: str) -> str | None:
    """A UI string usable as a sentence (mnemonic markers removed), or None.

    Example:
        >>> clean_ui_string("~Delete the selected rows")
        'Delete the selected rows'
        >>> clean_ui_string("Insert %1 rows"), clean_ui_string("Open file")
        (None, None)
    """
    s = s.strip()
    if not s or _REJECT.search(s):
        return None
    s = _MNEMONIC.sub("", s).replace("~", "")
    n = len(s.split())
    return s if MIN_WORDS <= n <= MAX_WORDS else None


def split_of(english: str) -> str:
    """The split of an English sentence (and of all its translations): a hash, so it never moves.

    Example:
        >>> split_of("Delete the selected rows") in SPLIT_FRACTIONS
        True
    """
    h = int.from_bytes(hashlib.sha256(english.encode()).digest()[:8], "little") / 2**64
    edge = 0.0
    for split, frac in SPLIT_FRACTIONS.items():
        edge += frac
        if h < edge:
            return split
    return "train"


@cache
def libreoffice_catalog(text_dir: Path, lang: str) -> dict[str, str]:
    """``{English msgid: translation}`` over all of ``lang``'s catalogs (``en``: msgid to itself)."""
    folder = text_dir / "libreoffice" / ("de" if lang == "en" else lang)
    if not any(folder.glob("*.mo")):
        raise TextSourceError(f"no catalogs for {lang!r} in {folder}; run `{GET_SCRIPT} {text_dir}`")
    out: dict[str, str] = {}
    for mo in sorted(folder.glob("*.mo")):
        with mo.open("rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
        for msgid, msgstr in catalog.items():
            if not isinstance(msgid, str) or not msgid or not msgstr:
                continue  # plural forms and the header
            english = msgid.rpartition("\x04")[2]  # drop the msgctxt
            out.setdefault(english, english if lang == "en" else msgstr)
    return out


@cache
def fortune_sentences(text_dir: Path) -> tuple[str, ...]:
    """Sentences of the English fortunes: one-line-ish prose, letters and plain punctuation only."""
    sentences: list[str] = []
    for path in sorted((text_dir / "fortunes").glob("*")):
        for fortune in path.read_text(encoding="latin-1").split("\n%\n"):
            body = " ".join(fortune.split())
            for s in re.split(r"(?<=[.!?])\s+", body):
                if _PROSE.fullmatch(s) and MIN_WORDS <= len(s.split()) <= MAX_WORDS:
                    sentences.append(s)
    return tuple(dict.fromkeys(sentences))


def sentence_pools(text_dir: Path, lang: str, *, fortunes: bool = False) -> dict[str, list[Sentence]]:
    """Usable sentences of ``lang`` per split, sorted by key; transcripts unique, disjoint across splits."""
    norm = Normalizer(lang)
    candidates: dict[str, str] = {}
    for english, translated in libreoffice_catalog(text_dir, lang).items():
        key, text = clean_ui_string(english), clean_ui_string(translated)
        if key and text:
            candidates.setdefault(key, text)
    if fortunes:
        for s in fortune_sentences(text_dir):
            candidates.setdefault(s, s)
    by_split: dict[str, dict[str, Sentence]] = {s: {} for s in SPLIT_FRACTIONS}
    for key in sorted(candidates):
        text = candidates[key]
        transcript = norm(text)
        if out_of_charset(transcript, lang) or len(transcript.split()) < MIN_WORDS:
            continue
        by_split[split_of(key)].setdefault(transcript, Sentence(key, text, transcript))
    seen: set[str] = set()
    pools = {}
    for split in ("test", "dev", "train"):
        pools[split] = [s for t, s in by_split[split].items() if t not in seen]
        seen |= set(by_split[split])
    return pools
