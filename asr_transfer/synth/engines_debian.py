"""Speech engines from Debian packages, run as subprocesses: MBROLA, flite and festival.

- ``mbrola``: espeak-ng (Debian's, which knows the ``mb-XX`` voices) writes MBROLA phonemes
  (``--pho``) with the speaker's pitch and rate; the ``mbrola`` binary renders them with voice XX.
- ``mbrola-br``: Breton, phonemes from :mod:`asr_transfer.synth.breton_g2p`, voice ``bz1``.
- ``flite``: the English voices built into Debian's flite (kal16, awb, rms, slt).
- ``festival``: ``text2wave`` with a festvox voice (English diphone/HTS, Czech, ...).

Each engine's output depends only on (text, speaker): fresh processes, no clocks or shared state.
They are installed by ``recipes/common/install_synth_tools.sh``; :func:`check` says so when one is
missing. Audio is read at the engine's own rate and resampled to 16 kHz through the speaker's warp,
like the in-process espeak-ng voices (:meth:`asr_transfer.synth.voices.Espeak.speak`).
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from asr_transfer.synth.breton_g2p import to_pho
from asr_transfer.synth.voices import SAMPLE_RATE, Speaker

INSTALL_SCRIPT = "recipes/common/install_synth_tools.sh"
MBROLA_DIR = Path("/usr/share/mbrola")
FESTIVAL_VOICES = Path("/usr/share/festival/voices")
#: MBROLA voices recorded at 22.05 kHz (the others are 16 kHz)
_MBROLA_22K = frozenset({"fr4", "es2", "pt1", "br3"})
ENGINES = ("espeak-ng", "mbrola", "mbrola-br", "flite", "festival")
#: what each engine's licence means for the corpus (recorded in corpus.json)
LICENCES = {
    "espeak-ng": "GPL-3.0-or-later program; generated audio unencumbered",
    "mbrola": "mbrola binary AGPL-3.0; MBROLA voices NON-FREE (use only with mbrola, most non-commercial "
    "and non-military, redistribution free of charge with the voice's notice; see "
    "/usr/share/doc/mbrola-<voice>/copyright): keep MBROLA-derived audio non-commercial",
    "mbrola-br": "as mbrola (voice bz1, KGB project / IRISA, non-free); Breton G2P is the toolkit's own",
    "flite": "BSD-like (CMU); generated audio unencumbered",
    "festival": "X11-like (festival) plus per-voice festvox licences (free); generated audio unencumbered",
}


class EngineMissing(FileNotFoundError):
    """A speech engine or voice the corpus needs is not installed (a missing program or voice file,
    so ``asr-transfer`` reports it as bad input, in one line)."""


def check(engine: str, voice: str) -> None:
    """Raise :class:`EngineMissing` (naming the install script) unless ``engine`` can speak ``voice``.

    Example:
        >>> check("flite", "no-such-voice")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        EngineMissing: flite voice 'no-such-voice' is not installed; run ...
    """
    how = f"run `sudo {INSTALL_SCRIPT}` (Debian packages espeak-ng, mbrola + voices, flite, festival)"
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    need = {"mbrola": ("espeak-ng", "mbrola"), "mbrola-br": ("mbrola",), "flite": ("flite",),
            "festival": ("text2wave",), "espeak-ng": ()}[engine]  # fmt: skip
    for program in need:
        if shutil.which(program) is None:
            raise EngineMissing(f"{engine}: program {program!r} is not installed; {how}")
    if engine.startswith("mbrola") and not (MBROLA_DIR / voice / voice).is_file():
        raise EngineMissing(f"MBROLA voice {voice!r} is not installed ({MBROLA_DIR / voice}); {how}")
    if engine == "flite" and voice not in flite_voices():
        raise EngineMissing(f"flite voice {voice!r} is not installed; {how}")
    if engine == "festival" and not any(FESTIVAL_VOICES.glob(f"*/{voice}")):
        raise EngineMissing(f"festival voice {voice!r} is not installed ({FESTIVAL_VOICES}); {how}")


@cache
def flite_voices() -> tuple[str, ...]:
    """Voices built into the installed flite (empty if flite is missing)."""
    if shutil.which("flite") is None:
        return ()
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout
    return tuple(out.partition(":")[2].split())


#: the Debian package that provides each engine's program
PACKAGES = {"mbrola": "mbrola", "mbrola-br": "mbrola", "flite": "flite", "festival": "festival"}


@cache
def package_version(package: str) -> str:
    """The installed version of a Debian package (``unknown`` where dpkg does not know it)."""
    cmd = ["dpkg-query", "-W", "-f", "${Version}", package]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "unknown"


def version(engine: str) -> str:
    """The Debian package version(s) behind ``engine``."""
    if engine == "mbrola":
        return f"mbrola {package_version('mbrola')}, espeak-ng {package_version('espeak-ng')} (phonemes)"
    return f"{PACKAGES[engine]} {package_version(PACKAGES[engine])}"


def _run(cmd: list[str], data: bytes, what: str) -> bytes:
    res = subprocess.run(cmd, input=data, capture_output=True, check=False)
    if res.returncode != 0 or not res.stdout:
        err = res.stderr.decode(errors="replace").strip()[-300:]
        raise RuntimeError(f"{what} failed (exit {res.returncode}): {err}")
    return res.stdout


def mbrola_voice_path(voice: str) -> str:
    return str(MBROLA_DIR / voice / voice)


def synth_mbrola(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    """espeak-ng phonemes -> mbrola; int16 samples and their rate."""
    pho = _run(
        ["espeak-ng", "-v", f"mb-{speaker.voice}", "-p", str(speaker.pitch), "-s", str(speaker.rate),
         "-q", "--pho", "--stdin"],
        text.encode(),
        f"espeak-ng --pho (mb-{speaker.voice}) on {text!r}",
    )  # fmt: skip
    return _mbrola(pho, speaker.voice, text), 22050 if speaker.voice in _MBROLA_22K else 16000


def synth_breton(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    """Breton G2P -> mbrola bz1; pitch 20..80 maps to 150..240 Hz, rate 175 wpm is tempo 1."""
    pho = to_pho(text, f0=150 + 1.5 * speaker.pitch, tempo=speaker.rate / 175)
    return _mbrola(pho.encode(), speaker.voice, text), 16000


def _mbrola(pho: bytes, voice: str, text: str) -> np.ndarray:
    # -e: skip missing diphones instead of stopping (their warnings go to the discarded stderr)
    raw = _run(["mbrola", "-e", mbrola_voice_path(voice), "-", "-.raw"], pho, f"mbrola {voice} on {text!r}")
    return np.frombuffer(raw, dtype="<i2")


def synth_flite(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    """flite with a built-in voice; the speaker's rate sets the duration stretch."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "x.wav")
        txt = os.path.join(tmp, "x.txt")
        Path(txt).write_text(text, encoding="utf-8")
        cmd = ["flite", "-voice", speaker.voice, "--setf", f"duration_stretch={175 / speaker.rate:.3f}",
               "-f", txt, "-o", wav]  # fmt: skip
        subprocess.run(cmd, capture_output=True, check=True)
        return _read_wav(wav)


