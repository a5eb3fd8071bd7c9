"""``asr-transfer features``: dump features of data dirs (kaldiio ark/scp) and CMVN stats.

Writes ``OUT/feats.ark``, ``OUT/feats.scp``, ``OUT/utt2num_frames`` and ``OUT/frontend.yaml``
(which frontend made them: Kaldi fbank, or with ``--espnet-exp`` that ESPnet2 experiment's own
frontend, for training from it) for each data dir;
with ``--speed-perturb 0.9 1.1`` also perturbed copies (ids prefixed ``sp0.9-``), whose
transcripts are the original ones (``OUT/text``). ``--cmvn FILE`` accumulates global
mean/variance over everything dumped in this call. A finished dump made by the same frontend
is skipped on rerun. ``--jobs N`` computes features in N processes; the output is the same.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from asr_transfer.data.audio import load_audio
from asr_transfer.data.features import CMVNStats, speed_perturb
from asr_transfer.data.frontend import build_frontend, check_record, write_record
from asr_transfer.data.kaldi import DataError, load_data_dir, write_table


def dump_features(
    data_dir: str | Path,
    out_dir: str | Path,
    speeds: tuple[float, ...] = (1.0,),
    stats: CMVNStats | None = None,
    features: dict | None = None,
    jobs: int = 1,
) -> int:
    """Dump features of every utterance of ``data_dir`` into ``out_dir``; return the number written.

    ``features`` is a ``features:`` config section (default: Kaldi fbank, 80 bins). ``jobs``
    worker processes compute the features; this process writes them in utterance order, so the
    dump and the statistics are byte-identical whatever ``jobs`` is.

    Every file is written under a temporary name and renamed; ``feats.scp``, renamed last, marks
    a finished dump. A killed dump is therefore redone on the next call, never taken as finished.
    Audio with NaN/inf samples, or features that are not finite, stop the dump naming the file,
    line and utterance; so does an output folder that cannot be written (read-only, full disk).

    Example:
        >>> import tempfile, numpy as np
        >>> from asr_transfer.data.audio import write_audio
        >>> from asr_transfer.data.kaldi import write_data_dir
        >>> d = tempfile.mkdtemp()
        >>> write_audio(d + "/a.flac", np.zeros(16000, dtype=np.float32))
        >>> write_data_dir(d + "/x", wav={"s1-a": d + "/a.flac"}, text={"s1-a": "hi"}, utt2spk={"s1-a": "s1"})
        >>> dump_features(d + "/x", d + "/dump", speeds=(1.0, 1.1))
        2
    """
    data = load_data_dir(data_dir, require_text=False)
    out = Path(out_dir)
    wav_scp = Path(data_dir) / "wav.scp"
    line_of = {utt: i for i, utt in enumerate(data.wav.keys(), start=1)}
    items = [(data.wav[utt], f"{wav_scp}:{line_of[utt]}: utterance '{utt}'", utt) for utt in data.utts]
    frames: dict[str, str] = {}
    text: dict[str, str] = {}
    tmp_ark, tmp_scp = out / "feats.ark.tmp", out / "feats.scp.tmp"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "feats.scp").unlink(missing_ok=True)  # whatever is there is not finished until renamed
        with (
            kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer,
            _computed(items, speeds, features, jobs) as results,
        ):
            progress = tqdm(
                results, total=len(items), desc=f"features {Path(data_dir).name}", unit="utt", leave=False
            )
            for utt, copies in zip(data.utts, progress):
                for key, feats in copies:
                    if stats is not None:
                        stats.add(torch.from_numpy(feats))
                    writer(key, feats)
                    frames[key] = str(feats.shape[0])
                    if data.text is not None:
                        text[key] = data.text[utt]
        write_table(out / "utt2num_frames", frames)
        write_record(out, features)
        _write_atomic(out / "speed_perturb", " ".join(map(str, speeds)) + "\n")
        if text:
            write_table(out / "text", text)
        else:
            (out / "text").unlink(missing_ok=True)
        os.replace(tmp_ark, out / "feats.ark")
        # the scp names the temporary ark: point it at the final name; renamed last, it marks the end
        _write_atomic(out / "feats.scp", tmp_scp.read_text().replace(str(tmp_ark), str(out / "feats.ark")))
        tmp_scp.unlink()
    except OSError as err:
        where = err.filename or out
        raise DataError(
            f"features: cannot write the dump {out}: {where}: {err.strerror or err} "
            "(a read-only folder or a full disk? free space or choose another --out)"
        ) from err
    return len(frames)


def _write_atomic(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content)
    os.replace(tmp, path)


class _FeatureJob:
    """Features of one utterance and its speed-perturbed copies: ``[(key, (T, D) float32)]``."""

    def __init__(self, features: dict | None, speeds: tuple[float, ...]) -> None:
        self.frontend, self.speeds = build_frontend(features), speeds

    def __call__(self, item: tuple[str, str, str]) -> list[tuple[str, np.ndarray]]:
        path, where, utt = item
        wave = load_audio(path, where=where)
        copies = []
        for speed in self.speeds:
            key = utt if speed == 1.0 else f"sp{speed}-{utt}"
            feats = self.frontend(wave if speed == 1.0 else speed_perturb(wave, speed)).numpy()
            if not np.isfinite(feats).all():
                raise DataError(f"{where}: {path}: features of '{key}' are not finite (NaN or inf)")
            copies.append((key, feats))
        return copies


_JOB: _FeatureJob | None = None  # a worker process's own


def _init_worker(features: dict | None, speeds: tuple[float, ...]) -> None:
    global _JOB
    torch.set_num_threads(1)  # one process per core: threads inside each would only compete
    _JOB = _FeatureJob(features, speeds)


def _run_in_worker(item: tuple[str, str, str]) -> list[tuple[str, np.ndarray]]:
    assert _JOB is not None
    return _JOB(item)


@contextlib.contextmanager
def _computed(
    items: list[tuple[str, str, str]], speeds: tuple[float, ...], features: dict | None, jobs: int
) -> Iterator[Iterable[list[tuple[str, np.ndarray]]]]:
    """The features of ``items``, in order: computed here, or by ``jobs`` forked worker processes."""
    if jobs <= 1 or len(items) < 2:
        # one utterance's fbank is too small to gain from torch's intra-op threads, and on a busy machine
        # they wait on each other: the dump was ~10x slower with torch's default of one per core
        # (docs/benchmarks.md); processes (--jobs) are the parallelism here
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield map(_FeatureJob(features, speeds), items)
        finally:
            torch.set_num_threads(threads)
        return
    if any(s != 1.0 for s in speeds):
        import scipy.signal  # noqa: F401  (seconds to import: once here, not once per forked worker)
    with multiprocessing.get_context("fork").Pool(
        min(jobs, len(items)), initializer=_init_worker, initargs=(features, speeds)
    ) as pool:
        yield pool.imap(_run_in_worker, items, chunksize=8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dirs", nargs="+", help="Kaldi data dirs")
    parser.add_argument("--out", required=True, help="dump root; one folder per data dir name")
    parser.add_argument("--speed-perturb", type=float, nargs="*", default=[], help="e.g. 0.9 1.1")
    parser.add_argument("--cmvn", help="write global CMVN stats of these dirs to this .npz")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (the dump is the same for any number)"
    )
    parser.add_argument(
        "--espnet-exp",
        help="ESPnet2 experiment dir: compute its own frontend's features (to train from it, "
        "train.init_espnet) instead of Kaldi fbank",
    )


def run(args: argparse.Namespace) -> int:
    speeds = (1.0, *args.speed_perturb)
    stats = CMVNStats() if args.cmvn else None
    features = None
    if args.espnet_exp:
        from asr_transfer.model.espnet_loader import espnet_features_config

        features = espnet_features_config(args.espnet_exp)
    for data_dir in args.data_dirs:
        out = Path(args.out) / Path(data_dir).name
        if (out / "feats.scp").exists():
            # reusing a dump made by another frontend or other speeds would train on the wrong data
            check_record(out, features)
            _check_speeds(out, speeds)
            print(f"features: {out} exists, skipped")
            if stats is not None:
                # statistics from the existing dump: no second fbank pass
                for _, mat in kaldiio.load_scp_sequential(str(out / "feats.scp")):
                    stats.add(torch.tensor(mat))
            continue
        n = dump_features(data_dir, out, speeds, stats, features, jobs=args.jobs)
        print(f"features: {n} utterances -> {out}")
    if stats is not None:
        try:
            stats.save(args.cmvn)
        except OSError as err:
            raise DataError(f"features: cannot write {args.cmvn}: {err.strerror or err}") from err
        print(f"features: CMVN stats over {stats.count} frames -> {args.cmvn}")
    return 0


def _check_speeds(dump: Path, speeds: tuple[float, ...]) -> None:
    """A finished dump must hold the speed-perturbed copies asked for (no record: made without any)."""
    record = dump / "speed_perturb"
    made = tuple(map(float, record.read_text().split())) if record.exists() else (1.0,)
    if sorted(made) != sorted(speeds):
        asked = " ".join(map(str, speeds))
        raise DataError(
            f"{record}: dumped with speeds {' '.join(map(str, made))}, asked for {asked}; "
            f"remove {dump} to dump it again"
        )
