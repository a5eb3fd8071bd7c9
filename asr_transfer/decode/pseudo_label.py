"""``asr-transfer pseudo-label``: label target audio with the source model, keep the confident part.

Step 2 of the unsupervised adaptation pipeline (docs/methods.md, section 2.1). The target data dir
is decoded once and its most confident fraction ``--keep`` (default 0.7, as the paper) becomes a new
Kaldi data dir whose ``text`` holds the pseudo transcripts::

    asr-transfer pseudo-label --exp exp/tiny_clean --data data/en_train_phone \\
        --out exp/tiny_clean/pseudo_en_train_phone --config conf/decode/beam_fast.yaml [--keep 0.7]

Written to ``OUT/``: the kept utterances as a data dir (``wav.scp``, ``text``, ``utt2spk``,
``spk2utt`` and whichever of ``utt2lang``/``utt2domain``/``utt2dur`` the target has);
``confidence`` and ``hyp_all`` for every decoded utterance; ``pseudo_label.yaml`` saying how it
was made; and ``OUT/<name>_unlabelled/``, a data dir without ``text`` of the utterances not kept,
which the methods whose terms need no labels (MMD, ADV, CMatch with ``ctc_pred``) still use
(``--data.target_unlabelled``). With ``--previous DIR`` (the same audio's pseudo-labels from the
previous round of iterative pseudo-labelling) the summary also says how much re-labelling changed
the labels: the word edit rate of this round's hypotheses against that round's, over every decoded
utterance, read from no transcript. ``<unk>`` is dropped from the hypotheses. Confidences are
length-normalised (:func:`asr_transfer.decode.search.decode_batch_scored`): the reference ranks
raw beam scores, which favours short utterances. Ties are broken by utterance id and empty
hypotheses are never kept, so the selection is deterministic and no kept label is empty.

The target's own ``text`` is never opened (:func:`asr_transfer.data.kaldi.load_data_dir` with
``skip_text``): unsupervised adaptation must not see target transcripts. The result is built in
``OUT.tmp`` and renamed, so a killed run never leaves an ``OUT`` that looks finished; a finished
``OUT`` is skipped on rerun unless ``--overwrite``. Decode options are overridable as in
``asr-transfer decode`` (``--beam_size 4``).
"""

from __future__ import annotations

import argparse
import math
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from asr_transfer.data.audio import audio_info, load_audio
from asr_transfer.data.kaldi import (
    DataDir,
    DataError,
    load_data_dir,
    read_table,
    write_data_dir,
    write_table,
)
from asr_transfer.decode.search import DecodeConfig
from asr_transfer.decode.transcribe import Recognizer
from asr_transfer.score.scoring import score_texts
from asr_transfer.text.tokenizer import UNK

ACCEPTS_OVERRIDES = True
#: written last into the temporary dir: its presence in ``OUT`` marks a finished run
SUMMARY = "pseudo_label.yaml"
#: ``OUT/<OUT's name><UNLABELLED>``: a data dir (no ``text``) of the utterances not kept
UNLABELLED = "_unlabelled"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exp", required=True, type=Path, help="source experiment dir")
    parser.add_argument(
        "--data", required=True, type=Path, help="target Kaldi data dir (its text is not read)"
    )
    parser.add_argument("--out", required=True, type=Path, help="pseudo-labelled data dir to write")
    parser.add_argument("--keep", type=float, default=0.7, help="most confident fraction kept (0, 1]")
    parser.add_argument("--config", action="append", default=[], help="decode YAML (conf/decode/*.yaml)")
    parser.add_argument("--checkpoint", default="model.pt", help="file in EXP (default: averaged model)")
    parser.add_argument("--lang", help="language head (default: utt2lang, or the only head)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--previous",
        type=Path,
        help="the previous round's pseudo-label dir of the same audio: report how much the labels changed",
    )


def read_hyp_all(label_dir: Path) -> dict[str, str]:
    """The hypotheses of every utterance a finished pseudo-label dir decoded (its ``hyp_all``)."""
    path = label_dir / "hyp_all"
    if not (label_dir / SUMMARY).is_file() or not path.is_file():
        raise FileNotFoundError(f"{label_dir}: not a finished pseudo-label dir (no {SUMMARY} or hyp_all)")
    return read_table(path, allow_empty_value=True)  # an empty hypothesis is a label too


def label_change(previous: dict[str, str], hyps: dict[str, str]) -> dict:
    """How much a round of re-labelling changed the labels of the same utterances.

    The scorer's WER and sentence error rate with the previous round as the reference:
    ``word_change``, word edits from the previous hypotheses to the new ones, % of the previous
    words; ``utts_changed``, % of utterances whose hypothesis differs. Both rounds label the same
    utterances (:func:`write_pseudo_labels` checks it before decoding).

    Example:
        >>> label_change({"a": "one two", "b": "three"}, {"a": "one", "b": "three"})
        {'word_change': 33.33, 'utts_changed': 50.0, 'utts': 2}
    """
    total = score_texts(previous, hyps).total
    return {"word_change": round(total.wer, 2), "utts_changed": round(total.ser, 2), "utts": len(hyps)}


def select(hyps: dict[str, str], confidence: dict[str, float], keep: float) -> list[str]:
    """The ``round(keep * len(hyps))`` most confident utterances with a non-empty hypothesis, sorted.

    Ties go to the smaller utterance id, so the choice is deterministic.

    Example:
        >>> hyps = {"a": "one", "b": "two", "c": "", "d": "four"}
        >>> select(hyps, {"a": -0.5, "b": -0.1, "c": -0.01, "d": -0.5}, keep=0.5)
        ['a', 'b']
    """
    n_keep = math.floor(keep * len(hyps) + 0.5)
    ranked = sorted((u for u in hyps if hyps[u].strip()), key=lambda u: (-confidence[u], u))
    return sorted(ranked[:n_keep])


