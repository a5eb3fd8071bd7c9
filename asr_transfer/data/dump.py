"""Feature dumps of data dirs (kaldiio ark/scp): the library of ``asr-transfer features``.

:func:`dump_features` writes ``OUT/feats.ark``, ``OUT/feats.scp``, ``OUT/utt2num_frames`` and
``OUT/frontend.yaml`` (which frontend made them: Kaldi fbank, or an ESPnet2 experiment's own
frontend, for training from it); with speeds other than 1.0 also perturbed copies (ids prefixed
``sp0.9-``), whose transcripts are the original ones (``OUT/text``). ``jobs`` processes compute the features;
the output is the same for any number.
"""

from __future__ import annotations

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
from asr_transfer.data.frontend import build_frontend, write_record
from asr_transfer.data.kaldi import DataError, load_data_dir, write_table
from asr_transfer.util.atomic import write_text


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
        write_text(out / "speed_perturb", " ".join(map(str, speeds)) + "\n")
        if text:
            write_table(out / "text", text)
        else:
            (out / "text").unlink(missing_ok=True)
        os.replace(tmp_ark, out / "feats.ark")
        # the scp names the temporary ark: point it at the final name; renamed last, it marks the end
        write_text(out / "feats.scp", tmp_scp.read_text().replace(str(tmp_ark), str(out / "feats.ark")))
        tmp_scp.unlink()
    except OSError as err:
        where = err.filename or out
        raise DataError(
            f"features: cannot write the dump {out}: {where}: {err.strerror or err} "
            "(a read-only folder or a full disk? free space or choose another --out)"
        ) from err
    return len(frames)


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
