"""Batches built by data-loader workers: the same batches, in the same order, from any step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asr_transfer.data.dataset import load_dump, stream_batches
from asr_transfer.data.loader import padding_frames, step_loader
from asr_transfer.text.tokenizer import Tokenizer
from asr_transfer.train.dist import DistInfo
from asr_transfer.train.nonfinite import NonFiniteGuard
from asr_transfer.train.optim import build_optimizer


def _flat(loader) -> list[tuple]:  # noqa: ANN001
    out = []
    for step in loader:
        for name, b in step.items():
            out.append((name, b.utts, b.lang, b.feats, b.feat_lens, b.ys))
    return out


def _equal(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        x[:3] == y[:3] and all((p is None and q is None) or torch.equal(p, q) for p, q in zip(x[3:], y[3:]))
        for x, y in zip(a, b)
    )


def test_workers_give_the_batches_of_the_main_thread_in_order_from_any_step(
    tiny_setup: dict[str, Path],
) -> None:
    tok = Tokenizer.load(tiny_setup["tok"])
    # two streams as an adaptation method has them: labelled source, unlabelled target (cycled)
    streams = {
        "source": load_dump(tiny_setup["train"], "en", tok),
        "target": load_dump(tiny_setup["dev"], "en", tok, labelled=False),
    }
    steps = stream_batches(streams, 400, seed=3, epoch=2)
    assert len(steps) > 3
    rng = torch.get_rng_state()
    plain = _flat(step_loader(steps, 0, num_workers=0))
    workers = _flat(step_loader(steps, 0, num_workers=2))
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's random numbers are left alone
    assert _equal(plain, workers)
    assert [u for name, u, *_ in plain if name == "source"] == [[u.utt for u in s["source"]] for s in steps]
    assert all(ys is None for name, *_, ys in plain if name == "target")
    # a resumed run starts at its saved batch: the tail, identical
    resumed = _flat(step_loader(steps, 3, num_workers=2))
    assert _equal(resumed, plain[3 * len(streams) :])


def test_padding_share_of_length_sorted_batches_is_small(tiny_setup: dict[str, Path]) -> None:
    utts = load_dump(tiny_setup["train"], "en", Tokenizer.load(tiny_setup["tok"]))
    padded = total = 0
    for step in stream_batches({"source": utts}, 1000, seed=1, epoch=1):
        pad, frames = padding_frames(step)
        feats = step_loader([step])
        batch = next(iter(feats))["source"]
        # counted from the utterance table, equal to what the padded tensor holds
        assert frames == batch.feats.shape[0] * batch.feats.shape[1]
        assert pad == frames - int(batch.feat_lens.sum())
        padded, total = padded + pad, total + frames
    assert 0 <= padded / total < 0.5


@pytest.mark.parametrize("accum", [1, 2])
def test_device_side_skip_equals_the_host_side_skip(accum: int) -> None:
    """The loop's two modes over the same losses: a non-finite batch drops its window's gradients so
    far and, as the last of its window, the update; the fused kernel's no-op leaves weights and
    moments untouched."""
    info = DistInfo(0, 1, torch.device("cpu"))
    torch.manual_seed(0)
    start = torch.nn.Linear(4, 3)
    xs = torch.randn(8, 5, 4)
    poison = {2, 5}  # mid-window and window-final batches, for accum 2
    finals = {}
    for device_side in (False, True):
        net = torch.nn.Linear(4, 3)
        net.load_state_dict(start.state_dict())
        params = list(net.parameters())
        optim = build_optimizer(params, 0.01, 0.0, info.device, fused=device_side)
        guard = NonFiniteGuard(info, device_side)
        updates = 0
        for i, x in enumerate(xs):
            loss = net(x).pow(2).mean() * (float("nan") if i in poison else 1.0)
            if guard.check(loss):
                (loss / accum).backward()
                if device_side and accum > 1:
                    guard.drop_gradients(params)
            else:
                optim.zero_grad(set_to_none=True)
                continue
            if (i + 1) % accum:
                continue
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            before = [p.detach().clone() for p in params]
            guard.arm(optim)
            optim.step()
            optim.zero_grad(set_to_none=True)
            changed = any(not torch.equal(a, p) for a, p in zip(before, params))
            assert changed != bool(guard.bad), i  # a skipped window changes nothing
            updates += changed
        assert guard.skipped == len(poison)
        steps = {int(s["step"]) for s in optim.state.values()}
        assert steps == {updates}  # Adam's bias correction counts only the updates made
        finals[device_side] = [p.detach() for p in params]
    for a, b in zip(*finals.values()):
        assert torch.allclose(a, b, atol=1e-6)  # fused vs foreach kernels round differently
