"""Unsupervised domain adaptation: frame labels, matching losses, and adaptation runs of the one loop."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from asr_transfer.adapt import Context, build_method
from asr_transfer.adapt.adv import grad_reverse
from asr_transfer.adapt.cmatch import (
    class_gaussian_mmd,
    class_means,
    ctc_align_labels,
    ctc_pred_labels,
    frame_average_labels,
    spike_span,
)
from asr_transfer.adapt.mmd import gaussian_kernel, gaussian_mmd
from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import build_model
from asr_transfer.text.tokenizer import Tokenizer
from tests.conftest import REPO, cli, train_args
from tests.test_train import _run as run_quiet
from tests.test_train import _torchrun as torchrun

TINY = {
    "encoder": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2},
    "decoder": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1},
}


# frame labels -------------------------------------------------------------------------------------
def test_frame_average_uses_the_true_length_not_the_padded_one() -> None:
    ys = torch.tensor([[3, 4, 5], [6, 7, -1]])
    labels = frame_average_labels(ys, torch.tensor([6, 3]), frames=8)
    assert labels[0].tolist() == [3, 3, 4, 4, 5, 5, -1, -1]
    # 2 tokens over 3 frames: floor(t * 2 / 3) = 0, 0, 1; padding frames get no label
    assert labels[1].tolist() == [6, 6, 7, -1, -1, -1, -1, -1]


def _peaked(path: list[int], vocab: int = 6, frames: int | None = None) -> torch.Tensor:
    logp = torch.full((1, frames or len(path), vocab), -20.0)
    for t, v in enumerate(path):
        logp[0, t, v] = 0.0
    return logp.log_softmax(-1)


def test_frame_average_over_the_spikes_leaves_leading_and_trailing_silence_unlabelled() -> None:
    # three words spiking at frames 3, 6 and 9 of 15: the last word runs one spacing (3) past its spike
    logp = _peaked([0, 0, 0, 2, 0, 0, 3, 0, 0, 4, 0, 0, 0, 0, 0])
    starts, ends = spike_span(logp, torch.tensor([15]))
    labels = frame_average_labels(torch.tensor([[2, 3, 4]]), ends, 15, starts)
    assert labels[0].tolist() == [-1] * 3 + [2, 2, 2, 3, 3, 3, 4, 4, 4] + [-1] * 3
    # the paper's segmentation gives the silence to the first and last words
    whole = frame_average_labels(torch.tensor([[2, 3, 4]]), torch.tensor([15]), 15)
    assert whole[0, 0].item() == 2 and whole[0, 14].item() == 4
    # fewer than two spikes: no spacing to go by, the whole utterance is split
    starts, ends = spike_span(_peaked([0, 0, 2, 0, 0]), torch.tensor([5]))
    assert (starts.item(), ends.item()) == (0, 5)


def test_ctc_align_labels_spikes_and_blank_runs_and_repeats() -> None:
    # blank run before the first token, a repeated unit separated by a blank, a blank run after
    logp = _peaked([0, 0, 2, 0, 2, 2, 3, 0, 0], frames=11)
    ys = torch.tensor([[2, 2, 3]])
    labels = ctc_align_labels(logp, ys, torch.tensor([9]))
    assert labels[0].tolist() == [-1, -1, 2, 2, 2, 2, 3, 3, 3, -1, -1]
    spikes = ctc_align_labels(logp, ys, torch.tensor([9]), extend_blanks=False)
    assert spikes[0].tolist() == [-1, -1, 2, -1, 2, 2, 3, -1, -1, -1, -1]


def test_ctc_align_leaves_the_frames_of_a_deleted_word_unlabelled() -> None:
    # the model heard 2 then 4, but the pseudo-label says "2" only (4 was deleted): the frames where
    # 4 is the most probable non-blank unit must not inherit 2's label
    logp = _peaked([0, 2, 0, 0, 0, 0, 0], vocab=6)
    logp[0, 4:6, 4] = -1.5  # blank still wins (greedy deleted it), but 4 leads the non-blank units
    logp = logp.log_softmax(-1)
    labels = ctc_align_labels(logp, torch.tensor([[2]]), torch.tensor([7]))
    assert labels[0].tolist() == [-1, 2, 2, 2, -1, -1, 2]


def test_ctc_align_skips_an_utterance_too_short_for_its_transcript() -> None:
    logp = _peaked([2, 0, 2])
    labels = ctc_align_labels(
        logp.repeat(2, 1, 1), torch.tensor([[2, 2, 2], [2, 2, -1]]), torch.tensor([3, 3])
    )
    assert labels[0].tolist() == [-1, -1, -1]  # 2 2 2 needs 5 frames
    assert labels[1].tolist() == [2, 2, 2]


def test_ctc_pred_keeps_confident_frames_inside_the_length() -> None:
    probs = torch.tensor([[[0.05, 0.95, 0.0], [0.5, 0.5, 0.0], [0.0, 0.02, 0.98], [0.0, 0.0, 1.0]]])
    labels = ctc_pred_labels((probs + 1e-9).log(), torch.tensor([3]), threshold=0.9)
    assert labels.tolist() == [[1, -1, 2, -1]]


def test_class_means_match_a_direct_loop() -> None:
    feats, labels = torch.randn(2, 5, 3), torch.tensor([[1, 1, 2, -1, -1], [2, 0, 0, 1, -1]])
    means, counts = class_means(feats, labels, 4)
    for c in range(4):
        rows = [feats[b, t] for b in range(2) for t in range(5) if labels[b, t] == c]
        assert counts[c] == len(rows)
        if rows:
            assert torch.allclose(means[c], torch.stack(rows).mean(0))


# matching losses ----------------------------------------------------------------------------------
def test_gaussian_mmd_equals_the_direct_formula() -> None:
    torch.manual_seed(0)
    xs, xt = torch.randn(4, 3), torch.randn(5, 3) + 0.5
    both = torch.cat([xs, xt])
    d2 = [[float(((a - b) ** 2).sum()) for b in both] for a in both]
    n = len(both)
    sigma0 = sum(map(sum, d2)) / (n * n - n)

    def k(i: int, j: int) -> float:
        return sum(torch.exp(torch.tensor(-d2[i][j] / (sigma0 * 2.0**s))).item() for s in (-2, -1, 0, 1, 2))

    ss = sum(k(i, j) for i in range(4) for j in range(4)) / 16
    tt = sum(k(i, j) for i in range(4, 9) for j in range(4, 9)) / 25
    st = sum(k(i, j) for i in range(4) for j in range(4, 9)) / 20
    assert gaussian_mmd(xs, xt).item() == pytest.approx(ss + tt - 2 * st, rel=1e-4)


def test_class_gaussian_mmd_is_each_class_kernel_mmd_over_one_kernel() -> None:
    torch.manual_seed(0)
    fs, ft = torch.randn(2, 6, 3), torch.randn(1, 7, 3) + 0.3
    ls = torch.tensor([[1, 1, 2, -1, 2, 3], [3, 1, -1, 2, 2, 1]])
    lt = torch.tensor([[2, 1, 1, -1, 2, 1, 3]])
    got = class_gaussian_mmd(fs, ls, ft, lt, torch.tensor([1, 2]))  # class 3 not asked for
    # the direct formula: one kernel (one sigma0) over the frames of the classes asked for
    keep_s, keep_t = (ls == 1) | (ls == 2), (lt == 1) | (lt == 2)
    xs, ys, xt, yt = fs[keep_s], ls[keep_s], ft[keep_t], lt[keep_t]
    k = gaussian_kernel(torch.cat([xs, xt]))
    ns = len(xs)
    for i, c in enumerate((1, 2)):
        s = (ys == c).nonzero().flatten()
        t = (yt == c).nonzero().flatten() + ns
        want = k[s][:, s].mean() + k[t][:, t].mean() - 2 * k[s][:, t].mean()
        assert got[i].item() == pytest.approx(want.item(), rel=1e-5)


def test_the_gaussian_kernel_matches_what_class_means_cannot_see() -> None:
    # the same class mean on both sides, a different spread: the paper's distance of the means is
    # blind to it, the kernel MMD is not
    torch.manual_seed(0)
    x = torch.randn(1, 40, 4)
    x = x - x.mean(1, keepdim=True)
    labels = torch.ones(1, 40, dtype=torch.long)
    (ms, _), (mt, _) = class_means(x, labels, 2), class_means(3 * x, labels, 2)
    assert (ms - mt).pow(2).sum().item() == pytest.approx(0.0, abs=1e-9)
    assert class_gaussian_mmd(x, labels, 3 * x, labels, torch.tensor([1])).item() > 0.05
    assert class_gaussian_mmd(x, labels, x.clone(), labels, torch.tensor([1])).abs().item() < 1e-6


@pytest.mark.parametrize("kernel", ["linear", "gaussian"])
def test_cmatch_detach_source_moves_only_the_target(kernel: str) -> None:
    torch.manual_seed(0)
    batches = {"source": _batch(torch.randn(2, 40, 80), torch.tensor([40, 33]), None),
               "target": _batch(torch.randn(2, 40, 80), torch.tensor([40, 29]), None)}  # fmt: skip
    for detach in (False, True):
        model, method, _ = _method("cmatch", labels="ctc_pred", threshold=0.0, min_frames=1, layers=[-1],
                                   kernel=kernel, detach_source=detach)  # fmt: skip
        outs = [model(b.feats, b.feat_lens, None, "en", (1,)) for b in batches.values()]
        for o in outs:
            o.enc_out.retain_grad()
        loss = method.match(*outs, batches, Context("train"))["cmatch"]
        assert loss.item() > 0
        loss.backward()
        source_grad, target_grad = (0.0 if o.enc_out.grad is None else o.enc_out.grad.abs().sum().item()
                                    for o in outs)  # fmt: skip
        assert target_grad > 0 and (source_grad == 0) == detach


def test_gradient_reversal_flips_and_scales_the_gradient() -> None:
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    (grad_reverse(x, 0.7) * torch.tensor([3.0, 5.0])).sum().backward()
    assert x.grad.tolist() == pytest.approx([-2.1, -3.5])
    # the discriminator side learns to separate; the encoder side sees the opposite gradient
    w = torch.tensor([0.5], requires_grad=True)
    h = torch.tensor([2.0], requires_grad=True)
    (grad_reverse(h, 1.0) * w).sum().backward()
    assert w.grad.item() == 2.0 and h.grad.item() == -0.5


def _method(name: str, **opts: object):
    tok = Tokenizer.train_char(["ab cd", "abc"], lang="en")
    model = build_model(TINY, {"en": tok.vocab_size}).eval()
    method = build_method({"method": name, "layers": [-1, 1], **opts})
    method.setup(model, {"en": tok})
    return model, method.eval(), tok


def _batch(feats: torch.Tensor, lens: torch.Tensor, ys: torch.Tensor | None, pad: int = 0) -> Batch:
    # ESPnet's Conv2dSubsampling masks give a row with less than ~8 padding frames after it fewer
    # encoder frames than the same row padded more (the model's quirk, not the methods'): every row
    # here has at least 8
    feats = torch.nn.functional.pad(feats, (0, 0, 0, 8 + pad))
    return Batch(feats, lens, ys, "en", [str(i) for i in range(len(lens))])


@pytest.mark.parametrize(
    "name,opts",
    [
        ("mmd", {}),
        ("adv", {}),
        ("cmatch", {"labels": "frame_average", "min_frames": 1}),
        ("cmatch", {"labels": "frame_average", "average_over": "spikes", "min_frames": 1}),
        ("cmatch", {"labels": "ctc_align", "min_frames": 1}),
        ("cmatch", {"labels": "ctc_pred", "min_frames": 1, "threshold": 0.0}),
        ("cmatch", {"labels": "ctc_align", "min_frames": 1, "kernel": "gaussian"}),
    ],
)
def test_padding_never_changes_a_loss(name: str, opts: dict) -> None:
    torch.manual_seed(0)
    model, method, tok = _method(name, **opts)
    fs, ft = torch.randn(3, 60, 80), torch.randn(2, 70, 80)
    ls, lt = torch.tensor([60, 41, 30]), torch.tensor([70, 52])
    ys = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(tok.encode(t)) for t in ("ab", "cd a", "b")], batch_first=True, padding_value=-1
    )
    yt = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(tok.encode(t)) for t in ("abc", "d")], batch_first=True, padding_value=-1
    )
    ctx = Context("dev", progress=1.0)
    with torch.no_grad():
        tight = method.compute_objectives(
            model, {"source": _batch(fs, ls, ys), "target": _batch(ft, lt, yt)}, ctx
        )
        padded = method.compute_objectives(
            model, {"source": _batch(fs, ls, ys, pad=23), "target": _batch(ft, lt, yt, pad=9)}, ctx
        )
    assert set(tight) == set(padded) and len(tight) == 5  # ctc, att on both domains + the matching term
    for term in tight:
        assert padded[term].item() == pytest.approx(tight[term].item(), rel=1e-4, abs=1e-6), term
    assert tight[name].item() > 0


def test_adv_discriminator_warms_up_alone_and_dev_selection_ignores_it() -> None:
    torch.manual_seed(0)
    model, method, _ = _method("adv", disc_warmup=0.2)
    method.train()
    batches = {"source": _batch(torch.randn(2, 40, 80), torch.tensor([40, 33]), None),
               "target": _batch(torch.randn(2, 40, 80), torch.tensor([40, 29]), None)}  # fmt: skip

    def grads(progress: float) -> tuple[float, float]:
        model.zero_grad(), method.zero_grad()
        out_s = model(batches["source"].feats, batches["source"].feat_lens, None, "en", (1,))
        out_t = model(batches["target"].feats, batches["target"].feat_lens, None, "en", (1,))
        method.match(out_s, out_t, batches, Context("train", progress=progress))["adv"].backward()
        enc = sum(p.grad.abs().sum().item() for p in model.encoder.parameters() if p.grad is not None)
        disc = sum(p.grad.abs().sum().item() for p in method.discriminators.parameters())
        return enc, disc

    enc, disc = grads(0.1)  # warm-up: the discriminator learns, the encoder gets nothing reversed
    assert enc == 0.0 and disc > 0.0
    enc, disc = grads(0.6)
    assert enc > 0.0 and disc > 0.0
    # dev loss (model selection) leaves the discriminator's own loss out
    assert method.weight("adv", Context("dev")) == 0.0 < method.weight("adv", Context("train"))


def test_supervised_terms_are_per_token_and_follow_the_ctc_share() -> None:
    torch.manual_seed(0)
    model, method, tok = _method("self_training", ctc_share=1.0)
    ys = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(tok.encode(t)) for t in ("ab cd", "b")], batch_first=True, padding_value=-1
    )
    batch = _batch(torch.randn(2, 60, 80), torch.tensor([60, 44]), ys)
    with torch.no_grad():
        terms = method.compute_objectives(model, {"source": batch}, Context("dev"))
        out = model(batch.feats, batch.feat_lens, None, "en")
        summed = torch.nn.functional.ctc_loss(
            out.ctc_logp.transpose(0, 1), ys.clamp_min(0), out.enc_lens, (ys >= 0).sum(1), reduction="sum"
        )
    # a sum over the batch's tokens divided by its tokens, not by its two utterances
    assert terms["ctc"].item() == pytest.approx(summed.item() / int((ys >= 0).sum()), rel=1e-4)
    # decoded with CTC only: the attention terms weigh nothing, CTC gets the whole (halved) share
    assert (method.weights["ctc"], method.weights["att"]) == (0.5, 0.0)
    _, per_utt, _ = _method("self_training", per_token=False)
    with torch.no_grad():
        assert per_utt.compute_objectives(model, {"source": batch}, Context("dev"))["ctc"].item() == (
            pytest.approx(summed.item() / 2, rel=1e-4)
        )


def test_an_unlabelled_target_batch_gives_no_self_training_terms() -> None:
    torch.manual_seed(0)
    model, method, tok = _method("mmd")
    ys = torch.tensor([tok.encode("ab"), tok.encode("cd")])
    source = _batch(torch.randn(2, 40, 80), torch.tensor([40, 33]), ys)
    target = _batch(torch.randn(2, 40, 80), torch.tensor([40, 29]), None)
    with torch.no_grad():
        terms = method.compute_objectives(model, {"source": source, "target": target}, Context())
    assert set(terms) == {"ctc", "att", "mmd"}


@pytest.mark.parametrize("name,term", [("mmd", "mmd"), ("adv", "adv"), ("cmatch", "cmatch")])
def test_the_dev_criterion_is_the_supervised_terms_alone(name: str, term: str) -> None:
    # comparable across methods and weights (the tuning grid's choice), never the adversary's win
    method = build_method({"method": name, "weights": {term: 2.0, "ctc": 0.5}})
    assert method.weight(term, Context("dev")) == 0.0 and method.weight(term, Context("train")) == 2.0
    assert method.weight("ctc", Context("dev")) == method.weight("ctc", Context("train")) == 0.5


def test_cmatch_never_matches_units_without_acoustics() -> None:
    _, method, tok = _method("cmatch", labels="ctc_pred")
    ignored = method.ignore.nonzero().flatten().tolist()
    assert ignored == tok.non_character_ids  # blank, unk, word boundary, sos/eos: from the tokenizer


def test_unknown_options_and_methods_are_errors_naming_the_key() -> None:
    with pytest.raises(ValueError, match="adapt.method: unknown method 'cmach'"):
        build_method({"method": "cmach"})
    with pytest.raises(ValueError, match="adapt.lables: unknown option"):
        build_method({"method": "cmatch", "lables": "ctc_pred"})
    with pytest.raises(ValueError, match="adapt.labels: 'viterbi'"):
        build_method({"method": "cmatch", "labels": "viterbi"})
    with pytest.raises(ValueError, match="adapt.kernel: 'rbf' is not one of linear, gaussian"):
        build_method({"method": "cmatch", "kernel": "rbf"})
    with pytest.raises(ValueError, match="adapt.average_over: 'speech' is not utterance or spikes"):
        build_method({"method": "cmatch", "labels": "frame_average", "average_over": "speech"})
    with pytest.raises(ValueError, match="adapt.ema: running class means need kernel: linear"):
        build_method({"method": "cmatch", "kernel": "gaussian", "ema": 0.5})
    with pytest.raises(ValueError, match="adapt.weights.cmatch: mmd has no such loss term"):
        build_method({"method": "mmd", "weights": {"cmatch": 1.0}})


def _encoder_input(model: torch.nn.Module, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """What the subsampling receives, ``(B, T, 80)``: CMVN'd features, masked when training."""
    seen = []
    hook = model.encoder.embed.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        model.encode(feats, lens)
    hook.remove()
    return seen[0]


