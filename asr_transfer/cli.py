"""The ``asr-transfer`` command: thin subcommands, each backed by ``asr_transfer/commands/<name>.py``.

Every subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their subcommand runs, so ``asr-transfer score``
does not pay for importing torch and ESPnet.

Bad input never ends in a traceback: an expected error (a bad data dir, a missing file, an invalid
option or YAML; see :data:`EXPECTED`) raised by any subcommand is printed as one line
``asr-transfer <command>: error: <file:line or option: what>`` and the exit status is 2.
``asr-transfer --debug <command> ...`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import yaml

from asr_transfer.util.errors import InputError

#: what bad input raises: our DataError, AdapterFileError, ESPnetLoadError (ValueErrors), missing or
#: unwritable files, a missing speech engine (FileNotFoundError), malformed YAML, and InputError
#: (:mod:`asr_transfer.util.errors`). Anything else is a bug and keeps its traceback.
EXPECTED = (ValueError, OSError, yaml.YAMLError, InputError)

#: subcommand -> (module in :mod:`asr_transfer.commands`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "generate the offline benchmark corpus"),
    "validate-data": ("validate_data", "check Kaldi data dirs"),
    "subset": ("subset", "a data dir cut to N utterances drawn at random (learning curves)"),
    "features": ("features", "dump fbank features and CMVN stats"),
    "tokenizer": ("tokenizer", "train a char or SentencePiece tokenizer"),
    "train": ("train", "train (or adapt) a model"),
    "add-language": ("add_language", "a new language from a base model: head, full, (meta/sim)adapter"),
    "convert-adapter": (
        "convert_adapter",
        "rewrite an old (pickled) adapter file you trust in the current format",
    ),
    "decode": ("decode", "decode data dirs to Kaldi text and trn"),
    "transcribe": ("transcribe", "transcribe wav files"),
    "pseudo-label": ("pseudo_label", "pseudo-label target audio, keep the confident"),
    "distance": ("distance", "how far target audio is from the source model's domain, before training"),
    "choose-decoding": ("choose_decoding", "choose an experiment's decoding on dev data"),
    "average": ("average", "average checkpoints, or experiments into a soup"),
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
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error instead of its one-line message"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def one_line(err: BaseException) -> str:
    """An expected error as one line: the file and line it names, and what is wrong.

    Example:
        >>> one_line(FileNotFoundError(2, "No such file or directory", "exp/x/config.yaml"))
        'exp/x/config.yaml: No such file or directory'
        >>> one_line(ValueError("a/text:3: empty line\\na/text:9: empty line"))
        'a/text:3: empty line (and 1 more problem; asr-transfer --debug shows them all)'
    """
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        return f"{mark.name}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {err.problem}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    more = len(lines) - 1
    return lines[0] + (
        f" (and {more} more problem{'s' * (more > 1)}; asr-transfer --debug shows them all)" if more else ""
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: 0 on success, 2 on bad input (one line on stderr)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = bool(argv) and argv[0] == "--debug"
    argv = argv[debug:]
    if not argv or argv[0] not in SUBCOMMANDS:
        build_parser().parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    # OpenMP threads that spin while another process holds a core make a step several times slower
    # (6.8x for 2-thread training beside one other job, docs/benchmarks.md); set before torch loads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    module = importlib.import_module(f"asr_transfer.commands.{SUBCOMMANDS[name][0]}")
    parser = argparse.ArgumentParser(prog=f"asr-transfer {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    # config-driven commands take ESPnet-style overrides (--train.lr 1e-3) after their own options
    if getattr(module, "ACCEPTS_OVERRIDES", False):
        args, overrides = parser.parse_known_args(rest)
        args.overrides = overrides
    else:
        args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except EXPECTED as err:
        if debug:
            raise
        sys.stdout.flush()  # what the command printed comes before its error
        print(f"asr-transfer {name}: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
