"""Pseudo-speakers and the in-process espeak-ng engine (through the ``espeakng-loader`` wheel).

A pseudo-speaker is a base voice (an espeak-ng language voice plus a variant such as ``+m3``
or ``+klatt4``) with its own pitch, pitch range, speaking rate and a vocal-tract-length warp.
Variants of one base voice share phoneme rules, so the presets hold whole variants out for test.

espeak-ng keeps state between utterances in static variables (pitch flutter phase) that
``espeak_Terminate`` does not reset, and seeds its breath-noise generator from the clock, so the
same text would come out slightly differently depending on what was said before and when.
:class:`Espeak` therefore reloads the library for every utterance (about 5 ms) and seeds both
its generator and libc's ``rand``, which makes the audio a pure function of (text, speaker):
byte-identical whatever the worker order.
"""

from __future__ import annotations

import _ctypes
import ctypes
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
# espeak_PARAMETER values from speak_lib.h
_RATE, _PITCH, _RANGE = 1, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1

#: formant variants used for training/dev speakers and, disjoint from them, for test speakers
TRAIN_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3",
    "Alex", "Andy", "Annie", "adam", "aunty", "benjamin", "boris", "caleb", "david", "ed", "edward",
)  # fmt: skip
TEST_VARIANTS: tuple[str, ...] = (
    "m7",
    "m8",
    "f5",
    "klatt4",
    "klatt5",
    "john",
    "linda",
    "quincy",
)
#: formant variants of the held-out dev speakers (``heldout`` split): disjoint from both pools above, so
#: that a dev criterion on them measures what the test measures, voices the model never heard
HELDOUT_VARIANTS: tuple[str, ...] = ("klatt6", "iven", "steph", "shelby", "paul", "rob", "michel", "norbert")


@dataclass(frozen=True)
class Speaker:
    """One pseudo-speaker: an engine's voice name plus prosody and a formant warp.

    ``voice`` is an espeak-ng voice with its variant (``en-us+m7``) for the in-process engine, else
    the engine's own voice name (MBROLA ``us1``, flite ``slt``, festival ``kal_diphone``).

    Example:
        >>> Speaker("en_test_s01", "en", "en-us+m7", pitch=40, rate=170, range_=50, warp=1.05).variant
        'm7'
    """

    id: str
    lang: str
    voice: str
    pitch: int
    rate: int
    range_: int
    warp: float
    engine: str = "espeak-ng"

    @property
    def variant(self) -> str:
        return self.voice.partition("+")[2]

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "id"}


def make_speakers(
    prefix: str,
    lang: str,
    base_voice: str,
    variants: tuple[str, ...],
    n: int,
    rng: np.random.Generator,
) -> list[Speaker]:
    """``n`` pseudo-speakers ``<prefix>_s00``..., cycling through ``variants`` with random prosody.

    Example:
        >>> spk = make_speakers("en_train", "en", "en-us", ("m1", "f2"), 3, np.random.default_rng(0))
        >>> [(s.id, s.voice) for s in spk]
        [('en_train_s00', 'en-us+m1'), ('en_train_s01', 'en-us+f2'), ('en_train_s02', 'en-us+m1')]
    """
    speakers = []
    for k in range(n):
        # warp quantised to 50 Hz steps of the assumed source rate, so the polyphase resampler stays small
        src_rate = round(ESPEAK_RATE * rng.uniform(0.9, 1.1) / 50.0) * 50
        speakers.append(
            Speaker(
                id=f"{prefix}_s{k:02d}",
                lang=lang,
                voice=f"{base_voice}+{variants[k % len(variants)]}",
                pitch=int(rng.integers(20, 80)),
                rate=int(rng.integers(135, 205)),
                range_=int(rng.integers(30, 80)),
                warp=src_rate / ESPEAK_RATE,
            )
        )
    return speakers


