"""Decoding real-time factor: ours (batched CTC greedy, joint CTC/attention beam) vs ESPnet's Speech2Text.

Our modes (``conf/decode``): ``beam`` searches all utterances x beams of a batch at once,
``beam_espnet`` runs ESPnet's ``BatchBeamSearch`` over our model one utterance at a time (after a
batched encoder), ``ctc_greedy`` is the batched best path.

Usage:
    python bench/decode_speed.py [--exp ESPNET_EXP ...] [--corpus DIR] [--work DIR] [--utts 40] [--threads 2]
                                 [--beam 10] [--ctc-weight 0.3] [--batch-size 16] [--repeats 3]
                                 [--device cpu|cuda] [--systems beam_espnet,beam,beam1,ctc_greedy]
                                 [--config tiny|ref] [--features espnet,fbank] [--train-epochs 3]
                                 [--train-utts 300] [--json OUT]

``--systems`` picks ours (ESPnet's ``Speech2Text`` always runs: it is the reference); ``beam1`` is
``beam`` with one utterance per batch (unpadded input). ``--json`` also writes the table, with the
settings, machine, hypotheses agreement and WER, to a file. Small, quick run: ``--utts 8 --repeats 1
--systems beam`` (with ``--exp``, or ``--train-epochs 1 --train-utts 50`` for a barely trained model).

Both systems decode the same utterances (``en_test_clean`` of a synth corpus) with the same model: an
ESPnet2 experiment, loaded by ESPnet's ``Speech2Text`` (beam 10, CTC weight 0.3, no LM, one utterance
per call, as ``asr_inference`` does) and by our :func:`asr_transfer.model.espnet_loader.load_espnet_exp`
+ :mod:`asr_transfer.decode`. Without ``--exp`` an experiment is trained first with
``espnet2.bin.asr_train`` (on ``--device``: ``--ngpu 1`` with cuda; a few epochs of a mini-corpus
subset; not timed), one per ``--features``: ``espnet`` (audio through ESPnet's ``DefaultFrontend``) or
``fbank`` (our dumped Kaldi fbank and CMVN, no ESPnet frontend: its ``Speech2Text`` takes ``(T, 80)``
frames, so both systems decode our ``KaldiFbank`` frames). With several ``--exp`` (or features) all
systems of all experiments take turns in one process, each experiment's ratios against its own
``Speech2Text``. Times cover feature extraction (the experiment's frontend, the same on both sides) and
decoding, after one warm-up utterance; the systems take turns ``--repeats`` times and the median is
reported; RTF = processing seconds / audio seconds. Beside wall seconds, the process's CPU seconds (all
threads) and their ratio: on a shared machine they vary less. Our side runs the frontend on each
utterance's own samples and pads the features (as ``Recognizer`` does): ESPnet's frontend over a
zero-padded batch changes the last frames of the shorter utterances, and ``Speech2Text`` decodes one
unpadded utterance per call. WER: each system's hypotheses (through the experiment's token list) against
the normalised ``text`` of the data dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from asr_transfer.util.atomic import write_text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
MODEL_CONFIGS = {"tiny": REPO / "conf/model/tiny.yaml", "ref": REPO / "conf/model/transformer_ref.yaml"}
#: our systems: (decode mode, batch size; None = --batch-size)
SYSTEMS = {
    "beam_espnet": ("beam_espnet", None),
    "beam": ("beam", None),
    "beam1": ("beam", 1),
    "ctc_greedy": ("ctc_greedy", 32),
}


def train_exp(
    corpus: Path,
    work: Path,
    config: str,
    epochs: int,
    utts: int,
    threads: int,
    device: str = "cpu",
    features: str = "espnet",
) -> Path:
    """A small ESPnet experiment trained by ESPnet's own trainer on ``device`` (cached in ``work``).

    ``features``: ``espnet`` reads the audio through ESPnet's ``DefaultFrontend`` (STFT + log-mel);
    ``fbank`` reads our dumped Kaldi fbank (``asr-transfer features``, ``kaldi_ark``), so the
    experiment has no frontend (``input_size: 80``) and ``Speech2Text`` takes ``(T, 80)`` frames.
    """
    import _espnet_exp as espnet

    from asr_transfer.text.tokenizer import Tokenizer

    exp = work / (f"espnet_exp_{config}" + ("_fbank" if features == "fbank" else ""))
    if (exp / "valid.acc.ave.pth").exists():
        return exp
    if features == "fbank":
        prep = espnet.prepare_subset(corpus, work / "fbank_inputs", utts, raw=False)
        train, valid = prep["fbank"]["train"], prep["fbank"]["dev"]
    else:
        train = espnet.prepare_data(corpus / "data" / "en_train_clean", work / "espnet_train", max_utts=utts)
        tok = Tokenizer(train["tokens.txt"].read_text().splitlines())
        valid = espnet.prepare_data(
            corpus / "data" / "en_dev_clean", work / "espnet_dev", max_utts=20, tokenizer=tok
        )
    model = yaml.safe_load(MODEL_CONFIGS[config].read_text())["model"]
    # the same budget of padded input: 12,000 frames = 12,000 x 160 samples
    cfg = espnet.espnet_config(
        model,
        train["feats_stats.npz"],
        batch_bins=12000 * (160 if features == "espnet" else 1),
        max_epoch=epochs,
        warmup_steps=25,
        raw_audio=features == "espnet",
    )
    print(
        f"training an ESPnet {config} model ({features} input) for {epochs} epochs on {utts} utterances "
        f"({device}) -> {exp}",
        flush=True,
    )
    cmd = espnet.train_command(cfg, train, valid, exp, ngpu=int(device == "cuda"))
    espnet.run_espnet(cmd, work / f"asr_train_{exp.name}.log", threads)
    return exp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--exp",
        type=Path,
        action="append",
        help="ESPnet2 ASR experiment dir; repeat it to time several in one run (default: train one)",
    )
    parser.add_argument("--corpus", type=Path, help="a synth corpus (default: synthesise mini into --work)")
    parser.add_argument("--work", type=Path, help="cache folder (default: a temporary one)")
    parser.add_argument("--utts", type=int, default=40, help="en_test_clean utterances decoded")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads of both systems (1 on a machine others load)"
    )
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--ctc-weight", type=float, default=0.3)
    parser.add_argument(
        "--config",
        choices=sorted(MODEL_CONFIGS),
        default="tiny",
        help="model size trained when --exp is not given",
    )
    parser.add_argument(
        "--features",
        default="espnet",
        help="inputs of the experiments trained when --exp is not given, comma-separated: espnet "
        "(audio through ESPnet's frontend), fbank (our Kaldi fbank, no ESPnet frontend)",
    )
    parser.add_argument("--train-epochs", type=int, default=3)
    parser.add_argument("--train-utts", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per system (median reported)")
    parser.add_argument("--batch-size", type=int, default=16, help="utterances per batch of our beam modes")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="both systems run there")
    parser.add_argument(
        "--systems",
        default="beam_espnet,beam,ctc_greedy",
        help=f"ours to time, comma-separated, of {','.join(SYSTEMS)} (ESPnet always runs)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    if set(args.systems) - set(SYSTEMS):
        parser.error(
            f"--systems: unknown {sorted(set(args.systems) - set(SYSTEMS))}; known: {', '.join(SYSTEMS)}"
        )
    args.features = [s for s in args.features.split(",") if s]
    if set(args.features) - {"espnet", "fbank"}:
        parser.error(f"--features: unknown {sorted(set(args.features) - {'espnet', 'fbank'})}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = (args.work or Path(tmp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        import _espnet_exp as espnet

        corpus = espnet.ensure_mini_corpus(work, args.corpus)
        exps = args.exp or [
            train_exp(
                corpus.resolve(),
                work,
                args.config,
                args.train_epochs,
                args.train_utts,
                args.threads,
                args.device,
                features,
            )
            for features in args.features
        ]
        waves, refs = _test_waves(corpus, args.utts)
        groups = run(exps, waves, refs, args)
    _print(groups, waves, args)
    if args.json:
        _write_json(args.json, groups, waves, args)
    return 0


def _test_waves(corpus: Path, n: int) -> tuple[list[np.ndarray], list[str]]:
    """The first ``n`` ``en_test_clean`` waveforms and their reference texts."""
    from asr_transfer.data.audio import load_audio
    from asr_transfer.data.kaldi import load_data_dir

    data = load_data_dir(corpus / "data" / "en_test_clean")
    return [load_audio(data.wav[u]) for u in data.utts[:n]], [data.text[u] for u in data.utts[:n]]


def run(
    exps: list[Path], waves: list[np.ndarray], refs: list[str], args: argparse.Namespace
) -> list[tuple[Path, str, list[dict]]]:
    """Time ESPnet's ``Speech2Text`` and ours on every experiment, all systems taking turns;
    ``(exp, its input: espnet or fbank, rows)`` per experiment, ESPnet's row first."""
    systems: list[tuple[str, object, list[int]]] = []
    groups: list[tuple[Path, str, list[str]]] = []
    tokenizers = {}
    for exp in exps:
        kind, own = _systems(exp, waves, args)
        # names stay as they were for a single experiment (bench/gpu_suite.py reads them)
        tag = f" [{kind}: {exp.name}]" if len(exps) > 1 else ""
        systems += [(name + tag, fn, idx) for name, fn, idx, _ in own]
        groups.append((exp, kind, [name + tag for name, _, _, _ in own]))
        tokenizers.update({name + tag: tok for name, _, _, tok in own})
    for _, fn, _ in systems:
        fn(waves[:1])  # warm-up
    # the systems take turns, so a slow spell of a shared machine hits them alike; medians per system
    times: dict[str, list[float]] = {name: [] for name, _, _ in systems}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in systems}
    hyps: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, fn, idx in systems:
            start, start_cpu = time.perf_counter(), time.process_time()
            out = fn([waves[i] for i in idx])
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            by_utt = dict(zip(idx, out))
            hyps[name] = [by_utt[i] for i in range(len(waves))]
    from asr_transfer.score.scoring import score_texts

    ref = {str(i): text for i, text in enumerate(refs)}

    def wer(name: str) -> float:
        texts = {str(i): tokenizers[name].decode(s) for i, s in enumerate(hyps[name])}
        return score_texts(ref, texts).total.wer

    def row(name: str) -> dict:
        return {
            "name": name,
            "seconds": statistics.median(times[name]),
            "cpu_seconds": statistics.median(cpu[name]),
            "hyps": hyps[name],
            "wer": wer(name),
        }

    return [(exp, kind, [row(name) for name in names]) for exp, kind, names in groups]


