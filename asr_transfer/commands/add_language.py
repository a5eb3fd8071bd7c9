"""``asr-transfer add-language``: a recogniser for a new language from a multilingual base model.

    check inputs (base experiment, method, train/dev dirs, dev characters) before writing anything
    target tokenizer (SentencePiece on the training text; ``tokenizer.vocab_size``, default 100:
        on a small corpus SentencePiece stops at the units the text supports)
    features of train/dev with the base experiment's frontend
    the one training loop: base weights + a fresh target head; the method chooses what trains;
        a fine-tuning schedule (:class:`FineTuneDefaults`): the dev loss decides when it stops
        (but for ``head`` and ``full``, which train every epoch of a cosine schedule),
        the best epochs on the target dev set are averaged
    the objective and the dev loss weigh CTC as the decoding does (``adapt.ctc_share``: CTC alone
        for CTC greedy, the default; the beam's CTC weight for a joint beam), and EXP/decode.yaml
        records that decoding, so ``decode`` and ``transcribe`` use it by default
    decode + score the dev set; write EXP/add_language.yaml (the finished marker) and, for
        ``adapter``, ``metaadapter`` and ``head``, the small file EXP/<lang>.adapter (adapter + head +
        tokenizer); for ``simadapter`` and ``simadapter+`` the dev set's mean fusion weights per
        layer and fused adapter (``fusion_weights``, the report's plot); warnings when the run looks
        unfinished or unusable, as the last lines printed and under ``warnings`` in the yaml

The config is the base experiment's model, frontend and tokenizers with the fine-tuning defaults
as ``train:`` (the base's own ``train:`` section with ``--inherit-train``), then ``--config``
files, then ``--a.b value`` overrides. The defaults' rules themselves (per-method peak lr, batch
fraction, which methods train a fixed length...) are changed by a config's ``add_language:``
section (:meth:`FineTuneDefaults.from_config`), e.g. ``conf/train/xling_adapt_small.yaml`` for a
larger base.
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from asr_transfer.adapt import METHODS, build_method, methods_of_kind
from asr_transfer.adapt.finetune import TransferOptions, trainable_share
from asr_transfer.config import deep_merge, load_config
from asr_transfer.data.dataset import load_dump
from asr_transfer.data.dump import dump_features
from asr_transfer.data.frontend import check_record
from asr_transfer.data.kaldi import DataError, read_table
from asr_transfer.decode.data_dir import decode_dir
from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer
from asr_transfer.model.adapters import body_fingerprint
from asr_transfer.model.asr import HybridASR, build_model
from asr_transfer.score.api import ScoreOptions, load_or_score
from asr_transfer.score.crossling import SUMMARY
from asr_transfer.text.normalize import CHARSETS, Normalizer
from asr_transfer.text.tokenizer import Tokenizer
from asr_transfer.train.checkpoint import load_model_state
from asr_transfer.train.init import DECODING_FILE, ctc_share_of
from asr_transfer.train.loop import Trainer
from asr_transfer.util.atomic import write_text
from asr_transfer.util.errors import InputError
from asr_transfer.util.options import parse_options

ACCEPTS_OVERRIDES = True
#: target tokenizer unless the config says otherwise (the paper: 100 units for targets)
TOKENIZER_DEFAULTS = {"kind": "unigram", "vocab_size": 100}
#: keys of the base's ``train:`` section that say where it ran, not how: kept without --inherit-train
ENVIRONMENT_KEYS = ("device", "num_threads", "num_workers", "bf16", "compile", "fused_optimizer")
#: the config section that changes :class:`FineTuneDefaults` (``--add_language.KEY VALUE``)
SECTION = "add_language"
#: the fields of :class:`FineTuneDefaults` that are a value per method
PER_METHOD = ("lr", "steps_per_epoch")


@dataclass(frozen=True)
class FineTuneDefaults:
    """What ``add-language`` trains with unless a ``--config`` or an override says otherwise.

    A fine-tuning schedule for a trained body and a fresh head, not the base's training schedule:
    the values are those the ``xling`` sweep chose (docs/benchmarks.md, 150 training utterances),
    turned into rules where they depend on the amount of data.

    Attributes:
        lr: peak learning rate per method (the ``xling`` sweep on the ro dev set); every
            new-language method has one.
        steps_per_epoch: per method, the batch is this fraction of the training frames, so every
            target gets about this many optimiser steps an epoch (Head and Full-FT 24: better than 16
            on the mean dev WER of the ``xling`` targets) ...
        max_batch_frames: ... but never more than this (nor less than the longest utterance).
        warmup_steps: linear warm-up, then ...
        half_life_epochs: ... the learning rate halves every this many epochs (a decay that does not
            depend on the maximum: a run the dev set stops early has decayed as its length says) ...
        final_ratio: ... down to this share of the peak.
        max_epochs: the most epochs (raised to ``2 x min_epochs`` for a very small target).
        patience: stop after this many epochs without a new best dev loss ...
        min_steps: ... but not before this many optimiser steps.
        fixed_length: methods that instead train all ``max_epochs`` epochs, the rate falling from
            the peak to ``final_ratio`` of it on a cosine over the run, with no patience: Full-FT and
            Head, whose dev loss on a small dev set wavers while their dev WER still falls (issue 21:
            cs Full-FT stopped at epoch 8 with a 45 % dev WER, 27 % after 20 cosine epochs), and which a
            halving every ``half_life_epochs`` left short of learning rate (ar). 12, 16 and 20 epochs
            were tried; 20 was best on the dev sets (docs/benchmarks.md).
        keep_best: the best epochs on the dev set, averaged into the model.
        adapter_share: ``adapter``'s bottleneck is the largest multiple of 8 (else the largest
            size) with which the adapter and the target head are at most this share of the
            model's parameters.
        still_falling: a run that ends at ``max_epochs`` with its dev loss falling by this much
            (relative) an epoch over its last 3 epochs is reported as unfinished.
        poor_wer: a dev WER (%) above this is reported as unusable.

    Example:
        >>> d = FineTuneDefaults()
        >>> t = d.train_section("adapter", [200] * 150)     # 150 utterances of 2 s
        >>> t["lr"], t["max_batch_frames"], t["epochs"], t["min_epochs"], t["patience"]
        (0.01, 1875, 20, 7, 3)
        >>> t = d.train_section("full", [200] * 150)
        >>> t["lr"], t["max_batch_frames"], t["epochs"], t["patience"], t["scheduler"]["type"]
        (0.005, 1250, 20, None, 'warmup_decay')
        >>> t = d.train_section("adapter", [200] * 3)  # 3 utterances: 1 a step, 34 epochs for 100 steps
        >>> t["max_batch_frames"], t["min_epochs"], t["epochs"]
        (200, 34, 68)
    """

    lr: dict[str, float] = field(
        default_factory=lambda: {
            "head": 1e-2,
            "full": 5e-3,
            "adapter": 1e-2,
            "metaadapter": 1e-2,
            "simadapter": 1e-2,
            "simadapter+": 1e-2,
        }
    )
    steps_per_epoch: dict[str, int] = field(
        default_factory=lambda: {
            "head": 24,
            "full": 24,
            "adapter": 16,
            "metaadapter": 16,
            "simadapter": 16,
            "simadapter+": 16,
        }
    )
    max_batch_frames: int = 20000
    warmup_steps: int = 20
    half_life_epochs: int = 3
    final_ratio: float = 0.05
    max_epochs: int = 20
    patience: int = 3
    min_steps: int = 100
    fixed_length: tuple[str, ...] = ("head", "full")
    keep_best: int = 3
    adapter_share: float = 0.03
    still_falling: float = 0.02
    poor_wer: float = 80.0

    @classmethod
    def from_config(cls, section: dict | None) -> FineTuneDefaults:
        """The defaults with a config's ``add_language:`` section over them.

        ``lr`` and ``steps_per_epoch`` change only the methods they name; ``fixed_length`` is the
        whole list. A key that is not a field, or a method that is not a new-language method, is an
        error naming it.

        Example:
            >>> d = FineTuneDefaults.from_config({"lr": {"adapter": 0.02},
            ...                                   "fixed_length": ["head", "adapter"]})
            >>> d.lr["adapter"], d.lr["full"], d.fixed_length
            (0.02, 0.005, ('head', 'adapter'))
            >>> FineTuneDefaults.from_config({"lr": {"adaptr": 0.02}})
            Traceback (most recent call last):
            ...
            ValueError: add_language.lr.adaptr: not a new-language method; choose from head, full, ...
        """
        given = dict(section or {})
        base = cls()
        methods = list(base.lr)
        for key in PER_METHOD:
            if key in given:
                table = given[key]
                if not isinstance(table, dict):
                    raise ValueError(f"{SECTION}.{key}: a mapping of method to value, got {table!r}")
                check_methods(table, f"{SECTION}.{key}", methods)
                given[key] = {**getattr(base, key), **table}
        if "fixed_length" in given:
            fixed = given["fixed_length"] or []
            if not isinstance(fixed, list | tuple):
                raise ValueError(f"{SECTION}.fixed_length: a list of methods, got {fixed!r}")
            check_methods(fixed, f"{SECTION}.fixed_length", methods)
            given["fixed_length"] = tuple(fixed)
        return parse_options(cls, given, SECTION)

    def train_section(self, method: str, frames: list[int]) -> dict:
        """The ``train:`` section for ``method`` on training utterances of ``frames`` input frames."""
        batch = sum(frames) // self.steps_per_epoch[method]
        batch = max(min(batch, self.max_batch_frames), max(frames))
        steps = math.ceil(sum(frames) / batch)  # at least: padding makes a few more
        min_epochs = math.ceil(self.min_steps / steps)
        common = {"seed": 1, "lr": self.lr[method], "max_batch_frames": batch, "accum_grad": 1,
                  "grad_clip": 5.0}  # fmt: skip
        epochs = max(self.max_epochs, 2 * min_epochs)
        if method in self.fixed_length:
            # no patience: their dev loss on a few dozen utterances wavers while the dev WER still falls
            return {
                **common,
                "scheduler": {
                    "type": "warmup_decay",
                    "warmup_steps": self.warmup_steps,
                    "final_ratio": self.final_ratio,
                },
                "epochs": epochs,
                "min_epochs": 0,
                "patience": None,
                "keep_best": self.keep_best,
            }
        return {
            **common,
            "scheduler": {
                "type": "warmup_exp",
                "warmup_steps": self.warmup_steps,
                "half_life_steps": self.half_life_epochs * steps,
                "final_ratio": self.final_ratio,
            },
            "epochs": epochs,
            "min_epochs": min_epochs,
            "patience": self.patience,
            "keep_best": self.keep_best,
        }

    def help(self) -> str:
        """The defaults in words (``--help``)."""
        lrs = ", ".join(f"{m} {v:g}" for m, v in self.lr.items())
        fixed = " and ".join(self.fixed_length)
        per_epoch = ", ".join(f"{m} {v}" for m, v in self.steps_per_epoch.items())
        return (
            "defaults without --config (a fine-tuning schedule, not the base's): peak lr per method "
            f"({lrs}); batch = 1/N of the training frames for about N steps an epoch ({per_epoch}), "
            f"at most {self.max_batch_frames:,} frames, at least "
            f"the longest utterance; warm-up {self.warmup_steps} steps, "
            f"then the lr halves every {self.half_life_epochs} epochs, down to {self.final_ratio:g} x the "
            f"peak; at most "
            f"{self.max_epochs} epochs (more on a target too small for {self.min_steps} steps in "
            f"{self.max_epochs // 2}), stopping after {self.patience} epochs without a better dev loss "
            f"but not before {self.min_steps} steps; {fixed} instead train every epoch, the rate falling "
            f"on a cosine over them to {self.final_ratio:g} x the peak, no stop on the dev loss; the "
            f"best {self.keep_best} epochs on dev averaged. "
            f"adapter: bottleneck = the largest multiple of 8 with which adapter + target head train "
            f"at most {100 * self.adapter_share:g} % of the model's parameters (metaadapter: the "
            f"--adapt.meta experiment's size); in the encoder alone when CTC alone is trained (CTC "
            f"greedy decoding), since the decoder then gets no gradient. Warnings (last lines, and "
            f"add_language.yaml) when the "
            f"run ends at the last epoch with the dev loss still falling by {100 * self.still_falling:g} "
            f"% or more an epoch, or the dev WER is above {self.poor_wer:g} %. Any of it: --train.KEY "
            f"VALUE, --adapt.bottleneck N, or a --config; the rules themselves: --{SECTION}.KEY VALUE "
            f"or a config's {SECTION}: section (e.g. --{SECTION}.lr.adapter 0.02, "
            f"--{SECTION}.fixed_length '[head, full, adapter]'; conf/train/xling_adapt_small.yaml)."
        )


DEFAULTS = FineTuneDefaults()


def check_methods(names: dict | list | tuple, where: str, methods: list[str]) -> None:
    """An error naming the first of ``names`` that is not one of ``methods``."""
    unknown = [m for m in names if m not in methods]
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: not a new-language method; choose from {', '.join(methods)}")


def defaults_of(args: argparse.Namespace) -> FineTuneDefaults:
    """:data:`DEFAULTS` with the ``add_language:`` section of the run's configs and overrides over them."""
    return FineTuneDefaults.from_config(load_config(args.config, args.overrides).get(SECTION))


