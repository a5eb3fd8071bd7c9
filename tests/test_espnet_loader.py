"""Loading ESPnet2 ASR experiments: our model must reproduce ESPnet's own posteriors.

The slow test trains a real experiment with ``espnet2.bin.asr_train`` (ESPnet's
trainer, a few steps on CPU); the fast ones build ``ESPnetASRModel`` from
ESPnet's modules and save it the way ESPnet does (a ``config.yaml`` and a state
dict), which also covers the Conformer encoder and the attention decoder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from asr_transfer.data.audio import load_audio
from asr_transfer.model.espnet_loader import ESPnetLoadError, load_espnet_exp

REPO = Path(__file__).resolve().parents[1]
TOKENS = ["<blank>", "<unk>", "<space>", "a", "b", "c", "d", "<sos/eos>"]
FRONTEND = {"n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": 80}
ENCODERS = {
    "transformer": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2},
    "conformer": {
        "output_size": 32,
        "attention_heads": 2,
        "linear_units": 64,
        "num_blocks": 2,
        "rel_pos_type": "latest",
        "pos_enc_layer_type": "rel_pos",
        "selfattention_layer_type": "rel_selfattn",
        "macaron_style": True,
        "use_cnn_module": True,
        "cnn_module_kernel": 7,
    },
}
DECODER = {"attention_heads": 2, "linear_units": 64, "num_blocks": 2}


def _bench_helper():  # noqa: ANN202 - a module
    """``bench/_espnet_exp.py``: the data/config preparation the benchmarks use too."""
    spec = importlib.util.spec_from_file_location("_espnet_exp", REPO / "bench" / "_espnet_exp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _speech(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances of different lengths, zero padded (exercises the masks)."""
    rng = np.random.default_rng(seed)
    lens = torch.tensor([16000, 11000])
    speech = torch.from_numpy(rng.standard_normal((2, 16000)).astype(np.float32)) * 0.1
    speech[1, 11000:] = 0
    return speech, lens


def _hand_made_exp(tmp_path: Path, encoder: str) -> tuple[Path, torch.nn.Module]:
    """An ESPnet ``ESPnetASRModel`` with random weights, saved as an experiment dir."""
    from espnet2.asr.ctc import CTC
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
    from espnet2.asr.espnet_model import ESPnetASRModel
    from espnet2.asr.frontend.default import DefaultFrontend
    from espnet2.layers.global_mvn import GlobalMVN

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stats = tmp_path / "feats_stats.npz"
    np.savez(
        stats,
        count=np.array(1000),
        sum=rng.normal(-5, 1, 80) * 1000,
        sum_square=(rng.uniform(1, 4, 80) + 25) * 1000,
    )
    enc_cls = {"transformer": TransformerEncoder, "conformer": ConformerEncoder}[encoder]
    enc = enc_cls(input_size=80, **ENCODERS[encoder])
    model = ESPnetASRModel(
        vocab_size=len(TOKENS),
        token_list=TOKENS,
        frontend=DefaultFrontend(**FRONTEND),
        specaug=None,
        normalize=GlobalMVN(str(stats)),
        preencoder=None,
        encoder=enc,
        postencoder=None,
        decoder=TransformerDecoder(len(TOKENS), 32, **DECODER),
        ctc=CTC(len(TOKENS), 32),
        joint_network=None,
        ctc_weight=0.3,
        lsm_weight=0.1,
    ).eval()
    exp = tmp_path / "exp"
    exp.mkdir()
    config = {
        "frontend": "default",
        "frontend_conf": FRONTEND,
        "normalize": "global_mvn",
        "normalize_conf": {"stats_file": str(stats)},
        "specaug": None,
        "encoder": encoder,
        "encoder_conf": ENCODERS[encoder],
        "decoder": "transformer",
        "decoder_conf": DECODER,
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1},
        "token_type": "char",
        "token_list": TOKENS,
        "input_size": None,
        "preencoder": None,
        "postencoder": None,
    }
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), exp / "valid.acc.ave.pth")
    return exp, model


