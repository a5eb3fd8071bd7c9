"""The vectorised paired bootstrap against a slow pure-Python reference using the same draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from asr_transfer.score import bootstrap


def slow_rates(errors: list[list[int]], lengths: list[int], n_resamples: int, seed: int) -> list[list[float]]:
    """One resample at a time, drawing each row from the same generator stream."""
    rng = np.random.default_rng(seed)
    out: list[list[float]] = [[] for _ in errors]
    for _ in range(n_resamples):
        idx = [int(i) for i in rng.integers(0, len(lengths), size=len(lengths))]
        n = sum(lengths[i] for i in idx)
        for k, errs in enumerate(errors):
            out[k].append(100.0 * sum(errs[i] for i in idx) / n if n else math.nan)
    return out


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method), written out."""
    xs = sorted(v for v in values if not math.isnan(v))
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@pytest.fixture
def systems():
    rng = np.random.default_rng(11)
    lengths = rng.integers(0, 12, size=60)  # includes zero-length references
    a = rng.binomial(lengths, 0.3) + rng.integers(0, 2, size=60)
    b = rng.binomial(lengths, 0.2)
    return a, b, lengths


@pytest.mark.parametrize("chunk_rows", [1, 7, 300])
def test_vectorised_equals_slow_reference(systems, chunk_rows):
    a, b, lengths = systems
    fast = bootstrap.resample_rates(
        np.vstack([a, b]), lengths, n_resamples=300, seed=5, chunk_rows=chunk_rows
    )
    slow = slow_rates([a.tolist(), b.tolist()], lengths.tolist(), 300, 5)
    np.testing.assert_allclose(fast, np.array(slow), rtol=1e-12)


def test_compare_matches_slow_reference(systems):
    a, b, lengths = systems
    c = bootstrap.compare(a, b, lengths, n_resamples=400, seed=2)
    ra, rb = slow_rates([a.tolist(), b.tolist()], lengths.tolist(), 400, 2)
    diff = [y - x for x, y in zip(ra, rb, strict=True)]
    assert c.a.value == pytest.approx(100.0 * a.sum() / lengths.sum())
    assert (c.a.low, c.a.high) == pytest.approx((percentile(ra, 2.5), percentile(ra, 97.5)))
    assert (c.b.low, c.b.high) == pytest.approx((percentile(rb, 2.5), percentile(rb, 97.5)))
    assert (c.diff.low, c.diff.high) == pytest.approx((percentile(diff, 2.5), percentile(diff, 97.5)))
    assert c.p_improvement == pytest.approx(sum(d < 0 for d in diff) / len(diff))
    assert c.significant == (c.diff.high < 0 or c.diff.low > 0)


def test_fixed_seed_is_reproducible_and_identical_systems_are_not_significant(systems):
    a, _, lengths = systems
    assert bootstrap.interval(a, lengths, n_resamples=200) == bootstrap.interval(a, lengths, n_resamples=200)
    same = bootstrap.compare(a, a, lengths, n_resamples=200)
    assert (same.diff.low, same.diff.high, same.p_improvement, same.significant) == (0.0, 0.0, 0.0, False)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="same, non-zero units"):
        bootstrap.resample_rates(np.array([1, 2, 3]), np.array([1, 2]))
    with pytest.raises(ValueError, match="integer counts"):
        bootstrap.resample_rates(np.array([0.5, 1.0]), np.array([1, 2]))


def test_one_seed_per_group_resamples_as_the_utterance_bootstrap(systems):
    """With a single training seed everywhere the two-level bootstrap is the paired one, draw for draw."""
    a, b, lengths = systems
    point, rates = bootstrap.seed_resampled_rates(np.vstack([a, b]), lengths, [[[0]], [[1]]], n_resamples=300)
    np.testing.assert_allclose(rates, bootstrap.resample_rates(np.vstack([a, b]), lengths, n_resamples=300))
    assert point.tolist() == pytest.approx([100.0 * a.sum() / lengths.sum(), 100.0 * b.sum() / lengths.sum()])


def test_seed_draws_against_a_slow_reference(systems):
    """Each group draws its seeds with replacement from a stream of its own, after the utterances."""
    a, b, lengths = systems
    c = b + 1  # a second seed of system b, worse everywhere
    errors = np.vstack([a, b, c])
    point, rates = bootstrap.seed_resampled_rates(errors, lengths, [[[0]], [[1, 2]]], n_resamples=200, seed=3)
    utt = slow_rates([a.tolist(), b.tolist(), c.tolist()], lengths.tolist(), 200, 3)
    rng = np.random.default_rng([3, 1])
    draws = rng.integers(0, 2, size=(200, 2))
    for r in range(200):
        # the rate of a mean of error sums over one resample's length is the mean of the rates
        mean = sum(utt[1 + int(k)][r] for k in draws[r]) / 2
        assert rates[1, r] == pytest.approx(mean, nan_ok=True)
    np.testing.assert_allclose(rates[0], utt[0])
    assert point[1] == pytest.approx(100.0 * (b.sum() + c.sum()) / 2 / lengths.sum())
