"""Load a trained experiment and transcribe audio from Python."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from asr_transfer.config import load_config
from asr_transfer.data.audio import SAMPLE_RATE, load_any_audio
from asr_transfer.data.frontend import ESPnetFrontend, Frontend, KaldiFbank, build_frontend
from asr_transfer.data.kaldi import DataDir
from asr_transfer.decode.search import DecodeConfig, decode_batch_scored
from asr_transfer.model.asr import HybridASR, build_model
from asr_transfer.text.tokenizer import Tokenizer
from asr_transfer.train.checkpoint import load_model_state


class Recognizer:
    """A trained model with its tokenizers, ready to decode.

    Example (with an experiment trained by the mini recipe)::

        rec = Recognizer.from_exp("recipes/mini/exp/train_tiny")
        rec.transcribe("utt.flac")          # -> "three one four"

    Hot swap: one base model, one small adapter file per language (``asr-transfer add-language
    --method adapter``); decoding a language enables its adapter, the base is never reloaded::

        rec = Recognizer.from_exp("exp/multi", adapter=["exp/ro_adapter/ro.adapter"])
        rec.load_adapter("exp/cs_adapter/cs.adapter")
        rec.transcribe("ro.flac", lang="ro"), rec.transcribe("cs.flac", lang="cs")

    The same for devices: a domain adapter file (a domain-adaptation method trained with
    ``--adapt.train adapter``) is enabled for audio of its domain, and any other audio is decoded by
    the base as it was, so the source domain is never forgotten::

        rec = Recognizer.from_exp("exp/tiny_clean", adapter=["exp/adapt/mmd_adapter_room/room.adapter"])
        rec.transcribe("room.flac", domain="room"), rec.transcribe("clean.flac")

    :meth:`transcribe` takes any sample rate and channel count (a 44.1 kHz stereo phone recording,
    an 8 kHz call) and says once on stderr how it converted them.

    Test-time adaptation (SUTA, :mod:`asr_transfer.decode.tta`) on top of the recorded decoding,
    per utterance and undone after each: ``Recognizer.from_exp("exp/src", tta="suta")``.
    """

    #: the rate the model's features are computed at (the data dirs it was trained on are checked for it)
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: HybridASR,
        tokenizers: dict[str, Tokenizer],
        decode: DecodeConfig | None = None,
        device: str | torch.device = "cpu",
        frontend: Frontend | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.frontend = frontend or KaldiFbank()
        self.tokenizers = tokenizers
        self.decode_cfg = decode or DecodeConfig()
        self.device = torch.device(device)
        #: language -> adapter set enabled when decoding it; other languages get the model's own
        self.adapter_of: dict[str, str | None] = {}
        #: domain -> its domain adapter, enabled after the language's when decoding audio of that domain
        self.domain_adapters: dict[str, str] = {}
        self.default_enabled = model.enabled_adapters()
        #: (rate, channels) of the recordings converted so far: each kind is noted once
        self._noted: set[tuple[int, int]] = set()

    def load_adapter(self, path: str | Path) -> str:
        """Load an adapter file (adapter + head + tokenizer of one language); return its language,
        or for a domain adapter file (the adapter of one domain) its domain.

        The file must fit this model's body (a clear error naming the file otherwise).
        """
        data = self.model.load_adapter(path, enable=False)
        if "domain" in data:
            self.domain_adapters[data["domain"]] = data["name"]
            return data["domain"]
        tok = data["tokenizer"]
        self.tokenizers[data["lang"]] = Tokenizer(tok["tokens"], tok["kind"], tok["lang"], tok["sp_model"])
        self.adapter_of[data["lang"]] = data["name"]
        return data["lang"]

    @classmethod
    def from_exp(
        cls,
        exp_dir: str | Path,
        checkpoint: str = "model.pt",
        decode: DecodeConfig | None = None,
        device: str | torch.device = "cpu",
        adapter: str | Path | list[str | Path] | None = None,
        tta: str | None = None,
    ) -> Recognizer:
        """Build from ``EXP/config.yaml`` (model and frontend), ``EXP/tokenizers/<lang>`` and
        ``EXP/<checkpoint>`` (strict load), then load the ``adapter`` file(s). ``decode`` defaults
        to the decoding recorded in ``EXP/decode.yaml`` (``asr-transfer choose-decoding``); ``tta``
        replaces its test-time adaptation (``suta``, or ``none``)."""
        exp = Path(exp_dir)
        cfg = load_config([exp / "config.yaml"])
        toks = {p.name: Tokenizer.load(p) for p in sorted((exp / "tokenizers").iterdir())}
        model = build_model(cfg["model"], {lang: t.vocab_size for lang, t in toks.items()})
        path = exp / checkpoint
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint {path}: has training finished?")
        model.load_state_dict(load_model_state(path))
        decode = decode or DecodeConfig.for_exp(exp, [], [])  # the experiment's recorded decoding
        if tta is not None:
            decode = dataclasses.replace(decode, tta=tta)
        rec = cls(model, toks, decode, device, build_frontend(cfg.get("features")))
        adapt = cfg.get("adapt") or {}
        if adapt.get("method") == "source_adapters":  # trained with each language through its own adapter
            langs = adapt.get("langs") or []
            rec.adapter_of.update({lang: lang for lang in langs if lang in model.adapter_specs})
        for path in [adapter] if isinstance(adapter, str | Path) else adapter or []:
            rec.load_adapter(path)
        return rec

    @classmethod
    def from_espnet_exp(
        cls,
        exp_dir: str | Path,
        checkpoint: str | Path | None = None,
        decode: DecodeConfig | None = None,
        device: str | torch.device = "cpu",
        lang: str = "en",
    ) -> Recognizer:
        """Decode with an ESPnet2 ASR experiment as it is (no training by us), through its own frontend.

        An experiment trained on precomputed features (no ESPnet frontend, ``input_size`` set) is
        decoded with our Kaldi fbank (:class:`~asr_transfer.data.frontend.KaldiFbank`): right for one
        trained on the dumps of ``asr-transfer features`` (ESPnet's ``kaldi_ark`` input, as
        ``bench/decode_speed.py --features fbank`` trains), where its ``Speech2Text`` takes the
        same ``(T, 80)`` frames; an ``input_size`` other than our fbank's is refused.

        Example (with an experiment trained by ``espnet2.bin.asr_train``)::

            rec = Recognizer.from_espnet_exp("exp/asr_train_raw_en_char")
            rec.transcribe_waves(waves)   # = one utterance at a time, = ESPnet's Speech2Text
        """
        from asr_transfer.data.features import NUM_MEL_BINS
        from asr_transfer.model.espnet_loader import ESPnetLoadError, load_espnet_exp

        model, tok, frontend = load_espnet_exp(exp_dir, checkpoint, lang)
        if frontend is not None:
            return cls(model, {lang: tok}, decode, device, ESPnetFrontend(module=frontend))
        dim = model.cmvn.mean.numel()
        if dim != NUM_MEL_BINS:
            raise ESPnetLoadError(
                f"{exp_dir}: trained on precomputed features of {dim} dims; only our {NUM_MEL_BINS}-dim "
                "Kaldi fbank (asr-transfer features) can be computed from audio here"
            )
        return cls(model, {lang: tok}, decode, device, KaldiFbank())

    def default_lang(self, lang: str | None) -> str:
        """``lang``, checked, or the model's only head; a :class:`ValueError` listing the heads."""
        heads = ", ".join(sorted(self.tokenizers))
        if lang is None:
            if len(self.tokenizers) != 1:
                raise ValueError(f"the model has heads {heads}: pass --lang (one of them)")
            return next(iter(self.tokenizers))
        if lang not in self.tokenizers:
            raise ValueError(f"no head for language {lang!r}; the model has heads {heads}")
        return lang

    def lang_of(self, data: DataDir, lang: str | None) -> str:
        """The head that decodes a data dir: ``lang`` (``--lang``), else its ``utt2lang``, else the
        model's only head. A dir without ``utt2lang`` for a model with several heads is a one-line
        error naming the dir and the heads."""
        if lang is None and data.utt2lang:
            lang = next(iter(data.utt2lang.values()))
        try:
            return self.default_lang(lang)
        except ValueError as err:
            why = "no utt2lang, and " if lang is None else ""
            raise ValueError(f"{data.path}: {why}{err}") from None

    def transcribe_waves(
        self, waves: list[np.ndarray], lang: str | None = None, domain: str | None = None
    ) -> list[str]:
        """Decode 16 kHz float waveforms in one padded batch (each gets its one-at-a-time result:
        features per utterance, lengths as alone; see :func:`~asr_transfer.decode.search.decode_batch`).
        ``domain``: the recording's domain; its domain adapter, if loaded, is enabled."""
        return self.transcribe_waves_scored(waves, lang, domain)[0]

    def transcribe_waves_scored(
        self, waves: list[np.ndarray], lang: str | None = None, domain: str | None = None
    ) -> tuple[list[str], list[float]]:
        """Decode 16 kHz float waveforms in one padded batch; also each hypothesis's length-normalised
        confidence (see :func:`asr_transfer.decode.search.decode_batch_scored`)."""
        lang = self.default_lang(lang)
        name = self.adapter_of.get(lang)
        enabled = [name] if name else list(self.default_enabled)
        if domain in self.domain_adapters:
            enabled.append(self.domain_adapters[domain])
        self.model.set_enabled(enabled)
        feats = [self.frontend(w) for w in waves]
        lens = torch.tensor([f.shape[0] for f in feats])
        batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
        ids, scores = decode_batch_scored(
            self.model, batch.to(self.device), lens.to(self.device), lang, self.decode_cfg
        )
        return [self.tokenizers[lang].decode(seq) for seq in ids], scores

    def transcribe(self, path: str | Path, lang: str | None = None, domain: str | None = None) -> str:
        """Transcribe one audio file of any rate and channel count soundfile reads (WAV, FLAC, OGG,
        MP3 where libsndfile has it): channels averaged, resampled to :attr:`sample_rate`.
        ``domain`` (the device or condition) enables its domain adapter, if one is loaded.

        The first file of each rate and channel count that needed converting is named on stderr
        with what was done (audio below the model's rate: upsampled, and WER will suffer).
        """
        wave, how = load_any_audio(path, sample_rate=self.sample_rate)
        if how.changed and (how.sample_rate, how.channels) not in self._noted:
            self._noted.add((how.sample_rate, how.channels))
            print(f"note: {how.note(path)} (said once for every file like it)", file=sys.stderr)
        return self.transcribe_waves([wave], lang, domain)[0]
