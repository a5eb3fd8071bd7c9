"""Named adapters: their config entries, the base-model fingerprint and the adapter file.

An adapter set is a name (``"ro"``) with one module in every slot of the chosen stacks. Its
config entry lives in ``model.adapters`` so ``build_model`` rebuilds an adapted experiment
exactly::

    model:
      adapters:
        ro: {type: adapter, bottleneck: 64, where: [encoder, decoder], enabled: true, order: 0}

``order`` is the position among the enabled modules of a slot (slots apply them in that
order); the saved config sorts keys, so the order cannot live in the mapping's own order.
New module kinds (a fusion layer for SimAdapter) register in :data:`ADAPTER_TYPES`.

An adapter file (``torch.save`` of a dict, :data:`FORMAT`) holds one language's adapter and head
weights, that language's tokenizer, and what is needed to check it fits a base model: the
fingerprint of the shared body (:func:`body_fingerprint`) and its sizes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from asr_transfer.model.slots import Adapter, Fusion
from asr_transfer.util.atomic import save_torch

FORMAT = "asr-transfer-adapter/1"

#: ``type`` in a config entry -> ``make(d_model, **options)``
ADAPTER_TYPES: dict[str, Callable[..., torch.nn.Module]] = {
    "adapter": lambda d_model, bottleneck=64: Adapter(d_model, bottleneck),
    "fusion": lambda d_model, fuses, temperature="sqrt_d", with_base=False: Fusion(
        d_model, fuses, temperature, with_base
    ),
}
#: ``type`` -> its options in a config entry: (default, or ``None`` for a required one; converter)
TYPE_OPTIONS: dict[str, dict[str, tuple]] = {
    "adapter": {"bottleneck": (64, int)},
    "fusion": {"fuses": (None, lambda v: [str(x) for x in v]), "temperature": ("sqrt_d", str),
               "with_base": (False, bool)},
}  # fmt: skip

STACKS = ("encoder", "decoder")


class AdapterFileError(ValueError):
    """An adapter file that is not one, or does not fit the model it is loaded into."""


def normalise_spec(name: str, spec: dict) -> dict:
    """A complete config entry: defaults filled in, unknown keys and types rejected.

    Example:
        >>> normalise_spec("ro", {"bottleneck": 16})
        {'type': 'adapter', 'bottleneck': 16, 'where': ['encoder', 'decoder'], 'enabled': True}
        >>> spec = normalise_spec("fusion", {"type": "fusion", "fuses": ["de", "ro"], "where": ["encoder"]})
        >>> spec["fuses"], spec["temperature"], spec["with_base"], spec["where"]
        (['de', 'ro'], 'sqrt_d', False, ['encoder'])
    """
    spec = dict(spec)
    kind = spec.pop("type", "adapter")
    if kind not in ADAPTER_TYPES:
        raise ValueError(f"model.adapters.{name}: unknown type {kind!r}; known: {sorted(ADAPTER_TYPES)}")
    out: dict = {"type": kind}
    for key, (default, convert) in TYPE_OPTIONS[kind].items():
        value = spec.pop(key, default)
        if value is None:
            raise ValueError(f"model.adapters.{name}.{key}: required for type {kind}")
        out[key] = convert(value)
    out["where"] = list(spec.pop("where", STACKS))
    out["enabled"] = bool(spec.pop("enabled", True))
    if "order" in spec:
        out["order"] = int(spec.pop("order"))
    if spec:
        raise ValueError(f"model.adapters.{name}: unknown keys {sorted(spec)}")
    bad = [w for w in out["where"] if w not in STACKS]
    if bad or not out["where"]:
        raise ValueError(f"model.adapters.{name}.where: {out['where']} (choose from {list(STACKS)})")
    return out


def is_body_key(key: str) -> bool:
    """True for state-dict keys of the shared body (not a language head, not a slot module).

    Example:
        >>> [is_body_key(k) for k in ("encoder.embed.conv.0.weight", "heads.ro.ctc.ctc_lo.bias",
        ...                           "enc_slots.0.modules_by_name.ro.down.weight")]
        [True, False, False]
    """
    return not key.startswith("heads.") and ".modules_by_name." not in key


def body_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, shapes and bytes of the body's tensors (CMVN included), 16 hex digits.

    Two models share a fingerprint exactly when their shared bodies are bit-identical, so an adapter
    trained on a frozen body loads only into that body.

    Example:
        >>> a = {"encoder.w": torch.ones(2), "heads.en.b": torch.zeros(1)}
        >>> body_fingerprint(a) == body_fingerprint({**a, "heads.en.b": torch.ones(1)})
        True
        >>> body_fingerprint(a) == body_fingerprint({**a, "encoder.w": torch.zeros(2)})
        False
    """
    h = hashlib.sha256()
    for key in sorted(k for k in state if is_body_key(k)):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def save_adapter_file(payload: dict, path: str | Path) -> Path:
    """Write an adapter file atomically (temporary name, then rename)."""
    save_torch({"format": FORMAT, **payload}, path)
    return Path(path)


