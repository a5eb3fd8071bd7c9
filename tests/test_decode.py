"""Decoding: greedy and beam search agree in form, the decode CLI writes text/trn/ref, transcribe()."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import cli

from asr_transfer.data.audio import load_any_audio, load_audio, resample
from asr_transfer.data.kaldi import read_table
from asr_transfer.decode import DecodeConfig, Recognizer, decode_batch
from asr_transfer.decode.greedy import ctc_greedy


def test_ctc_greedy_merges_repeats_drops_blanks_and_respects_lengths() -> None:
    ids = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 3], [2, 0, 2, 2, 3, 3, 3, 3]])
    logp = torch.nn.functional.one_hot(ids, 4).float().log()
    assert ctc_greedy(logp, torch.tensor([8, 4])) == [[1, 1, 2, 3], [2, 2]]


def test_greedy_and_beam_return_token_ids_without_specials(tiny_exp: Path) -> None:
    rec = Recognizer.from_exp(tiny_exp)
    feats = torch.randn(2, 120, 80)
    lens = torch.tensor([120, 90])
    greedy = decode_batch(rec.model, feats, lens, "en", DecodeConfig(mode="ctc_greedy"))
    beam = decode_batch(rec.model, feats, lens, "en", DecodeConfig(mode="beam", beam_size=3, ctc_weight=0.3))
    assert len(greedy) == len(beam) == 2
    vocab = rec.tokenizers["en"].vocab_size
    assert all(0 < t < vocab - 1 for seq in greedy + beam for t in seq)
    with pytest.raises(ValueError, match="unknown decode mode"):
        decode_batch(rec.model, feats, lens, "en", DecodeConfig(mode="viterbi"))


def test_decode_cli_writes_kaldi_text_trn_and_reference(
    tiny_exp: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    data = tiny_corpus / "en_test_phone"
    assert cli("decode", "--exp", tiny_exp, "--data", data, "--mode", "ctc_greedy") == 0
    out = tiny_exp / "decode_en_test_phone"
    hyp = read_table(out / "text", allow_empty_value=True)
    assert sorted(hyp) == sorted(read_table(data / "text"))
    assert read_table(out / "ref") == read_table(data / "text")
    trn = (out / "hyp.trn").read_text().splitlines()
    assert len(trn) == len(hyp) and all(line.endswith(")") for line in trn)
    assert (out / "utt2domain").read_text() == (data / "utt2domain").read_text()
    # a finished decode is skipped, so a rerun changes nothing
    before = (out / "text").stat().st_mtime_ns
    assert cli("decode", "--exp", tiny_exp, "--data", data, "--mode", "ctc_greedy") == 0
    assert (out / "text").stat().st_mtime_ns == before


def test_transcribe_a_wav_file(tiny_exp: Path, tiny_corpus: Path) -> None:
    rec = Recognizer.from_exp(tiny_exp, decode=DecodeConfig(mode="beam", beam_size=2))
    wav = read_table(tiny_corpus / "en_test_clean" / "wav.scp")
    text = rec.transcribe(next(iter(wav.values())))
    assert isinstance(text, str)
    assert not any(t in text for t in ("<blank>", "<space>", "<sos/eos>"))
    with pytest.raises(ValueError, match="no head for language"):
        rec.transcribe(next(iter(wav.values())), lang="xx")


def test_transcribe_cli_prints_one_line_per_file(tiny_exp: Path, tiny_corpus: Path, capsys) -> None:
    wavs = list(read_table(tiny_corpus / "en_test_clean" / "wav.scp").values())[:2]
    assert cli("transcribe", *wavs, "--exp", tiny_exp, "--mode", "ctc_greedy") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == wavs


def test_transcribe_takes_what_users_record(
    tiny_exp: Path, tiny_corpus: Path, tmp_path: Path, capsys
) -> None:
    """A real 16 kHz utterance as a 44.1 kHz stereo and a 48 kHz file decodes as the original; as an
    8 kHz call it decodes too, and the upsampling is said once on stderr."""
    original = next(iter(read_table(tiny_corpus / "en_test_clean" / "wav.scp").values()))
    x = load_audio(original)
    y = resample(x, 16000, 44100)
    # channels that differ but average to the utterance: averaged, not the first channel taken
    side = 0.1 * np.sin(2 * np.pi * 300 * np.arange(len(y)) / 44100)
    files = {"44k": tmp_path / "phone.wav", "48k": tmp_path / "mic.flac", "8k": tmp_path / "call.wav"}
    sf.write(files["44k"], np.stack([y + side, y - side], axis=1), 44100, subtype="PCM_16")
    sf.write(files["48k"], resample(x, 16000, 48000), 48000, subtype="PCM_16")
    sf.write(files["8k"], resample(x, 16000, 8000), 8000, subtype="PCM_16")
    sf.write(tmp_path / "call2.wav", resample(x[::-1].copy(), 16000, 8000), 8000, subtype="PCM_16")
    (tmp_path / "broken.wav").write_bytes(b"not audio" * 100)

    back, how = load_any_audio(files["44k"])
    assert (how.sample_rate, how.channels) == (44100, 2)
    n = min(len(back), len(x))
    assert abs(len(back) - len(x)) <= 1 and np.corrcoef(back[:n], x[:n])[0, 1] > 0.99

    paths = [original, *files.values(), tmp_path / "call2.wav", tmp_path / "broken.wav"]
    assert cli("transcribe", *paths, "--exp", tiny_exp, "--mode", "ctc_greedy") == 1  # broken.wav
    out = capsys.readouterr()
    hyp = dict(line.split("\t") for line in out.out.splitlines())
    assert hyp[original] and hyp[str(files["44k"])] == hyp[str(files["48k"])] == hyp[original]
    assert str(files["8k"]) in hyp and str(tmp_path / "call2.wav") in hyp
    err = out.err
    assert f"{files['44k']}: 2 channels averaged to mono; 44100 Hz audio resampled to 16000 Hz" in err
    assert f"{files['48k']}: 48000 Hz audio resampled to 16000 Hz" in err
    assert f"{files['8k']}: 8000 Hz audio upsampled to 16000 Hz" in err and "WER will suffer" in err
    assert err.count("upsampled") == 1  # once for the two 8 kHz files
    assert f"error: {tmp_path / 'broken.wav'}: corrupt or unreadable audio" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("encoder", ["transformer", "conformer"])
def test_training_still_works_after_decoding(encoder: str) -> None:
    """Decoding runs in inference mode and re-lays the subsampling weights: training must not notice."""
    from asr_transfer.model.asr import build_model

    enc = {"type": encoder, "output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 1}
    model = build_model({"encoder": enc, "decoder": {"attention_heads": 2, "linear_units": 64}}, {"en": 12})
    # over 5,000 frames after subsampling: ESPnet's positional encodings grow their cached table in there
    cfg = DecodeConfig(beam_size=2, maxlen_ratio=-2)
    decode_batch(model, torch.randn(1, 20100, 80), torch.tensor([20100]), "en", cfg)
    model.train()
    out = model(torch.randn(2, 60, 80), torch.tensor([60, 40]), torch.tensor([[3, 4], [5, -1]]), "en")
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder.embed.parameters())
