"""Start a model from a trained base model that lacks some of its language heads; inherit its decoding.

The load is strict for every key of the base: the only keys allowed to be missing are whole
heads of languages the base never had (a new target's fresh head). Anything else missing,
unexpected or of another shape is an error naming the file, never a silent partial load.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from asr_transfer.train.checkpoint import load_model_state
from asr_transfer.util.errors import InputError

#: an experiment's recorded decoding (``asr-transfer choose-decoding``): what ``decode``,
#: ``pseudo-label`` and ``Recognizer`` use when given no config, and what an adaptation inherits
DECODING_FILE = "decode.yaml"


def init_from_base(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Load ``path``'s ``model`` state into ``model``; return the languages whose heads stay new.

    Example:
        >>> import tempfile
        >>> from asr_transfer.model.heads import LanguageHead
        >>> base = torch.nn.Module(); base.heads = torch.nn.ModuleDict({"de": LanguageHead(5, 4)})
        >>> f = Path(tempfile.mkdtemp()) / "base.pt"
        >>> torch.save({"model": base.state_dict()}, f)
        >>> new = torch.nn.Module()
        >>> new.heads = torch.nn.ModuleDict({"de": LanguageHead(5, 4), "ro": LanguageHead(7, 4)})
        >>> init_from_base(new, f)
        ['ro']
        >>> torch.equal(new.heads.de.embed.weight, base.heads.de.embed.weight)
        True
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"train.init: no checkpoint {path}")
    state = load_model_state(path)
    base_langs = {k.split(".")[1] for k in state if k.startswith("heads.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    new_langs = sorted({k.split(".")[1] for k in missing if k.startswith("heads.")} - base_langs)
    other = [k for k in missing if not (k.startswith("heads.") and k.split(".")[1] in new_langs)]
    if other or unexpected:
        raise InputError(
            f"{path}: does not fit the model: missing {other[:8]}{' ...' if len(other) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} "
            "(only the heads of new languages may be missing)"
        )
    return new_langs


def recorded_decoding(init: str | Path) -> tuple[Path, float] | None:
    """The decoding recorded beside the ``train.init`` checkpoint, and its CTC share; ``None`` if none.

    The CTC share is what the adapted model's supervised terms should weigh CTC by: 1 for CTC
    greedy decoding, else the joint beam's CTC weight.

    Example:
        >>> import tempfile
        >>> base = Path(tempfile.mkdtemp())
        >>> _ = (base / "decode.yaml").write_text("mode: ctc_greedy")
        >>> recorded_decoding(base / "model.pt")[1], recorded_decoding(base / "none" / "model.pt")
        (1.0, None)
    """
    path = Path(init).parent / DECODING_FILE
    if not path.is_file():
        return None
    return path, ctc_share_of(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def ctc_share_of(decoding: dict) -> float:
    """The CTC share a model decoded by ``decoding`` (a decode config) should train and be selected
    on: 1 for CTC greedy decoding, else the joint beam's CTC weight (0.3 when not given).

    Example:
        >>> ctc_share_of({"mode": "ctc_greedy"}), ctc_share_of({"mode": "beam", "ctc_weight": 0.5})
        (1.0, 0.5)
    """
    return 1.0 if decoding.get("mode") == "ctc_greedy" else float(decoding.get("ctc_weight", 0.3))
