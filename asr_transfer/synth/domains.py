"""Device and noise domains, Libri-Adapt style: the same clean utterance rendered through each.

Devices (numpy/scipy only):
- ``phone``: 8 kHz, 300-3400 Hz band, level compression and 8-bit mu-law, back to 16 kHz.
- ``laptop``: cheap microphone: 200 Hz high-pass, presence peak (+6..10 dB at 2.5-4 kHz), mid dip
  (-4..-8 dB at 0.6-1 kHz), 5-6.5 kHz low-pass, tanh clipping, mains hum and hiss.
- ``farfield``: a room impulse response from a pool simulated with pyroomacoustics (image method,
  RT60 0.3-0.7 s, 1-4 m from the microphone) plus a faint noise floor.

Noises (real recordings from the noise bank, :data:`SNR_RANGE_DB`): ``rain``, ``wind``, ``laugh``
(laughter is scarce, so laughter and crowd clips, each varied in speed and offset).

All randomness comes from the generator passed in, so a domain is a pure function of
(audio, rng state).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import butter, fftconvolve, lfilter, resample_poly, sosfilt

SAMPLE_RATE = 16000
DOMAINS: tuple[str, ...] = (
    "clean",
    "phone",
    "laptop",
    "farfield",
    "rain",
    "wind",
    "laugh",
)
#: noise categories of the bank each noisy domain draws from
NOISE_SOURCES: dict[str, tuple[str, ...]] = {
    "rain": ("rain",),
    "wind": ("wind",),
    "laugh": ("laugh", "crowd"),
}
SNR_RANGE_DB = (0.0, 10.0)
RT60_RANGE_S = (0.3, 0.7)

#: one-line descriptions recorded in corpus.json
DESCRIPTIONS: dict[str, str] = {
    "clean": "synthesised speech as rendered",
    "phone": "8 kHz, Butterworth 300-3400 Hz, compression, 8-bit mu-law, back to 16 kHz",
    "laptop": "HP 200 Hz, +6..10 dB peak at 2.5-4 kHz, -4..-8 dB at 0.6-1 kHz, LP 5-6.5 kHz, "
    "tanh clipping, 50/60 Hz hum, hiss",
    "farfield": f"pyroomacoustics shoebox RIR, RT60 {RT60_RANGE_S[0]}-{RT60_RANGE_S[1]} s, 1-4 m, "
    "noise floor 30-40 dB SNR",
    "rain": f"real rain recordings, SNR {SNR_RANGE_DB[0]:g}-{SNR_RANGE_DB[1]:g} dB",
    "wind": f"real wind recordings, SNR {SNR_RANGE_DB[0]:g}-{SNR_RANGE_DB[1]:g} dB",
    "laugh": "real laughter and crowd recordings, speed 0.85-1.15, "
    f"SNR {SNR_RANGE_DB[0]:g}-{SNR_RANGE_DB[1]:g} dB",
}


def phone(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Telephone channel.

    Example:
        >>> phone(np.zeros(1600, np.float32), np.random.default_rng(0)).shape
        (1600,)
    """
    nb = resample_poly(x, 1, 2)
    nb = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), nb)
    # automatic gain control of a handset: a soft compressor
    drive = rng.uniform(1.5, 4.0)
    nb = np.tanh(drive * nb) / np.tanh(drive)
    mu = 255.0
    coded = np.sign(nb) * np.log1p(mu * np.minimum(np.abs(nb), 1.0)) / np.log1p(mu)
    coded = np.round(coded * 127.0) / 127.0
    nb = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu
    return _fit(resample_poly(nb, 2, 1), len(x))


