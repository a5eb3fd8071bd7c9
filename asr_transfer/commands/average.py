"""``asr-transfer average``: average checkpoints into one model file, or experiments into one experiment.

Checkpoints (files): the chosen checkpoints of one run, e.g. its best epochs::

    asr-transfer average exp/tiny/checkpoints/epoch{5,6,7}.pt --out exp/tiny/avg.pt

Experiments (directories): a *soup* (Wortsman et al., 2022), the weight average of runs that start
from one model and differ in their training seed, e.g. an adaptation's ``--adapt_seeds``. Training
runs of the same recipe differ by as much as methods do on small data; their average is usually
better than each run and never depends on one run's luck (docs/benchmarks.md, "seed soups")::

    asr-transfer average exp/adapt/mmd_room exp/adapt/mmd_room_seed2 --out exp/adapt/mmd_room_soup

The soup is an experiment like its inputs: the first one's ``config.yaml`` (an adapted experiment's
``adapt.name`` gets " soup", so a report shows it as a column of its own), ``decode.yaml`` and
tokenizers, its averaged ``model.pt``, and ``soup.yaml`` naming the experiments averaged. Inputs
whose ``model`` sections or parameter shapes differ are refused. Add-language runs get a warning:
they move far from their start and from each other, and their average measured worse than their
mean WER.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from asr_transfer.config import load_config, save_config
from asr_transfer.score.crossling import SUMMARY as ADD_LANGUAGE
from asr_transfer.train.checkpoint import average_checkpoints
from asr_transfer.util.atomic import save_torch

MODEL, CONFIG, DECODING, SOUP = "model.pt", "config.yaml", "decode.yaml", "soup.yaml"
TOKENIZERS = "tokenizers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        help="checkpoint files (each with a 'model' state dict), or experiment directories",
    )
    parser.add_argument("--out", required=True, help="the averaged model file, or experiment directory")


def run(args: argparse.Namespace) -> int:
    inputs = [Path(p) for p in args.inputs]
    dirs = [p.is_dir() for p in inputs]
    if any(dirs) and not all(dirs):
        raise ValueError("give checkpoint files or experiment directories, not both")
    if all(dirs):
        soup(inputs, Path(args.out))
        print(f"average: a soup of {len(inputs)} experiments -> {args.out}")
        return 0
    save_torch({"model": average_checkpoints(inputs)}, args.out)
    print(f"average: {len(inputs)} checkpoints -> {args.out}")
    return 0


def soup(exps: list[Path], out: Path) -> None:
    """Average the ``model.pt`` of experiments ``exps`` into the experiment ``out`` (see the module).

    Example:
        >>> import tempfile, torch
        >>> root = Path(tempfile.mkdtemp())
        >>> for name, w in (("a", 1.0), ("b", 3.0)):
        ...     (root / name).mkdir()
        ...     _ = (root / name / CONFIG).write_text("model: {d: 4}\\nadapt: {method: mmd, target: room}\\n")
        ...     save_torch({"model": {"w": torch.tensor([w])}}, root / name / MODEL)
        >>> soup([root / "a", root / "b"], root / "s")
        >>> cfg = load_config([root / "s" / CONFIG])
        >>> torch.load(root / "s" / MODEL)["model"]["w"], cfg["adapt"]
        (tensor([2.]), {'method': 'mmd', 'name': 'MMD soup', 'target': 'room'})
    """
    if len(exps) < 2:
        raise ValueError("a soup needs at least two experiments")
    configs = [_config(e) for e in exps]
    for exp, cfg in zip(exps[1:], configs[1:]):
        if cfg.get("model") != configs[0].get("model"):
            raise ValueError(
                f"{exp / CONFIG}: its 'model' section differs from {exps[0] / CONFIG}'s: not one architecture"
            )
    cfg = configs[0]
    adapt = cfg.get("adapt")
    if isinstance(adapt, dict) and adapt.get("train") == "adapter":
        raise ValueError(
            f"{exps[0] / CONFIG}: a domain adapter run (adapt.train: adapter): its model is the frozen base"
        )
    if isinstance(adapt, dict) and adapt.get("method") not in (None, "supervised"):
        # a column of its own in the report, beside the runs it averages
        from asr_transfer.score.adapt_table import method_name

        adapt["name"] = f"{method_name(adapt)} soup"
    state = average_checkpoints([e / MODEL for e in exps])  # refuses parameters of other shapes
    if any((e / ADD_LANGUAGE).is_file() for e in exps):
        # add-language runs move far from their start and from each other (a few target utterances at
        # a high learning rate); even from one start their average measured worse than their mean
        print(
            "average: WARNING: add-language runs move far from their start and from each other: on the "
            "xling targets their weight average was worse than the runs' mean WER, even when they started "
            'from one model (docs/benchmarks.md, "Seed soups of add-language runs")',
            file=sys.stderr,
        )
    out.mkdir(parents=True, exist_ok=True)
    if (exps[0] / DECODING).is_file():
        shutil.copy(exps[0] / DECODING, out / DECODING)
    if (exps[0] / TOKENIZERS).is_dir():
        shutil.copytree(exps[0] / TOKENIZERS, out / TOKENIZERS, dirs_exist_ok=True)
        # the soup reads its own copies, as a trained experiment does (so the inputs may go)
        toks = (cfg.get("data") or {}).get("tokenizers")
        if isinstance(toks, dict):
            for lang in toks:
                if (out / TOKENIZERS / lang).is_dir():
                    toks[lang] = str(out / TOKENIZERS / lang)
    save_config(cfg, out / CONFIG)
    save_config({"experiments": [str(e) for e in exps]}, out / SOUP)
    # the model last: a soup with a model.pt is finished
    save_torch({"model": state}, out / MODEL)


def _config(exp: Path) -> dict:
    path = exp / CONFIG
    if not path.is_file():
        raise ValueError(f"{exp}: not an experiment (no {CONFIG})")
    return load_config([path])
