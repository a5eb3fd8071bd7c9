"""The ``asr-transfer`` command: thin subcommands, each backed by ``asr_transfer/commands/<name>.py``.

Every subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so ``asr-transfer score``
does not pay for importing torch and ESPnet.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module in :mod:`asr_transfer.commands`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "generate the offline benchmark corpus"),
    "validate-data": ("validate_data", "check Kaldi data dirs"),
    "features": ("features", "dump fbank features and CMVN stats"),
    "tokenizer": ("tokenizer", "train a char or SentencePiece tokenizer"),
    "train": ("train", "train (or adapt) a model"),
    "add-language": ("add_language", "a new language from a base model: head|full|adapter"),
    "convert-adapter": (
        "convert_adapter",
        "rewrite an old (pickled) adapter file you trust in the current format",
    ),
    "decode": ("decode", "decode data dirs to Kaldi text and trn"),
    "transcribe": ("transcribe", "transcribe wav files"),
    "pseudo-label": ("pseudo_label", "pseudo-label target audio, keep the confident"),
    "distance": ("distance", "how far target audio is from the source model's domain, before training"),
    "choose-decoding": ("choose_decoding", "choose an experiment's decoding on dev data"),
    "average": ("average", "average the best checkpoints"),
    "score": ("score", "WER/CER/SER with S/D/I and bootstrap intervals"),
    "report": ("report", "Markdown + HTML report of any experiments: WER, adaptation, cross-lingual"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; subcommand arguments are added lazily in :func:`main`.

    Example:
        >>> "train" in build_parser().format_help()
        True
    """
    parser = argparse.ArgumentParser(prog="asr-transfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUBCOMMANDS:
        build_parser().parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"asr_transfer.commands.{SUBCOMMANDS[name][0]}")
    parser = argparse.ArgumentParser(prog=f"asr-transfer {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    # config-driven commands take ESPnet-style overrides (--train.lr 1e-3) after their own options
    if getattr(module, "ACCEPTS_OVERRIDES", False):
        args, overrides = parser.parse_known_args(rest)
        args.overrides = overrides
    else:
        args = parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