def make_mixed_speakers(
    prefix: str,
    lang: str,
    base_voices: tuple[str, ...],
    variants: tuple[str, ...],
    n: int,
    rng: np.random.Generator,
) -> list[Speaker]:
    """``n`` pseudo-speakers ``<prefix>_s000``... cycling through ``engine:voice`` base voices.

    A base voice listed twice gets twice the speakers. espeak-ng base voices take the next of
    ``variants`` each time they come round; the other engines' voices are used as they are.

    Example:
        >>> spk = make_mixed_speakers("en_test", "en", ("espeak-ng:en-gb", "flite:rms"), ("m7", "f5"), 3,
        ...                           np.random.default_rng(0))
        >>> [(s.id, s.engine, s.voice) for s in spk]
        [('en_test_s000', 'espeak-ng', 'en-gb+m7'), ('en_test_s001', 'flite', 'rms'), \
('en_test_s002', 'espeak-ng', 'en-gb+f5')]
    """
    speakers = []
    turns: dict[str, int] = {}
    for k in range(n):
        base = base_voices[k % len(base_voices)]
        engine, _, voice = base.partition(":")
        if engine == "espeak-ng":
            voice = f"{voice}+{variants[turns.get(base, 0) % len(variants)]}"
        turns[base] = turns.get(base, 0) + 1
        src_rate = round(ESPEAK_RATE * rng.uniform(0.9, 1.1) / 50.0) * 50
        speakers.append(
            Speaker(
                id=f"{prefix}_s{k:03d}",
                lang=lang,
                voice=voice,
                pitch=int(rng.integers(20, 80)),
                rate=int(rng.integers(135, 205)),
                range_=int(rng.integers(30, 80)),
                warp=src_rate / ESPEAK_RATE,
                engine=engine,
            )
        )
    return speakers


def espeak_data_path() -> Path:
    """The ``espeak-ng-data`` folder shipped in the ``espeakng-loader`` wheel."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


#: the one handle on the espeak-ng library in this process: dlclose only unloads (and so resets its
#: static state) when no other handle holds it, so every :class:`Espeak` shares this one
_LOADED: ctypes.CDLL | None = None


class Espeak:
    """espeak-ng in-process, deterministic per utterance (see the module docstring)."""

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self) -> None:
        import espeakng_loader

        self._lib_path = espeakng_loader.get_library_path()
        self._data_root = str(espeak_data_path().parent).encode()
        self._libc = ctypes.CDLL(None)
        self._chunks: list[np.ndarray] = []
        # keep a reference: ctypes callbacks must outlive their use by C
        self._callback = self._CALLBACK(self._collect)

    def _collect(self, wav: ctypes.Array, n: int, _events: int) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def _fresh_library(self) -> ctypes.CDLL:
        global _LOADED
        if _LOADED is not None:
            _LOADED.espeak_Terminate()
            _ctypes.dlclose(_LOADED._handle)
            _LOADED = None
        lib = ctypes.CDLL(self._lib_path)
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Info.restype = ctypes.c_char_p
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_root, 0)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak-ng initialisation failed (returned {rate})")
        lib.espeak_SetSynthCallback(self._callback)
        _LOADED = lib
        return lib

    def version(self) -> str:
        lib = _LOADED or self._fresh_library()
        return lib.espeak_Info(None).decode()

    def synth(self, text: str, voice: str, *, pitch: int, rate: int, range_: int) -> np.ndarray:
        """Speak ``text`` with ``voice``; int16 samples at 22.05 kHz."""
        lib = self._fresh_library()
        self._chunks.clear()
        # espeak-ng seeds its breath-noise generator from the clock at initialisation, and uses libc rand
        lib.espeak_ng_SetRandSeed(12345)
        self._libc.srand(12345)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, range_)):
            lib.espeak_SetParameter(param, value, 0)
        data = text.encode()
        if lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != 0:
            raise RuntimeError(f"espeak-ng failed to speak {text!r} with {voice!r}")
        lib.espeak_Synchronize()
        if not self._chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} with {voice!r}")
        return np.concatenate(self._chunks)

    def speak(self, text: str, speaker: Speaker) -> np.ndarray:
        """``text`` as ``speaker`` says it: float32 at 16 kHz, warped, peak-normalised to 0.5."""
        raw = self.synth(
            text,
            speaker.voice,
            pitch=speaker.pitch,
            rate=speaker.rate,
            range_=speaker.range_,
        )
        # Reading the samples as if recorded at warp * 22.05 kHz scales formants, pitch and tempo together.
        src_rate = round(ESPEAK_RATE * speaker.warp)
        g = math.gcd(SAMPLE_RATE, src_rate)
        audio = resample_poly(raw.astype(np.float64) / 32768.0, SAMPLE_RATE // g, src_rate // g)
        peak = float(np.max(np.abs(audio))) or 1.0
        return (0.5 * audio / peak).astype(np.float32)