def synth_festival(text: str, speaker: Speaker) -> tuple[np.ndarray, int]:
    """festival's text2wave with ``voice_<name>``; Czech voices read ISO-8859-2."""
    encoding = "iso-8859-2" if speaker.voice.startswith("czech") else "utf-8"
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "x.wav")
        txt = os.path.join(tmp, "x.txt")
        Path(txt).write_bytes(text.encode(encoding, errors="replace"))
        stretch = 175 / speaker.rate
        setup = f"(begin (voice_{speaker.voice}) (Parameter.set 'Duration_Stretch {stretch:.3f}))"
        res = subprocess.run(["text2wave", "-eval", setup, "-o", wav, txt], capture_output=True, check=False)
        if res.returncode != 0 or not os.path.exists(wav) or os.path.getsize(wav) <= 44:
            raise RuntimeError(f"festival {speaker.voice} failed on {text!r}: {res.stderr[-300:]!r}")
        return _read_wav(wav)


def _read_wav(path: str) -> tuple[np.ndarray, int]:
    data = Path(path).read_bytes()
    audio, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return audio[:, 0], rate


_SYNTH = {"mbrola": synth_mbrola, "mbrola-br": synth_breton, "flite": synth_flite, "festival": synth_festival}


def speak(text: str, speaker: Speaker) -> np.ndarray:
    """``text`` as ``speaker`` says it: float32 at 16 kHz, warped, peak-normalised to 0.5.

    The warp reads the samples as if recorded at ``warp`` times the engine's rate (rounded to
    100 Hz so the polyphase resampler stays small), scaling formants, pitch and tempo together.
    """
    raw, rate = _SYNTH[speaker.engine](text, speaker)
    if len(raw) == 0:
        raise RuntimeError(f"{speaker.engine} {speaker.voice} produced no audio for {text!r}")
    src_rate = round(rate * speaker.warp / 100) * 100
    g = math.gcd(SAMPLE_RATE, src_rate)
    audio = resample_poly(raw.astype(np.float64) / 32768.0, SAMPLE_RATE // g, src_rate // g)
    peak = float(np.max(np.abs(audio))) or 1.0
    return (0.5 * audio / peak).astype(np.float32)
