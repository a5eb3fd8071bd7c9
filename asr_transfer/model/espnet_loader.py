"""Load an ESPnet2 ASR experiment (``config.yaml`` + ``.pth``) as a :class:`HybridASR`.

ESPnet2's ``ESPnetASRModel`` and our model share the encoder and decoder
blocks, so the state dict maps by identical names except for the
vocabulary-dependent layers, which live in our per-language head, and the
global CMVN statistics::

    decoder.embed.0.weight   -> heads.<lang>.embed.weight
    decoder.output_layer.*   -> heads.<lang>.output.*
    ctc.ctc_lo.*             -> heads.<lang>.ctc.ctc_lo.*
    normalize.mean / .std    -> cmvn.mean / cmvn.istd (= 1 / std)
    frontend.*               -> the returned ESPnet frontend

The load is strict: any key missing on either side raises (a silent
``strict=False`` would leave a randomly initialised model behind).

ESPnet computes its features inside the model (``DefaultFrontend``: STFT +
log-mel), which differ from our Kaldi fbank, so the frontend is returned too:
``feats, lens = frontend(speech, speech_lens)`` then ``model.encode(feats, lens)``. To decode,
:meth:`asr_transfer.decode.Recognizer.from_espnet_exp` runs it on each utterance's own samples
(over a zero-padded batch its last frames would depend on the batch) and pads the features.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from asr_transfer.data.frontend import espnet_frontend_module
from asr_transfer.model.asr import ENCODERS, HybridASR
from asr_transfer.text.tokenizer import Tokenizer

#: checkpoints tried in this order when none is named (ESPnet's usual names)
CHECKPOINTS = (
    "valid.acc.ave.pth",
    "valid.acc.best.pth",
    "valid.loss.ave.pth",
    "valid.loss.best.pth",
    "latest.pth",
)
#: ESPnet's subsampling input layers that HybridASR.encode drives with (x, mask)
SUBSAMPLING = {"conv2d", "conv2d1", "conv2d2", "conv2d6", "conv2d8"}


class ESPnetLoadError(ValueError):
    """The experiment cannot be represented by HybridASR, or its checkpoint does not fit."""


def load_espnet_exp(
    exp_dir_or_config: str | Path, checkpoint: str | Path | None = None, lang: str = "en"
) -> tuple[HybridASR, Tokenizer, torch.nn.Module | None]:
    """Build a :class:`HybridASR` (in eval mode) with one head ``lang`` from an ESPnet2 ASR experiment.

    Args:
        exp_dir_or_config: the experiment folder (holding ``config.yaml``) or the config file itself.
        checkpoint: a ``.pth`` (a state dict, or ESPnet's ``checkpoint.pth`` with a ``model`` entry);
            default: the first of :data:`CHECKPOINTS` in the experiment, else the newest ``N epoch.pth``.
        lang: name of the language head that receives ESPnet's vocabulary.

    Returns:
        ``(model, tokenizer, frontend)``; ``frontend`` is ESPnet's own module (``None`` when the
        experiment was trained on precomputed features, ``input_size`` set).

    Example (with an experiment trained by ``espnet2.bin.asr_train``)::

        model, tok, frontend = load_espnet_exp("exp/asr_train_raw_en_char")
        feats, lens = frontend(speech, speech_lens)          # (1, N) 16 kHz -> (1, T, 80)
        enc, enc_lens, _ = model.encode(feats, lens, exact_lengths=True)
        ids = ctc_greedy(model.ctc_log_probs(enc, "en"), enc_lens)
    """
    cfg, exp_dir = read_espnet_config(exp_dir_or_config)
    tokenizer = _tokenizer(cfg, exp_dir, lang)
    frontend = _frontend(cfg)
    input_dim = frontend.output_size() if frontend is not None else int(cfg["input_size"])
    model = HybridASR(
        vocab_sizes={lang: tokenizer.vocab_size}, input_dim=input_dim, **espnet_model_config(cfg)
    )

    ckpt_path = Path(checkpoint) if checkpoint is not None else default_checkpoint(exp_dir)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    ours, front = map_state_dict(state, lang, cfg.get("normalize"), cfg.get("normalize_conf") or {})
    if cfg.get("normalize") is None:
        # no normalisation in ESPnet: our CMVN stays the identity
        ours.update({f"cmvn.{k}": v.clone() for k, v in model.cmvn.state_dict().items()})
    _load_strict(model, ours, ckpt_path)
    if frontend is not None:
        _load_strict(frontend, front, ckpt_path, prefix="frontend.")
        frontend.eval()
    return model.eval(), tokenizer, frontend


def read_espnet_config(exp_dir_or_config: str | Path) -> tuple[dict, Path]:
    """``(config, experiment folder)`` of an ESPnet2 experiment folder or its ``config.yaml``."""
    path = Path(exp_dir_or_config)
    config_path = path / "config.yaml" if path.is_dir() else path
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no ESPnet2 config (is {path} an ESPnet experiment folder?)")
    with open(config_path, encoding="utf-8") as f:
        return yaml.safe_load(f), config_path.parent


def espnet_features_config(exp_dir_or_config: str | Path) -> dict:
    """The ``features:`` section that computes an ESPnet2 experiment's input frames with its frontend.

    The frontend is rebuilt from ``frontend``/``frontend_conf`` when features are dumped, so only
    frontends whose state follows from their config (ESPnet's ``default``: STFT + log-mel) qualify.

    Example (with an experiment trained by ``espnet2.bin.asr_train``)::

        espnet_features_config("exp/asr_train_raw_en_char")
        # {'type': 'espnet', 'frontend': 'default', 'frontend_conf': {'n_fft': 512, ...}}
    """
    cfg, exp_dir = read_espnet_config(exp_dir_or_config)
    return _features_section(cfg, exp_dir)


def _features_section(cfg: dict, exp_dir: Path) -> dict:
    if cfg.get("frontend") is None:
        raise ESPnetLoadError(
            f"{exp_dir}: trained on precomputed features (input_size: {cfg.get('input_size')}); "
            "only experiments with an ESPnet frontend on raw audio can be reproduced"
        )
    return {"type": "espnet", "frontend": cfg["frontend"], "frontend_conf": cfg.get("frontend_conf") or {}}


def espnet_starting_point(
    exp_dir: str | Path, checkpoint: str | Path | None = None, lang: str = "en"
) -> tuple[HybridASR, Tokenizer, dict, dict]:
    """What training from an ESPnet2 experiment needs: model, tokenizer, ``model:`` and ``features:``.

    The returned sections make our experiment self-contained: its ``config.yaml`` rebuilds
    the model and the frontend without the ESPnet folder.
    """
    cfg, path = read_espnet_config(exp_dir)
    features = _features_section(cfg, path)  # fails before any weights are loaded
    model, tok, frontend = load_espnet_exp(exp_dir, checkpoint, lang)
    fresh = espnet_frontend_module(features["frontend"], features["frontend_conf"]).state_dict()
    for key, value in frontend.state_dict().items():
        if not torch.allclose(value.float(), fresh[key].float()):
            raise ESPnetLoadError(
                f"{exp_dir}: frontend state {key!r} differs from what its config builds (a trained "
                "frontend); features dumped with the config would not be the model's"
            )
    model_cfg = {"input_dim": frontend.output_size(), **espnet_model_config(cfg)}
    return model.train(), tok, model_cfg, features


def map_state_dict(
    state: dict[str, torch.Tensor],
    lang: str,
    normalize: str | None = None,
    normalize_conf: dict | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """ESPnet2 ``ESPnetASRModel`` state dict -> (HybridASR state dict, frontend state dict).

    Example:
        >>> w = torch.zeros(5, 4)
        >>> ours, front = map_state_dict({"decoder.embed.0.weight": w, "ctc.ctc_lo.bias": torch.zeros(5),
        ...                               "frontend.logmel.melmat": w}, "en")
        >>> sorted(ours), sorted(front)
        (['heads.en.ctc.ctc_lo.bias', 'heads.en.embed.weight'], ['logmel.melmat'])
    """
    conf = normalize_conf or {}
    head = f"heads.{lang}."
    ours: dict[str, torch.Tensor] = {}
    front: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("frontend."):
            front[key.removeprefix("frontend.")] = value
        elif key == "decoder.embed.0.weight":
            ours[head + "embed.weight"] = value
        elif key.startswith("decoder.output_layer."):
            ours[head + "output." + key.removeprefix("decoder.output_layer.")] = value
        elif key.startswith("ctc.ctc_lo."):
            ours[head + key] = value
        elif key.startswith("normalize."):
            if normalize != "global_mvn" and normalize is not None:
                raise ESPnetLoadError(
                    f"normalize: {normalize} has no equivalent in HybridASR (global CMVN only)"
                )
            if key == "normalize.mean":
                ours["cmvn.mean"] = value if conf.get("norm_means", True) else torch.zeros_like(value)
            elif key == "normalize.std":
                # ESPnet divides by std; our CMVN multiplies by its inverse
                ours["cmvn.istd"] = (
                    1.0 / value.double() if conf.get("norm_vars", True) else torch.ones_like(value)
                )
            else:
                ours[key] = value  # unknown normalize state: reported as unexpected by the strict load
        else:
            ours[key] = value
    return ours, front


def default_checkpoint(exp_dir: Path) -> Path:
    """The checkpoint :func:`load_espnet_exp` uses when none is named."""
    for name in CHECKPOINTS:
        if (exp_dir / name).exists():
            return exp_dir / name
    epochs = sorted(exp_dir.glob("*epoch.pth"), key=lambda p: int(p.name.split("epoch")[0]))
    if epochs:
        return epochs[-1]
    raise FileNotFoundError(f"{exp_dir}: no checkpoint ({', '.join(CHECKPOINTS)} or N epoch.pth)")


# ----------------------------------------------------------------------------------------
def espnet_model_config(cfg: dict) -> dict:
    """HybridASR keyword arguments (a ``model:`` section) equivalent to an ESPnet2 ASR config.

    Parts HybridASR cannot represent raise :class:`ESPnetLoadError`.
    """
    for part in ("preencoder", "postencoder"):
        if cfg.get(part) is not None:
            raise ESPnetLoadError(f"{part}: {cfg[part]} is not supported by HybridASR")
    if cfg.get("model", "espnet") != "espnet":
        raise ESPnetLoadError(
            f"model: {cfg['model']} is not supported (only ESPnet's hybrid CTC/attention model)"
        )
    if cfg.get("normalize") not in (None, "global_mvn"):
        raise ESPnetLoadError(f"normalize: {cfg['normalize']} is not supported (only global_mvn or none)")
    if cfg.get("encoder") not in ENCODERS:
        raise ESPnetLoadError(f"encoder: {cfg.get('encoder')} is not supported (one of {sorted(ENCODERS)})")
    if cfg.get("decoder") != "transformer":
        raise ESPnetLoadError(f"decoder: {cfg.get('decoder')} is not supported (only transformer)")
    enc = dict(cfg.get("encoder_conf") or {})
    if enc.get("input_layer", "conv2d") not in SUBSAMPLING:
        raise ESPnetLoadError(
            f"encoder input_layer {enc['input_layer']!r} is not supported ({sorted(SUBSAMPLING)})"
        )
    if not enc.get("normalize_before", True):
        raise ESPnetLoadError(
            "encoder normalize_before: false is not supported (HybridASR applies after_norm)"
        )
    if enc.get("interctc_layer_idx"):
        raise ESPnetLoadError("intermediate CTC (interctc_layer_idx) is not supported")
    dec = dict(cfg.get("decoder_conf") or {})
    if dec.pop("input_layer", "embed") != "embed" or not dec.pop("use_output_layer", True):
        raise ESPnetLoadError("the decoder needs input_layer: embed and an output layer")
    model_conf = cfg.get("model_conf") or {}
    specaug = cfg.get("specaug_conf") if cfg.get("specaug") == "specaug" else None
    if cfg.get("specaug") not in (None, "specaug"):
        raise ESPnetLoadError(f"specaug: {cfg['specaug']} is not supported")
    return {
        "encoder": {"type": cfg["encoder"], **enc},
        "decoder": dec,
        "ctc_weight": float(model_conf.get("ctc_weight", 0.5)),
        "lsm_weight": float(model_conf.get("lsm_weight", 0.0)),
        "specaug": dict(specaug or {}) if specaug is not None else None,
    }


def _frontend(cfg: dict) -> torch.nn.Module | None:
    """ESPnet's own frontend class built from the config (``None`` for precomputed features)."""
    if cfg.get("input_size") is not None or cfg.get("frontend") is None:
        if cfg.get("input_size") is None:
            raise ESPnetLoadError("the config has neither a frontend nor input_size")
        return None
    return espnet_frontend_module(cfg["frontend"], cfg.get("frontend_conf"))


def _tokenizer(cfg: dict, exp_dir: Path, lang: str) -> Tokenizer:
    tokens = cfg["token_list"]
    if isinstance(tokens, str):
        tokens = _resolve(tokens, exp_dir).read_text(encoding="utf-8").splitlines()
    kind = cfg.get("token_type", "char")
    if kind == "char":
        return Tokenizer(list(tokens), kind="char", lang=lang)
    if kind == "bpe":
        model = _resolve(cfg["bpemodel"], exp_dir)
        return Tokenizer(list(tokens), kind="sentencepiece", lang=lang, sp_model=model.read_bytes())
    raise ESPnetLoadError(f"token_type: {kind} is not supported (char or bpe)")


def _resolve(name: str, exp_dir: Path) -> Path:
    """A path from an ESPnet config: as written (relative to the recipe dir, ESPnet's cwd) or in the exp."""
    p = Path(name)
    candidates = [p] if p.is_absolute() else [p, exp_dir.parent.parent / p, exp_dir / p, exp_dir / p.name]
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(f"{name}: not found (tried {', '.join(map(str, candidates))})")


def _load_strict(
    module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, prefix: str = ""
) -> None:
    """``load_state_dict`` that names every missing, unexpected and mis-shaped key before failing."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: {tuple(state[k].shape)} vs ours {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        raise ESPnetLoadError(
            f"{source} does not fit {type(module).__name__}:\n"
            f"  missing: {[prefix + k for k in missing]}\n  unexpected: {[prefix + k for k in unexpected]}\n"
            f"  shape mismatch: {shapes}"
        )
    module.load_state_dict(state, strict=True)
