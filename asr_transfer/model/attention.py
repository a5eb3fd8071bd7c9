"""ESPnet's attention layers computed by ``torch.nn.functional.scaled_dot_product_attention``.

ESPnet's ``MultiHeadedAttention`` materialises the ``(B, H, L, T)`` scores, fills the masked
ones with the dtype's minimum, softmaxes, zeroes the masked weights again and applies dropout;
``scaled_dot_product_attention`` (SDPA) does the same in one fused kernel (flash / memory-
efficient on GPUs, a fused loop on CPUs). The subclasses here change ``forward`` only: the
parameters, their names (``linear_q``, ``linear_k``, ``linear_v``, ``linear_out``, ``linear_pos``,
``pos_bias_u``/``_v``) and so the state dicts stay ESPnet's, and :func:`use_sdpa` switches the
layers of a built model in place by changing their class, both ways.

Same semantics: a mask entry that is zero/False excludes that key; dropout (training only) drops
attention weights with ESPnet's ``dropout_rate``, as ``nn.Dropout`` on them does (other random
draws, same distribution). Differences: the weights are not kept in ``self.attn`` (ESPnet keeps
them for its attention plots; nothing here reads them), and a query row whose keys are all masked
is computed by torch's kernel (zeros on CPU, as ESPnet) — the model's masks never produce one.
"""

from __future__ import annotations

import math

import torch
from espnet.nets.pytorch_backend.transformer.attention import (
    MultiHeadedAttention,
    RelPositionMultiHeadedAttention,
)
from torch.nn.functional import scaled_dot_product_attention


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    fused: bool = True,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Attention of ``(..., L, d_k)`` queries over ``(..., T, d_k)`` keys and values -> ``(..., L, d_k)``.

    ``mask`` broadcasts to ``(..., L, T)``; nonzero means "may attend" (ESPnet's convention, any
    dtype). ``fused`` picks SDPA, else ESPnet's arithmetic (the reference; no dropout there).

    Example:
        >>> q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 4, 5, 8), torch.randn(2, 4, 5, 8)
        >>> mask = torch.tensor([1, 1, 1, 0, 0])[None, None, None]
        >>> a, b = attend(q, k, v, mask), attend(q, k, v, mask, fused=False)
        >>> a.shape, bool(torch.allclose(a, b, atol=1e-6))
        (torch.Size([2, 4, 3, 8]), True)
    """
    if mask is not None and mask.dtype != torch.bool:
        mask = mask != 0  # a float mask would be added to the scores by SDPA
    if fused:
        return scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    if mask is None:
        return torch.matmul(torch.softmax(scores, dim=-1), v)
    pad = ~mask
    scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
    return torch.matmul(torch.softmax(scores, dim=-1).masked_fill(pad, 0.0), v)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, L, d_k)`` -> ``(B, L, H * d_k)``."""
    return x.transpose(1, 2).reshape(x.size(0), x.size(2), -1)


class SDPAMultiHeadedAttention(MultiHeadedAttention):
    """ESPnet's ``MultiHeadedAttention`` through SDPA (same parameters, see the module docstring)."""

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None,
        expand_kv: bool = False,
    ) -> torch.Tensor:
        """``(B, L, D)`` queries, ``(B, T, D)`` keys/values, ``(B, 1 or L, T)`` mask -> ``(B, L, D)``."""
        q, k, v = self.forward_qkv(query, key, value, expand_kv)  # (B, H, L or T, d_k)
        mask = None if mask is None else mask.unsqueeze(1)  # (B, 1, 1 or L, T)
        out = attend(q, k, v, mask, dropout_p=self.dropout_rate if self.training else 0.0)
        return self.linear_out(_merge_heads(out))


class SDPARelPositionMultiHeadedAttention(RelPositionMultiHeadedAttention):
    """ESPnet's ``RelPositionMultiHeadedAttention`` (Conformer) through SDPA.

    The position term ``(q + pos_bias_v) p^T / sqrt(d_k)`` (after ESPnet's ``rel_shift``) is
    SDPA's additive mask, masked keys at ``-inf``; the content term ``(q + pos_bias_u) k^T`` is
    SDPA's own product.
    """

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        pos_emb: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """``(B, T, D)`` inputs, ``(1, 2T-1, D)`` positions, ``(B, 1 or T, T)`` mask -> ``(B, T, D)``."""
        q, k, v = self.forward_qkv(query, key, value)  # (B, H, T, d_k)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        q_u = q + self.pos_bias_u[:, None]  # (B, H, T, d_k)
        q_v = q + self.pos_bias_v[:, None]
        bias = self.rel_shift(torch.matmul(q_v, p.transpose(-2, -1))) / math.sqrt(self.d_k)  # (B, H, T, T)
        if mask is not None:
            bias = bias.masked_fill(mask.unsqueeze(1).eq(0), float("-inf"))
        out = scaled_dot_product_attention(
            q_u, k, v, attn_mask=bias, dropout_p=self.dropout_rate if self.training else 0.0
        )
        return self.linear_out(_merge_heads(out))


#: ESPnet class -> its SDPA twin; only exact classes (a subclass may change more than ``forward``)
SDPA_CLASSES: dict[type, type] = {
    MultiHeadedAttention: SDPAMultiHeadedAttention,
    RelPositionMultiHeadedAttention: SDPARelPositionMultiHeadedAttention,
}


def use_sdpa(model: torch.nn.Module, enabled: bool = True) -> int:
    """Switch every ESPnet attention layer of ``model`` to SDPA (or back); returns how many switched.

    Parameters and buffers are untouched, so ``state_dict()`` is the same before and after.

    Example:
        >>> attn = torch.nn.ModuleList([MultiHeadedAttention(2, 8, 0.0)])
        >>> keys = list(attn.state_dict())
        >>> use_sdpa(attn), type(attn[0]).__name__, list(attn.state_dict()) == keys
        (1, 'SDPAMultiHeadedAttention', True)
        >>> use_sdpa(attn, enabled=False), type(attn[0]).__name__
        (1, 'MultiHeadedAttention')
    """
    swap = SDPA_CLASSES if enabled else {v: k for k, v in SDPA_CLASSES.items()}
    n = 0
    for module in model.modules():
        new = swap.get(type(module))
        if new is not None:
            module.__class__ = new
            n += 1
    return n


def is_sdpa(attn: torch.nn.Module) -> bool:
    """Whether an attention layer computes through SDPA (:func:`use_sdpa`)."""
    return isinstance(attn, tuple(SDPA_CLASSES.values()))
