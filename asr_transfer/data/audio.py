"""Audio I/O with soundfile: 16 kHz mono float32, with errors that name the file.

Training and decoding data are read strictly (:func:`load_audio`: 16 kHz mono, anything else an
error); what users record is converted (:func:`load_any_audio`: any rate, any channel count).

Every error is an :class:`AudioError` whose message starts with ``where`` (e.g.
``data/x/wav.scp:12: utterance 's1-a'``) when given, then the audio path, then the problem.
Samples that are not finite (NaN, inf: possible in float WAVs) are errors wherever samples are
decoded: they would turn into NaN features and poison training. What a decoder library prints
itself (libmpg123 warnings on random bytes) is kept off the console; the error says it all.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asr_transfer.data.kaldi import DataError

SAMPLE_RATE = 16000
#: Frames decoded at each end of a file by :func:`audio_info`: enough to cross a codec block.
_PROBE_FRAMES = 8192
#: Sample formats that can hold NaN/inf; uncompressed, so :func:`audio_info` scans them whole.
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})


class AudioError(DataError):
    """Missing, unreadable, empty or wrongly formatted audio."""


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`audio_info` learnt about a file that passed its checks."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _prefix(path: str | os.PathLike, where: str) -> str:
    return f"{where}: {path}" if where else str(path)


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Send what C decoder libraries write to file descriptor 2 (stderr) to ``/dev/null``.

    libsndfile's MP3 decoder (libmpg123) prints warnings such as "Cannot read next header" itself
    when it probes random bytes; our :class:`AudioError` already says what is wrong. Python's own
    ``sys.stderr`` is flushed first so nothing of ours is lost.
    """
    try:
        fd = sys.stderr.fileno() if sys.stderr is not None else 2
    except (AttributeError, OSError, ValueError):  # a replaced stderr without a descriptor
        fd = 2
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    if sys.stderr is not None:
        sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _check_finite(samples: np.ndarray, path: str | os.PathLike, where: str, offset: int = 0) -> None:
    """Raise :class:`AudioError` naming the first non-finite sample (``offset``: index of ``samples[0]``)."""
    bad = ~np.isfinite(samples)
    if bad.any():
        flat = bad.reshape(len(samples), -1).any(axis=1)
        first = offset + int(np.argmax(flat))
        nans = int(np.isnan(samples).sum())
        raise AudioError(
            f"{_prefix(path, where)}: {int(bad.sum())} non-finite samples ({nans} NaN, "
            f"{int(bad.sum()) - nans} inf), first at sample {first}"
        )


def _open(path: str | os.PathLike, where: str, sample_rate: int | None, mono: bool = True) -> sf.SoundFile:
    """Open ``path`` and check its header; the caller closes the returned file."""
    prefix = _prefix(path, where)
    if not Path(path).is_file():
        raise AudioError(f"{prefix}: audio file is missing")
    if Path(path).stat().st_size == 0:
        raise AudioError(f"{prefix}: audio is empty (0 bytes)")
    try:
        with _quiet_decoders():
            f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        # the file exists (checked above): libsndfile's "File does not exist ..." means "no format fits"
        why = "no audio format recognised" if "does not exist" in str(err) else str(err)
        raise AudioError(f"{prefix}: corrupt or unreadable audio ({why})") from None
    problem = ""
    if f.frames == 0:
        problem = "audio is empty (0 samples)"
    elif sample_rate is not None and f.samplerate != sample_rate:
        problem = f"sample rate is {f.samplerate} Hz, expected {sample_rate} Hz"
    elif mono and f.channels != 1:
        problem = f"audio has {f.channels} channels, expected mono"
    if problem:
        f.close()
        raise AudioError(f"{prefix}: {problem}")
    return f


def audio_info(
    path: str | os.PathLike, *, sample_rate: int | None = SAMPLE_RATE, where: str = "", mono: bool = True
) -> AudioInfo:
    """Check a file cheaply: header, then decode a block at each end to catch corrupt or truncated data.

    Damage in the middle of a compressed file is only found by :func:`load_audio`. Raises the
    same :class:`AudioError` messages as :func:`load_audio`; ``mono=False`` accepts any channel count.

    Example:
        >>> import tempfile, numpy as np
        >>> p = tempfile.mkdtemp() + "/a.flac"
        >>> write_audio(p, np.zeros(8000, dtype=np.float32))
        >>> audio_info(p).duration
        0.5
    """
    with _open(path, where, sample_rate, mono) as f:
        frames = f.frames
        try:
            with _quiet_decoders():
                head = f.read(min(_PROBE_FRAMES, frames), dtype="float32")
                _check_finite(head, path, where)
                tail_start = max(frames - _PROBE_FRAMES, len(head))
                if f.subtype in _FLOAT_SUBTYPES:
                    tail = head  # a float file can hold NaN anywhere: scan it all, block by block
                    for start in range(len(head), frames, 16 * _PROBE_FRAMES):
                        tail = f.read(16 * _PROBE_FRAMES, dtype="float32")
                        _check_finite(tail, path, where, offset=start)
                elif tail_start > len(head) and f.seekable():
                    f.seek(tail_start)
                    tail = f.read(_PROBE_FRAMES, dtype="float32")
                    _check_finite(tail, path, where, offset=tail_start)
                else:
                    tail = head
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{_prefix(path, where)}: corrupt or unreadable audio ({err})") from None
        info = AudioInfo(frames=frames, sample_rate=f.samplerate, channels=f.channels)
    if len(head) == 0 or len(tail) == 0:
        raise AudioError(
            f"{_prefix(path, where)}: corrupt audio: header says {frames} samples, data is shorter"
        )
    return info


