"""Per-language heads: token embedding, attention output layer and CTC layer."""

from __future__ import annotations

import torch
from espnet2.asr.ctc import CTC


class LanguageHead(torch.nn.Module):
    """Everything that depends on one language's vocabulary; the body is shared.

    Example:
        >>> head = LanguageHead(vocab_size=30, d_model=16)
        >>> head.output(head.embed(torch.tensor([[1, 2]]))).shape
        torch.Size([1, 2, 30])
    """

    def __init__(self, vocab_size: int, d_model: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = torch.nn.Embedding(vocab_size, d_model)
        self.output = torch.nn.Linear(d_model, vocab_size)
        # ESPnet's CTC: a linear layer plus torch's ctc_loss, "builtin" implementation
        self.ctc = CTC(odim=vocab_size, encoder_output_size=d_model)
