"""Word and character error counts per utterance, totals and per-group tables.

Alignments come from jiwer 4 (unit-cost Levenshtein, like Kaldi's ``compute-wer``).
The total number of errors equals SCTK sclite's; the split into substitutions,
deletions and insertions can differ on ties, because sclite weighs a substitution
4 and an insertion or deletion 3.

CER counts every character of the normalised text, spaces included (jiwer's
``process_characters``), so a wrongly split word costs one insertion.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import jiwer

from asr_transfer.text.normalize import Normalizer


@dataclass(frozen=True)
class Counts:
    """Hits, substitutions, deletions and insertions of one alignment or a sum of them.

    Example:
        >>> c = Counts(hits=8, sub=1, dels=1, ins=2)
        >>> c.ref_len, c.errors, round(c.rate, 2)
        (10, 4, 40.0)
        >>> (c + c).errors
        8
    """

    hits: int = 0
    sub: int = 0
    dels: int = 0
    ins: int = 0

    @property
    def ref_len(self) -> int:
        return self.hits + self.sub + self.dels

    @property
    def errors(self) -> int:
        return self.sub + self.dels + self.ins

    @property
    def rate(self) -> float:
        """Errors per reference token in percent; NaN when the reference is empty."""
        return 100.0 * self.errors / self.ref_len if self.ref_len else math.nan

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.hits + other.hits, self.sub + other.sub, self.dels + other.dels, self.ins + other.ins
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "sub": self.sub,
            "del": self.dels,
            "ins": self.ins,
            "ref_len": self.ref_len,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class UttScore:
    """One utterance: normalised texts, word and character counts, and its groups."""

    utt: str
    ref: str
    hyp: str
    words: Counts
    chars: Counts
    spk: str | None = None  #: None without an utt2spk table
    domain: str | None = None
    lang: str | None = None
    missing: bool = False  #: absent from the hypotheses, scored as all deletions


@dataclass(frozen=True)
class GroupScore:
    """Totals over a set of utterances (all of them, or one speaker, domain or language)."""

    words: Counts
    chars: Counts
    sentences: int
    sentence_errors: int

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    @property
    def ser(self) -> float:
        """Sentences with at least one word error, per sentence, in percent."""
        return 100.0 * self.sentence_errors / self.sentences if self.sentences else math.nan

    @classmethod
    def of(cls, utts: list[UttScore]) -> GroupScore:
        words, chars = Counts(), Counts()
        for u in utts:
            words, chars = words + u.words, chars + u.chars
        return cls(words, chars, len(utts), sum(u.words.errors > 0 for u in utts))

    def as_dict(self) -> dict:
        return {
            "wer": self.wer,
            "cer": self.cer,
            "ser": self.ser,
            "sentences": self.sentences,
            "sentence_errors": self.sentence_errors,
            "words": self.words.as_dict(),
            "chars": self.chars.as_dict(),
        }


@dataclass
class ScoreResult:
    """Scores of one hypothesis set against one reference set (see :func:`score_texts`)."""

    utts: list[UttScore]
    normalizer: Normalizer
    confusions: Counter = field(default_factory=Counter)  #: (ref word, hyp word) -> substitutions

    @property
    def total(self) -> GroupScore:
        return GroupScore.of(self.utts)

    @property
    def missing(self) -> list[str]:
        return [u.utt for u in self.utts if u.missing]

    def groups(self, key: str) -> dict[str, GroupScore]:
        """Totals per ``"spk"``, ``"domain"`` or ``"lang"``, sorted by group name; {} when unknown."""
        members: dict[str, list[UttScore]] = {}
        for u in self.utts:
            name = getattr(u, key)
            if name is not None:
                members.setdefault(name, []).append(u)
        return {name: GroupScore.of(members[name]) for name in sorted(members)}


def score_texts(
    ref: dict[str, str],
    hyp: dict[str, str],
    *,
    lang: str = "en",
    normalizer: Normalizer | None = None,
    utt2spk: dict[str, str] | None = None,
    utt2domain: dict[str, str] | None = None,
    utt2lang: dict[str, str] | None = None,
) -> ScoreResult:
    """Score hypotheses against references, both ``{utt id: text}``.

    Both sides go through the same normaliser (``Normalizer(lang)`` unless one is
    given). Utterances absent from ``hyp`` count as all deletions and are flagged
    ``missing``; ids in ``hyp`` but not in ``ref`` raise ``ValueError``. An empty
    reference is allowed here: its hypothesis words are insertions.

    Example:
        >>> r = score_texts({"u1": "The cat sat.", "u2": "Hi"}, {"u1": "the hat sat on"})
        >>> t = r.total
        >>> (t.words.sub, t.words.dels, t.words.ins, t.words.ref_len, t.sentence_errors)
        (1, 1, 1, 4, 2)
        >>> round(t.wer, 2), r.missing
        (75.0, ['u2'])
    """
    extra = sorted(set(hyp) - set(ref))
    if extra:
        raise ValueError(f"{len(extra)} hypothesis ids not in the reference, e.g. {extra[:5]}")
    norm = normalizer or Normalizer(lang)
    ids = sorted(ref)
    refs = [norm(ref[u]) for u in ids]
    hyps = [norm(hyp.get(u, "")) for u in ids]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    confusions: Counter = Counter()
    utts = []
    for i, u in enumerate(ids):
        for chunk in words.alignments[i]:
            if chunk.type == "substitute":
                pairs = zip(
                    words.references[i][chunk.ref_start_idx : chunk.ref_end_idx],
                    words.hypotheses[i][chunk.hyp_start_idx : chunk.hyp_end_idx],
                    strict=True,
                )
                confusions.update(pairs)
        utts.append(
            UttScore(
                utt=u,
                ref=refs[i],
                hyp=hyps[i],
                words=_counts(words.alignments[i]),
                chars=_counts(chars.alignments[i]),
                spk=utt2spk.get(u) if utt2spk else None,
                domain=utt2domain.get(u) if utt2domain else None,
                lang=utt2lang.get(u) if utt2lang else None,
                missing=u not in hyp,
            )
        )
    return ScoreResult(utts, norm, confusions)


def _counts(chunks: list) -> Counts:
    hits = sub = dels = ins = 0
    for c in chunks:
        n_ref, n_hyp = c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx
        if c.type == "equal":
            hits += n_ref
        elif c.type == "substitute":
            sub += n_ref
        elif c.type == "delete":
            dels += n_ref
        else:
            ins += n_hyp
    return Counts(hits, sub, dels, ins)


def unit_counts(result: ScoreResult, unit: str = "utt") -> dict[str, tuple[int, int]]:
    """``{unit id: (word errors, reference words)}`` per utterance or per ``"spk"``, for the bootstrap.

    Example:
        >>> r = score_texts({"a1": "x y", "a2": "z", "b1": "w"}, {"a1": "x", "a2": "q", "b1": "w"},
        ...                 utt2spk={"a1": "a", "a2": "a", "b1": "b"})
        >>> unit_counts(r, "spk")
        {'a': (2, 3), 'b': (0, 1)}
    """
    if unit not in ("utt", "spk"):
        raise ValueError(f"bootstrap unit must be 'utt' or 'spk', not {unit!r}")
    out: dict[str, tuple[int, int]] = {}
    for u in result.utts:
        key = u.utt if unit == "utt" else (u.spk or u.utt)
        errors, length = out.get(key, (0, 0))
        out[key] = (errors + u.words.errors, length + u.words.ref_len)
    return out
