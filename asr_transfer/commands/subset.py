"""``asr-transfer subset``: a data dir cut to N utterances drawn at random (Kaldi's ``subset_data_dir.sh``).

For learning curves, e.g. a new language's adapter trained on 25, 50 and 150 utterances::

    asr-transfer subset data/ro_train_clean --utts 50 --out data/ro_train50_clean

The draw is seeded (``--seed``, default 17): the same ids on every machine; every table of the dir
(``wav.scp text utt2spk utt2lang utt2domain utt2dur``, ``spk2utt`` derived) is filtered.
"""

from __future__ import annotations

import argparse

from asr_transfer.data.kaldi import subset_data_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="a Kaldi data dir")
    parser.add_argument("--utts", type=int, required=True, help="how many utterances to keep")
    parser.add_argument("--seed", type=int, default=17, help="the draw's seed (default: 17)")
    parser.add_argument("--out", required=True, help="the new data dir (replaced if it exists)")


def run(args: argparse.Namespace) -> int:
    chosen = subset_data_dir(args.data, args.out, args.utts, args.seed)
    print(f"subset: {args.data} -> {args.out}: {len(chosen)} utterances (seed {args.seed})")
    return 0
