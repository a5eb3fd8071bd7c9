"""``asr-transfer pseudo-label``: the command lives beside its library in
:mod:`asr_transfer.decode.pseudo_label` (decode a target data dir, keep the confident utterances)."""

from asr_transfer.decode.pseudo_label import ACCEPTS_OVERRIDES, add_arguments, run

__all__ = ["ACCEPTS_OVERRIDES", "add_arguments", "run"]
