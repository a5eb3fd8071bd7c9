"""Frontends: what turns a waveform into the frames a model reads.

A model is tied to the frontend it was trained with, so the frontend is part of
the experiment's config (``features:``), every dump records the one that made
it (``DUMP/frontend.yaml``), and training refuses a dump made by another one.

- ``kaldi_fbank`` (default): our Kaldi-compatible log-mel fbank, see :func:`fbank`.
- ``espnet``: ESPnet2's own frontend module (``DefaultFrontend``: STFT + log-mel, ...)
  built from an ESPnet experiment's ``frontend``/``frontend_conf``, for models
  started from that experiment (``train.init_espnet``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import yaml

from asr_transfer.data.features import NUM_MEL_BINS, fbank
from asr_transfer.data.kaldi import DataError

DEFAULT = {"type": "kaldi_fbank", "num_mel_bins": NUM_MEL_BINS}
RECORD = "frontend.yaml"


class Frontend(Protocol):
    dim: int

    def __call__(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor: ...


class KaldiFbank:
    """Kaldi fbank of one utterance: ``(N,)`` 16 kHz samples -> ``(T, num_mel_bins)``.

    Example:
        >>> KaldiFbank()(np.zeros(16000, dtype=np.float32)).shape
        torch.Size([98, 80])
    """

    def __init__(self, num_mel_bins: int = NUM_MEL_BINS) -> None:
        self.dim = num_mel_bins

    def __call__(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        return fbank(wave, self.dim)


class ESPnetFrontend:
    """ESPnet2's frontend applied to one utterance: ``(N,)`` -> ``(T, D)``.

    One utterance at a time, on its own samples: over a zero-padded batch ESPnet's STFT frames the
    shorter utterances' ends with padding instead of its reflection, so their last frames would depend
    on the batch (ESPnet's ``Speech2Text`` also runs it on one unpadded utterance). ``module``: an
    already built frontend (e.g. the one :func:`~asr_transfer.model.espnet_loader.load_espnet_exp`
    returns) instead of one built from ``frontend``/``frontend_conf``.

    Example:
        >>> f = ESPnetFrontend("default", {"n_fft": 512, "hop_length": 160, "n_mels": 80})
        >>> f(np.zeros(16000, dtype=np.float32)).shape
        torch.Size([101, 80])
    """

    def __init__(
        self,
        frontend: str = "default",
        frontend_conf: dict | None = None,
        module: torch.nn.Module | None = None,
    ) -> None:
        self.module = (module or espnet_frontend_module(frontend, frontend_conf)).eval()
        self.dim = self.module.output_size()

    @torch.no_grad()
    def __call__(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(wave, dtype=torch.float32)
        feats, _ = self.module(x[None], torch.tensor([x.numel()]))
        return feats[0]


#: ``features.type`` -> frontend class; the other keys are its keyword arguments
FRONTENDS = {"kaldi_fbank": KaldiFbank, "espnet": ESPnetFrontend}


def espnet_frontend_module(name: str, conf: dict | None) -> torch.nn.Module:
    """ESPnet's own frontend class ``name`` (``default``, ``fused``, ...) built with ``conf``."""
    if name == "default":
        from espnet2.asr.frontend.default import DefaultFrontend

        cls = DefaultFrontend
    else:
        # the registry lives in espnet2.tasks.asr, a slow import (~10 s); only pay it when needed
        from espnet2.tasks.asr import frontend_choices

        cls = frontend_choices.get_class(name)
    return cls(**(conf or {}))


def resolve(conf: dict | None) -> dict:
    """A ``features:`` section with its defaults filled in (what dumps and configs record).

    Example:
        >>> resolve(None)
        {'type': 'kaldi_fbank', 'num_mel_bins': 80}
    """
    if not conf:
        return dict(DEFAULT)
    conf = dict(conf)
    kind = conf.get("type", "kaldi_fbank")
    if kind not in FRONTENDS:
        raise ValueError(f"features.type {kind!r} is not one of {sorted(FRONTENDS)}")
    if kind == "kaldi_fbank":
        return {"type": kind, "num_mel_bins": int(conf.get("num_mel_bins", NUM_MEL_BINS))}
    return {
        "type": kind,
        "frontend": conf.get("frontend", "default"),
        "frontend_conf": conf.get("frontend_conf") or {},
    }


def build_frontend(conf: dict | None) -> Frontend:
    """The frontend of a ``features:`` config section (``None``: Kaldi fbank, 80 bins).

    Example:
        >>> build_frontend({"type": "kaldi_fbank", "num_mel_bins": 40}).dim
        40
    """
    conf = resolve(conf)
    return FRONTENDS[conf.pop("type")](**conf)


def write_record(dump_dir: str | Path, conf: dict | None) -> None:
    """Record in ``DUMP/frontend.yaml`` which frontend made the dump."""
    (Path(dump_dir) / RECORD).write_text(yaml.safe_dump(resolve(conf), sort_keys=True))


def check_record(dump_dir: str | Path, conf: dict | None) -> None:
    """Raise :class:`DataError` naming the dump when it was made by another frontend than ``conf``.

    A dump without a record predates records and was made by the default frontend.
    """
    path = Path(dump_dir) / RECORD
    made = resolve(yaml.safe_load(path.read_text()) if path.exists() else None)
    wanted = resolve(conf)
    if made != wanted:
        raise DataError(
            f"{path}: features made by {made}, but the model reads {wanted}; "
            "dump them again with the model's frontend (asr-transfer features --espnet-exp for ESPnet models)"
        )
