"""The hybrid model: shapes, layer taps, slots/adapters, freezing, heads, loss."""

from __future__ import annotations

import pytest
import torch

from asr_transfer.model import build_model
from asr_transfer.model.slots import Adapter, set_trainable

CFG = {
    "encoder": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 3},
    "decoder": {"attention_heads": 2, "linear_units": 64, "num_blocks": 2},
}


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(2, 60, 80), torch.tensor([60, 45]), torch.tensor([[3, 4, 5], [6, 7, -1]])


def test_forward_returns_losses_taps_and_ctc_posteriors() -> None:
    model = build_model(CFG, {"en": 12, "ro": 9})
    feats, lens, ys = _batch()
    out = model(feats, lens, ys, "en", return_layers=(1, 3))
    assert out.enc_out.shape == (2, 14, 32)
    assert out.enc_lens.tolist() == [14, 12]  # ESPnet conv2d mask subsampling
    assert sorted(out.layers) == [1, 3] and out.layers[1].shape == (2, 14, 32)
    assert out.ctc_logp.shape == (2, 14, 12) and out.ctc_logp.dtype == torch.float32
    assert torch.allclose(out.ctc_logp.exp().sum(-1), torch.ones(2, 14), atol=1e-5)
    expected = 0.3 * out.loss_ctc + 0.7 * out.loss_att
    assert torch.isclose(out.loss, expected)
    # the Romanian head has its own vocabulary size over the same body
    assert model(feats, lens, ys.clamp(max=8), "ro").ctc_logp.shape[-1] == 9


def test_bf16_autocast_keeps_ctc_and_cross_entropy_in_fp32() -> None:
    """The GPU training path's precision rules, checked with CPU bf16 autocast (no GPU needed)."""
    model = build_model(CFG, {"en": 12}).eval()
    feats, lens, ys = _batch()
    ref = model(feats, lens, ys, "en")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(feats, lens, ys, "en")
    assert out.enc_out.dtype == torch.bfloat16  # the body did run in bf16
    assert out.ctc_logp.dtype == torch.float32 and out.loss.dtype == torch.float32
    assert torch.allclose(out.ctc_logp.exp().sum(-1), torch.ones(2, 14), atol=1e-5)
    # bf16 has ~3 significant digits: the losses agree with fp32 to about 1 %
    assert torch.isclose(out.loss_ctc, ref.loss_ctc, rtol=0.02) and torch.isclose(
        out.loss_att, ref.loss_att, rtol=0.02
    )
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_conformer_encoder_option() -> None:
    cfg = {
        **CFG,
        "encoder": {
            **CFG["encoder"],
            "type": "conformer",
            "rel_pos_type": "latest",
            "pos_enc_layer_type": "rel_pos",
            "selfattention_layer_type": "rel_selfattn",
        },
    }
    model = build_model(cfg, {"en": 12})
    feats, lens, ys = _batch()
    out = model(feats, lens, ys, "en", return_layers=(2,))
    assert out.layers[2].shape == (2, 14, 32) and torch.isfinite(out.loss)


def test_parameter_names_follow_espnet() -> None:
    names = set(build_model(CFG, {"en": 12}).state_dict())
    assert "encoder.encoders.0.self_attn.linear_q.weight" in names
    assert "decoder.decoders.1.src_attn.linear_out.bias" in names
    assert "heads.en.ctc.ctc_lo.weight" in names and "heads.en.embed.weight" in names


