"""Tokenizers: char and SentencePiece, special ids, save/load."""

from __future__ import annotations

from pathlib import Path

from asr_transfer.text.normalize import CHARSETS
from asr_transfer.text.tokenizer import Tokenizer

TEXTS = ["three one four one five", "nine two six", "five three five eight nine seven nine"] * 20


def test_char_tokenizer_covers_the_alphabet_and_round_trips(tmp_path: Path) -> None:
    tok = Tokenizer.train_char(TEXTS[:1], "en", CHARSETS["en"])
    assert tok.tokens[:3] == ["<blank>", "<unk>", "<space>"] and tok.tokens[-1] == "<sos/eos>"
    assert tok.unknown_chars("zero") == []  # 'z' is not in the text but is in the alphabet
    assert tok.unknown_chars("zéro") == ["é"]
    tok.save(tmp_path / "t")
    again = Tokenizer.load(tmp_path / "t")
    assert again.tokens == tok.tokens
    assert again.decode(again.encode("eight zero")) == "eight zero"


def test_sentencepiece_unigram_and_bpe(tmp_path: Path) -> None:
    for kind in ("unigram", "bpe"):
        tok = Tokenizer.train_sentencepiece(TEXTS, "en", vocab_size=30, model_type=kind)
        ids = tok.encode("nine one five")
        assert 1 not in ids and tok.decode(ids) == "nine one five"
        tok.save(tmp_path / kind)
        assert Tokenizer.load(tmp_path / kind).encode("nine one five") == ids


def test_non_character_ids_cover_specials_boundary_and_punctuation() -> None:
    tok = Tokenizer.train_char(["a b'c"], "en")
    non = {tok.tokens[i] for i in tok.non_character_ids}
    assert non == {"<blank>", "<unk>", "<space>", "<sos/eos>", "'"}
    sp = Tokenizer.train_sentencepiece(TEXTS, "en", vocab_size=30)
    assert "\u2581" not in {sp.tokens[i] for i in range(sp.vocab_size) if i not in sp.non_character_ids}
