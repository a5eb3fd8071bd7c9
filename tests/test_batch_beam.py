"""The beam search batched over utterances gives ESPnet's per-utterance BatchBeamSearch results."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asr_transfer.data.audio import load_audio
from asr_transfer.data.features import fbank
from asr_transfer.data.kaldi import load_data_dir
from asr_transfer.decode import DecodeConfig, Recognizer, decode_batch
from asr_transfer.decode.batch_beam import batch_beam_search
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
