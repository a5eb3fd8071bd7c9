"""The low-resource methods' parts on small models: FOMAML against a hand computation, no inner
state shared between tasks, source adapters that each train alone, SimAdapter's fusion and guide loss."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from asr_transfer.adapt import Context, build_method
from asr_transfer.adapt.metaadapter import as_gradient, meta_gradient, model_loss, split_halves
from asr_transfer.adapt.simadapter import fusion_layers, guide_loss
from asr_transfer.data.dataset import Batch
from asr_transfer.model.asr import build_model
from asr_transfer.model.slots import Fusion

SIZES = {
    "encoder": {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2},
    "decoder": {"attention_heads": 2, "linear_units": 32, "num_blocks": 1},
}


def _model(langs=("de", "en")):
    torch.manual_seed(0)
    return build_model(SIZES, {lang: 7 for lang in langs})


def _batch(lang: str, n: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, 40, 80, generator=g)
    ys = torch.randint(1, 6, (n, 3), generator=g)
    ys[0, 2] = -1
    return Batch(feats, torch.full((n,), 40), ys, lang, [f"{lang}{i}" for i in range(n)])


def _quad(m: torch.nn.Module, p: dict, b: tuple) -> torch.Tensor:
    return ((functional_call(m, p, (b[0],)) - b[1]) ** 2).sum()


def test_one_fomaml_update_equals_the_hand_computed_one() -> None:
    # f(w) = sum((W x - y)^2), W (1 x 2); one inner SGD step on the support, gradient at the query
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.0]]))
    xs, ys = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0]])
    xq, yq = torch.tensor([[3.0, -1.0]]), torch.tensor([[0.0]])
    lr = 0.1
    w = torch.tensor([0.5, -1.0])
    w_inner = w - lr * 2 * (w @ xs[0] - ys[0, 0]) * xs[0]  # [0.5 + 0.5, -1 + 1] = [1.0, 0.0]
    expected = 2 * (w_inner @ xq[0] - yq[0, 0]) * xq[0]  # 2 * 3 * [3, -1] = [18, -6]
    assert torch.allclose(w_inner, torch.tensor([1.0, 0.0]))
    assert torch.allclose(expected, torch.tensor([18.0, -6.0]))

    params = dict(lin.named_parameters())
    sgd = {"inner_optim": "sgd"}
    loss, grads = meta_gradient(lin, params, _quad, (xs, ys), (xq, yq), inner_steps=1, inner_lr=lr, **sgd)
    assert torch.allclose(grads["weight"][0], expected)
    assert loss.item() == pytest.approx(9.0)
    # through the loop's path: the term's gradient is the outer gradient, two tasks averaged
    loss2, grads2 = meta_gradient(lin, params, _quad, (xq, yq), (xs, ys), inner_steps=1, inner_lr=lr, **sgd)
    for lo, g in ((loss, grads), (loss2, grads2)):
        (as_gradient(lo, params, g) / 2).backward()
    assert torch.allclose(lin.weight.grad, (grads["weight"] + grads2["weight"]) / 2)
    # an outer SGD step with the mean gradient, as the loop's optimiser does it
    opt = torch.optim.SGD(lin.parameters(), lr=0.01)
    opt.step()
    assert torch.allclose(lin.weight, torch.tensor([[0.5, -1.0]]) - 0.01 * lin.weight.grad)
    # Reptile: the outer gradient is theta - theta' after the inner steps on support then query
    _, rep = meta_gradient(lin, {"weight": torch.tensor([[0.5, -1.0]])}, _quad, (xs, ys), (xq, yq), 1, lr,
                           "reptile", "sgd")  # fmt: skip
    w_after = w_inner - lr * 2 * (w_inner @ xq[0] - yq[0, 0]) * xq[0]
    assert torch.allclose(rep["weight"][0], w - w_after)


def test_the_default_inner_step_is_the_authors_adam_without_momentum() -> None:
    # torch.optim.Adam with betas (0, 0.999), fresh, on the same task is the reference
    xs, ys = torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0]])
    xq, yq = torch.tensor([[3.0, -1.0]]), torch.tensor([[0.0]])
    lin = torch.nn.Linear(2, 1, bias=False)
    w0 = torch.tensor([[0.5, -1.0]])
    with torch.no_grad():
        lin.weight.copy_(w0)
    ref = torch.optim.Adam(lin.parameters(), lr=0.01, betas=(0.0, 0.999))
    for batch in ((xs, ys), (xs, ys), (xq, yq)):  # Reptile: two inner steps on the support, one on the query
        ref.zero_grad()
        _quad(lin, dict(lin.named_parameters()), batch).backward()
        ref.step()
    method = build_method({"method": "meta_train", "algorithm": "reptile", "inner_steps": 2})
    o = method.opts
    assert (o.inner_optim, o.inner_betas, o.inner_lr) == ("adam", [0.0, 0.999], 0.01)
    _, rep = meta_gradient(lin, {"weight": w0}, _quad, (xs, ys), (xq, yq), 2, o.inner_lr, o.algorithm,
                           o.inner_optim, tuple(o.inner_betas))  # fmt: skip
    assert torch.allclose(rep["weight"], w0 - lin.weight.detach(), atol=1e-6)
    # each step moves every weight by about the learning rate whatever the gradient's size, where
    # plain SGD on a small gradient hardly moves: 3 steps of 0.01 against 3 x 0.01 x the gradient
    tiny = (xs * 1e-3, ys * 1e-3)
    _, adam = meta_gradient(lin, {"weight": w0}, _quad, tiny, tiny, 2, 0.01, "reptile")
    _, sgd = meta_gradient(lin, {"weight": w0}, _quad, tiny, tiny, 2, 0.01, "reptile", "sgd")
    assert torch.allclose(adam["weight"].abs(), torch.full((1, 2), 0.03), rtol=0.05)
    assert sgd["weight"].abs().max() < 1e-6
    with pytest.raises(ValueError, match="adapt.inner_optim 'rmsprop'"):
        build_method({"method": "meta_train", "inner_optim": "rmsprop"})
    with pytest.raises(ValueError, match="adapt.inner_betas"):
        build_method({"method": "meta_train", "inner_betas": [0.9]})


def test_inner_state_does_not_leak_between_tasks() -> None:
    model = _model()
    method = build_method({"method": "meta_train", "bottleneck": 4, "inner_steps": 2, "inner_lr": 0.5})
    method.setup(model)
    model.eval()  # no dropout: the same task must give the same gradient
    before = {k: v.clone() for k, v in model.state_dict().items()}
    de, en = _batch("de", seed=1), _batch("en", seed=2)

    def grads_of(batches: list[Batch]) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        for b in batches:
            model.zero_grad(set_to_none=True)
            method.compute_objectives(model, {"source": b}, Context())["meta"].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    alone = grads_of([de])
    after_other = grads_of([en, de])
    assert alone.keys() == after_other.keys()
    for n in alone:
        assert torch.allclose(alone[n], after_other[n], atol=1e-6), n
    # the inner loop never touched the model's own weights
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # only the shared adapter and the task's head receive the outer gradient
    assert all(".modules_by_name.meta." in n or n.startswith("heads.de.") for n in alone)
    assert any(n.startswith("heads.de.") for n in alone) and any("meta" in n for n in alone)
    # the inner steps moved the weights: the adapted query loss differs from the un-adapted one
    support, query = split_halves(de)
    assert [len(support.utts), len(query.utts)] == [2, 2]
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    plain = model_loss(model, params, query)
    assert not torch.isclose(plain, method.compute_objectives(model, {"source": de}, Context("dev"))["meta"])


def test_each_source_language_updates_only_its_own_adapter_and_head() -> None:
    model = _model()
    method = build_method({"method": "source_adapters", "bottleneck": 4})
    method.setup(model)
    assert method.opts.langs == ["de", "en"] and model.enabled_adapters() == []
    terms = method.compute_objectives(model, {"source": _batch("en")}, Context())
    (terms["ctc"] + terms["att"]).backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None}
    assert touched and all(".modules_by_name.en." in n or n.startswith("heads.en.") for n in touched)
    assert model.enabled_adapters() == ["en"]
    with pytest.raises(ValueError, match="no adapter for it"):
        method.compute_objectives(model, {"source": _batch("xx")}, Context())


def test_language_adaptive_pretraining_trains_the_body_through_each_languages_own_adapter() -> None:
    model = _model()
    method = build_method({"method": "source_adapters", "bottleneck": 4, "train_body": True})
    method.setup(model)
    terms = method.compute_objectives(model, {"source": _batch("en")}, Context())
    (terms["ctc"] + terms["att"]).backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None}
    assert any(n.startswith("encoder.") for n in touched)
    assert any(".modules_by_name.en." in n for n in touched)
    assert not any(".modules_by_name.de." in n or n.startswith("heads.de.") for n in touched)
    model.zero_grad()
    de = method.compute_objectives(model, {"source": _batch("de")}, Context())
    (de["ctc"] + de["att"]).backward()
    assert all(p.grad is not None for p in model.adapter_parameters("de"))
    assert model.enabled_adapters() == ["de"]


def test_fusion_over_one_adapter_with_identity_values_is_that_adapter() -> None:
    model = _model()
    model.add_adapter("ro", bottleneck=4)
    for p in model.adapter_parameters("ro"):
        torch.nn.init.normal_(p)
    model.eval()
    b = _batch("de")
    with torch.no_grad():
        plain = model(b.feats, b.feat_lens, b.ys, "de")
        model.add_adapter("fusion", type="fusion", fuses=["ro"], enabled=False)
        model.set_enabled(["fusion"])
        fused = model(b.feats, b.feat_lens, b.ys, "de")
    assert torch.allclose(plain.enc_out, fused.enc_out, atol=1e-5)
    assert torch.allclose(plain.loss, fused.loss, atol=1e-5)
    # every frame puts all its weight on the one adapter; W_v at the identity costs nothing
    layers = [layer for _, layer in fusion_layers(model)]
    assert [label for label, _ in fusion_layers(model)] == ["enc1", "enc2", "dec1"]
    assert all(torch.allclose(layer.last_alpha, torch.ones(1)) for layer in layers)
    assert all(layer.value_penalty().item() == 0 for layer in layers)
    # the fusion spec is persisted and rebuilds the same model
    cfg = {**SIZES, "adapters": model.adapter_config()}
    again = build_model(cfg, {"de": 7, "en": 7})
    again.load_state_dict(model.state_dict())
    again.eval()
    with torch.no_grad():
        assert torch.allclose(again(b.feats, b.feat_lens, b.ys, "de").enc_out, fused.enc_out)


def test_guide_loss_is_zero_when_the_target_is_not_fused() -> None:
    model = _model()
    for name in ("de", "en", "ro"):
        model.add_adapter(name, bottleneck=4, enabled=False)
    model.add_adapter("fusion", type="fusion", fuses=["de", "en"], enabled=True)
    b = _batch("de")
    model(b.feats, b.feat_lens, b.ys, "de")
    layers = [layer for _, layer in fusion_layers(model)]
    assert guide_loss(layers, "ro").item() == 0.0
    g = guide_loss(layers, "en", "frame_nll")
    assert g.item() > 0 and g.requires_grad  # with the target fused, it pulls the attention
    g.backward()
    assert layers[0].query.weight.grad is not None
    # at uniform attention over K choices the guide loss is log K
    f = Fusion(4, ["de", "ro", "en"])
    f.last_alpha = torch.full((1, 2, 3), 1 / 3)
    assert guide_loss([f], "ro", "frame_nll").item() == pytest.approx(torch.tensor(3.0).log().item())


def _alpha(target_share: float, k: int = 6, frames: int = 10) -> torch.Tensor:
    """(1, frames, k) attention: every frame gives ``target_share`` to the last choice, the rest evenly."""
    rest = (1 - target_share) / (k - 1)
    return torch.tensor([rest] * (k - 1) + [target_share]).expand(1, frames, k).clone().requires_grad_(True)


def test_the_default_guide_is_the_authors_bounded_cross_entropy_on_the_mean_attention() -> None:
    names = ["de", "es", "fr", "it", "pl", "ro"]
    layers = [Fusion(4, names), Fusion(4, names)]
    # all the attention on the target in both layers: the minimum, log(1 + 5 e^(1 - e)) per layer, summed
    for layer in layers:
        layer.last_alpha = _alpha(1.0)
    floor = torch.tensor(1 + 5 * torch.e ** (1 - torch.e)).log().item()
    assert guide_loss(layers, "ro").item() == pytest.approx(2 * floor, abs=1e-5)
    # it is a function of the mean over frames: half the frames on the target and half on de is the
    # same as every frame split evenly between the two (the per-frame form tells them apart)
    split = torch.zeros(1, 4, 6)
    split[0, :2, 5], split[0, 2:, 0] = 1.0, 1.0
    even = torch.zeros(1, 4, 6)
    even[0, :, 5], even[0, :, 0] = 0.5, 0.5
    a, b = Fusion(4, names), Fusion(4, names)
    a.last_alpha, b.last_alpha = split, even
    assert guide_loss([a], "ro").item() == pytest.approx(guide_loss([b], "ro").item())
    assert guide_loss([a], "ro", "frame_nll").item() > 5 > guide_loss([b], "ro", "frame_nll").item()
    # bounded and gentle: at 1 % attention on the target the per-frame form's gradient on the target's
    # attention is over 100 times the authors' (which stays near 1 wherever the attention is)
    gentle, strong = Fusion(4, names), Fusion(4, names)
    gentle.last_alpha, strong.last_alpha = _alpha(0.01), _alpha(0.01)
    assert guide_loss([gentle], "ro").item() < 2.4
    guide_loss([gentle], "ro").backward()
    guide_loss([strong], "ro", "frame_nll").backward()
    pull = gentle.last_alpha.grad[0, :, 5].sum().abs().item()
    assert strong.last_alpha.grad[0, :, 5].sum().abs().item() > 100 * pull > 0
    with pytest.raises(ValueError, match="adapt.guide 'x'"):
        guide_loss(layers, "ro", "x")


def test_guide_form_weight_and_decay_are_adapt_options() -> None:
    method = build_method({"method": "simadapter", "lang": "ro", "sources": "x", "target_adapter": "y"})
    # the authors': mean_ce at weight 1 for the whole run
    assert (method.opts.guide, method.opts.guide_decay) == ("mean_ce", "none")
    assert method.weight("guide", Context(progress=0.9)) == 1.0
    assert method.weight("value_reg", Context()) == 0.01
    assert method.weight("fusion.de", Context()) == 0.0
    old = build_method({"method": "simadapter+", "guide": "frame_nll", "guide_decay": "linear",
                        "weights": {"guide": 0.5}})  # fmt: skip
    assert old.weight("guide", Context(progress=0.0)) == 0.5 and old.name == "simadapter+"
    assert old.weight("guide", Context(progress=0.75)) == pytest.approx(0.125)
    assert old.resolved_config()["guide"] == "frame_nll"
    model = _model(("de", "en", "ro"))
    with pytest.raises(ValueError, match="adapt.guide 'per_frame'"):
        build_method({"method": "simadapter", "lang": "ro", "guide": "per_frame"}).setup(model)
    with pytest.raises(ValueError, match="nothing to fuse"):
        build_method(
            {"method": "simadapter", "lang": "ro", "use_sources": False, "fuse_target": False}
        ).setup(model)


def test_fusion_options_learnt_temperature_and_the_unadapted_output_rebuild() -> None:
    model = _model()
    model.add_adapter("de", bottleneck=4, enabled=False)
    model.add_adapter("fusion", type="fusion", fuses=["de"], temperature="learnt", with_base=True)
    layer = fusion_layers(model)[0][1]
    assert layer.names == ["<base>", "de"] and isinstance(layer.log_tau, torch.nn.Parameter)
    assert "enc_slots.0.modules_by_name.fusion.log_tau" in dict(model.named_parameters())
    spec = model.adapter_config()["fusion"]
    assert (spec["temperature"], spec["with_base"], spec["fuses"]) == ("learnt", True, ["de"])
    again = build_model({**SIZES, "adapters": model.adapter_config()}, {"de": 7, "en": 7})
    again.load_state_dict(model.state_dict())  # strict: the same modules and parameters
    # a fixed temperature is a buffer (sqrt(d)), never trained
    fixed = Fusion(16, ["de"])
    assert "log_tau" not in dict(fixed.named_parameters())
    assert fixed.log_tau.exp().item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="model.adapters.f.fuses: required"):
        build_model({**SIZES, "adapters": {"f": {"type": "fusion"}}}, {"de": 7})