def _systems(exp: Path, waves: list[np.ndarray], args: argparse.Namespace) -> tuple[str, list[tuple]]:
    """One experiment's systems ``(name, decode, utterance order, tokenizer)``, ESPnet's first, and
    its input kind: ``espnet`` (ESPnet's frontend on the audio) or ``fbank`` (an experiment trained on
    our Kaldi fbank: both systems read the frames of our ``KaldiFbank``, computed in the timed part)."""
    from espnet2.bin.asr_inference import Speech2Text

    from asr_transfer.data.frontend import KaldiFbank
    from asr_transfer.decode.search import DecodeConfig, decode_batch
    from asr_transfer.model.espnet_loader import default_checkpoint, load_espnet_exp

    ckpt = default_checkpoint(exp)
    device = torch.device(args.device)
    s2t = Speech2Text(
        asr_train_config=exp / "config.yaml",
        asr_model_file=ckpt,
        device=args.device,
        beam_size=args.beam,
        ctc_weight=args.ctc_weight,
        lm_weight=0.0,
        nbest=1,
    )
    model, tokenizer, frontend = load_espnet_exp(exp, ckpt)
    model.to(device)
    fbank = KaldiFbank(model.cmvn.mean.numel()) if frontend is None else None

    def espnet_decode(batch: list[np.ndarray]) -> list[list[int]]:
        if fbank is not None:  # no frontend in the model: Speech2Text takes (T, 80) frames
            return [s2t(fbank(w).numpy())[0][2] for w in batch]
        return [s2t(w)[0][2] for w in batch]

    def features(batch: list[np.ndarray]) -> list[torch.Tensor]:
        """Each utterance's frames from its own samples (ESPnet's frontend over a zero-padded batch
        changes the shorter ones' last frames)."""
        if fbank is not None:
            return [fbank(w).to(device) for w in batch]
        return [
            frontend(w[None], torch.tensor([w.numel()], device=device))[0][0]
            for w in (torch.from_numpy(w).to(device) for w in batch)
        ]

    def ours(mode: str, batch_size: int):  # noqa: ANN202
        cfg = DecodeConfig(mode=mode, beam_size=args.beam, ctc_weight=args.ctc_weight, batch_size=batch_size)

        @torch.no_grad()
        def decode(batch: list[np.ndarray]) -> list[list[int]]:
            out = []
            for i in range(0, len(batch), batch_size):
                feats = features(batch[i : i + batch_size])
                feat_lens = torch.tensor([len(f) for f in feats], device=device)
                padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
                out += decode_batch(model, padded, feat_lens, "en", cfg)
            return out

        return decode

    if frontend is not None:
        frontend.to(device)
    # ours decodes utterances sorted by length (little padding), as a batch decoder would
    order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
    systems = [("ESPnet Speech2Text beam", espnet_decode, list(range(len(waves))), tokenizer)]
    for key in args.systems:
        mode, batch_size = SYSTEMS[key]
        batch_size = batch_size or args.batch_size
        systems.append((f"ours {mode} (batch {batch_size})", ours(mode, batch_size), order, tokenizer))
    return ("espnet" if frontend is not None else "fbank"), systems


