"""``asr-transfer convert-adapter OLD NEW``: rewrite an adapter file of the old, pickled format.

Adapter files used to be ``torch.save`` pickles (format ``asr-transfer-adapter/1``); they are now
safetensors files that run nothing when read, and ``decode --adapter`` refuses the old ones. This
reads OLD with torch's safe unpickler (tensors and plain data only), checks it, and writes NEW.
Run it on files from sources you trust: the safe unpickler is a guard, not a licence.
"""

from __future__ import annotations

import argparse

from asr_transfer.model.adapters import FORMAT, OLD_FORMAT, convert_adapter_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help=f"adapter file of format {OLD_FORMAT} (torch.save)")
    parser.add_argument("new", help=f"where to write it in format {FORMAT} (safetensors)")


def run(args: argparse.Namespace) -> int:
    path = convert_adapter_file(args.old, args.new)
    print(f"convert-adapter: {args.old} -> {path} ({FORMAT})")
    return 0