def test_the_noisy_student_config_masks_the_students_input_and_decodes_it_as_it_is() -> None:
    from asr_transfer.config import load_config

    cfg = load_config([REPO / "conf/model/tiny.yaml", REPO / "conf/train/adapt_noisy_student.yaml"])
    assert cfg["train"]["lr"] == load_config([REPO / "conf/train/adapt.yaml"])["train"]["lr"]
    model = build_model(cfg["model"], {"en": 12})
    torch.manual_seed(0)
    feats, lens = torch.randn(2, 300, 80) + 3.0, torch.tensor([300, 300])
    # the input of decoding, pseudo-labelling and the dev criterion: no frame or band zeroed
    x = _encoder_input(model.eval(), feats, lens)
    assert not (x == 0).all(1).any() and not (x == 0).all(2).any()
    # the student's: whole frequency bands and time spans zeroed (SpecAugment)
    x = _encoder_input(model.train(), feats, lens)
    assert (x == 0).all(1).any(), "no frequency band masked"
    assert (x == 0).all(2).any(), "no time span masked"
    # the default adaptation config leaves the input alone
    plain = load_config([REPO / "conf/model/tiny.yaml", REPO / "conf/train/adapt.yaml"])
    assert build_model(plain["model"], {"en": 12}).specaug is None


