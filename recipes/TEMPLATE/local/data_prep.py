"""Template data preparation: a folder of ``<utt>.wav`` + ``<utt>.txt`` pairs -> a Kaldi data dir.

Usage: python local/data_prep.py SRC_DIR OUT_DIR --lang en --domain clean
Speaker ids are the part of the utterance id before the first ``-``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asr_transfer.data.kaldi import write_data_dir
from asr_transfer.text.normalize import Normalizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--domain", default="clean")
    args = parser.parse_args()
    norm = Normalizer(args.lang)
    wav, text, spk = {}, {}, {}
    for path in sorted(Path(args.src).glob("*.wav")):
        utt = path.stem
        wav[utt] = str(path.resolve())
        text[utt] = norm(path.with_suffix(".txt").read_text(encoding="utf-8"))
        spk[utt] = utt.split("-", 1)[0]
    write_data_dir(
        args.out,
        wav=wav,
        text=text,
        utt2spk=spk,
        utt2lang=dict.fromkeys(wav, args.lang),
        utt2domain=dict.fromkeys(wav, args.domain),
    )


if __name__ == "__main__":
    main()
