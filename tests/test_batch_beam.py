"""The beam search batched over utterances gives ESPnet's per-utterance BatchBeamSearch results."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from espnet.nets.ctc_prefix_score import CTCPrefixScoreTH

from asr_transfer.data.audio import load_audio
from asr_transfer.data.features import fbank
from asr_transfer.data.kaldi import load_data_dir
from asr_transfer.decode import DecodeConfig, Recognizer, decode_batch
from asr_transfer.decode.batch_beam import VectorCTCPrefixScore, batch_beam_search
from asr_transfer.decode.search import espnet_beam_search
from asr_transfer.model.attention import is_sdpa, use_sdpa


@pytest.fixture(scope="module")
def features(tiny_corpus: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Fbank ``(B, T, 80)`` and lengths of the real test utterances of two domains (mixed lengths)."""
    waves = []
    for name in ("en_test_clean", "en_test_phone"):
        data = load_data_dir(tiny_corpus / name)
        waves += [load_audio(data.wav[u]) for u in data.utts]
    feats = [fbank(w) for w in waves]
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), torch.tensor([f.shape[0] for f in feats])


@pytest.fixture(scope="module")
def encoded(tiny_exp: Path, features: tuple) -> tuple[Recognizer, torch.Tensor, torch.Tensor]:
    """The tiny model's encoder output for :func:`features`."""
    rec = Recognizer.from_exp(tiny_exp)
    with torch.no_grad():
        enc_out, enc_lens, _ = rec.model.encode(*features)
    return rec, enc_out, enc_lens


@pytest.mark.parametrize(
    ("beam", "ctc_weight", "length_penalty", "maxlen_ratio"),
    [(4, 0.3, 0.0, 0.0), (1, 0.3, 0.0, 0.0), (3, 0.0, 0.0, 0.0), (3, 1.0, 0.0, 0.0), (4, 0.5, 1.0, 0.2)],
)
def test_same_hypotheses_as_espnet_per_utterance(
    encoded: tuple, beam: int, ctc_weight: float, length_penalty: float, maxlen_ratio: float
) -> None:
    rec, enc_out, enc_lens = encoded
    cfg = DecodeConfig(
        mode="beam_espnet",
        beam_size=beam,
        ctc_weight=ctc_weight,
        length_penalty=length_penalty,
        maxlen_ratio=maxlen_ratio,
    )
    ours = batch_beam_search(
        rec.model, enc_out, enc_lens, "en", beam, ctc_weight, length_penalty, maxlen_ratio
    )
    assert ours == espnet_beam_search(rec.model, enc_out, enc_lens, "en", cfg)
    assert len(ours) == len(enc_out) and any(ours)
    vocab = rec.tokenizers["en"].vocab_size
    assert all(0 < t < vocab - 1 for seq in ours for t in seq)


def test_a_batch_of_mixed_lengths_decodes_like_each_utterance_alone(encoded: tuple) -> None:
    rec, enc_out, enc_lens = encoded
    together = batch_beam_search(rec.model, enc_out, enc_lens, "en", beam_size=3, ctc_weight=0.3)
    alone = [
        batch_beam_search(rec.model, x[None, :n], n[None], "en", beam_size=3, ctc_weight=0.3)[0]
        for x, n in zip(enc_out, enc_lens)
    ]
    assert enc_lens.min() < enc_lens.max()
    assert together == alone


def test_a_batch_of_audio_decodes_like_each_utterance_alone(tiny_exp: Path, tiny_corpus: Path) -> None:
    """The whole path (fbank per utterance, padded batch, encoder, search): batch 16 = batch 1.

    Fails with ESPnet's batched subsampling masks, which count padding frames into the shorter
    utterances (the encoder lengths then differ from the unbatched ones by 1-2 frames).
    """
    waves = []
    for name in ("en_test_clean", "en_dev_clean", "en_train_clean", "de_test_clean", "ro_test_clean"):
        data = load_data_dir(tiny_corpus / name)
        waves += [load_audio(data.wav[u]) for u in data.utts]
    waves = waves[:16]
    rec = Recognizer.from_exp(tiny_exp, decode=DecodeConfig(mode="beam", beam_size=4, ctc_weight=0.3))
    assert len(waves) == 16 and len({len(w) for w in waves}) > 8
    together = rec.transcribe_waves(waves)
    assert together == [rec.transcribe_waves([w])[0] for w in waves] and any(together)


