"""One incremental decoder step for hypotheses grouped by utterance (beam search).

Beam search runs ``B * beam`` hypotheses against ``B`` encoder outputs. ESPnet's
``DecoderLayer`` wants the memory repeated per hypothesis, so its source attention
projects ``B * beam`` copies of the same frames to keys and values at every output
step. Here the keys and values are projected once per utterance and broadcast over
its hypotheses; the arithmetic is otherwise that of ESPnet's layer (pre-norm, no
``concat_after``), so scores agree to float rounding.
"""

from __future__ import annotations

import math

import torch
from espnet.nets.pytorch_backend.transformer.decoder_layer import DecoderLayer


def supports_grouping(block: torch.nn.Module) -> bool:
    """Whether :func:`grouped_block_step` reproduces this ESPnet decoder block."""
    return (
        isinstance(block, DecoderLayer)
        and block.normalize_before
        and not block.concat_after
        and getattr(block, "sequential_attn", None) is None
    )


def grouped_source_attention(
    attn: torch.nn.Module, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor
) -> torch.Tensor:
    """ESPnet ``MultiHeadedAttention`` of ``(B*K, L, D)`` queries over ``(B, T, D)`` memory.

    Rows ``b*K .. b*K+K-1`` of ``x`` attend to utterance ``b``; ``memory_mask`` is ``(B, 1, T)``.

    Example:
        >>> from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
        >>> attn = MultiHeadedAttention(2, 8, 0.0).eval()
        >>> x, mem = torch.randn(6, 1, 8), torch.randn(2, 5, 8)
        >>> mask = torch.tensor([[[1, 1, 1, 1, 1]], [[1, 1, 1, 0, 0]]]).bool()
        >>> per_hyp = mem.repeat_interleave(3, 0)
        >>> ref = attn(x, per_hyp, per_hyp, mask.repeat_interleave(3, 0))
        >>> bool(torch.allclose(grouped_source_attention(attn, x, mem, mask), ref, atol=1e-6))
        True
    """
    n, b = x.size(0), memory.size(0)
    group, h, d_k = n // b, attn.h, attn.d_k
    q = attn.q_norm(attn.linear_q(x).view(b, group, -1, h, d_k).transpose(2, 3))  # (B, K, H, L, d_k)
    k = attn.k_norm(attn.linear_k(memory).view(b, -1, h, d_k).transpose(1, 2))[:, None]  # (B, 1, H, T, d_k)
    v = attn.linear_v(memory).view(b, -1, h, d_k).transpose(1, 2)[:, None]  # (B, 1, H, T, d_k)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(d_k)  # (B, K, H, L, T)
    pad = memory_mask.eq(0)[:, None, None]  # (B, 1, 1, 1, T)
    scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1).masked_fill(pad, 0.0)
    out = torch.matmul(weights, v)  # (B, K, H, L, d_k)
    return attn.linear_out(out.transpose(2, 3).reshape(n, -1, h * d_k))


def grouped_block_step(
    block: DecoderLayer,
    tgt: torch.Tensor,
    tgt_mask: torch.Tensor,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    cache: torch.Tensor | None,
) -> torch.Tensor:
    """ESPnet ``DecoderLayer.forward`` (eval, pre-norm) with :func:`grouped_source_attention`.

    ``tgt`` ``(B*K, L, D)``; with ``cache`` ``(B*K, L-1, D)`` only the last position is computed.
    Returns ``(B*K, L, D)``.
    """
    residual = tgt
    tgt = block.norm1(tgt)
    tgt_q, q_mask = tgt, tgt_mask
    if cache is not None:
        tgt_q, residual, q_mask = tgt[:, -1:], residual[:, -1:], tgt_mask[:, -1:]
    x = residual + block.self_attn(tgt_q, tgt, tgt, q_mask)
    x = x + grouped_source_attention(block.src_attn, block.norm2(x), memory, memory_mask)
    x = x + block.feed_forward(block.norm3(x))
    return x if cache is None else torch.cat([cache, x], dim=1)
