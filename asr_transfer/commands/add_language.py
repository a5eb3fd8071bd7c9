"""``asr-transfer add-language``: a recogniser for a new language from a multilingual base model.

    check inputs (base experiment, method, train/dev dirs, dev characters) before writing anything
    target tokenizer (SentencePiece on the training text; ``tokenizer.vocab_size``, default 100:
        on a small corpus SentencePiece stops at the units the text supports)
    features of train/dev with the base experiment's frontend
    the one training loop: base weights + a fresh target head; the method chooses what trains;
        the best epochs on the target dev set are averaged
    decode + score the dev set; write EXP/add_language.yaml (the finished marker) and, for
        ``adapter``, ``metaadapter`` and ``head``, the small file EXP/<lang>.adapter (adapter + head +
        tokenizer); for ``simadapter`` and ``simadapter+`` the dev set's mean fusion weights per
        layer and fused adapter (``fusion_weights``, the report's plot)

The config is the base experiment's, then ``--config`` files, then ``--a.b value`` overrides.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import yaml

from asr_transfer.adapt import METHODS, build_method, methods_of_kind
from asr_transfer.adapt.finetune import trainable_share
from asr_transfer.config import deep_merge, load_config
from asr_transfer.data.dataset import load_dump
from asr_transfer.data.dump import dump_features
from asr_transfer.data.frontend import check_record
from asr_transfer.data.kaldi import DataError, read_table
from asr_transfer.decode.data_dir import decode_dir
from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer
from asr_transfer.model.adapters import body_fingerprint
from asr_transfer.model.asr import HybridASR
from asr_transfer.score.api import ScoreOptions, load_or_score
from asr_transfer.score.crossling import SUMMARY
from asr_transfer.text.normalize import CHARSETS, Normalizer
from asr_transfer.text.tokenizer import Tokenizer
from asr_transfer.train.loop import train as train_loop
from asr_transfer.util.atomic import write_text

ACCEPTS_OVERRIDES = True
#: target tokenizer unless the config says otherwise (the paper: 100 units for targets)
TOKENIZER_DEFAULTS = {"kind": "unigram", "vocab_size": 100}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="trained (multilingual) base experiment dir")
    parser.add_argument("--lang", required=True, help="target language code (the new head's name)")
    parser.add_argument("--train", required=True, help="Kaldi data dir of target training speech")
    parser.add_argument("--dev", required=True, help="Kaldi data dir of target dev speech (model selection)")
    parser.add_argument(
        "--method", required=True, help="head | full | adapter | metaadapter | simadapter | simadapter+"
    )
    parser.add_argument("--exp", required=True, help="output experiment dir")
    parser.add_argument("--config", action="append", default=[], help="YAML merged over the base's config")
    parser.add_argument(
        "--decode-config",
        action="append",
        default=[],
        help="decode YAML for the dev WER (default: CTC greedy)",
    )


def check_inputs(base: Path, lang: str, train: Path, dev: Path, method: str) -> dict:
    """Everything that can be wrong before any work: a clear error naming the path; returns base config."""
    if method not in methods_of_kind("new_language"):
        known = ", ".join(methods_of_kind("new_language"))
        what = "unknown" if method not in METHODS else f"a {METHODS[method].kind} method"
        raise ValueError(f"--method {method!r}: {what}; choose from {known} (the methods for a new language)")
    for f in (base / "config.yaml", base / "model.pt"):
        if not f.is_file():
            raise FileNotFoundError(f"--base {base}: {f.name} missing: not a finished experiment")
    if (base / "tokenizers" / lang).exists():
        raise ValueError(f"--base {base}: already has a {lang} head ({base / 'tokenizers' / lang})")
    for name, d in (("--train", train), ("--dev", dev)):
        for f in ("wav.scp", "text"):
            if not (d / f).is_file():
                raise FileNotFoundError(f"{name} {d}: {d / f} missing (a Kaldi data dir with transcripts)")
    return load_config([base / "config.yaml"])


def target_tokenizer(train: Path, dev: Path, lang: str, cfg: dict) -> Tokenizer:
    """Train the target tokenizer on ``train/text``; dev characters it cannot cover are an error.

    The error names the file, line, utterance and characters: a counted ``<unk>`` would let a
    dev WER silently include text the model can never produce. ``tokenizer.kind: char`` adds the
    language's whole alphabet (:data:`~asr_transfer.text.normalize.CHARSETS`) to the vocabulary.
    """
    opts = {**TOKENIZER_DEFAULTS, **(cfg.get("tokenizer") or {})}
    norm = Normalizer(lang)
    texts = [norm(t) for t in read_table(train / "text").values()]
    if opts["kind"] == "char":
        tok = Tokenizer.train_char(texts, lang, CHARSETS.get(lang, ""))
    else:
        # identity: the texts are normalised already, and NFKC tables would be most of the adapter file
        tok = Tokenizer.train_sentencepiece(texts, lang, int(opts["vocab_size"]), opts["kind"], "identity")
    for path in (train / "text", dev / "text"):
        for lineno, (utt, raw) in enumerate(read_table(path, allow_empty_value=True).items(), start=1):
            # per character: SentencePiece reports a whole word around an unknown letter
            unknown = sorted({ch for ch in norm(raw) if ch != " " and tok.unknown_chars(ch)})
            if unknown:
                raise DataError(
                    f"{path}:{lineno}: utterance '{utt}': characters {' '.join(unknown)} are not in the "
                    f"{lang} vocabulary built from {train / 'text'} (add them to the training text, or "
                    f"leave the utterance out)"
                )
    return tok


def build_config(base_cfg: dict, args: argparse.Namespace, exp: Path, dumps: dict[str, Path]) -> dict:
    """The experiment's config: the base's model and frontend, the target data and the method."""
    cfg = copy.deepcopy(base_cfg)
    cfg.pop("adapt", None)
    cfg["train"] = {k: v for k, v in cfg.get("train", {}).items() if k not in ("init", "init_espnet")}
    cfg = deep_merge(cfg, load_config(args.config, args.overrides))
    base = Path(args.base)
    toks = {lang: str(base / "tokenizers" / lang) for lang in sorted(base_cfg["data"]["tokenizers"])}
    cfg["data"] = {
        **cfg.get("data", {}),
        "tokenizers": {**toks, args.lang: str(exp / "tokenizers" / args.lang)},
        "train": [{"dump": str(dumps["train"]), "lang": args.lang}],
        "dev": [{"dump": str(dumps["dev"]), "lang": args.lang}],
        "cmvn": None,  # the base model's own CMVN buffers come with train.init
    }
    cfg["data"].pop("lang_temperature", None)
    cfg["train"]["init"] = str(base / "model.pt")
    cfg["adapt"] = {**(cfg.get("adapt") or {}), "method": args.method, "lang": args.lang}
    return cfg


def run(args: argparse.Namespace) -> int:
    exp = Path(args.exp)
    if (exp / SUMMARY).is_file():
        print(f"add-language: {exp / SUMMARY} exists, skipped")
        print((exp / SUMMARY).read_text(), end="")
        return 0
    cfg, tok, dumps = prepare(args)
    train_loop(cfg, exp)
    # the finished experiment, rebuilt from its saved config exactly as decoding will
    # CTC greedy unless told otherwise: the mini recipe's choice on dev data, and fast on a CPU
    dcfg = (
        DecodeConfig.from_config(args.decode_config, []) if args.decode_config else DecodeConfig("ctc_greedy")
    )
    rec = Recognizer.from_exp(exp, decode=dcfg)
    summary = summarise(args, cfg, rec.model, tok, dumps)
    dev = Path(args.dev)
    decode_dir(rec, dev, exp / f"decode_{dev.name}", args.lang)
    result, _ = load_or_score(exp / f"decode_{dev.name}", ScoreOptions(normalizer=Normalizer(args.lang)))
    summary["dev_wer"] = result.total.wer
    write_text(exp / SUMMARY, yaml.safe_dump(summary, sort_keys=False))
    trained = f"{summary['trainable_params']:,} of {summary['total_params']:,} parameters trained"
    adapter_file = (
        f", adapter file {summary['adapter_file']} ({100 * summary['adapter_file_share']:.2f} % of model.pt)"
        if "adapter_file" in summary
        else ""
    )
    print(
        f"add-language: {args.lang} by {args.method}: dev WER {summary['dev_wer']:.2f} %, "
        f"{trained} ({100 * summary['trainable_share']:.2f} %){adapter_file}"
    )
    return 0


def prepare(args: argparse.Namespace) -> tuple[dict, Tokenizer, dict[str, Path]]:
    """Check the inputs, train the target tokenizer, dump features; return the training config.

    Records the base model's fingerprint in the experiment: a rerun resumes an unfinished run only
    from the same base (the path may hold another model now).
    """
    base, exp = Path(args.base), Path(args.exp)
    train, dev = Path(args.train), Path(args.dev)
    base_cfg = check_inputs(base, args.lang, train, dev, args.method)
    extra = load_config(args.config, args.overrides)
    tok = target_tokenizer(train, dev, args.lang, deep_merge(base_cfg, extra))
    tok.save(exp / "tokenizers" / args.lang)
    features = base_cfg.get("features")
    dumps = {}
    for split, d in (("train", train), ("dev", dev)):
        out = exp / "dump" / d.name
        if (out / "feats.scp").is_file():
            check_record(out, features)
        else:
            dump_features(d, out, features=features)
        dumps[split] = out
    cfg = build_config(base_cfg, args, exp, dumps)
    # a rerun resumes an unfinished run: only from the same base (the path may hold another model now)
    base_fp = body_fingerprint(torch.load(base / "model.pt", map_location="cpu", weights_only=True)["model"])
    record = exp / "base_fingerprint"
    if record.is_file() and record.read_text().strip() != base_fp:
        raise RuntimeError(
            f"{record}: {exp} was started from another base model than {base / 'model.pt'} "
            f"({record.read_text().strip()} != {base_fp}); remove {exp} to start again"
        )
    record.write_text(base_fp + "\n")
    return cfg, tok, dumps


def summarise(
    args: argparse.Namespace, cfg: dict, model: HybridASR, tok: Tokenizer, dumps: dict[str, Path]
) -> dict:
    """``add_language.yaml`` but the dev WER: sizes, the adapter file, fusion weights (what applies)."""
    exp, method = Path(args.exp), METHODS[args.method]
    build_method(cfg["adapt"]).setup(model, {args.lang: tok})
    trainable, total = trainable_share(model)
    summary: dict = {
        "lang": args.lang,
        "method": args.method,
        "base": str(Path(args.base)),
        "vocab_size": tok.vocab_size,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_share": trainable / total,
        "model_file_bytes": (exp / "model.pt").stat().st_size,
    }
    if method.writes_adapter_file:
        path = write_adapter_file(args, model, tok)
        summary["adapter_file"] = str(path)
        summary["adapter_file_bytes"] = path.stat().st_size
        summary["adapter_file_share"] = path.stat().st_size / summary["model_file_bytes"]
    if method.measures_fusion:
        from asr_transfer.adapt.simadapter import measure_fusion_weights

        utts = load_dump(dumps["dev"], args.lang, tok, 100000)
        summary["fusion_weights"] = measure_fusion_weights(model, utts)
    return summary


def write_adapter_file(args: argparse.Namespace, model: HybridASR, tok: Tokenizer) -> Path:
    """``EXP/<lang>.adapter``: the target's adapter (if the method trains one), head and tokenizer."""
    exp, base = Path(args.exp), Path(args.base)
    base_fp = (exp / "base_fingerprint").read_text().strip()
    if model.fingerprint() != base_fp:
        raise RuntimeError(
            f"{exp / 'model.pt'}: its shared body differs from {base / 'model.pt'}'s: trained on another "
            f"base (remove {exp} to start again), or the body trained during {args.method}"
        )
    path = exp / f"{args.lang}.adapter"
    tok_data = {"tokens": tok.tokens, "kind": tok.kind, "lang": tok.lang, "sp_model": tok.sp_model}
    name = args.lang if METHODS[args.method].trains_target_adapter else None
    model.save_adapter(name, path, lang=args.lang, extra={"tokenizer": tok_data})
    return path
