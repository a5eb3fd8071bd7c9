"""Loading ESPnet2 ASR experiments: our model must reproduce ESPnet's own posteriors.

The slow test trains a real experiment with ``espnet2.bin.asr_train`` (ESPnet's
trainer, a few steps on CPU); the fast ones build ``ESPnetASRModel`` from
ESPnet's modules and save it the way ESPnet does (a ``config.yaml`` and a state
dict), which also covers the Conformer encoder and the attention decoder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="module")
def espnet_trained(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An experiment trained by ``python -m espnet2.bin.asr_train`` (ESPnet's own trainer, 1 epoch, CPU)."""
    helper = _bench_helper()
    root = tmp_path_factory.mktemp("espnet")
    train = helper.prepare_data(tiny_corpus / "en_train_clean", root / "train")
    valid = helper.prepare_data(tiny_corpus / "en_dev_clean", root / "valid")
    model_cfg = {"encoder": {"type": "transformer", **ENCODERS["transformer"]}, "decoder": DECODER}
    cfg = helper.espnet_config(model_cfg, train["feats_stats.npz"], batch_bins=3 * 16000 * 4, max_epoch=1)
    exp = root / "exp"
    helper.run_espnet(helper.train_command(cfg, train, valid, exp), root / "asr_train.log")
    assert (exp / "valid.acc.ave.pth").exists()
    return {"exp": exp, "tokens": train["tokens.txt"], "valid_wav_scp": valid["wav.scp"]}


def _espnet_reference(exp: Path) -> torch.nn.Module:
    """ESPnet's own model built from the experiment's files by ESPnet's ``ASRTask``."""
    from espnet2.tasks.asr import ASRTask

    ref, _ = ASRTask.build_model_from_file(exp / "config.yaml", exp / "valid.acc.ave.pth", "cpu")
    return ref.eval()


@pytest.mark.slow
def test_exp_trained_by_espnet_asr_train_gives_the_same_ctc_posteriors(espnet_trained: dict) -> None:
    """Load the experiment ESPnet's trainer wrote; compare on real audio in one padded batch."""
    exp = espnet_trained["exp"]
    model, tok, frontend = load_espnet_exp(exp)
    assert tok.tokens == espnet_trained["tokens"].read_text().splitlines()
    lines = espnet_trained["valid_wav_scp"].read_text().splitlines()
    waves = [torch.from_numpy(load_audio(line.split()[1])) for line in lines]
    lens = torch.tensor([len(w) for w in waves])
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)

    ref = _espnet_reference(exp)
    with torch.no_grad():
        enc_ref, enc_lens_ref = ref.encode(speech, lens)
        logp_ref = ref.ctc.log_softmax(enc_ref)
        enc, enc_lens, _ = model.encode(*frontend(speech, lens))
        logp = model.ctc_log_probs(enc, "en")
    assert enc_lens.tolist() == enc_lens_ref.tolist()
    valid_frames = torch.arange(logp.size(1))[None, :] < enc_lens[:, None]
    assert (logp - logp_ref).abs()[valid_frames].max() < 1e-5


def _sixteen_waves(tiny_corpus: Path) -> list:
    """16 real utterances of the tiny corpus, of more than 8 lengths (a batch with much padding)."""
    waves = [
        load_audio(line.split()[1])
        for name in ("en_test_clean", "en_dev_clean", "en_train_clean", "de_test_clean", "ro_test_clean")
        for line in (tiny_corpus / name / "wav.scp").read_text().splitlines()
    ][:16]
    assert len(waves) == 16 and len({len(w) for w in waves}) > 8
    return waves


@pytest.mark.slow
def test_espnet_exp_decodes_a_batch_like_each_utterance_alone(
    espnet_trained: dict, tiny_corpus: Path
) -> None:
    """ESPnet's frontend per utterance, then batch 16 = batch 1 (= ESPnet's one-utterance decoding).

    ESPnet's batched subsampling masks would count 1-2 frames of padding into the shorter ones.
    """
    from asr_transfer.decode import DecodeConfig, Recognizer

    rec = Recognizer.from_espnet_exp(espnet_trained["exp"], decode=DecodeConfig(beam_size=4, ctc_weight=0.3))
    waves = _sixteen_waves(tiny_corpus)
    together = rec.transcribe_waves(waves)
    assert together == [rec.transcribe_waves([w])[0] for w in waves] and any(together)


