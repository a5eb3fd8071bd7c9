"""The ``asr-transfer`` command: thin subcommands, each backed by one module.

Every subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so ``asr-transfer score``
does not pay for importing torch and ESPnet.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("asr_transfer.synth.cli", "generate the offline benchmark corpus"),
    "validate-data": ("asr_transfer.data.validate", "check Kaldi data dirs"),
    "features": ("asr_transfer.data.features_cli", "dump fbank features and CMVN stats"),
    "tokenizer": ("asr_transfer.text.tokenizer_cli", "train a char or SentencePiece tokenizer"),
    "train": ("asr_transfer.train.cli", "train (or adapt) a model"),
    "add-language": (
        "asr_transfer.adapt.add_language",
        "a new language from a base model: head|full|adapter",
    ),
    "convert-adapter": (
        "asr_transfer.model.convert_adapter_cli",
        "rewrite an old (pickled) adapter file you trust in the current format",
    ),
    "decode": ("asr_transfer.decode.cli", "decode data dirs to Kaldi text and trn"),
    "transcribe": ("asr_transfer.decode.transcribe_cli", "transcribe wav files"),
    "pseudo-label": ("asr_transfer.decode.pseudo_label", "pseudo-label target audio, keep the confident"),
    "choose-decoding": ("asr_transfer.decode.choice", "choose an experiment's decoding on dev data"),
    "average": ("asr_transfer.train.average_cli", "average the best checkpoints"),
    "score": ("asr_transfer.score.cli", "WER/CER/SER with S/D/I and bootstrap intervals"),
    "report": ("asr_transfer.score.report_cli", "Markdown + HTML comparison report"),
    "crossling-report": ("asr_transfer.score.crossling_cli", "cross-lingual table: targets x methods"),
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
    module = importlib.import_module(SUBCOMMANDS[name][0])
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
