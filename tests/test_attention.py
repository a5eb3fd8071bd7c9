"""ESPnet's attention layers through SDPA: same outputs, losses, gradients and state dicts as ESPnet's own."""

from __future__ import annotations

import copy

import pytest
import torch
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.attention import (
    MultiHeadedAttention,
    RelPositionMultiHeadedAttention,
)
from espnet.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding
from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask

from asr_transfer.model.asr import build_model
from asr_transfer.model.attention import is_sdpa, use_sdpa

D, H = 32, 4
ENC = {"output_size": D, "attention_heads": H, "linear_units": 64, "num_blocks": 2}
DEC = {"attention_heads": H, "linear_units": 64, "num_blocks": 2}
CONFORMER = {
    "type": "conformer",
    "rel_pos_type": "latest",
    "pos_enc_layer_type": "rel_pos",
    "selfattention_layer_type": "rel_selfattn",
    "macaron_style": True,
    "use_cnn_module": True,
    "cnn_module_kernel": 7,
}


def _pair(layer: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The layer as ESPnet computes it and a copy switched to SDPA."""
    fused = copy.deepcopy(layer)
    assert use_sdpa(fused) == 1 and is_sdpa(fused) and not is_sdpa(layer)
    return layer, fused


def _masks(lens: list[int], length: int) -> torch.Tensor:
    return ~make_pad_mask(torch.tensor(lens), maxlen=length)[:, None, :]  # (B, 1, T)


@pytest.mark.parametrize("kind", ["encoder self", "decoder self (causal + padding)", "source"])
def test_sdpa_attention_equals_espnets_on_padded_batches(kind: str) -> None:
    torch.manual_seed(0)
    ref, fused = _pair(MultiHeadedAttention(H, D, 0.0).eval())
    x = torch.randn(3, 7, D)
    if kind == "encoder self":
        key, mask = x, _masks([7, 5, 2], 7)  # (B, 1, T)
    elif kind == "source":
        key, mask = torch.randn(3, 11, D), _masks([11, 8, 3], 11)
    else:
        key, mask = x, _masks([7, 4, 1], 7) & subsequent_mask(7)[None]  # (B, L, L)
    out, expected = fused(x, key, key, mask), ref(x, key, key, mask)
    assert (out - expected).abs().max() < 1e-5
    # ESPnet also accepts 0/1 masks of other dtypes: not to be taken for additive float masks
    assert (fused(x, key, key, mask.float()) - expected).abs().max() < 1e-5


def test_sdpa_rel_position_attention_equals_espnets_with_gradients() -> None:
    torch.manual_seed(0)
    ref, fused = _pair(RelPositionMultiHeadedAttention(H, D, 0.0).train())
    x, pos = RelPositionalEncoding(D, 0.0)(torch.randn(3, 9, D))
    mask = _masks([9, 6, 3], 9)
    out, expected = fused(x, x, x, pos, mask), ref(x, x, x, pos, mask)
    assert (out - expected).abs().max() < 1e-5
    # gradients in float64, where rounding cannot hide a wrong term
    ref, fused, x, pos = ref.double(), fused.double(), x.double(), pos.double()
    fused(x, x, x, pos, mask).square().sum().backward()
    ref(x, x, x, pos, mask).square().sum().backward()
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        assert (p.grad - q.grad).abs().max() < 1e-9, name


def test_attention_dropout_keeps_espnets_training_semantics() -> None:
    """Dropout on the attention weights, rescaled by 1/(1-p): the same expectation as the eval output."""
    torch.manual_seed(0)
    ref, fused = _pair(MultiHeadedAttention(2, 8, 0.5))
    x, mask = torch.randn(1, 4, 8), _masks([3], 4)
    expected = ref.eval()(x, x, x, mask)
    fused.train()
    with torch.no_grad():
        draws = torch.stack([fused(x, x, x, mask) for _ in range(4000)])
    assert (draws[0] - draws[1]).abs().max() > 1e-3  # training draws differ
    assert (draws.mean(0) - expected).abs().max() < 0.05
    assert (fused.eval()(x, x, x, mask) - expected).abs().max() < 1e-5  # and eval has none


@pytest.mark.parametrize("encoder", ["transformer", "conformer"])
def test_whole_model_loss_and_gradients_agree_both_ways(encoder: str) -> None:
    enc = {**ENC, **(CONFORMER if encoder == "conformer" else {})}
    # no dropout: both ways must then draw no random numbers and compute the same function
    cfg = {
        "encoder": {**enc, "dropout_rate": 0.0, "positional_dropout_rate": 0.0},
        "decoder": {**DEC, "dropout_rate": 0.0, "positional_dropout_rate": 0.0},
    }
    torch.manual_seed(0)
    fused = build_model(cfg, {"en": 12})
    plain = build_model({**cfg, "sdpa_attention": False}, {"en": 12})
    sd = fused.state_dict()
    assert list(sd) == list(plain.state_dict())
    plain.load_state_dict(sd)
    attn = [m for m in fused.modules() if isinstance(m, MultiHeadedAttention)]
    assert attn and all(map(is_sdpa, attn)) and not any(map(is_sdpa, plain.modules()))
    feats, lens = torch.randn(3, 60, 80), torch.tensor([60, 45, 20])
    ys = torch.tensor([[3, 4, 5, 6], [5, 2, -1, -1], [7, -1, -1, -1]])
    for model in (fused, plain):
        model.eval()
    with torch.no_grad():
        a, b = fused(feats, lens, ys, "en"), plain(feats, lens, ys, "en")
    assert abs(a.loss.item() - b.loss.item()) < 1e-4 * abs(b.loss.item())
    assert abs(a.loss_att.item() - b.loss_att.item()) < 1e-4 * abs(b.loss_att.item())
    fused.train()
    plain.train()
    fused(feats, lens, ys, "en").loss.backward()
    plain(feats, lens, ys, "en").loss.backward()
    for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
        # float32 rounding, relative to the tensor's largest gradient
        assert (p.grad - q.grad).abs().max() <= 1e-5 * q.grad.abs().max() + 1e-6, name
    # switching back gives ESPnet's layers again, the same weights
    assert use_sdpa(fused, enabled=False) == len(attn) and not any(map(is_sdpa, fused.modules()))