@pytest.fixture(scope="module")
def espnet_trained_fbank(tiny_setup: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment trained by ``espnet2.bin.asr_train`` on our dumped Kaldi fbank and CMVN
    (``kaldi_ark`` input, no ESPnet frontend, ``input_size: 80``; 1 epoch, CPU)."""
    from asr_transfer.text.tokenizer import Tokenizer

    helper = _bench_helper()
    root = tmp_path_factory.mktemp("espnet_fbank")
    tok = Tokenizer.load(tiny_setup["tok"])
    train, valid = (
        helper.prepare_fbank_data(tiny_setup[s], tiny_setup["cmvn"], tok, root / s) for s in ("train", "dev")
    )
    model_cfg = {"encoder": {"type": "transformer", **ENCODERS["transformer"]}, "decoder": DECODER}
    cfg = helper.espnet_config(
        model_cfg, train["feats_stats.npz"], batch_bins=3 * 100 * 4, max_epoch=1, raw_audio=False
    )
    exp = root / "exp"
    helper.run_espnet(helper.train_command(cfg, train, valid, exp), root / "asr_train.log")
    assert yaml.safe_load((exp / "config.yaml").read_text())["frontend"] is None
    return exp


@pytest.mark.slow
def test_espnet_exp_on_our_fbank_decodes_like_espnet_one_utterance_or_sixteen(
    espnet_trained_fbank: Path, tiny_corpus: Path
) -> None:
    """A frontend-less experiment decodes audio through our fbank: batch 16 = batch 1 = ESPnet's
    ``Speech2Text`` given the same ``(T, 80)`` frames."""
    from espnet2.bin.asr_inference import Speech2Text

    from asr_transfer.data.frontend import KaldiFbank
    from asr_transfer.decode import DecodeConfig, Recognizer

    exp = espnet_trained_fbank
    rec = Recognizer.from_espnet_exp(exp, decode=DecodeConfig(beam_size=4, ctc_weight=0.3))
    assert isinstance(rec.frontend, KaldiFbank)
    waves = _sixteen_waves(tiny_corpus)
    together = rec.transcribe_waves(waves)
    assert together == [rec.transcribe_waves([w])[0] for w in waves] and any(together)
    s2t = Speech2Text(exp / "config.yaml", exp / "valid.acc.ave.pth", beam_size=4, ctc_weight=0.3, nbest=1)
    tok = rec.tokenizers["en"]
    assert together == [tok.decode(s2t(KaldiFbank()(w).numpy())[0][2]) for w in waves]


def _run_recipe(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _best_dev_loss(exp: Path) -> float:
    state = torch.load(exp / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["state"]
    return min(loss for loss, _ in state["best"])


@pytest.mark.slow
def test_mini_recipe_starts_training_from_an_espnet_experiment(
    espnet_trained: dict, tiny_corpus: Path, tmp_path: Path
) -> None:
    """``recipes/mini/run.sh --espnet_exp``: ESPnet-frontend features, ESPnet's model, tokenizer and
    CMVN as the starting point of our loop, then decoding with the same frontend.

    With ``lr 0`` the trained model must still be ESPnet's model (the transfer loses nothing:
    same CTC posteriors through our feature dump, config, checkpoint and Recognizer); with a real
    learning rate, fine-tuning must lower the dev loss ESPnet's model starts from.
    """
    from asr_transfer.decode.transcribe import Recognizer

    recipe = tmp_path / "mini"
    recipe.mkdir()
    shutil.copy(REPO / "recipes/mini/run.sh", recipe / "run.sh")
    (recipe / "conf").symlink_to(REPO / "conf")
    (recipe.parent / "common").symlink_to(REPO / "recipes/common")  # the shared option parser
    common = ["--corpus", str(tiny_corpus.parent), "--espnet_exp", str(espnet_trained["exp"])]
    common += ["--speed_perturb", "", "--domains", "clean"]
    _run_recipe(recipe, *common, "--stage", "1", "--stop_stage", "5", "--system", "lr0",
                "--train_args", "--train.epochs 1 --train.lr 0")  # fmt: skip
    exp0 = recipe / "exp" / "lr0"
    cfg = yaml.safe_load((exp0 / "config.yaml").read_text())
    assert cfg["features"]["type"] == "espnet" and cfg["train"]["init_espnet"] == str(espnet_trained["exp"])
    assert (exp0 / "tokenizers" / "en" / "tokens.txt").read_text().splitlines() == (
        espnet_trained["tokens"].read_text().splitlines()
    )
    # stage 5 chose the ESPnet model's own decoding on dev, and decoded the test sets with it
    chosen = yaml.safe_load((exp0 / "choose_decoding" / "summary.yaml").read_text())
    assert len(chosen["candidates"]) == 2 and (exp0 / "decode.yaml").is_file()
    used = yaml.safe_load((exp0 / "decode_en_test_clean" / "decode.yaml").read_text())
    assert used["mode"] == yaml.safe_load((exp0 / "decode.yaml").read_text())["mode"]
    test = tiny_corpus / "en_test_clean"
    hyps = (exp0 / "decode_en_test_clean" / "text").read_text().splitlines()
    assert len(hyps) == len((test / "wav.scp").read_text().splitlines())

    rec = Recognizer.from_exp(exp0)
    waves = [
        torch.from_numpy(load_audio(line.split()[1])) for line in (test / "wav.scp").read_text().splitlines()
    ]
    ref = _espnet_reference(espnet_trained["exp"])
    with torch.no_grad():
        for wave in waves[:3]:
            enc_ref, _ = ref.encode(wave[None], torch.tensor([len(wave)]))
            logp_ref = ref.ctc.log_softmax(enc_ref)[0]
            feats = rec.frontend(wave)
            enc, enc_lens, _ = rec.model.encode(feats[None], torch.tensor([len(feats)]))
            logp = rec.model.ctc_log_probs(enc, "en")[0]
            assert logp.shape == logp_ref.shape
            assert (logp - logp_ref).abs().max() < 1e-4

    # fine-tuning from the same start: the features are reused (same frontend), the dev loss drops
    proc = _run_recipe(recipe, *common, "--stage", "2", "--stop_stage", "4", "--system", "ft",
                       "--train_args", "--train.epochs 10 --train.scheduler.warmup_steps 5")  # fmt: skip
    assert "exists, skipped" in proc.stdout
    start, tuned = _best_dev_loss(exp0), _best_dev_loss(recipe / "exp" / "ft")
    print(f"dev loss per utterance: ESPnet's model {start:.2f}, after fine-tuning {tuned:.2f}")
    assert tuned < start


def test_dump_made_by_another_frontend_is_refused(tiny_setup: dict, tmp_path: Path) -> None:
    """Training a model on features from another frontend fails, naming the dump's record."""
    from asr_transfer.data.frontend import check_record
    from asr_transfer.data.kaldi import DataError

    check_record(tiny_setup["train"], None)  # made by the default Kaldi fbank
    with pytest.raises(DataError, match=r"frontend\.yaml: features made by .*kaldi_fbank.*espnet"):
        check_record(tiny_setup["train"], {"type": "espnet", "frontend_conf": FRONTEND})


