"""Named adapters: their config entries, the base-model fingerprint and the adapter file.

An adapter set is a name (``"ro"``) with one module in every slot of the chosen stacks. Its
config entry lives in ``model.adapters`` so ``build_model`` rebuilds an adapted experiment
exactly::

    model:
      adapters:
        ro: {type: adapter, bottleneck: 64, where: [encoder, decoder], enabled: true, order: 0}

``where`` lists the stacks whose slots get a module: ``encoder`` and ``decoder`` (a slot after
every block) and ``frontend`` (one slot after the convolutional subsampling, before the blocks).

``order`` is the position among the enabled modules of a slot (slots apply them in that
order); the saved config sorts keys, so the order cannot live in the mapping's own order.
New module kinds (a fusion layer for SimAdapter) register in :data:`ADAPTER_TYPES`.

An adapter file (:data:`FORMAT`) holds one language's adapter and head weights, that language's
tokenizer, and what is needed to check it fits a base model: the fingerprint of the shared body
(:func:`body_fingerprint`) and its sizes. Adapter files are made to be passed around, so the file
is a ``safetensors`` file, which holds only tensors and strings: reading one runs no code (a
``torch.save`` file is unpickled, and unpickling can run anything). Its layout:

- tensors ``adapter/<state key>`` and ``head/<state key>``, and the tokenizer's SentencePiece model
  as the bytes of the uint8 tensor ``tokenizer/sp_model`` (absent for a character tokenizer);
- header metadata ``format`` (:data:`FORMAT`) and ``asr_transfer``: one JSON string with everything
  else (name, language, adapter config, vocabulary size, base fingerprint and sizes, the
  tokenizer's tokens, kind and language).

Files of the older, pickled format (:data:`OLD_FORMAT`) are never read by :func:`read_adapter_file`;
:func:`convert_adapter_file` (``asr-transfer convert-adapter OLD NEW``) rewrites one with torch's
safe unpickler.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch

from asr_transfer.model.slots import Adapter, Fusion
from asr_transfer.util.atomic import write_bytes

FORMAT = "asr-transfer-adapter/2"
#: the format before :data:`FORMAT`: ``torch.save`` of a dict, i.e. a pickle
OLD_FORMAT = "asr-transfer-adapter/1"
#: the safetensors metadata key holding the JSON of everything that is not a tensor
META_KEY = "asr_transfer"
#: the first bytes of what ``torch.save`` writes: a zip archive, or (before torch 1.6) a pickle
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")

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

#: where adapters can sit: ``frontend`` is one slot after the convolutional subsampling, before
#: the encoder blocks; ``encoder`` and ``decoder`` a slot after every block of that stack
STACKS = ("frontend", "encoder", "decoder")
#: where an adapter sits when its spec does not say (the adapter paper's placement)
DEFAULT_WHERE = ("encoder", "decoder")


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
    out["where"] = list(spec.pop("where", DEFAULT_WHERE))
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


def _is_tensor_dict(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


def _is_tokenizer(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("tokens"), list)
        and all(isinstance(t, str) for t in value["tokens"])
        and isinstance(value.get("kind"), str)
        and isinstance(value.get("lang"), str)
        and isinstance(value.get("sp_model"), bytes | None)
    )


def check_contents(data: dict, where: str | Path) -> None:
    """Raise :class:`AdapterFileError` naming ``where`` unless ``data`` holds what an adapter file does.

    Example:
        >>> try:
        ...     check_contents({"name": None, "lang": "ro", "spec": None, "adapter": {}, "head": {},
        ...                     "vocab_size": 5, "base": {"fingerprint": "ab"}}, "x.adapter")
        ... except AdapterFileError as err:
        ...     print(err)
        x.adapter: not an adapter file (missing or malformed: head, base)
    """
    name, base = data.get("name"), data.get("base")
    ok = {
        "name": "name" in data and isinstance(name, str | None),
        "lang": isinstance(data.get("lang"), str),
        "spec": isinstance(data.get("spec"), dict) if name else "spec" in data and data["spec"] is None,
        "adapter": _is_tensor_dict(data.get("adapter")),
        "head": _is_tensor_dict(data.get("head")) and bool(data["head"]),
        "vocab_size": isinstance(data.get("vocab_size"), int),
        "base": isinstance(base, dict)
        and isinstance(base.get("fingerprint"), str)
        and isinstance(base.get("sizes"), dict),
        "tokenizer": "tokenizer" not in data or _is_tokenizer(data["tokenizer"]),
    }
    bad = [key for key, good in ok.items() if not good]
    if bad:
        raise AdapterFileError(f"{where}: not an adapter file (missing or malformed: {', '.join(bad)})")


def save_adapter_file(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` as an adapter file of :data:`FORMAT`, atomically (temporary name, then rename).

    ``payload`` is what :func:`read_adapter_file` returns (its ``format`` is ignored): the state
    dicts ``adapter`` and ``head``, the ``tokenizer`` with its ``sp_model`` bytes (or ``None``), and
    JSON values.

    Example:
        >>> import tempfile
        >>> tok = {"tokens": ["<blank>", "a"], "kind": "char", "lang": "ro", "sp_model": None}
        >>> payload = {"name": None, "lang": "ro", "spec": None, "adapter": {}, "head": {"w": torch.ones(2)},
        ...            "vocab_size": 2, "base": {"fingerprint": "ab", "sizes": {}}, "tokenizer": tok}
        >>> path = save_adapter_file(payload, Path(tempfile.mkdtemp()) / "ro.adapter")
        >>> data = read_adapter_file(path)
        >>> data["format"], data["head"], data["tokenizer"] == tok
        ('asr-transfer-adapter/2', {'w': tensor([1., 1.])}, True)
    """
    path = Path(path)
    check_contents(payload, path)
    # each tensor on the CPU in storage of its own: safetensors refuses tensors sharing memory (tied weights)
    tensors = {
        f"{part}/{key}": value.detach().to("cpu", copy=True).contiguous()
        for part in ("adapter", "head")
        for key, value in payload[part].items()
    }
    meta = {k: v for k, v in payload.items() if k not in ("format", "adapter", "head")}
    if "tokenizer" in meta:
        meta["tokenizer"] = {k: v for k, v in meta["tokenizer"].items() if k != "sp_model"}
        sp_model = payload["tokenizer"]["sp_model"]
        if sp_model is not None:
            tensors["tokenizer/sp_model"] = torch.from_numpy(np.frombuffer(sp_model, dtype=np.uint8).copy())
    blob = safetensors.torch.save(tensors, {"format": FORMAT, META_KEY: json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, blob)
    return path


def _is_pickle(path: Path) -> bool:
    """True if ``path`` starts like a ``torch.save`` file (for an error message: it is never unpickled)."""
    with path.open("rb") as f:
        return f.read(len(PICKLE_MAGIC[0])).startswith(PICKLE_MAGIC)


def read_adapter_file(path: str | Path) -> dict:
    """Read an adapter file of :data:`FORMAT`; nothing in the file is ever run.

    Only a safetensors file whose header names :data:`FORMAT` is read further (its JSON metadata,
    then its tensors); anything else, a pickle (``torch.save``) file above all, is an
    :class:`AdapterFileError` naming the file. See :func:`save_adapter_file` for an example.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file not found: {path}")
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            header = f.metadata() or {}
            # the tensors are read only once the header says what the file is
            tensors = {key: f.get_tensor(key) for key in f.keys()} if header.get("format") == FORMAT else {}
    except (safetensors.SafetensorError, OSError) as err:
        if _is_pickle(path):
            raise AdapterFileError(
                f"{path}: not an adapter file of format {FORMAT} but a pickle (torch.save), left unread; "
                f"if it is an older adapter file ({OLD_FORMAT}) from a source you trust, convert it: "
                f"asr-transfer convert-adapter {path} NEW.adapter"
            ) from None
        raise AdapterFileError(f"{path}: not an adapter file ({type(err).__name__}: {err})") from None
    if header.get("format") != FORMAT:
        raise AdapterFileError(f"{path}: not an adapter file (format {FORMAT} expected)")
    try:
        meta = json.loads(header.get(META_KEY, "null"))
    except json.JSONDecodeError as err:
        raise AdapterFileError(f"{path}: not an adapter file ({META_KEY} metadata: {err})") from None
    if not isinstance(meta, dict):
        raise AdapterFileError(f"{path}: not an adapter file (no {META_KEY} metadata)")
    data = {"format": FORMAT, **meta, "adapter": {}, "head": {}}
    tok = meta.get("tokenizer")
    if isinstance(tok, dict):
        data["tokenizer"] = {**tok, "sp_model": None}
    for key, tensor in tensors.items():
        part, _, name = key.partition("/")
        if part in ("adapter", "head") and name:
            data[part][name] = tensor
        elif key == "tokenizer/sp_model" and "tokenizer" in data and tensor.dtype == torch.uint8:
            data["tokenizer"]["sp_model"] = tensor.numpy().tobytes()
        else:
            raise AdapterFileError(f"{path}: not an adapter file (unexpected tensor {key!r})")
    check_contents(data, path)
    return data


def convert_adapter_file(old: str | Path, new: str | Path) -> Path:
    """Rewrite an adapter file of the pickled :data:`OLD_FORMAT` in :data:`FORMAT`; return ``new``.

    ``old`` is read by torch's safe unpickler (``weights_only=True``), which builds tensors and plain
    data only: a file that asks for anything else (a function to call) is an
    :class:`AdapterFileError` naming it, and nothing in it runs.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> torch.save({"format": OLD_FORMAT, "name": None, "lang": "ro", "spec": None, "adapter": {},
        ...             "head": {"w": torch.ones(2)}, "vocab_size": 2,
        ...             "base": {"fingerprint": "ab", "sizes": {}}}, d / "old.adapter")
        >>> read_adapter_file(convert_adapter_file(d / "old.adapter", d / "new.adapter"))["head"]
        {'w': tensor([1., 1.])}
    """
    old = Path(old)
    if not old.is_file():
        raise FileNotFoundError(f"adapter file not found: {old}")
    if not _is_pickle(old):
        raise AdapterFileError(f"{old}: not a torch.save file, so not of format {OLD_FORMAT}: nothing to do")
    try:
        data = torch.load(old, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line message
        # torch's message spans paragraphs and advises the unsafe loader: keep the culprit only
        culprit = re.search(r"GLOBAL ([\w.]+)", str(err))
        why = f"it asks to call {culprit[1]}" if culprit else type(err).__name__
        raise AdapterFileError(
            f"{old}: torch's safe loader (weights_only=True) refused it ({why}) and ran nothing in it: "
            f"no adapter file of format {OLD_FORMAT}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != OLD_FORMAT:
        raise AdapterFileError(f"{old}: not an adapter file (format {OLD_FORMAT} expected)")
    check_contents(data, old)
    return save_adapter_file(data, new)


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
    state = torch.load(model_path, map_location="cpu", weights_only=True)["model"]
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