def test_an_empty_batch_gives_no_hypotheses(encoded: tuple) -> None:
    rec, enc_out, enc_lens = encoded
    assert batch_beam_search(rec.model, enc_out[:0], enc_lens[:0], "en") == []


def test_decode_modes_beam_and_beam_espnet_agree(encoded: tuple) -> None:
    rec, _, _ = encoded
    feats, lens = torch.randn(3, 150, 80), torch.tensor([150, 100, 60])
    ours = decode_batch(rec.model, feats, lens, "en", DecodeConfig(mode="beam", beam_size=2))
    ref = decode_batch(rec.model, feats, lens, "en", DecodeConfig(mode="beam_espnet", beam_size=2))
    assert ours == ref


def test_sdpa_and_espnets_attention_give_the_same_hypotheses(encoded: tuple, features: tuple) -> None:
    """Encoder and decoder through SDPA (the default) or ESPnet's arithmetic: the same search results."""
    rec, _, _ = encoded
    assert any(map(is_sdpa, rec.model.modules()))
    cfg = DecodeConfig(mode="beam", beam_size=4, ctc_weight=0.3)
    espnet_cfg = DecodeConfig(mode="beam_espnet", beam_size=4, ctc_weight=0.3)
    fused = decode_batch(rec.model, *features, "en", cfg)
    fused_espnet_search = decode_batch(rec.model, *features, "en", espnet_cfg)
    use_sdpa(rec.model, enabled=False)
    try:
        plain = decode_batch(rec.model, *features, "en", cfg)
    finally:
        use_sdpa(rec.model)
    assert fused == plain == fused_espnet_search and any(fused)


@pytest.mark.parametrize("scored", [None, 5, 2])
def test_the_ctc_prefix_scorer_gives_espnets_scores_and_states(scored: int | None) -> None:
    """``VectorCTCPrefixScore`` against ESPnet's ``CTCPrefixScoreTH`` over six steps: every token's
    prefix score and the selected extensions' forward variables, with the whole vocabulary scored
    (``None``), a pre-beam whose product runs over the whole vocabulary (5 of 12 tokens for 4
    hypotheses) and one over the gathered tokens (2 of 12); one selection is a token that was not
    scored, which ESPnet gives the state of the hypothesis's first scored token."""
    gen = torch.Generator().manual_seed(0)
    n_utts, hyps, vocab, eos = 3, 4, 12, 11
    logp = torch.randn(n_utts, 20, vocab, generator=gen).mul(3).log_softmax(-1)
    lens = torch.tensor([20, 14, 9])
    ours, ref = VectorCTCPrefixScore(logp.clone(), lens, 0, eos), CTCPrefixScoreTH(logp.clone(), lens, 0, eos)
    y = torch.full((n_utts * hyps, 1), eos)
    state_ours = state_ref = None
    for _ in range(6):
        ids = None
        if scored is not None:
            ids = torch.rand(n_utts * hyps, vocab, generator=gen)[:, 1:eos].topk(scored, -1)[1] + 1
        score, full_ours = ours(y, state_ours, ids)
        score_ref, full_ref = ref(y, state_ref, ids)
        assert torch.allclose(score, score_ref, rtol=1e-5, atol=1e-3)
        assert torch.equal(score <= -1e9, score_ref <= -1e9)
        # each utterance keeps `hyps` extensions among the scored ones (random, not only the best)
        pick = (score_ref > -1e9).float().add(torch.rand(score.shape, generator=gen)).view(n_utts, -1)
        best = pick.topk(hyps, -1)[1]
        if scored is not None:
            best[0, 0] = next(t for t in range(1, eos) if t not in ids[0])  # hypothesis 0, an unscored token
        state_ours = ours.index_select_state(full_ours, best)
        state_ref = ref.index_select_state(full_ref, best)  # also ESPnet's window bounds
        for a, b in zip(state_ours, state_ref[:2]):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-3)
        hyp = (best // vocab + torch.arange(n_utts)[:, None] * hyps).view(-1)
        y = torch.cat([y[hyp], (best % vocab).view(-1, 1)], 1)