def test_starting_from_an_espnet_exp_completes_the_config_and_refuses_conflicts(tmp_path: Path) -> None:
    from asr_transfer.train.loop import start_from_espnet

    exp, ref = _hand_made_exp(tmp_path, "transformer")
    data = {"train": [{"dump": "d", "lang": "en"}], "dev": [{"dump": "v", "lang": "en"}]}
    cfg = {"train": {"init_espnet": str(exp)}, "data": dict(data)}
    model, toks = start_from_espnet(cfg, tmp_path / "ours")
    assert toks["en"].tokens == TOKENS and model.training
    assert cfg["features"] == {"type": "espnet", "frontend": "default", "frontend_conf": FRONTEND}
    assert cfg["model"]["encoder"] == {"type": "transformer", **ENCODERS["transformer"]}
    assert cfg["data"]["tokenizers"] == {"en": str(tmp_path / "ours" / "tokenizers" / "en")}
    assert torch.equal(model.heads["en"].ctc.ctc_lo.weight, ref.ctc.ctc_lo.weight)

    conflicts = {
        "data.cmvn": {"train": {"init_espnet": str(exp)}, "data": {**data, "cmvn": "cmvn.npz"}},
        "model:": {**cfg, "model": {**cfg["model"], "ctc_weight": 0.5}},
        "one vocabulary": {
            "train": {"init_espnet": str(exp)},
            "data": {**data, "train": [{"dump": "d", "lang": "en"}, {"dump": "r", "lang": "ro"}]},
        },
    }
    for message, bad in conflicts.items():
        with pytest.raises(ValueError, match=message):
            start_from_espnet(bad, tmp_path / "ours")