def decoding_of(args: argparse.Namespace) -> DecodeConfig:
    """The experiment's decoding: ``--decode-config``, else CTC greedy (the mini recipe's choice on dev
    data, and fast on a CPU). It decodes the dev set, decides the CTC share of the objective and of the
    dev loss, and is recorded in the experiment for later decodes."""
    if args.decode_config:
        return DecodeConfig.from_config(args.decode_config, [])
    return DecodeConfig("ctc_greedy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = DEFAULTS.help()
    parser.add_argument("--base", required=True, help="trained (multilingual) base experiment dir")
    parser.add_argument("--lang", required=True, help="target language code (the new head's name)")
    parser.add_argument("--train", required=True, help="Kaldi data dir of target training speech")
    parser.add_argument("--dev", required=True, help="Kaldi data dir of target dev speech (model selection)")
    parser.add_argument(
        "--method", required=True, help="head | full | adapter | metaadapter | simadapter | simadapter+"
    )
    parser.add_argument("--exp", required=True, help="output experiment dir")
    parser.add_argument("--config", action="append", default=[], help="YAML merged over the defaults")
    parser.add_argument(
        "--inherit-train",
        action="store_true",
        help="start from the base's own train: section (its schedule) instead of the fine-tuning defaults",
    )
    parser.add_argument(
        "--decode-config",
        action="append",
        default=[],
        help="decode YAML of the experiment (default: CTC greedy): the dev WER, the CTC share of the "
        "objective and of the dev loss (unless adapt.ctc_share is given), and EXP/decode.yaml",
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


def build_config(
    base_cfg: dict, args: argparse.Namespace, exp: Path, dumps: dict[str, Path], tok: Tokenizer
) -> dict:
    """The experiment's config: the base's model and frontend, the target data and the method.

    ``train:`` is :func:`defaults_of`'s fine-tuning schedule for the method and the amount of training
    data (with the base's device and thread settings), or the base's own with ``--inherit-train``;
    ``adapter``'s bottleneck follows :func:`adapter_bottleneck` unless it is given, and it sits in the
    encoder alone (unless ``adapt.where`` is given) when the objective is CTC alone.
    """
    extra = load_config(args.config, args.overrides)
    defaults = FineTuneDefaults.from_config(extra.get(SECTION))
    cfg = copy.deepcopy(base_cfg)
    cfg.pop("adapt", None)
    base_train = cfg.get("train", {})
    if args.inherit_train:
        cfg["train"] = {k: v for k, v in base_train.items() if k not in ("init", "init_espnet")}
    else:
        frames = [int(n) for n in read_table(dumps["train"] / "utt2num_frames").values()]
        cfg["train"] = {
            **{k: base_train[k] for k in ENVIRONMENT_KEYS if k in base_train},
            **defaults.train_section(args.method, frames),
        }
    ours = cfg["train"].get("scheduler") or {}
    given = (extra.get("train") or {}).get("scheduler") or {}
    if given.get("type", ours.get("type")) != ours.get("type"):
        cfg["train"].pop("scheduler")  # another kind of schedule: none of our keys apply to it
    cfg = deep_merge(cfg, extra)
    cfg.pop(SECTION, None)  # add-language's own rules, used above: not a section of the training config
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
    # train and keep the epochs for what is decoded: with the base's CTC weight (0.3) the attention
    # loss, which CTC greedy never uses, would be 70 % of the objective and of the dev loss that
    # chooses the epochs (on 25 utterances it kept an adapter's first epochs while its CTC loss fell)
    cfg["adapt"].setdefault("ctc_share", ctc_share_of(asdict(decoding_of(args))))
    given = extra.get("adapt") or {}
    if args.method == "adapter":
        if "where" not in given and cfg["adapt"]["ctc_share"] == 1:
            # CTC alone puts no gradient into the decoder: adapters there would never move, yet count
            # in the parameter budget and the adapter file; the encoder gets that budget instead
            cfg["adapt"]["where"] = ["encoder"]
        if "bottleneck" not in given:
            vocab = {lang: Tokenizer.load(folder).vocab_size for lang, folder in toks.items()}
            where = cfg["adapt"].get("where", list(TransferOptions().where))
            cfg["adapt"]["bottleneck"] = adapter_bottleneck(
                cfg["model"], {**vocab, args.lang: tok.vocab_size}, args.lang, where, defaults.adapter_share
            )
    return cfg


def adapter_bottleneck(
    model_cfg: dict, vocab_sizes: dict[str, int], lang: str, where: list[str], share: float
) -> int:
    """The largest multiple of 8 (else the largest size, at least 1) with which an adapter set in
    ``where`` and the head of ``lang`` are at most ``share`` of the adapted model's parameters.

    The adapter's size is linear in its bottleneck; two probe sizes give the line.

    Example (a d_model 16 model; 5 % leaves room for less than 8):
        >>> cfg = {"encoder": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2},
        ...        "decoder": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1}}
        >>> where = ["encoder", "decoder"]
        >>> [adapter_bottleneck(cfg, {"en": 30, "ro": 5}, "ro", where, s) for s in (0.05, 0.15)]
        [5, 24]
    """
    model = build_model(model_cfg, vocab_sizes)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.heads[lang].parameters())
    sizes = []
    for bottleneck in (1, 2):
        model.add_adapter("_probe", bottleneck=bottleneck, where=where, enabled=False)
        sizes.append(sum(p.numel() for p in model.adapter_parameters("_probe")))
        model.remove_adapter("_probe")
    slope = sizes[1] - sizes[0]
    fixed = sizes[0] - slope
    # (head + fixed + slope b) <= share (total + fixed + slope b)
    largest = math.floor((share * (total + fixed) - head - fixed) / (slope * (1 - share)))
    return largest // 8 * 8 if largest >= 8 else max(largest, 1)


def run(args: argparse.Namespace) -> int:
    exp = Path(args.exp)
    if (exp / SUMMARY).is_file():
        print(f"add-language: {exp / SUMMARY} exists, skipped")
        print((exp / SUMMARY).read_text(), end="")
        return 0
    cfg, tok, dumps = prepare(args)
    trainer = Trainer(cfg, exp)
    trainer.run()
    # the finished experiment, rebuilt from its saved config exactly as decoding will
    dcfg = decoding_of(args)
    write_text(exp / DECODING_FILE, yaml.safe_dump(asdict(dcfg), sort_keys=False))
    rec = Recognizer.from_exp(exp, decode=dcfg)
    summary = summarise(args, cfg, rec.model, tok, dumps)
    dev = Path(args.dev)
    decode_dir(rec, dev, exp / f"decode_{dev.name}", args.lang)
    result, _ = load_or_score(exp / f"decode_{dev.name}", ScoreOptions(normalizer=Normalizer(args.lang)))
    summary["dev_wer"] = result.total.wer
    summary["training"] = training_record(trainer)
    summary["warnings"] = diagnose(summary, defaults_of(args))
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
    for warning in summary["warnings"]:
        print(f"add-language: WARNING: {warning}")
    return 0


def training_record(trainer: Trainer) -> dict:
    """How the run went: its length, why it stopped, the epochs averaged, every epoch's dev loss."""
    st, opts = trainer.state, trainer.opts
    epochs = len(st.dev_losses)
    return {
        "epochs": epochs,
        "max_epochs": opts.epochs,
        "stopped": "patience" if epochs < opts.epochs else "max_epochs",
        "steps": st.step,
        "lr": opts.lr,
        "max_batch_frames": opts.max_batch_frames,
        "averaged_epochs": sorted(e for _, e in st.best),
        "dev_losses": [round(loss, 4) for loss in st.dev_losses],
    }


def diagnose(summary: dict, defaults: FineTuneDefaults = DEFAULTS) -> list[str]:
    """Warnings about a finished run (its ``add_language.yaml``): it stopped while the dev loss still
    fell fast, its dev WER is useless, or an adapter method trains more than its share.

    "Still falling fast": the run used its last epoch and the dev loss fell by at least
    ``defaults.still_falling`` (relative) an epoch over its last (up to) 3 epochs.

    Example:
        >>> run = {"stopped": "max_epochs", "dev_losses": [40.0, 30.0, 24.0, 20.0]}
        >>> s = {"method": "adapter", "trainable_share": 0.073, "dev_wer": 86.63, "training": run}
        >>> [w.split(":")[0] for w in diagnose(s)]  # doctest: +NORMALIZE_WHITESPACE
        ['the dev loss was still falling fast at the last epoch', 'dev WER 86.63 % is above 80 %',
         'adapter trains 7.30 % of the parameters, more than 3 %']
        >>> diagnose({**s, "trainable_share": 0.029, "dev_wer": 27.7,
        ...           "training": {**run, "stopped": "patience"}})
        []
    """
    out = []
    losses, training = summary["training"]["dev_losses"], summary["training"]
    span = min(3, len(losses) - 1)
    if training["stopped"] == "max_epochs" and span >= 1:
        first, last = losses[-1 - span], losses[-1]
        fall = (first - last) / abs(first) / span
        if fall >= defaults.still_falling:
            out.append(
                f"the dev loss was still falling fast at the last epoch: {first:.3f} -> {last:.3f} over the "
                f"last {span} epochs ({100 * fall:.1f} % an epoch); the model is likely under-trained: give "
                f"it more epochs (--train.epochs) or a higher peak lr (--train.lr)"
            )
    if summary["dev_wer"] > defaults.poor_wer:
        out.append(
            f"dev WER {summary['dev_wer']:.2f} % is above {defaults.poor_wer:g} %: the model is not usable "
            f"as it is; check the training data, then the schedule (add-language --help lists the defaults)"
        )
    share = summary["trainable_share"]
    if summary["method"] in ("adapter", "metaadapter") and share > defaults.adapter_share:
        out.append(
            f"{summary['method']} trains {100 * share:.2f} % of the parameters, more than "
            f"{100 * defaults.adapter_share:g} %: the target head alone is too large a share of this model "
            f"(adapter), or the --adapt.meta experiment's adapter is (metaadapter)"
        )
    return out


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
    cfg = build_config(base_cfg, args, exp, dumps, tok)
    # a rerun resumes an unfinished run: only from the same base (the path may hold another model now)
    base_fp = body_fingerprint(load_model_state(base / "model.pt"))
    record = exp / "base_fingerprint"
    if record.is_file() and record.read_text().strip() != base_fp:
        raise InputError(
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
        raise InputError(
            f"{exp / 'model.pt'}: its shared body differs from {base / 'model.pt'}'s: trained on another "
            f"base (remove {exp} to start again), or the body trained during {args.method}"
        )
    path = exp / f"{args.lang}.adapter"
    tok_data = {"tokens": tok.tokens, "kind": tok.kind, "lang": tok.lang, "sp_model": tok.sp_model}
    name = args.lang if METHODS[args.method].trains_target_adapter else None
    model.save_adapter(name, path, lang=args.lang, extra={"tokenizer": tok_data})
    return path
