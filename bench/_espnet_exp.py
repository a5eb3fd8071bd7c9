"""Train ESPnet2 ASR experiments with ESPnet's own trainer from our Kaldi data dirs and model configs.

Shared by ``bench/train_throughput.py``, ``bench/decode_speed.py`` and
``tests/test_espnet_loader.py``. ESPnet reads the raw audio and computes its
features in the model (``DefaultFrontend``, here with a 25 ms window and 10 ms
hop so its frame rate equals our Kaldi fbank's); the global CMVN statistics are
written by hand in ESPnet's npz format (``count``, ``sum``, ``sum_square``),
which saves the separate ``--collect_stats`` run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from asr_transfer.data.audio import SAMPLE_RATE, load_audio
from asr_transfer.data.kaldi import load_data_dir, write_data_dir
from asr_transfer.text.normalize import Normalizer
from asr_transfer.text.tokenizer import Tokenizer

#: ESPnet DefaultFrontend settings with Kaldi's 25 ms / 10 ms framing
FRONTEND = {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 80}


def ensure_mini_corpus(work: Path, corpus: Path | None) -> Path:
    """``corpus`` if given, else a mini corpus synthesised once under ``work``."""
    if corpus is not None:
        return corpus
    corpus = work / "corpus"
    if not (corpus / "corpus.json").exists():
        from asr_transfer.cli import main as cli

        cli(["synth", "--preset", "mini", "--out", str(corpus)])
    return corpus


def prepare_data(
    data_dir: str | Path,
    out: str | Path,
    lang: str = "en",
    max_utts: int | None = None,
    tokenizer: Tokenizer | None = None,
) -> dict[str, Path | str]:
    """Write ESPnet's inputs for a Kaldi data dir: ``wav.scp``, normalised ``text``, ``speech_shape``
    (samples), ``tokens.txt`` (char list, ESPnet order) and ``feats_stats.npz`` (global MVN stats).

    A folder that already holds them all (the stats are written last) is reused as it is.
    """
    from espnet2.asr.frontend.default import DefaultFrontend

    out = Path(out)
    names = ("wav.scp", "text", "speech_shape", "tokens.txt", "feats_stats.npz")
    paths: dict[str, Path | str] = {name: out / name for name in names}
    paths["speech"], paths["speech_type"] = paths["wav.scp"], "sound"
    if all((out / n).exists() for n in names):
        return paths
    data = load_data_dir(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    utts = data.utts[:max_utts]
    norm = Normalizer(lang)
    texts = {u: norm(data.text[u]) for u in utts}
    tok = tokenizer or Tokenizer.train_char(list(texts.values()), lang=lang)
    frontend = DefaultFrontend(**FRONTEND).eval()
    count, total, total_sq = 0, np.zeros(FRONTEND["n_mels"]), np.zeros(FRONTEND["n_mels"])
    shapes = []
    for u in utts:
        wave = load_audio(data.wav[u])
        shapes.append(f"{u} {len(wave)}")
        with torch.no_grad():
            feats, _ = frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        f = feats[0].double().numpy()
        count, total, total_sq = count + len(f), total + f.sum(0), total_sq + (f * f).sum(0)
    paths["wav.scp"].write_text("".join(f"{u} {Path(data.wav[u]).resolve()}\n" for u in utts))
    paths["text"].write_text("".join(f"{u} {texts[u]}\n" for u in utts), encoding="utf-8")
    paths["speech_shape"].write_text("\n".join(shapes) + "\n")
    paths["tokens.txt"].write_text("\n".join(tok.tokens) + "\n", encoding="utf-8")
    np.savez(paths["feats_stats.npz"], count=np.array(count), sum=total, sum_square=total_sq)
    return paths


def prepare_fbank_data(
    dump_dir: str | Path, cmvn: str | Path, tokenizer: Tokenizer, out: str | Path, lang: str = "en"
) -> dict[str, Path | str]:
    """ESPnet inputs over our dumped fbank (``feats.scp``, read as ``kaldi_ark``): the same features and
    CMVN statistics as our loop, so a comparison measures the two training loops only."""
    from asr_transfer.data.kaldi import read_table

    dump, out = Path(dump_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = read_table(dump / "utt2num_frames")
    norm = Normalizer(lang)
    text = read_table(dump / "text", allow_empty_value=True)
    paths = {
        "speech": dump / "feats.scp",
        "speech_type": "kaldi_ark",
        "text": out / "text",
        "speech_shape": out / "speech_shape",
        "tokens.txt": out / "tokens.txt",
        "feats_stats.npz": out / "feats_stats.npz",
    }
    paths["text"].write_text("".join(f"{u} {norm(t)}\n" for u, t in text.items()), encoding="utf-8")
    paths["speech_shape"].write_text("".join(f"{u} {n},80\n" for u, n in frames.items()))
    paths["tokens.txt"].write_text("\n".join(tokenizer.tokens) + "\n", encoding="utf-8")
    stats = np.load(cmvn)
    mean, n = stats["mean"].astype(np.float64), int(stats["count"])
    var = stats["istd"].astype(np.float64) ** -2
    np.savez(paths["feats_stats.npz"], count=np.array(n), sum=mean * n, sum_square=(var + mean**2) * n)
    return paths


def _cli(*args: object) -> None:
    subprocess.run(
        [sys.executable, "-m", "asr_transfer.cli", *map(str, args)], check=True, stdout=subprocess.DEVNULL
    )


def prepare_subset(corpus: Path, work: Path, utts: int, raw: bool) -> dict:
    """The first ``utts`` ``en_train_clean`` and 20 ``en_dev_clean`` utterances as data dirs, our fbank
    dump + CMVN (``asr-transfer features``) + char tokenizer, and ESPnet's inputs over that dump
    (``fbank``; ``raw``: also over the audio), all cached in ``work``."""
    data = {}
    for name, split, n in (("train", "en_train_clean", utts), ("dev", "en_dev_clean", 20)):
        d = load_data_dir(corpus / "data" / split)
        keep = d.utts[:n]
        data[name] = work / "data" / name
        if not (data[name] / "text").exists():
            write_data_dir(
                data[name],
                wav={u: d.wav[u] for u in keep},
                text={u: d.text[u] for u in keep},
                utt2spk={u: d.utt2spk[u] for u in keep},
            )
    dump = work / "dump"
    if not (dump / "cmvn.npz").exists():
        _cli("features", data["train"], data["dev"], "--out", dump)
        _cli("features", data["train"], "--out", dump, "--cmvn", dump / "cmvn.npz")
    if not (work / "tokenizer" / "tokens.txt").exists():
        _cli("tokenizer", data["train"], "--lang", "en", "--kind", "char", "--out", work / "tokenizer")
    tok = Tokenizer.load(work / "tokenizer")
    prep: dict = {"data": data, "dump": dump, "tokenizer": work / "tokenizer"}
    prep["fbank"] = {
        s: prepare_fbank_data(dump / s, dump / "cmvn.npz", tok, work / "espnet_fbank" / s)
        for s in ("train", "dev")
    }
    if raw:
        prep["raw"] = {}
        for s in ("train", "dev"):
            prep["raw"][s] = prepare_data(data[s], work / "espnet_raw" / s, tokenizer=tok)
    return prep


def audio_seconds(paths: dict[str, Path | str]) -> float:
    """Total audio of a prepared set, from its ``speech_shape``."""
    return sum(int(line.split()[1]) for line in paths["speech_shape"].read_text().splitlines()) / SAMPLE_RATE


def espnet_config(
    model: dict,
    stats: Path,
    *,
    batch_bins: int,
    lr: float = 2e-3,
    warmup_steps: int = 100,
    max_epoch: int = 1,
    raw_audio: bool = True,
    **extra: object,
) -> dict:
    """ESPnet2 ``asr_train`` config equivalent to the ``model:`` section of one of our YAML configs.

    ``batch_bins`` counts padded input units (``batch size * longest``, ESPnet's ``length`` sampler on the
    speech shape only): samples for raw audio (``max_batch_frames * 160`` matches our frames budget),
    frames for precomputed features (``raw_audio=False``: no frontend, ``input_size`` set).
    """
    enc = dict(model["encoder"])
    enc_type = enc.pop("type", "transformer")
    cfg: dict = {
        "frontend": "default",
        "frontend_conf": {**FRONTEND, "n_mels": int(model.get("input_dim", 80))},
        "normalize": "global_mvn",
        "normalize_conf": {"stats_file": str(stats)},
        "specaug": "specaug" if model.get("specaug") else None,
        "specaug_conf": dict(model.get("specaug") or {}),
        "encoder": enc_type,
        "encoder_conf": enc,
        "decoder": "transformer",
        "decoder_conf": dict(model.get("decoder") or {}),
        "model_conf": {
            "ctc_weight": float(model.get("ctc_weight", 0.3)),
            "lsm_weight": float(model.get("lsm_weight", 0.1)),
            "length_normalized_loss": False,
        },
        "optim": "adam",
        "optim_conf": {"lr": lr, "betas": [0.9, 0.98], "eps": 1e-9},
        "scheduler": "warmuplr",
        "scheduler_conf": {"warmup_steps": warmup_steps},
        "batch_type": "length",
        "batch_bins": batch_bins,
        "fold_length": [80000],
        "max_epoch": max_epoch,
        "grad_clip": 5.0,
        "accum_grad": 1,
        "best_model_criterion": [["valid", "acc", "max"]],
        "keep_nbest_models": 1,
        "num_att_plot": 0,
    }
    if cfg["specaug"] is None:
        del cfg["specaug_conf"]
    if not raw_audio:
        cfg.update(frontend=None, input_size=int(model.get("input_dim", 80)))
        del cfg["frontend_conf"]
    cfg.update(extra)
    return cfg


def train_command(
    cfg: dict,
    train: dict[str, Path | str],
    valid: dict[str, Path | str],
    out_dir: str | Path,
    num_workers: int = 0,
    seed: int = 1,
    ngpu: int = 0,
) -> list[str]:
    """The ``python -m espnet2.bin.asr_train`` command line (config written to ``OUT/train_config.yaml``);
    ``ngpu`` 1 trains on the GPU (``--device cuda`` of the benchmarks), 0 on the CPU.

    >>> import tempfile; out = Path(tempfile.mkdtemp())
    >>> data = {"speech": "wav.scp", "speech_type": "sound", "text": "text", "speech_shape": "shape",
    ...         "tokens.txt": "tokens.txt"}
    >>> cmd = train_command({"max_epoch": 1}, data, data, out, ngpu=1)
    >>> cmd[cmd.index("--ngpu") + 1], (out / "train_config.yaml").read_text().splitlines()
    ('1', ['max_epoch: 1'])
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    conf = out_dir / "train_config.yaml"
    conf.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return [
        sys.executable, "-m", "espnet2.bin.asr_train",
        "--config", str(conf), "--output_dir", str(out_dir), "--ngpu", str(ngpu), "--seed", str(seed),
        "--num_workers", str(num_workers), "--use_preprocessor", "true",
        "--token_type", "char", "--token_list", str(train["tokens.txt"]),
        "--train_data_path_and_name_and_type", f"{train['speech']},speech,{train['speech_type']}",
        "--train_data_path_and_name_and_type", f"{train['text']},text,text",
        "--train_shape_file", str(train["speech_shape"]),
        "--valid_data_path_and_name_and_type", f"{valid['speech']},speech,{valid['speech_type']}",
        "--valid_data_path_and_name_and_type", f"{valid['text']},text,text",
        "--valid_shape_file", str(valid["speech_shape"]),
        "--resume", "false",
    ]  # fmt: skip


def run_espnet(cmd: list[str], log: Path, threads: int = 1) -> None:
    """Run an ESPnet command with ``threads`` OpenMP/torch threads; raise with the log's tail on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd[:3])} failed (rc {rc}); log {log}:\n{tail}")