def read_adapter_file(path: str | Path) -> dict:
    """Read an adapter file; :class:`AdapterFileError` naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise AdapterFileError(f"{path}: not an adapter file ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AdapterFileError(f"{path}: not an adapter file (format {FORMAT} expected)")
    return data


def check_fits(data: dict, path: str | Path, fingerprint: str, sizes: dict[str, int]) -> None:
    """Raise :class:`AdapterFileError` naming ``path`` unless the file was made for this base model.

    Example:
        >>> check_fits({"base": {"fingerprint": "ab", "sizes": {"d_model": 4}}}, "x.adapter", "ab",
        ...            {"d_model": 4})
        >>> check_fits({"base": {"fingerprint": "ab", "sizes": {"d_model": 4}}}, "x.adapter", "cd",
        ...            {"d_model": 4})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        asr_transfer.model.adapters.AdapterFileError: x.adapter: made for base model ab, ...
    """
    base = data["base"]
    if base["sizes"] != sizes:
        raise AdapterFileError(f"{path}: made for a model of sizes {base['sizes']}, this model has {sizes}")
    if base["fingerprint"] != fingerprint:
        raise AdapterFileError(
            f"{path}: made for base model {base['fingerprint']}, this model's body is {fingerprint} "
            "(another base experiment, or a body changed by full fine-tuning)"
        )


def import_adapters(
    model: torch.nn.Module, exp: str | Path, names: dict[str, str], heads: dict[str, str] | None = None
) -> None:
    """Copy adapter sets (``{their name: our name}``) and heads from a finished experiment into ``model``.

    ``exp`` (its ``config.yaml`` and ``model.pt``) must share ``model``'s body bit for bit, i.e.
    was trained with that body frozen; the copies are added disabled, the caller enables them.
    An adapter or head the experiment lacks, or a head of another vocabulary size, is an error
    naming the experiment.
    """
    import yaml

    exp = Path(exp)
    cfg_path, model_path = exp / "config.yaml", exp / "model.pt"
    for f in (cfg_path, model_path):
        if not f.is_file():
            raise FileNotFoundError(f"{exp}: {f.name} missing: not a finished experiment")
    specs = (yaml.safe_load(cfg_path.read_text()).get("model") or {}).get("adapters") or {}
    state = torch.load(model_path, map_location="cpu")["model"]
    if body_fingerprint(state) != model.fingerprint():
        raise AdapterFileError(
            f"{model_path}: its body {body_fingerprint(state)} is not this model's ({model.fingerprint()}): "
            "adapters only transfer between experiments on one frozen base"
        )
    copied: dict[str, torch.Tensor] = {}
    for src, dst in names.items():
        if src not in specs:
            raise KeyError(f"{cfg_path}: no adapter {src!r} in model.adapters ({sorted(specs)})")
        spec = {k: v for k, v in specs[src].items() if k not in ("enabled", "order")}
        model.add_adapter(dst, **spec, enabled=False)
        tag, new = f".modules_by_name.{src}.", f".modules_by_name.{dst}."
        copied.update({k.replace(tag, new): v for k, v in state.items() if tag in k})
    for src, dst in (heads or {}).items():
        theirs = {k[len(f"heads.{src}.") :]: v for k, v in state.items() if k.startswith(f"heads.{src}.")}
        if not theirs:
            raise KeyError(f"{model_path}: no head {src!r}")
        ours = model.heads[dst].state_dict()
        if {k: v.shape for k, v in theirs.items()} != {k: v.shape for k, v in ours.items()}:
            raise AdapterFileError(f"{model_path}: head {src!r} does not fit head {dst!r} (vocabulary size)")
        copied.update({f"heads.{dst}.{k}": v for k, v in theirs.items()})
    missing = [k for k in copied if k not in model.state_dict()]
    if missing:
        raise AdapterFileError(f"{model_path}: {missing[:4]} do not fit the model")
    model.load_state_dict(copied, strict=False)
