"""``asr-transfer tokenizer``: train a char or SentencePiece tokenizer on data dirs' transcripts."""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_transfer.data.kaldi import read_table
from asr_transfer.text.normalize import CHARSETS, Normalizer
from asr_transfer.text.tokenizer import Tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dirs", nargs="+", help="Kaldi data dirs whose `text` trains the tokenizer")
    parser.add_argument("--lang", required=True)
    parser.add_argument("--kind", choices=["char", "unigram", "bpe"], default="char")
    parser.add_argument("--vocab-size", type=int, default=150, help="SentencePiece units")
    parser.add_argument("--out", required=True, help="tokenizer folder")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / "tokens.txt").exists():
        print(f"tokenizer: {out} exists, skipped")
        return 0
    norm = Normalizer(args.lang)
    texts = [norm(t) for d in args.data_dirs for t in read_table(Path(d) / "text").values()]
    if args.kind == "char":
        tok = Tokenizer.train_char(texts, args.lang, CHARSETS.get(args.lang, ""))
    else:
        tok = Tokenizer.train_sentencepiece(texts, args.lang, args.vocab_size, args.kind)
    tok.save(out)
    print(f"tokenizer: {args.kind}, {tok.vocab_size} tokens -> {out}")
    return 0