def _peaking(f0: float, gain_db: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook peaking filter (b, a)."""
    a_ = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / SAMPLE_RATE
    alpha = math.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a_, -2 * math.cos(w0), 1 - alpha * a_])
    a = np.array([1 + alpha / a_, -2 * math.cos(w0), 1 - alpha / a_])
    return b / a[0], a / a[0]


def laptop(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cheap built-in microphone.

    Example:
        >>> laptop(np.zeros(1600, np.float32), np.random.default_rng(0)).shape
        (1600,)
    """
    y = sosfilt(butter(2, 200, btype="highpass", fs=SAMPLE_RATE, output="sos"), x)
    y = lfilter(*_peaking(rng.uniform(2500, 4000), rng.uniform(6, 10), 1.2), y)
    y = lfilter(*_peaking(rng.uniform(600, 1000), -rng.uniform(4, 8), 1.0), y)
    y = sosfilt(
        butter(4, rng.uniform(5000, 6500), btype="lowpass", fs=SAMPLE_RATE, output="sos"),
        y,
    )
    drive = rng.uniform(2.0, 6.0)
    y = np.tanh(drive * y) / drive * 1.5
    t = np.arange(len(y)) / SAMPLE_RATE
    mains = rng.choice([50.0, 60.0])
    hum = sum(np.sin(2 * math.pi * mains * h * t + rng.uniform(0, 2 * math.pi)) / h for h in (1, 2, 3))
    level = _rms(y)
    y = y + hum * level * 10 ** (-rng.uniform(25, 35) / 20)
    y = y + rng.standard_normal(len(y)) * level * 10 ** (-rng.uniform(30, 40) / 20)
    return y


def make_rir_pool(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` shoebox room impulse responses (image method), each peak-normalised to 1."""
    import pyroomacoustics as pra

    pool = []
    for _ in range(n):
        dims = np.array([rng.uniform(4, 9), rng.uniform(3, 7), rng.uniform(2.5, 3.5)])
        rt60 = rng.uniform(*RT60_RANGE_S)
        absorption, max_order = pra.inverse_sabine(rt60, dims)
        room = pra.ShoeBox(
            dims,
            fs=SAMPLE_RATE,
            materials=pra.Material(absorption),
            max_order=min(max_order, 20),
        )
        mic = dims * rng.uniform(0.2, 0.8, size=3)
        mic[2] = rng.uniform(0.7, 1.5)
        for _ in range(100):  # a source 1-4 m away, inside the room
            src = mic + _unit(rng) * rng.uniform(1.0, 4.0)
            src[2] = rng.uniform(1.2, 1.9)
            if np.all(src > 0.3) and np.all(src < dims - 0.3):
                break
        else:
            src = dims / 2
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float64)
        pool.append(rir / np.max(np.abs(rir)))
    return pool


def farfield(x: np.ndarray, rir: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distant microphone in a reverberant room: ``x`` convolved with ``rir`` (same length as ``x``).

    Example:
        >>> farfield(np.ones(100), np.array([1.0, 0.5]), np.random.default_rng(0)).shape
        (100,)
    """
    y = fftconvolve(x, rir)[: len(x)]
    return y + rng.standard_normal(len(y)) * _rms(y) * 10 ** (-rng.uniform(30, 40) / 20)


def add_noise(
    x: np.ndarray, clips: list[np.ndarray], rng: np.random.Generator, vary_speed: bool
) -> np.ndarray:
    """``x`` plus a random stretch of a random clip at an SNR drawn from :data:`SNR_RANGE_DB`.

    Example:
        >>> y = add_noise(np.ones(100), [np.ones(30)], np.random.default_rng(0), vary_speed=False)
        >>> y.shape
        (100,)
    """
    noise = clips[int(rng.integers(len(clips)))]
    if vary_speed:
        down = int(rng.integers(17, 24))  # speed 20/down: 0.85-1.15
        noise = resample_poly(noise, 20, down)
    start = int(rng.integers(len(noise)))
    reps = -(-(start + len(x)) // len(noise))
    segment = np.tile(noise, reps)[start : start + len(x)]
    snr_db = rng.uniform(*SNR_RANGE_DB)
    gain = _rms(x) / max(_rms(segment), 1e-8) * 10 ** (-snr_db / 20)
    return x + gain * segment


def render(
    domain: str,
    x: np.ndarray,
    rng: np.random.Generator,
    rirs: list[np.ndarray],
    noise: dict[str, list[np.ndarray]],
) -> np.ndarray:
    """``x`` (16 kHz float) as heard in ``domain``; scaled down if it would clip on writing."""
    if domain == "clean":
        y = x.astype(np.float64)
    elif domain == "phone":
        y = phone(x, rng)
    elif domain == "laptop":
        y = laptop(x, rng)
    elif domain == "farfield":
        y = farfield(x, rirs[int(rng.integers(len(rirs)))], rng)
    elif domain in NOISE_SOURCES:
        y = add_noise(x, noise[domain], rng, vary_speed=domain == "laugh")
    else:
        raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
    peak = float(np.max(np.abs(y)))
    if peak > 0.95:
        y = y * (0.95 / peak)
    return y.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))
