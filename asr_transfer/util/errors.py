"""The error class of expected failures that are neither a bad value nor a missing file.

``asr-transfer`` prints an expected error as one line and exits with status 2
(:mod:`asr_transfer.cli`): our :class:`ValueError` subclasses (a bad data dir, adapter file or
option), :class:`OSError` (a missing or unwritable file), YAML errors, and :class:`InputError`
for the rest, such as a checkpoint that does not fit the model or an experiment started from
another base model. It is a :class:`RuntimeError`, which these cases were before it existed.
"""

from __future__ import annotations


class InputError(RuntimeError):
    """Input that cannot be used, for a reason the message states (naming the file or option).

    Example:
        >>> isinstance(InputError("exp/x/model.pt: does not fit the model"), RuntimeError)
        True
    """
