"""Tokenizers: characters or SentencePiece (unigram/BPE), one per language.

Token ids follow ESPnet's convention so ESPnet models load unchanged:
``0 = <blank>``, ``1 = <unk>``, then the units, and ``<sos/eos>`` last.
Characters use ``<space>`` as the word boundary; SentencePiece uses ``▁``.

A tokenizer is saved as a folder: ``tokens.txt`` (one token per line, the id is
the line number), ``tokenizer.yaml`` (kind and language) and, for SentencePiece,
``sp.model``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BLANK, UNK, SOS_EOS, SPACE = "<blank>", "<unk>", "<sos/eos>", "<space>"


@dataclass
class Tokenizer:
    """Map text to token ids and back.

    Example:
        >>> tok = Tokenizer.train_char(["ab ba", "abc"], lang="en")
        >>> tok.tokens
        ['<blank>', '<unk>', '<space>', 'a', 'b', 'c', '<sos/eos>']
        >>> tok.encode("ab cz")
        [3, 4, 2, 5, 1]
        >>> tok.decode(tok.encode("ab c"))
        'ab c'
    """

    tokens: list[str]
    kind: str = "char"
    lang: str = "en"
    sp_model: bytes | None = None
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.tokens)}
        if self.tokens[0] != BLANK or self.tokens[1] != UNK or self.tokens[-1] != SOS_EOS:
            raise ValueError("tokens must start with <blank>, <unk> and end with <sos/eos>")
        self._sp = None
        if self.kind == "sentencepiece":
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_proto=self.sp_model)

    # ids -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def sos_eos_id(self) -> int:
        return len(self.tokens) - 1

    @property
    def non_character_ids(self) -> list[int]:
        """Ids that carry no character: blank, unk, sos/eos, word boundary, punctuation.

        CMatch never matches these classes.

        Example:
            >>> Tokenizer.train_char(["a b'"], lang="en").non_character_ids
            [0, 1, 2, 3, 6]
        """
        out = []
        for i, tok in enumerate(self.tokens):
            core = tok.replace("\u2581", "")
            if tok in (BLANK, UNK, SOS_EOS, SPACE) or not core or not any(ch.isalnum() for ch in core):
                out.append(i)
        return out

    @property
    def upper_case(self) -> bool:
        """True when the units' letters are all upper case (e.g. ESPnet's LibriSpeech models).

        Our normaliser lower-cases transcripts; such a tokenizer wants them upper-cased instead.

        Example:
            >>> Tokenizer.train_char(["AB C"], lang="en").upper_case
            True
            >>> Tokenizer.train_char(["ab"], lang="en").upper_case
            False
        """
        letters = [ch for tok in self.tokens if not tok.startswith("<") for ch in tok if ch.isalpha()]
        return any(ch.isupper() for ch in letters) and not any(ch.islower() for ch in letters)

    # text <-> ids ----------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Text (already normalised) to ids; unknown units map to ``<unk>``."""
        if self._sp is not None:
            pieces = self._sp.encode(text, out_type=str)
        else:
            pieces = [SPACE if ch == " " else ch for ch in text]
        return [self._index.get(p, 1) for p in pieces]

    def decode(self, ids: list[int]) -> str:
        """Ids to text; blank, sos/eos are dropped."""
        pieces = [self.tokens[i] for i in ids if i not in (0, self.sos_eos_id)]
        if self._sp is not None:
            return "".join(pieces).replace("\u2581", " ").strip()
        return "".join(" " if p == SPACE else p for p in pieces).strip()

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of ``text`` that the tokenizer would map to ``<unk>``."""
        if self._sp is not None:
            return sorted({p for p in self._sp.encode(text, out_type=str) if p not in self._index})
        return sorted({ch for ch in text if ch != " " and ch not in self._index})

    # training / io -----------------------------------------------------------------
    @classmethod
    def train_char(cls, texts: list[str], lang: str, charset: str = "") -> Tokenizer:
        """Characters of ``texts`` plus ``charset`` (the language's letters), sorted by code point.

        Including the whole alphabet keeps dev/test letters that the training
        transcripts happen to lack inside the vocabulary.
        """
        chars = sorted(
            {ch for t in texts for ch in unicodedata.normalize("NFC", t) if ch != " "} | set(charset)
        )
        return cls([BLANK, UNK, SPACE, *chars, SOS_EOS], kind="char", lang=lang)

    @classmethod
    def train_sentencepiece(
        cls,
        texts: list[str],
        lang: str,
        vocab_size: int,
        model_type: str = "unigram",
        normalization: str = "nmt_nfkc",
    ) -> Tokenizer:
        """Train a SentencePiece model in memory (``model_type``: unigram or bpe).

        ``normalization="identity"`` leaves SentencePiece's own normaliser out of the model (texts
        already normalised by :class:`~asr_transfer.text.normalize.Normalizer`): a model of a few
        hundred bytes instead of ~240 kB of NFKC tables, for small per-language adapter files.

        Example:
            >>> tok = Tokenizer.train_sentencepiece(["unu doi trei"] * 5, "ro", 100, normalization="identity")
            >>> len(tok.sp_model) < 2000, tok.decode(tok.encode("trei doi"))
            (True, 'trei doi')
        """
        import io

        import sentencepiece as spm

        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            # ids 0..2 of the sp model are not ours: we build our own table around the pieces
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            hard_vocab_limit=False,
            normalization_rule_name=normalization,
            minloglevel=2,
            num_threads=1,
        )
        proto = buf.getvalue()
        sp = spm.SentencePieceProcessor(model_proto=proto)
        pieces = [sp.id_to_piece(i) for i in range(1, sp.get_piece_size())]
        return cls([BLANK, UNK, *pieces, SOS_EOS], kind="sentencepiece", lang=lang, sp_model=proto)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokens.txt").write_text("\n".join(self.tokens) + "\n", encoding="utf-8")
        (folder / "tokenizer.yaml").write_text(yaml.safe_dump({"kind": self.kind, "lang": self.lang}))
        if self.sp_model is not None:
            (folder / "sp.model").write_bytes(self.sp_model)

    @classmethod
    def load(cls, folder: str | Path) -> Tokenizer:
        folder = Path(folder)
        if not (folder / "tokens.txt").exists():
            raise FileNotFoundError(f"no tokenizer in {folder} (tokens.txt missing): run the tokenizer stage")
        meta = yaml.safe_load((folder / "tokenizer.yaml").read_text())
        tokens = (folder / "tokens.txt").read_text(encoding="utf-8").split("\n")[:-1]
        sp = (folder / "sp.model").read_bytes() if meta["kind"] == "sentencepiece" else None
        return cls(tokens, kind=meta["kind"], lang=meta["lang"], sp_model=sp)
