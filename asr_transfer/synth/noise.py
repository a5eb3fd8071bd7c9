"""The recorded noise bank (rain, wind, crowd, laughter, ...): where it is and how to load it.

The bank is a folder of 16 kHz mono FLAC files in one sub-folder per category, with a
``NOTICE.md`` giving each recording's origin and licence. The project ships one in ``data/noise/``
(about 10 MB), so a fresh clone needs nothing beside it; ``recipes/common/make_noise_bank.sh``
rebuilds it from Debian packages.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

NOISE_ENV = "ASR_TRANSFER_NOISE_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NOISE_DIR = REPO_ROOT / "data" / "noise"
SAMPLE_RATE = 16000


class NoiseBankError(FileNotFoundError):
    """The noise bank is missing or lacks a category the corpus needs."""


_HOW_TO_GET = (
    "run recipes/common/make_noise_bank.sh DIR (rebuilds it from Debian packages) "
    f"and pass --noise-dir DIR or set {NOISE_ENV}=DIR"
)


def find_noise_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The noise bank: ``explicit``, else ``$ASR_TRANSFER_NOISE_DIR``, else the shipped ``<repo>/data/noise``.

    Example:
        >>> (DEFAULT_NOISE_DIR / "NOTICE.md").is_file()  # the bank ships with the project
        True
        >>> find_noise_dir("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        NoiseBankError: noise bank /nonexistent does not exist; run ...
    """
    if explicit is not None:
        path, origin = Path(explicit), "--noise-dir"
    elif os.environ.get(NOISE_ENV):
        path, origin = Path(os.environ[NOISE_ENV]), f"${NOISE_ENV}"
    elif DEFAULT_NOISE_DIR.is_dir():
        return DEFAULT_NOISE_DIR
    else:
        raise NoiseBankError(f"the shipped noise bank {DEFAULT_NOISE_DIR} is missing; {_HOW_TO_GET}")
    if not path.is_dir():
        raise NoiseBankError(f"noise bank {path} (from {origin}) does not exist; {_HOW_TO_GET}")
    return path


def load_noise_bank(noise_dir: Path, categories: tuple[str, ...]) -> dict[str, list[tuple[str, np.ndarray]]]:
    """``{category: [(file name, float32 samples), ...]}``, files sorted by name for determinism."""
    bank: dict[str, list[tuple[str, np.ndarray]]] = {}
    for cat in categories:
        files = sorted((noise_dir / cat).glob("*.flac")) + sorted((noise_dir / cat).glob("*.wav"))
        if not files:
            raise NoiseBankError(f"noise bank {noise_dir} has no recordings in {cat}/; {_HOW_TO_GET}")
        clips = []
        for f in files:
            audio, rate = sf.read(f, dtype="float32", always_2d=True)
            if rate != SAMPLE_RATE:
                raise NoiseBankError(f"{f}: sample rate {rate}, expected {SAMPLE_RATE}; {_HOW_TO_GET}")
            clips.append((f.name, audio.mean(axis=1)))
        bank[cat] = clips
    return bank


def notice(noise_dir: Path) -> str:
    """The bank's licence notice (``NOTICE.md``), or an empty string if it has none."""
    path = noise_dir / "NOTICE.md"
    return path.read_text(encoding="utf-8") if path.is_file() else ""