def test_adapters_start_as_identity_then_change_output_and_save_small() -> None:
    model = build_model(CFG, {"en": 12}).eval()
    feats, lens, ys = _batch()
    before = model(feats, lens, ys, "en").ctc_logp
    model.add_slot_modules("ro", lambda d: Adapter(d, bottleneck=4))
    assert torch.allclose(model(feats, lens, ys, "en").ctc_logp, before)
    for slot in model.enc_slots:
        torch.nn.init.normal_(slot.modules_by_name["ro"].up.weight)
    assert not torch.allclose(model(feats, lens, ys, "en").ctc_logp, before)
    model.set_enabled([])
    assert torch.allclose(model(feats, lens, ys, "en").ctc_logp, before)
    small = model.slot_state_dict("ro")
    # 3 encoder + 2 decoder slots, each LayerNorm (2) + down + up
    assert len(small) == 5 * 4
    assert sum(v.numel() for v in small.values()) < 0.1 * sum(p.numel() for p in model.parameters())


def test_freezing_by_name_pattern() -> None:
    model = build_model(CFG, {"en": 12})
    n = set_trainable(model, ["encoder.*", "decoder.*"], False)
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert n > 0 and trainable and all(k.startswith("heads.") for k in trainable)
    with pytest.raises(ValueError, match="no parameter matches"):
        set_trainable(model, ["nothing.*"], True)


def test_too_short_input_is_a_clear_error() -> None:
    model = build_model(CFG, {"en": 12})
    with pytest.raises(ValueError, match="too short"):
        model.encode(torch.randn(1, 5, 80), torch.tensor([5]))


def test_grouped_incremental_decoding_equals_espnets_decoder_blocks() -> None:
    """Beam search's decoder path (memory per utterance, cached keys/values) against ESPnet's blocks."""
    from espnet.nets.pytorch_backend.transformer.mask import subsequent_mask

    torch.manual_seed(0)
    model = build_model(CFG, {"en": 12}).eval()
    utts, group, frames = 3, 4, 9
    memory = torch.randn(utts, frames, 32)
    memory_mask = (torch.arange(frames)[None] < torch.tensor([9, 6, 4])[:, None])[:, None]  # (U, 1, T)
    ys = torch.randint(1, 11, (utts * group, 5))
    per_hyp, per_hyp_mask = memory.repeat_interleave(group, 0), memory_mask.repeat_interleave(group, 0)
    src_kv = model.source_kv(memory)
    cache = ref_cache = None
    with torch.no_grad():
        for length in range(1, 6):
            mask = subsequent_mask(length).unsqueeze(0)
            out, cache = model.decode_steps(ys[:, :length], mask, memory, memory_mask, "en", cache, src_kv)
            ref, ref_cache = model.decode_steps(ys[:, :length], mask, per_hyp, per_hyp_mask, "en", ref_cache)
            assert out.shape == (utts * group, 1, 32)  # with a cache, only the new position
            assert (out[:, -1] - ref[:, -1]).abs().max() < 1e-5
    # training mode takes ESPnet's blocks (dropout lives there) and returns every position
    model.train()
    out, _ = model.decode_steps(ys, subsequent_mask(5).unsqueeze(0), memory, memory_mask, "en")
    assert out.shape == (utts * group, 5, 32)


def test_specaugment_masks_only_in_training() -> None:
    specaug = {
        "apply_time_warp": False,
        "apply_freq_mask": True,
        "freq_mask_width_range": [5, 20],
        "num_freq_mask": 2,
        "apply_time_mask": True,
        "time_mask_width_range": [2, 8],
        "num_time_mask": 2,
    }
    no_dropout = {"dropout_rate": 0.0, "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0}
    cfg = {"encoder": {**CFG["encoder"], **no_dropout}, "decoder": CFG["decoder"], "specaug": specaug}
    model = build_model(cfg, {"en": 12})
    feats, lens, _ = _batch()
    with torch.no_grad():
        model.train()
        a, b = model.encode(feats, lens)[0], model.encode(feats, lens)[0]
        model.eval()
        c, d = model.encode(feats, lens)[0], model.encode(feats, lens)[0]
    assert not torch.allclose(a, b)  # fresh masks per call
    assert torch.equal(c, d) and not torch.allclose(a, c)  # none at evaluation


def test_fast_subsampling_keeps_weights_and_outputs() -> None:
    """Channels-last conv weights and in-place ReLUs (decoding): same state dict, same encoder output."""
    torch.manual_seed(0)
    model = build_model(CFG, {"en": 12}).eval()
    feats, lens = torch.randn(2, 60, 80), torch.tensor([60, 41])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref, _, _ = model.encode(feats, lens)
        model.fast_subsampling()
        out, _, _ = model.encode(feats, lens)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], v) for k, v in before.items())
    assert model.encoder.embed.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert (out - ref).abs().max() < 1e-5