def load_audio(
    path: str | os.PathLike, *, sample_rate: int | None = SAMPLE_RATE, where: str = ""
) -> np.ndarray:
    """Read a mono file as float32 in [-1, 1]; ``sample_rate=None`` accepts any rate.

    Example:
        >>> import tempfile, numpy as np
        >>> p = tempfile.mkdtemp() + "/a.wav"
        >>> write_audio(p, np.full(160, 0.5, dtype=np.float32))
        >>> x = load_audio(p)
        >>> x.dtype, x.shape, round(float(x[0]), 3)
        (dtype('float32'), (160,), 0.5)
    """
    with _open(path, where, sample_rate) as f:
        try:
            with _quiet_decoders():
                samples = f.read(dtype="float32")
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{_prefix(path, where)}: corrupt or unreadable audio ({err})") from None
    if samples.size == 0:
        raise AudioError(f"{_prefix(path, where)}: corrupt audio: no samples could be decoded")
    _check_finite(samples, path, where)
    return samples


def write_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono audio as 16-bit PCM; the format (FLAC, WAV, ...) follows the file extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16")


def resample(samples: np.ndarray, orig_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (scipy), float32 out; a no-op when the rates agree.

    Example:
        >>> resample(np.zeros(48000, dtype=np.float32), 48000).shape
        (16000,)
    """
    if orig_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(orig_rate, target_rate)
    return resample_poly(samples, target_rate // g, orig_rate // g).astype(np.float32)


@dataclass(frozen=True)
class Converted:
    """What :func:`load_any_audio` did to a file: its own rate and channel count."""

    sample_rate: int
    channels: int
    target_rate: int

    @property
    def changed(self) -> bool:
        return self.sample_rate != self.target_rate or self.channels != 1

    def note(self, path: str | os.PathLike) -> str:
        """One line for the user, or ``""`` when nothing was changed.

        Example:
            >>> Converted(8000, 1, 16000).note("call.wav")  # doctest: +ELLIPSIS
            'call.wav: 8000 Hz audio upsampled to 16000 Hz: ... will suffer'
        """
        if not self.changed:
            return ""
        done = [f"{self.channels} channels averaged to mono"] if self.channels != 1 else []
        if self.sample_rate < self.target_rate:
            # upsampling adds no information: the band above the recording's Nyquist stays empty
            done.append(
                f"{self.sample_rate} Hz audio upsampled to {self.target_rate} Hz: the model was trained on "
                f"{self.target_rate} Hz speech and hears nothing above {self.sample_rate // 2} Hz here, so "
                "WER will suffer"
            )
        elif self.sample_rate > self.target_rate:
            done.append(f"{self.sample_rate} Hz audio resampled to {self.target_rate} Hz")
        return f"{path}: " + "; ".join(done)


def load_any_audio(
    path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE, where: str = ""
) -> tuple[np.ndarray, Converted]:
    """Decode any soundfile-readable file (WAV, FLAC, OGG, MP3 where libsndfile has it): channels
    averaged to mono, resampled to ``sample_rate``; also what was done (:class:`Converted`).

    For what users record (``asr-transfer transcribe``, :meth:`Recognizer.transcribe`); training
    data stays strict (:func:`load_audio`, ``validate-data``). Errors are :class:`AudioError`
    naming the file.

    Example:
        >>> import tempfile, numpy as np, soundfile as sf
        >>> p = tempfile.mkdtemp() + "/a.wav"
        >>> sf.write(p, np.zeros((44100, 2), dtype=np.float32), 44100)
        >>> x, how = load_any_audio(p)
        >>> x.shape, how.sample_rate, how.channels
        ((16000,), 44100, 2)
    """
    with _open(path, where, None, mono=False) as f:
        rate, channels = f.samplerate, f.channels
        try:
            with _quiet_decoders():
                samples = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(f"{_prefix(path, where)}: corrupt or unreadable audio ({err})") from None
    if samples.size == 0:
        raise AudioError(f"{_prefix(path, where)}: corrupt audio: no samples could be decoded")
    _check_finite(samples, path, where)
    mono = samples[:, 0] if channels == 1 else samples.mean(axis=1)
    return resample(mono, rate, sample_rate), Converted(rate, channels, sample_rate)


def convert_audio(src: str | os.PathLike, dst: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE) -> int:
    """Decode any soundfile-readable file (MP3 too), downmix to mono, resample, write ``dst``.

    Returns the number of samples written.

    The output format follows ``dst``'s extension (FLAC recommended). Raises :class:`AudioError`
    naming ``src`` when it is missing, unreadable or empty.
    """
    mono, _ = load_any_audio(src, sample_rate=sample_rate)
    write_audio(dst, mono, sample_rate)
    return len(mono)
