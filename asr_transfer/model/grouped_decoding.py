"""One incremental decoder step for hypotheses grouped by utterance (beam search).

Beam search runs ``B * beam`` hypotheses against ``B`` encoder outputs. ESPnet's
``DecoderLayer`` wants the memory repeated per hypothesis, so its source attention
projects ``B * beam`` copies of the same frames to keys and values at every output
step, and its self-attention projects the whole prefix again at every step. Here the
source keys and values are projected once per utterance and search (:func:`source_kv`)
and broadcast over its hypotheses, and the prefix's self-attention keys and values are
cached; the arithmetic is otherwise that of ESPnet's layer (pre-norm, no ``concat_after``),
so scores agree to float rounding. Layers switched to SDPA (:mod:`.attention`) attend through
it here too, an utterance's hypotheses folded into one query sequence against its frames.
"""

from __future__ import annotations

import torch
from espnet.nets.pytorch_backend.transformer.decoder_layer import DecoderLayer

from asr_transfer.model.attention import attend, is_sdpa


def supports_grouping(block: torch.nn.Module) -> bool:
    """Whether :func:`grouped_block_step` reproduces this ESPnet decoder block."""
    return (
        isinstance(block, DecoderLayer)
        and block.normalize_before
        and not block.concat_after
        and getattr(block, "sequential_attn", None) is None
    )


def source_kv(attn: torch.nn.Module, memory: torch.Tensor) -> torch.Tensor:
    """Keys and values ``(B, 2, H, T, d_k)`` of ``(B, T, D)`` memory for one source attention."""
    b, h, d_k = memory.size(0), attn.h, attn.d_k
    k = attn.k_norm(attn.linear_k(memory).view(b, -1, h, d_k).transpose(1, 2))
    v = attn.linear_v(memory).view(b, -1, h, d_k).transpose(1, 2)
    return torch.stack((k, v), 1)


def grouped_source_attention(
    attn: torch.nn.Module, x: torch.Tensor, kv: torch.Tensor, memory_mask: torch.Tensor
) -> torch.Tensor:
    """ESPnet ``MultiHeadedAttention`` of ``(B*K, L, D)`` queries over per-utterance memory.

    Rows ``b*K .. b*K+K-1`` of ``x`` attend to utterance ``b``, whose keys and values
    :func:`source_kv` computed once: ``kv`` ``(B, 2, H, T, d_k)``; ``memory_mask`` is ``(B, 1, T)``.

    Example:
        >>> from espnet.nets.pytorch_backend.transformer.attention import MultiHeadedAttention
        >>> attn = MultiHeadedAttention(2, 8, 0.0).eval()
        >>> x, mem = torch.randn(6, 1, 8), torch.randn(2, 5, 8)
        >>> mask = torch.tensor([[[1, 1, 1, 1, 1]], [[1, 1, 1, 0, 0]]]).bool()
        >>> per_hyp = mem.repeat_interleave(3, 0)
        >>> ref = attn(x, per_hyp, per_hyp, mask.repeat_interleave(3, 0))
        >>> out = grouped_source_attention(attn, x, source_kv(attn, mem), mask)
        >>> bool(torch.allclose(out, ref, atol=1e-6))
        True
    """
    n, b = x.size(0), kv.size(0)
    group, h, d_k = n // b, attn.h, attn.d_k
    q = attn.q_norm(attn.linear_q(x).view(b, group, -1, h, d_k).transpose(2, 3))  # (B, K, H, L, d_k)
    length = q.size(3)
    # an utterance's K hypotheses share its keys and mask: fold them into the query positions
    q = q.permute(0, 2, 1, 3, 4).reshape(b, h, group * length, d_k)  # (B, H, K*L, d_k)
    out = attend(q, kv[:, 0], kv[:, 1], memory_mask[:, None], fused=is_sdpa(attn))  # (B, H, K*L, d_k)
    out = out.view(b, h, group, length, d_k).permute(0, 2, 3, 1, 4)  # (B, K, L, H, d_k)
    return attn.linear_out(out.reshape(n, length, h * d_k))


def grouped_block_step(
    block: DecoderLayer,
    x: torch.Tensor,
    tgt_mask: torch.Tensor,
    src_kv: torch.Tensor,
    memory_mask: torch.Tensor,
    kv_cache: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ESPnet ``DecoderLayer.forward`` (eval, pre-norm) for the new positions of each prefix.

    ESPnet recomputes the self-attention keys and values of the whole prefix at every step;
    here they are cached: ``kv_cache`` ``(B*K, 2, H, L_old, d_k)`` holds those of the positions
    already decoded, ``x`` ``(B*K, L_new, D)`` the block input at the new ones, ``tgt_mask`` the
    ``(1 or B*K, L, L)`` causal mask of the whole prefix (``L = L_old + L_new``). The source
    attention uses :func:`grouped_source_attention` with this block's ``src_kv`` (:func:`source_kv`).

    Returns:
        ``(B*K, L_new, D)`` block output at the new positions, and the ``(B*K, 2, H, L, d_k)`` cache.
    """
    attn = block.self_attn
    n, new, h, d_k = x.size(0), x.size(1), attn.h, attn.d_k
    y = block.norm1(x)
    q = attn.q_norm(attn.linear_q(y).view(n, new, h, d_k).transpose(1, 2))  # (N, H, L_new, d_k)
    k = attn.k_norm(attn.linear_k(y).view(n, new, h, d_k).transpose(1, 2))
    v = attn.linear_v(y).view(n, new, h, d_k).transpose(1, 2)
    kv = torch.stack((k, v), 1)  # (N, 2, H, L_new, d_k)
    if kv_cache is not None:
        kv = torch.cat((kv_cache, kv), dim=3)
    mask = tgt_mask[:, None, -new:]  # (1 or N, 1, L_new, L)
    att = attend(q, kv[:, 0], kv[:, 1], mask, fused=is_sdpa(attn))  # (N, H, L_new, d_k)
    att = att.transpose(1, 2).reshape(n, new, h * d_k)
    x = x + attn.linear_out(att)
    x = x + grouped_source_attention(block.src_attn, block.norm2(x), src_kv, memory_mask)
    x = x + block.feed_forward(block.norm3(x))
    return x, kv
