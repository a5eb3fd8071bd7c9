"""``asr-transfer synth``: generate the offline benchmark corpus.

Example:
    asr-transfer synth --preset mini --out corpus/mini --seed 0 --jobs 2

The ``standard`` preset needs Debian engines (``sudo recipes/common/install_synth_tools.sh``) and
sentence sources (``recipes/common/get_texts.sh [DIR]``, then ``--text-dir DIR``).
"""

from __future__ import annotations

import argparse
import time

from asr_transfer.synth.noise import NOISE_ENV, NoiseBankError, find_noise_dir
from asr_transfer.synth.presets import PRESETS
from asr_transfer.synth.sentences import TEXT_ENV, TextSourceError, find_text_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="mini",
        help="; ".join(f"{k}: {p.description}" for k, p in sorted(PRESETS.items())),
    )
    parser.add_argument("--out", required=True, help="output folder (audio/, data/, corpus.json)")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="same seed + tool versions = same audio bytes",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--noise-dir",
        default=None,
        help=f"recorded noise bank (default: ${NOISE_ENV}, else the shipped <repo>/data/noise)",
    )
    parser.add_argument(
        "--text-dir",
        default=None,
        help=f"sentence sources from recipes/common/get_texts.sh, for presets with sentences "
        f"(default: ${TEXT_ENV}, else ~/.cache/asr-transfer/texts)",
    )


def run(args: argparse.Namespace) -> int:
    from asr_transfer.synth.engines_debian import EngineMissing
    from asr_transfer.synth.generate import generate

    preset = PRESETS[args.preset]
    start = time.perf_counter()
    noise_dir = find_noise_dir(args.noise_dir)
    needs_text = any(lp.text == "sentences" for lp in preset.langs)
    text_dir = find_text_dir(args.text_dir) if needs_text else None
    try:
        corpus = generate(
            preset, args.out, seed=args.seed, jobs=args.jobs, noise_dir=noise_dir, text_dir=text_dir
        )
    except (EngineMissing, NoiseBankError, TextSourceError):
        raise  # missing files too (OSErrors), but their messages say what to install
    except OSError as err:  # a read-only output folder, a full disk: say it was the writing
        where = err.filename or args.out
        raise OSError(f"cannot write {where}: {err.strerror or err}") from err
    totals = corpus["totals"]
    print(
        f"synth {preset.name}: {totals['utterances']} utterances, {totals['files']} files, "
        f"{totals['hours']:.2f} h in {len(corpus['dirs'])} data dirs under {args.out}/data "
        f"({time.perf_counter() - start:.1f} s, {args.jobs} jobs)"
    )
    return 0
