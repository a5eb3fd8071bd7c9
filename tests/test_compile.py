"""``train.compile``: the compiled model computes the eager model's losses and gradients, or fails clearly."""

from __future__ import annotations

import copy

import pytest
import torch

from asr_transfer.model.asr import build_model
from asr_transfer.train.compile import compile_model
from asr_transfer.train.options import TrainOptions

# no dropout, so eager and compiled runs compute the same function
NO_DROPOUT = {"dropout_rate": 0.0, "positional_dropout_rate": 0.0}
CFG = {
    "encoder": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2, **NO_DROPOUT},
    "decoder": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1, **NO_DROPOUT},
}


def test_compile_is_off_by_default_and_a_missing_compiler_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrainOptions.from_config({}).compile is False
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    model = build_model(CFG, {"en": 12})
    with pytest.raises(RuntimeError, match="'no-such-c\\+\\+-compiler', which is not installed"):
        compile_model(model, torch.device("cpu"))


@pytest.mark.slow  # Inductor builds C++ kernels: about 1-2 min on a 2-core CPU
def test_compiled_and_eager_losses_and_gradients_agree() -> None:
    torch.manual_seed(0)
    eager = build_model(CFG, {"en": 12}).train()
    compiled = copy.deepcopy(eager)
    keys = list(compiled.state_dict())
    compile_model(compiled, torch.device("cpu"))
    assert list(compiled.state_dict()) == keys  # checkpoints keep the eager names
    feats, lens = torch.randn(3, 60, 80), torch.tensor([60, 45, 20])
    ys = torch.tensor([[3, 4, 5, 6], [5, 2, -1, -1], [7, -1, -1, -1]])
    a, b = compiled(feats, lens, ys, "en"), eager(feats, lens, ys, "en")
    assert abs(a.loss.item() - b.loss.item()) < 1e-4 * abs(b.loss.item())
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(compiled.named_parameters(), eager.parameters()):
        assert (p.grad - q.grad).abs().max() <= 1e-4 * q.grad.abs().max() + 1e-6, name
