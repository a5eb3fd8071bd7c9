"""``asr-transfer score REF HYP``: WER, CER and SER of two Kaldi ``text`` files.

Both files are normalised identically (Unicode form, lower case, punctuation; see
:mod:`asr_transfer.text.normalize`). Prints a table; with ``--out`` also writes
``ref.trn``/``hyp.trn`` (sclite), ``result.txt`` (Kaldi ``%WER`` lines) and ``wer.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr_transfer.data.kaldi import DataError
from asr_transfer.score import bootstrap
from asr_transfer.score.api import ScoreOptions, empty_references, score_files
from asr_transfer.score.formats import kaldi_lines, summary_table
from asr_transfer.score.scoring import ScoreResult
from asr_transfer.text.normalize import Normalizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", type=Path, help="reference Kaldi text file")
    parser.add_argument(
        "hyp", type=Path, help="hypothesis Kaldi text file (missing utterances count as deletions)"
    )
    add_options(parser)
    parser.add_argument(
        "--utt2spk", type=Path, help="default: utt2spk beside REF, else one speaker per utterance"
    )
    parser.add_argument("--utt2domain", type=Path, help="default: utt2domain beside REF, if any")
    parser.add_argument("--utt2lang", type=Path, help="default: utt2lang beside REF, if any")
    parser.add_argument("--out", type=Path, help="write ref.trn, hyp.trn, result.txt and wer.json here")


def add_options(parser: argparse.ArgumentParser) -> None:
    """Normalisation and bootstrap options, shared with ``asr-transfer report``."""
    parser.add_argument(
        "--lang",
        default="en",
        help="language of the normalisation rules (default: en; report: each decode's own language)",
    )
    parser.add_argument("--unicode-form", default="NFC", choices=["NFC", "NFD", "NFKC", "NFKD", "none"])
    parser.add_argument("--no-lowercase", action="store_true", help="keep case")
    parser.add_argument("--keep-punct", action="store_true", help="keep punctuation")
    parser.add_argument(
        "--strict-empty-ref",
        action="store_true",
        help="refuse an empty reference (default: score it as sclite does, its hypothesis words "
        "being insertions, with a warning that counts them)",
    )
    # the former opt-in, now the default: still accepted so that existing scripts run
    parser.add_argument("--allow-empty-ref", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--bootstrap-unit",
        choices=["utt", "spk"],
        default="utt",
        help="resample utterances (default) or whole speakers",
    )
    parser.add_argument("--resamples", type=int, default=bootstrap.N_RESAMPLES)
    parser.add_argument("--seed", type=int, default=bootstrap.SEED)


def options_from(args: argparse.Namespace) -> ScoreOptions:
    normalizer = Normalizer(
        args.lang or "en",
        None if args.unicode_form == "none" else args.unicode_form,
        lowercase=not args.no_lowercase,
        remove_punct=not args.keep_punct,
    )
    return ScoreOptions(normalizer, args.bootstrap_unit, args.resamples, args.seed, args.strict_empty_ref)


def warn_empty_references(result: ScoreResult, ref: Path) -> None:
    """Tell on stderr how many references were empty (scored as sclite does) and which."""
    empty = empty_references(result)
    if empty:
        shown = ", ".join(empty[:20]) + (" ..." if len(empty) > 20 else "")
        print(
            f"warning: {len(empty)} empty references in {ref} (after normalisation), scored as sclite "
            f"does: their hypothesis words are insertions (--strict-empty-ref refuses them): {shown}",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    side = {"spk": args.utt2spk, "domain": args.utt2domain, "lang": args.utt2lang}
    try:
        result, cis = score_files(args.ref, args.hyp, options_from(args), out=args.out, side=side)
    except DataError as err:
        print(f"asr-transfer score: error: {err}", file=sys.stderr)
        return 1
    warn_empty_references(result, args.ref)
    missing = result.missing
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        print(
            f"warning: {len(missing)} utterances missing from {args.hyp}, scored as deletions: {shown}",
            file=sys.stderr,
        )
    print(summary_table(result, cis))
    print()
    print(kaldi_lines(result.total, len(missing)), end="")
    if args.out:
        print(f"wrote {args.out}/ref.trn, hyp.trn, result.txt, wer.json")
    return 0