@pytest.mark.parametrize("encoder", ["transformer", "conformer"])
def test_hand_made_exp_gives_espnets_ctc_posteriors_and_decoder_logits(tmp_path: Path, encoder: str) -> None:
    exp, ref = _hand_made_exp(tmp_path, encoder)
    model, tok, frontend = load_espnet_exp(exp)
    assert tok.tokens == TOKENS and tok.kind == "char"
    assert model.encoder.__class__ is ref.encoder.__class__ and not model.training
    speech, lens = _speech()
    ys_in, ys_lens = torch.tensor([[7, 3, 4, 2], [7, 5, 6, 0]]), torch.tensor([4, 3])
    with torch.no_grad():
        enc_ref, enc_lens_ref = ref.encode(speech, lens)
        feats, feat_lens = frontend(speech, lens)
        enc, enc_lens, _ = model.encode(feats, feat_lens)
        logp_ref, logp = ref.ctc.log_softmax(enc_ref), model.ctc_log_probs(enc, "en")
        att_ref, _ = ref.decoder(enc_ref, enc_lens_ref, ys_in, ys_lens)
        att = model.attention_logits(enc, enc_lens, ys_in, ys_lens, "en")
    assert enc_lens.tolist() == enc_lens_ref.tolist()
    valid = torch.arange(logp.size(1))[None, :] < enc_lens[:, None]
    assert (logp - logp_ref).abs()[valid].max() < 1e-5
    assert (att - att_ref).abs()[torch.arange(4)[None, :] < ys_lens[:, None]].max() < 1e-4


def test_strict_load_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    exp, ref = _hand_made_exp(tmp_path, "transformer")
    state = ref.state_dict()
    del state["encoder.encoders.1.norm1.weight"]
    state["encoder.extra.weight"] = torch.zeros(1)
    torch.save(state, exp / "broken.pth")
    with pytest.raises(
        ESPnetLoadError,
        match=r"(?s)missing: \['encoder.encoders.1.norm1.weight'\].*"
        r"unexpected: \['encoder.extra.weight'\]",
    ):
        load_espnet_exp(exp, checkpoint=exp / "broken.pth")


def test_unsupported_config_fails_loudly(tmp_path: Path) -> None:
    exp, _ = _hand_made_exp(tmp_path, "transformer")
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    (exp / "config.yaml").write_text(yaml.safe_dump({**cfg, "normalize": "utterance_mvn"}))
    with pytest.raises(ESPnetLoadError, match="utterance_mvn"):
        load_espnet_exp(exp)


@pytest.mark.slow
def test_exp_trained_by_espnet_asr_train_gives_the_same_ctc_posteriors(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    """Train with ``python -m espnet2.bin.asr_train`` (1 epoch, CPU), load, compare on real audio."""
    helper = _bench_helper()
    train = helper.prepare_data(tiny_corpus / "en_train_clean", tmp_path / "train")
    valid = helper.prepare_data(tiny_corpus / "en_dev_clean", tmp_path / "valid")
    model_cfg = {"encoder": {"type": "transformer", **ENCODERS["transformer"]}, "decoder": DECODER}
    cfg = helper.espnet_config(model_cfg, train["feats_stats.npz"], batch_bins=3 * 16000 * 4, max_epoch=1)
    exp = tmp_path / "exp"
    helper.run_espnet(helper.train_command(cfg, train, valid, exp), tmp_path / "asr_train.log")
    assert (exp / "valid.acc.ave.pth").exists()

    model, tok, frontend = load_espnet_exp(exp)
    assert tok.tokens == (train["tokens.txt"]).read_text().splitlines()
    lines = valid["wav.scp"].read_text().splitlines()
    waves = [torch.from_numpy(load_audio(line.split()[1])) for line in lines]
    lens = torch.tensor([len(w) for w in waves])
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)

    from espnet2.tasks.asr import ASRTask  # ESPnet's own model from the same files

    ref, _ = ASRTask.build_model_from_file(exp / "config.yaml", exp / "valid.acc.ave.pth", "cpu")
    ref.eval()
    with torch.no_grad():
        enc_ref, enc_lens_ref = ref.encode(speech, lens)
        logp_ref = ref.ctc.log_softmax(enc_ref)
        enc, enc_lens, _ = model.encode(*frontend(speech, lens))
        logp = model.ctc_log_probs(enc, "en")
    assert enc_lens.tolist() == enc_lens_ref.tolist()
    valid_frames = torch.arange(logp.size(1))[None, :] < enc_lens[:, None]
    assert (logp - logp_ref).abs()[valid_frames].max() < 1e-5