def _print(
    groups: list[tuple[Path, str, list[dict]]], waves: list[np.ndarray], args: argparse.Namespace
) -> None:
    audio = sum(len(w) for w in waves) / 16000
    print(
        f"\ndecode speed ({args.device}): {len(waves)} utterances, {audio:.1f} s of audio, beam {args.beam}, "
        f"CTC weight {args.ctc_weight}, {args.threads} threads, median of {args.repeats} runs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for exp, kind, rows in groups:
        ref = rows[0]
        print(f"\n{exp} (input: {kind})")
        # CPU seconds (this process, all threads) are less at the mercy of other jobs than wall seconds
        print(
            f"{'system':<58} {'seconds':>8} {'RTF':>8} {'x ESPnet':>9} {'CPU s':>7} {'x ESPnet CPU':>13} "
            f"{'same hyps as ESPnet':>20} {'WER %':>6}"
        )
        for r in rows:
            same = sum(a == b for a, b in zip(r["hyps"], ref["hyps"]))
            print(
                f"{r['name']:<58} {r['seconds']:>8.2f} {r['seconds'] / audio:>8.4f} "
                f"{ref['seconds'] / r['seconds']:>9.1f} {r['cpu_seconds']:>7.2f} "
                f"{ref['cpu_seconds'] / r['cpu_seconds']:>13.1f} {same:>14}/{len(waves)} {r['wer']:>6.2f}"
            )


def _write_json(
    path: Path, groups: list[tuple[Path, str, list[dict]]], waves: list[np.ndarray], args: argparse.Namespace
) -> None:
    """The tables as JSON (written to a temporary name, then renamed): ``systems`` holds every
    experiment's rows, each ``x_espnet`` against that experiment's ``Speech2Text``."""
    audio = sum(len(w) for w in waves) / 16000
    systems = []
    for _, _, rows in groups:
        ref = rows[0]
        systems += [
            {
                "name": r["name"],
                "seconds": round(r["seconds"], 4),
                "rtf": round(r["seconds"] / audio, 5),
                "x_espnet": round(ref["seconds"] / r["seconds"], 2),
                "cpu_seconds": round(r["cpu_seconds"], 4),
                "x_espnet_cpu": round(ref["cpu_seconds"] / r["cpu_seconds"], 2),
                "same_hyps_as_espnet": sum(a == b for a, b in zip(r["hyps"], ref["hyps"])),
                "wer": round(r["wer"], 2),
            }
            for r in rows
        ]
    out = {
        "benchmark": "decode_speed",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "exp": str(groups[0][0]) if len(groups) == 1 else [str(exp) for exp, _, _ in groups],
        "inputs": [kind for _, kind, _ in groups],
        "utts": len(waves),
        "audio_seconds": round(audio, 2),
        "beam": args.beam,
        "ctc_weight": args.ctc_weight,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average": os.getloadavg()[0],
        "systems": systems,
    }
    write_text(path, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
