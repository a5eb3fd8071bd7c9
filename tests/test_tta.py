"""Test-time adaptation at decode (SUTA): it adapts, and never changes the model or depends on order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from conftest import cli

from asr_transfer.data.audio import load_audio
from asr_transfer.data.kaldi import read_table
from asr_transfer.decode import DecodeConfig, Recognizer, decode_batch
from asr_transfer.decode.tta import adapted_encode, suta_loss

# a large step so that three of them visibly move the tiny model
SUTA = DecodeConfig(mode="ctc_greedy", tta="suta", tta_steps=3, tta_lr=0.05)


def _waves(corpus: Path, n: int = 3) -> list:
    wav = read_table(corpus / "en_test_phone" / "wav.scp")
    return [load_audio(p) for p in list(wav.values())[:n]]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("scope", ["utterance", "batch"])
def test_suta_gives_the_same_hypothesis_in_any_order_and_leaves_the_model_bit_identical(
    tiny_exp: Path, tiny_corpus: Path, scope: str
) -> None:
    a, b, c = _waves(tiny_corpus)
    rec = Recognizer.from_exp(tiny_exp, decode=dataclasses.replace(SUTA, tta_scope=scope))
    before = _snapshot(rec.model)
    flags = [p.requires_grad for p in rec.model.parameters()]
    first = rec.transcribe_waves_scored([a])
    rec.transcribe_waves([b, c])
    again = rec.transcribe_waves_scored([a])
    assert again == first
    # the other order, in a fresh recognizer: a after b and c
    other = Recognizer.from_exp(tiny_exp, decode=dataclasses.replace(SUTA, tta_scope=scope))
    other.transcribe_waves([c])
    other.transcribe_waves([b])
    assert other.transcribe_waves_scored([a]) == first
    after = rec.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in rec.model.parameters()] == flags
    assert all(p.grad is None for p in rec.model.parameters())


def test_suta_lowers_its_objective_and_changes_only_the_encoder_output_it_decodes(
    tiny_exp: Path, tiny_corpus: Path
) -> None:
    rec = Recognizer.from_exp(tiny_exp)
    feats = [rec.frontend(w) for w in _waves(tiny_corpus, 2)]
    lens = torch.tensor([f.shape[0] for f in feats])
    batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    model, ctc = rec.model.eval(), rec.model.heads["en"].ctc.ctc_lo
    # per utterance, each is encoded alone (unpadded), as the source model encodes it alone
    with torch.no_grad():
        alone = [model.encode(f[None], torch.tensor([f.shape[0]]))[:2] for f in feats]
    source = torch.nn.utils.rnn.pad_sequence([e[0] for e, _ in alone], batch_first=True)
    source_lens = torch.cat([n for _, n in alone])
    adapted, adapted_lens = adapted_encode(model, batch, lens, "en", SUTA)
    assert torch.equal(adapted_lens, source_lens)
    assert not torch.allclose(adapted, source, atol=1e-4)
    with torch.no_grad():
        assert suta_loss(ctc(adapted), adapted_lens, SUTA) < suta_loss(ctc(source), source_lens, SUTA)
    # no step: exactly the source model's encoder output
    unadapted, _ = adapted_encode(model, batch, lens, "en", dataclasses.replace(SUTA, tta_steps=0))
    assert torch.equal(unadapted, source)


def test_suta_works_with_the_joint_beam_and_the_frontend_too(tiny_exp: Path, tiny_corpus: Path) -> None:
    rec = Recognizer.from_exp(tiny_exp)
    feats = [rec.frontend(w) for w in _waves(tiny_corpus, 2)]
    lens = torch.tensor([f.shape[0] for f in feats])
    batch = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    before = _snapshot(rec.model)
    beam = DecodeConfig(
        mode="beam", beam_size=2, tta="suta", tta_steps=2, tta_lr=0.05, tta_params="ln,frontend"
    )
    hyps = decode_batch(rec.model, batch, lens, "en", beam)
    assert hyps == decode_batch(rec.model, batch, lens, "en", beam)
    vocab = rec.tokenizers["en"].vocab_size
    assert len(hyps) == 2 and all(0 < t < vocab - 1 for seq in hyps for t in seq)
    assert all(torch.equal(v, rec.model.state_dict()[k]) for k, v in before.items())
    # the Recognizer option: SUTA on top of the experiment's recorded decoding
    with_tta = Recognizer.from_exp(tiny_exp, tta="suta").decode_cfg
    assert dataclasses.replace(with_tta, tta="none") == Recognizer.from_exp(tiny_exp).decode_cfg
    assert with_tta.tta == "suta"


def test_decode_cli_takes_tta_flags_records_them_and_rejects_unknown_ones(
    tiny_exp: Path, tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tiny_corpus / "en_test_phone"
    args = ["decode", "--exp", tiny_exp, "--data", data, "--out-root", tmp_path, "--device", "cpu"]
    assert cli(*args, "--mode", "ctc_greedy", "--tta", "suta", "--tta_steps", "1") == 0
    made = yaml.safe_load((tmp_path / "decode_en_test_phone" / "decode.yaml").read_text())
    assert (made["tta"], made["tta_steps"], made["tta_params"]) == ("suta", 1, "ln")
    assert sorted(read_table(tmp_path / "decode_en_test_phone" / "text", allow_empty_value=True)) == sorted(
        read_table(data / "text")
    )
    assert cli(*args, "--overwrite", "--tta", "tent") == 1
    assert "unknown test-time adaptation 'tent'" in capsys.readouterr().err
    assert cli(*args, "--overwrite", "--tta", "suta", "--tta_params", "decoder") == 1
    assert "tta_params 'decoder'" in capsys.readouterr().err