def decode_target(
    rec: Recognizer, data: DataDir, lang: str | None
) -> tuple[dict[str, str], dict[str, float], str]:
    """Hypotheses and confidences of every utterance of ``data`` (batches of similar length), and the
    language head used (``lang``, else ``utt2lang``, else the model's only head)."""
    lang = rec.lang_of(data, lang)
    where = {u: f"{data.path / 'wav.scp'}:{i}" for i, u in enumerate(data.utts, start=1)}  # sorted on load
    # lengths from the headers (which also catches unreadable audio early); audio is read batch by batch
    frames = {u: audio_info(data.wav[u], where=where[u]).frames for u in data.utts}
    order = sorted(data.utts, key=lambda u: (frames[u], u))
    hyps: dict[str, str] = {}
    conf: dict[str, float] = {}
    bs = rec.decode_cfg.batch_size
    for i in tqdm(range(0, len(order), bs), desc=f"pseudo-label {data.path.name}", unit="batch"):
        chunk = order[i : i + bs]
        texts, scores = rec.transcribe_waves_scored(
            [load_audio(data.wav[u], where=where[u]) for u in chunk], lang
        )
        for u, text, score in zip(chunk, texts, scores, strict=True):
            # a transcript cannot spell <unk> (training would read its five characters): drop it
            hyps[u], conf[u] = " ".join(text.replace(UNK, "").split()), score
    return hyps, conf, lang


def write_pseudo_labels(
    rec: Recognizer,
    data_dir: Path,
    out: Path,
    keep: float,
    lang: str | None,
    made_by: dict,
    previous: Path | None = None,
) -> dict:
    """Decode ``data_dir`` and write ``out`` atomically (via ``out.tmp``); returns the summary."""
    if not 0 < keep <= 1:
        raise ValueError(f"--keep must be in (0, 1], not {keep}")
    data = load_data_dir(data_dir, require_text=False, skip_text=True)
    if not data.wav:
        raise DataError(f"{data_dir / 'wav.scp'}: no utterances to pseudo-label")
    before = None
    if previous is not None:  # checked before decoding, not after
        before = read_hyp_all(previous)
        if set(before) != set(data.wav):
            odd = sorted(set(before) ^ set(data.wav))
            raise DataError(f"{previous}: labels other utterances than {data_dir}, e.g. {odd[:5]}")
    hyps, conf, lang = decode_target(rec, data, lang)
    kept = select(hyps, conf, keep)
    if not kept:
        raise DataError(f"{data_dir}: every hypothesis of the source model is empty: nothing to keep")

    def subset(table: dict | None, utts: list[str]) -> dict | None:
        return None if table is None else {u: table[u] for u in utts}

    def write(path: Path, utts: list[str], text: dict | None) -> None:
        write_data_dir(
            path,
            wav=subset(data.wav, utts),
            text=text,
            utt2spk=subset(data.utt2spk, utts),
            utt2lang=subset(data.utt2lang, utts),
            utt2domain=subset(data.utt2domain, utts),
            utt2dur=subset(data.utt2dur, utts),
        )

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run
    write(tmp, kept, subset(hyps, kept))
    rest = sorted(set(hyps) - set(kept))
    if rest:  # the audio left without a pseudo-label, for the terms that need none
        write(tmp / f"{out.name}{UNLABELLED}", rest, None)
    write_table(tmp / "confidence", {u: f"{c:.6f}" for u, c in conf.items()})
    write_table(tmp / "hyp_all", hyps)
    summary = {
        **made_by,
        "lang": lang,
        "data": str(data_dir),
        "keep": keep,
        "kept": len(kept),
        "total": len(hyps),
        "unlabelled": len(rest),  # in OUT/<OUT's name>_unlabelled
        "empty": sum(not h for h in hyps.values()),
        "mean_confidence": {
            "all": round(sum(conf.values()) / len(conf), 6),
            "kept": round(sum(conf[u] for u in kept) / len(kept), 6),
        },
        "min_kept_confidence": round(min(conf[u] for u in kept), 6),
    }
    if before is not None:
        summary["change_from_previous"] = {"previous": str(previous), **label_change(before, hyps)}
    (tmp / SUMMARY).write_text(yaml.safe_dump(summary, sort_keys=False), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return summary


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if (out / SUMMARY).is_file() and not args.overwrite:
        print(f"pseudo-label: {out} exists, skipped (--overwrite to redo)")
        return 0
    if out.exists() and not args.overwrite:
        raise FileExistsError(
            f"{out} exists but is not a finished pseudo-label dir (no {SUMMARY}); "
            "remove it or pass --overwrite"
        )
    if not (args.exp / "config.yaml").is_file():
        raise FileNotFoundError(f"{args.exp / 'config.yaml'}: missing: is {args.exp} a trained experiment?")
    cfg = DecodeConfig.for_exp(args.exp, args.config, args.overrides)
    rec = Recognizer.from_exp(args.exp, args.checkpoint, cfg, args.device)
    made_by = {"exp": str(args.exp), "checkpoint": args.checkpoint, "decode": asdict(cfg)}
    summary = write_pseudo_labels(rec, args.data, out, args.keep, args.lang, made_by, args.previous)
    change = summary.get("change_from_previous")
    print(
        f"pseudo-label: {args.data} -> {out}: kept {summary['kept']} of {summary['total']} "
        f"(mean confidence {summary['mean_confidence']['kept']:.3f})"
        + (
            f"; {change['word_change']:.2f} % of the previous round's words changed "
            f"({change['utts_changed']:.1f} % of utterances)"
            if change
            else ""
        )
    )
    return 0
