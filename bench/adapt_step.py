"""Cost of one adaptation training step per method, side by side, against a source-only step.

Usage:
    python bench/adapt_step.py [--device cpu|cuda] [--repeats 20] [--warmup 3] [--threads 1]
                               [--preset tiny|mini] [--corpus DATA_DIR] [--work DIR]
                               [--model conf/model/tiny.yaml] [--max-batch-frames 4000]

A step is what the training loop does per batch (:func:`asr_transfer.train.loop.train`):
``method.compute_objectives`` on the method's streams, the weighted sum of its terms, backward,
gradient clipping and an Adam step over the model's and the method's trainable parameters (bf16
autocast on CUDA, as the loop). Methods are the real classes of :mod:`asr_transfer.adapt` built from
the recipe's ``conf/adapt/*.yaml``: ``source_only`` (supervised step on the source batch only),
``self_training``, ``mmd``, ``adv`` and ``cmatch`` with each frame-labelling strategy (and ctc_pred with the
paper's linear kernel beside its shipped Gaussian one). Every method
gets its own copy of the same initial model and the same two batches (the first step of
:func:`asr_transfer.data.dataset.stream_batches` over real dumped fbank: ``en_train_clean`` as the
source, ``en_train_phone`` as the target). The target copy's transcripts stand in for its
pseudo-labels: this measures cost only (the synth corpus has the same sentences in every domain, so
the lengths are those of real labels), and no model is adapted or evaluated.

After ``--warmup`` untimed steps each, the methods take turns (the order rotates every round) for
``--repeats`` rounds; the median step time is printed with its ratio to source-only, to
self-training (the same two forward/backward passes: the difference is the matching itself), and
per frame of audio processed against source-only (whose step reads the source batch only).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asr_transfer.adapt import Context, build_method  # noqa: E402
from asr_transfer.cli import main as cli  # noqa: E402
from asr_transfer.data.dataset import collate, load_dump, stream_batches  # noqa: E402
from asr_transfer.data.features import load_cmvn  # noqa: E402
from asr_transfer.model.asr import build_model  # noqa: E402
from asr_transfer.text.tokenizer import Tokenizer  # noqa: E402

#: column -> recipe config and options over it (the paper's kernel beside the shipped Gaussian one)
METHODS: dict[str, tuple[str, dict]] = {
    "source_only": ("source_only", {}),
    "self_training": ("self_training", {}),
    "mmd": ("mmd", {}),
    "adv": ("adv", {}),
    "cmatch frame_average": ("cmatch_frame_average", {}),
    "cmatch ctc_align": ("cmatch_ctc_align", {}),
    "cmatch ctc_pred": ("cmatch_ctc_pred", {}),
    "cmatch ctc_pred, linear kernel": ("cmatch_ctc_pred", {"kernel": "linear"}),
}
SOURCE, TARGET = "en_train_clean", "en_train_phone"


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path, Path]:
    """Synthesise (unless ``--corpus``), dump fbank of source and target, CMVN and a char tokenizer."""
    data = args.corpus
    if data is None:
        synth = [
            "synth",
            "--preset",
            args.preset,
            "--out",
            str(work / "corpus"),
            "--seed",
            "3",
            "--jobs",
            "1",
        ]
        assert cli(synth) == 0
        data = work / "corpus" / "data"
    dump = work / "dump"
    src, tgt = data / SOURCE, data / TARGET
    assert cli(["features", str(src), str(tgt), "--out", str(dump)]) == 0
    assert cli(["features", str(src), "--out", str(dump), "--cmvn", str(work / "cmvn.npz")]) == 0
    assert cli(["tokenizer", str(src), "--lang", "en", "--kind", "char", "--out", str(work / "tok")]) == 0
    return dump / SOURCE, dump / TARGET, work / "cmvn.npz", work / "tok"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per method (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per method first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", default="tiny", help="synth preset when --corpus is not given")
    parser.add_argument("--corpus", type=Path, help=f"a synth data folder holding {SOURCE} and {TARGET}")
    parser.add_argument("--work", type=Path, help="folder for dumps (default: a temporary one)")
    parser.add_argument("--model", type=Path, default=REPO / "conf/model/tiny.yaml")
    parser.add_argument("--max-batch-frames", type=int, default=4000, help="as conf/train/adapt.yaml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        src_dump, tgt_dump, cmvn, tok_dir = prepare(args, work)
        tok = Tokenizer.load(tok_dir)
        streams = {
            "source": load_dump(src_dump, "en", tok),
            "target": load_dump(tgt_dump, "en", tok),  # stand-in pseudo-labels (see the docstring)
        }
        step0 = stream_batches(streams, args.max_batch_frames, seed=1, epoch=1)[0]
        batches = {name: collate(items).to(device) for name, items in step0.items()}
        mean, istd = load_cmvn(cmvn)

    model_cfg = yaml.safe_load(args.model.read_text())["model"]
    torch.manual_seed(0)
    init = build_model(model_cfg, {"en": tok.vocab_size}).state_dict()
    runs = {}
    for label, (conf, over) in METHODS.items():
        adapt = {**yaml.safe_load((REPO / "conf/adapt" / f"{conf}.yaml").read_text())["adapt"], **over}
        model = build_model(model_cfg, {"en": tok.vocab_size})
        model.load_state_dict(init)
        model.cmvn.mean, model.cmvn.istd = mean, istd
        method = build_method(adapt)
        method.setup(model, {"en": tok})
        model.to(device).train()
        method.to(device).train()
        params = [p for p in [*model.parameters(), *method.parameters()] if p.requires_grad]
        optim = torch.optim.Adam(params, lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
        runs[label] = (model, method, params, optim, {k: batches[k] for k in method.streams})

    amp = torch.bfloat16 if device.type == "cuda" else None

    def step(label: str) -> float:
        model, method, params, optim, mine = runs[label]
        ctx = Context("train", 1, 0, 0.5)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            terms = method.compute_objectives(model, mine, ctx)
        loss = sum(method.weight(name, ctx) * value for name, value in terms.items())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    labels = list(runs)
    for label in labels:
        for _ in range(args.warmup):
            step(label)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(args.repeats):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            times[label].append(step(label))

    med = {label: statistics.median(t) * 1000 for label, t in times.items()}
    frames = {k: int(b.feat_lens.sum()) for k, b in batches.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} thread(s)"
    print(
        f"device {device} ({where}), model {args.model.name}, "
        f"source batch {len(step0['source'])} utts / {frames['source']} frames, "
        f"target batch {len(step0['target'])} utts / {frames['target']} frames, "
        f"median of {args.repeats} steps after {args.warmup} warm-up"
    )
    # frames of audio one step of the method processes (source_only: the source batch only)
    audio = {label: sum(frames[k] for k in runs[label][4]) for label in labels}
    per_frame = {label: med[label] / audio[label] for label in labels}
    print(
        f"{'method':<22} {'step ms':>9} {'x source_only':>14} {'x self_training':>16} {'per frame x s_o':>16}"
    )
    for label in labels:
        print(
            f"{label:<22} {med[label]:>9.1f} {med[label] / med['source_only']:>14.2f} "
            f"{med[label] / med['self_training']:>16.2f} {per_frame[label] / per_frame['source_only']:>16.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