# adaptation runs of the loop ------------------------------------------------------------------------
def pseudo_labelled_target(source: Path, data: dict[str, Path], out: Path) -> dict[str, Path]:
    """Stage 7 of the recipe: pseudo-label the target's training and dev audio, dump the features."""
    for data_dir in data.values():
        assert cli("pseudo-label", "--exp", source, "--data", data_dir, "--out", out / data_dir.name,
                   "--keep", "1.0", "--mode", "ctc_greedy") == 0  # fmt: skip
    assert cli("features", *(out / d.name for d in data.values()), "--out", out / "dump") == 0
    return {split: out / "dump" / d.name for split, d in data.items()}


@pytest.fixture(scope="module")
def target(tiny_setup: dict[str, Path], tiny_exp: Path) -> dict[str, Path]:
    """The phone domain's training and dev audio with the source model's pseudo-labels, dumped."""
    data = {split: tiny_setup["data"] / f"en_{split}_phone" for split in ("train", "dev")}
    return pseudo_labelled_target(tiny_exp, data, tiny_setup["root"] / "pseudo")


def adapt_args(
    setup: dict[str, Path], source: Path, target: dict[str, Path], exp: Path, *extra: str
) -> list[str]:
    """``asr-transfer train`` adapting the tiny source model to ``target`` with a method config."""
    return train_args(
        setup, exp,
        "--config", str(REPO / "conf/train/adapt.yaml"), "--train.num_threads", "1", "--train.device", "cpu",
        "--train.init", str(source / "model.pt"),
        "--data.target", f"[{{dump: {target['train']}, lang: en}}]",
        "--data.target_dev", f"[{{dump: {target['dev']}, lang: en}}]",
        "--train.epochs", "2", *extra,
    )  # fmt: skip