def test_device_side_masks_targets_and_accuracy_equal_espnets() -> None:
    from espnet.nets.pytorch_backend.nets_utils import make_pad_mask, th_accuracy
    from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos as espnet_add_sos_eos

    from asr_transfer.model.masks import accuracy, add_sos_eos, pad_mask

    lens = torch.tensor([5, 2, 7, 1])
    assert torch.equal(pad_mask(lens, 7), make_pad_mask(lens, maxlen=7).bool())
    x = torch.randn(4, 9, 3)
    assert torch.equal(pad_mask(lens, 9).unsqueeze(-1).expand_as(x), make_pad_mask(lens, x, 1).bool())
    ys = torch.tensor([[3, 4, 5], [6, -1, -1], [7, 8, -1], [2, 2, 2]])
    ys_lens = (ys != -1).sum(1)
    mine, theirs = add_sos_eos(ys, ys_lens, 9, 9, -1), espnet_add_sos_eos(ys, 9, 9, -1)
    assert all(torch.equal(a, b) for a, b in zip(mine, theirs))
    logits = torch.randn(4, 4, 10)
    ys_out = mine[1]
    got = accuracy(logits, ys_out, -1).item()
    assert got == pytest.approx(th_accuracy(logits.view(-1, 10), ys_out, ignore_label=-1))


@pytest.mark.parametrize("input_layer", ["conv2d", "conv2d1", "conv2d2", "conv2d6", "conv2d8"])
def test_subsampled_lengths_are_espnets_for_an_unpadded_utterance(input_layer: str) -> None:
    model = build_model({**CFG, "encoder": {**CFG["encoder"], "input_layer": input_layer}}, {"en": 12})
    lens = torch.arange(15, 40)
    alone = [int(model.encoder.embed(torch.zeros(1, n, 80), torch.ones(1, 1, n, dtype=torch.bool))[1].sum())
             for n in lens.tolist()]  # fmt: skip
    assert model.subsampled_lengths(lens).tolist() == alone


@pytest.mark.parametrize("encoder", ["transformer", "conformer"])
def test_exact_lengths_encode_each_utterance_of_a_batch_as_alone(encoder: str) -> None:
    """ESPnet's batched masks count padding frames into the shorter utterances (and a Conformer's
    convolutions read past their end); ``exact_lengths`` gives the unpadded result."""
    conformer = {"pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn",
                 "rel_pos_type": "latest", "use_cnn_module": True, "cnn_module_kernel": 7}  # fmt: skip
    enc = {**CFG["encoder"], "type": encoder, **(conformer if encoder == "conformer" else {})}
    model = build_model({**CFG, "encoder": enc}, {"en": 12}).eval()
    torch.manual_seed(0)
    feats, lens = torch.randn(3, 80, 80), torch.tensor([80, 61, 50])
    with torch.no_grad():
        out, out_lens, _ = model.encode(feats, lens, exact_lengths=True)
        batched_lens = model.encode(feats, lens)[1]
        alone = [model.encode(feats[b : b + 1, :n], lens[b : b + 1]) for b, n in enumerate(lens.tolist())]
    assert out_lens.tolist() == [int(a[1]) for a in alone] == [19, 14, 11]
    assert batched_lens.tolist() == [19, 16, 13]  # ESPnet's batched masks: 2 frames of padding each
    for b, (ref, n, _) in enumerate(alone):
        assert (out[b, : int(n)] - ref[0]).abs().max() < 1e-5