def test_cmatch_adaptation_run_saves_a_config_that_rebuilds_and_logs_every_term(
    tiny_setup: dict[str, Path], tiny_exp: Path, target: dict[str, Path], tmp_path: Path
) -> None:
    exp = tmp_path / "cmatch"
    cfg = REPO / "conf/adapt/cmatch_ctc_align.yaml"
    args = adapt_args(tiny_setup, tiny_exp, target, exp, "--config", str(cfg),
                      "--adapt.min_frames", "1", "--adapt.ema", "0.5")  # fmt: skip
    assert cli(*args) == 0
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["adapt"]["method"] == "cmatch" and saved["adapt"]["labels"] == "ctc_align"
    assert saved["adapt"]["weights"] == {"ctc": 0.15, "att": 0.35, "ctc_target": 0.15, "att_target": 0.35,
                                       "cmatch": 0.02}  # fmt: skip
    ck = torch.load(exp / "checkpoints" / "last.pt", weights_only=False)
    assert ck["method"]["ema_seen"].any()  # running class means are part of the checkpoint
    log = (exp / "train.log").read_text()
    assert "cmatch" in log and "ctc_target" in log
    # the saved config alone rebuilds the adapted model
    from asr_transfer.decode.transcribe import Recognizer

    rec = Recognizer.from_exp(exp)
    assert rec.model.state_dict().keys() == torch.load(exp / "model.pt")["model"].keys()


def test_the_decoding_chosen_on_dev_is_used_by_default_and_inherited_by_adaptation(
    tiny_setup: dict[str, Path], tiny_exp: Path, target: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "source"
    shutil.copytree(tiny_exp, source)
    dev = tiny_setup["data"] / "en_dev_clean"
    candidates = [REPO / "conf/decode/ctc_greedy.yaml", REPO / "conf/decode/beam_fast.yaml"]
    assert cli("choose-decoding", "--exp", source, "--data", dev, "--candidates", *candidates) == 0
    summary = yaml.safe_load((source / "choose_decoding" / "summary.yaml").read_text())
    wers = [c["wer"] for c in summary["candidates"]]
    chosen = candidates[wers.index(min(wers))]  # the first of equal WERs: the cheapest listed first
    assert summary["chosen"] == str(chosen)
    recorded = yaml.safe_load((source / "decode.yaml").read_text())
    assert recorded == yaml.safe_load(chosen.read_text()) | recorded and recorded["mode"] in (
        "ctc_greedy",
        "beam",
    )
    # decode without --config decodes with it
    assert cli("decode", "--exp", source, "--data", dev) == 0
    assert (
        yaml.safe_load((source / f"decode_{dev.name}" / "decode.yaml").read_text())["mode"]
        == recorded["mode"]
    )
    # an adaptation from it inherits the decoding and weights CTC as that decoding does
    exp = tmp_path / "adapted"
    method = str(REPO / "conf/adapt/self_training.yaml")
    assert cli(*adapt_args(tiny_setup, source, target, exp, "--config", method, "--train.epochs", "1")) == 0
    assert (exp / "decode.yaml").read_text() == (source / "decode.yaml").read_text()
    share = 1.0 if recorded["mode"] == "ctc_greedy" else recorded["ctc_weight"]
    saved = yaml.safe_load((exp / "config.yaml").read_text())["adapt"]
    assert saved["ctc_share"] == share
    assert saved["weights"]["ctc"] == pytest.approx(share / 2)


def test_label_free_terms_see_the_target_audio_left_without_a_pseudo_label(
    tiny_setup: dict[str, Path], tiny_exp: Path, tmp_path: Path
) -> None:
    from asr_transfer.train.loop import load_streams, load_tokenizers

    data = tiny_setup["data"] / "en_train_phone"
    pl = tmp_path / "pl" / data.name
    assert cli("pseudo-label", "--exp", tiny_exp, "--data", data, "--out", pl, "--keep", "0.5") == 0
    rest = pl / f"{pl.name}_unlabelled"
    assert cli("features", pl, rest, "--out", tmp_path / "dump") == 0
    cfg = yaml.safe_load((tiny_exp / "config.yaml").read_text())
    dumps = {d: [{"dump": str(tmp_path / "dump" / d), "lang": "en"}] for d in (pl.name, rest.name)}
    cfg["data"] |= {"target": dumps[pl.name], "target_unlabelled": dumps[rest.name]}
    toks = load_tokenizers(cfg)
    n_kept = len((pl / "wav.scp").read_text().splitlines())
    n_rest = len((rest / "wav.scp").read_text().splitlines())
    sizes = {}
    for name in ("self_training", "mmd", "adv", "cmatch"):
        method = build_method(
            {"method": name, "labels": "ctc_pred"} if name == "cmatch" else {"method": name}
        )
        train, _ = load_streams(cfg, method, toks, 3000)
        sizes[name] = len(train["target"])
        labelled = [u.tokens is not None for u in train["target"]]
        assert sum(labelled) == n_kept  # pseudo-labels only where the pseudo-labeller kept one
    # self-training needs labels: the kept part only; the label-free terms see all the audio
    assert sizes == {"self_training": n_kept, "mmd": n_kept + n_rest, "adv": n_kept + n_rest,
                     "cmatch": n_kept + n_rest}  # fmt: skip
    assert not build_method({"method": "cmatch", "labels": "ctc_align"}).unlabelled_target


def test_target_transcripts_are_never_read(
    tiny_setup: dict[str, Path], tiny_exp: Path, target: dict[str, Path], tmp_path: Path
) -> None:
    # the whole pipeline (pseudo-labels, features, CMatch with self-training) from target data dirs
    # whose transcripts are garbage gives the model bit for bit
    garbage = {}
    for split in ("train", "dev"):
        src = tiny_setup["data"] / f"en_{split}_phone"
        garbage[split] = shutil.copytree(src, tmp_path / "garbage" / src.name)
        ids = [line.split()[0] for line in (src / "text").read_text().splitlines()]
        (garbage[split] / "text").write_text("".join(f"{u} ZZZ QQQ\n" for u in ids))
    targets = {"real": target, "garbage": pseudo_labelled_target(tiny_exp, garbage, tmp_path / "pseudo")}
    models = []
    for name, tgt in targets.items():
        exp = tmp_path / name
        cfg = REPO / "conf/adapt/cmatch_ctc_align.yaml"
        assert cli(*adapt_args(tiny_setup, tiny_exp, tgt, exp, "--config", str(cfg),
                               "--adapt.min_frames", "1", "--train.epochs", "1")) == 0  # fmt: skip
        models.append(torch.load(exp / "model.pt")["model"])
    for key, value in models[0].items():
        assert torch.equal(value, models[1][key]), key


def test_an_unlabelled_stream_never_opens_the_dump_text(
    tiny_setup: dict[str, Path], tiny_exp: Path, target: dict[str, Path], tmp_path: Path
) -> None:
    # ctc_pred without self-training reads no label of the target at all: not even pseudo-labels
    unreadable = {k: shutil.copytree(v, tmp_path / "no_text" / v.name) for k, v in target.items()}
    for dump in unreadable.values():
        (dump / "text").unlink()
    cfg = REPO / "conf/adapt/cmatch_ctc_pred.yaml"
    assert cli(*adapt_args(tiny_setup, tiny_exp, unreadable, tmp_path / "exp", "--config", str(cfg),
                           "--adapt.self_training", "false", "--adapt.threshold", "0.2",
                           "--train.epochs", "1")) == 0  # fmt: skip
    assert (tmp_path / "exp" / "model.pt").exists()


def test_a_method_needing_target_audio_without_it_is_an_error(
    tiny_setup: dict[str, Path], tiny_exp: Path, tmp_path: Path
) -> None:
    args = train_args(tiny_setup, tmp_path / "x", "--config", str(REPO / "conf/adapt/mmd.yaml"),
                      "--train.init", str(tiny_exp / "model.pt"))  # fmt: skip
    with pytest.raises(ValueError, match="data.target: adaptation method 'mmd' needs target-domain audio"):
        cli(*args)
    assert not (tmp_path / "x" / "model.pt").exists()


@pytest.mark.slow
def test_sigkill_mid_adaptation_then_rerun_matches_an_uninterrupted_run(
    tiny_setup: dict[str, Path], tiny_exp: Path, target: dict[str, Path], tmp_path: Path
) -> None:
    # running class means (method state) and the DANN-style schedule position must survive the kill
    extra = ["--config", str(REPO / "conf/adapt/cmatch_ctc_align.yaml"), "--adapt.ema", "0.5",
             "--adapt.min_frames", "1", "--adapt.warmup", "0.5", "--train.epochs", "3",
             "--train.max_batch_frames", "400", "--train.save_every_steps", "1"]  # fmt: skip

    def cmd(name: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "asr_transfer.cli",
            *adapt_args(tiny_setup, tiny_exp, target, tmp_path / name, *extra),
        ]

    proc = run_quiet(cmd("killed"))
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                state = torch.load(last, weights_only=False)["state"]
            except (EOFError, RuntimeError):  # caught between write and rename of another file: retry
                continue
            if state["epoch"] == 2 and state["batch"] >= 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert torch.load(last, weights_only=False)["state"]["epoch"] == 2
    assert not (tmp_path / "killed" / "model.pt").exists()
    out = run_quiet(cmd("killed")).communicate()[0]
    assert "resumed from" in out, out[-2000:]
    ref_out = run_quiet(cmd("ref")).communicate()[0]
    assert (tmp_path / "ref" / "model.pt").exists(), ref_out[-2000:]
    resumed = torch.load(tmp_path / "killed" / "model.pt")["model"]
    for key, value in torch.load(tmp_path / "ref" / "model.pt")["model"].items():
        assert torch.allclose(resumed[key], value, atol=1e-5), key
    ema = [
        torch.load(tmp_path / n / "checkpoints" / "last.pt", weights_only=False)["method"]
        for n in ("killed", "ref")
    ]
    assert torch.allclose(ema[0]["ema_means"], ema[1]["ema_means"], atol=1e-5)


@pytest.mark.slow
def test_two_process_adversarial_adaptation_trains(
    tiny_setup: dict[str, Path], tiny_exp: Path, target: dict[str, Path], tmp_path: Path
) -> None:
    # two streams and a discriminator: gradients are averaged by hand rather than by DDP
    exp = tmp_path / "ddp"
    args = adapt_args(tiny_setup, tiny_exp, target, exp, "--config", str(REPO / "conf/adapt/adv.yaml"),
                      "--train.max_batch_frames", "700", "--train.epochs", "1")  # fmt: skip
    torchrun(args)
    ck = torch.load(exp / "checkpoints" / "last.pt", weights_only=False)
    assert ck["state"]["step"] > 0 and ck["state"]["skipped"] == 0
    assert any(k.startswith("discriminators.") for k in ck["method"])
