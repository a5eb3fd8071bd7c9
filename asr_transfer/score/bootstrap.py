"""Paired bootstrap of error rates (Bisani & Ney 2004; Koehn 2004), vectorised with numpy.

A resample draws N units (utterances, or speakers on request) with replacement;
its error rate is the sum of the drawn units' errors over the sum of their
reference lengths. The same draws are used for every system, so differences are
paired. Draws come from ``numpy.random.default_rng(seed).integers(0, N, (rows, N))``
taken in row chunks, which yields the same stream whatever the chunk size; the
slow reference in the tests draws one row at a time from the same generator.

Intervals are percentile intervals (linear interpolation, numpy's default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 10_000
SEED = 0
#: elements gathered per chunk (index matrix rows x units x (systems + 1)): ~32 MB as int32
_CHUNK_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval, in percent."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Comparison:
    """System B against system A on the same units; ``diff`` is WER(B) - WER(A)."""

    a: Interval
    b: Interval
    diff: Interval
    p_improvement: float  #: share of resamples where B's error rate is below A's

    @property
    def significant(self) -> bool:
        """The interval of the difference excludes zero."""
        return self.diff.low > 0 or self.diff.high < 0

    def as_dict(self) -> dict:
        return {
            "a": self.a.as_dict(),
            "b": self.b.as_dict(),
            "diff": self.diff.as_dict(),
            "p_improvement": self.p_improvement,
            "significant": self.significant,
        }


def resample_sums(
    errors: np.ndarray,
    lengths: np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """Summed reference lengths (row 0) and errors (one row per system) of ``n_resamples`` paired
    resamples: shape (systems + 1, n_resamples), int64.

    ``errors`` is (systems, units) or (units,); ``lengths`` is (units,), the reference length of each
    unit; both integer counts.

    Example:
        >>> resample_sums(np.array([[1, 0, 2], [0, 0, 1]]), np.array([4, 3, 5]), n_resamples=5).shape
        (3, 5)
    """
    errs = np.atleast_2d(np.asarray(errors))
    lens = np.asarray(lengths)
    n_units = lens.shape[0]
    if errs.shape[1] != n_units or n_units == 0:
        raise ValueError(f"errors {errs.shape} and lengths {lens.shape} must cover the same, non-zero units")
    # one table so that each chunk of indices is gathered once for lengths and all systems;
    # int32 halves the memory traffic of the gather, which dominates the run time
    table = np.vstack([lens, errs])
    if not np.issubdtype(table.dtype, np.integer) or table.min() < 0 or table.max() >= 2**31:
        raise ValueError("errors and lengths must be non-negative integer counts below 2**31")
    table = table.astype(np.int32)
    rows = chunk_rows or max(1, _CHUNK_ELEMENTS // (n_units * table.shape[0]))
    rng = np.random.default_rng(seed)
    sums = np.empty((table.shape[0], n_resamples), dtype=np.int64)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        idx = rng.integers(0, n_units, size=(stop - start, n_units))
        # np.take is several times faster than fancy indexing table[:, idx] here
        sums[:, start:stop] = np.take(table, idx, axis=1).sum(axis=-1, dtype=np.int64)
    return sums


def resample_rates(
    errors: np.ndarray,
    lengths: np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """Error rates (percent) of ``n_resamples`` paired resamples: shape (systems, n_resamples).

    ``errors`` is (systems, units) or (units,); ``lengths`` is (units,), the
    reference length of each unit; both integer counts. Resamples with no reference token give NaN.

    Example:
        >>> r = resample_rates(np.array([[1, 0, 2], [0, 0, 1]]), np.array([4, 3, 5]), n_resamples=5)
        >>> r.shape
        (2, 5)
        >>> bool((r[1] <= r[0]).all())
        True
    """
    sums = resample_sums(errors, lengths, n_resamples=n_resamples, seed=seed, chunk_rows=chunk_rows)
    return _rates(sums[1:], sums[0])


def seed_resampled_rates(
    errors: np.ndarray,
    lengths: np.ndarray,
    systems: list[list[list[int]]],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Error rates (percent) of systems trained with several seeds: the point rates ``(S,)`` and the
    rates of ``n_resamples`` two-level resamples ``(S, n_resamples)``.

    ``errors``: (rows, units) integer counts, one row per decode; ``systems``: per system its groups
    (e.g. test domains), each group the rows of its training seeds' decodes. A system's errors are,
    per group, the mean over its seeds. A resample draws the units with replacement (the draws of
    :func:`resample_rates`, the same for every system: paired) and then, in each group, as many seeds
    as it has, with replacement: so the interval also holds the spread between training runs, which
    resampling utterances alone does not see. With one seed per group the resamples are those of
    :func:`resample_rates`; with two or three the seed level is coarse (more seeds, sharper).

    Example:
        >>> errs = np.array([[2, 1, 2, 1], [2, 1, 2, 1], [0, 0, 0, 0]])  # a system, another with 2 seeds
        >>> point, rates = seed_resampled_rates(errs, np.array([10, 10, 10, 10]), [[[0]], [[1, 2]]],
        ...                                     n_resamples=200)
        >>> point.tolist(), bool(rates[1].min() == 0.0), bool(rates[1].max() > rates[0].min())
        ([15.0, 7.5], True, True)
    """
    sums = resample_sums(errors, lengths, n_resamples=n_resamples, seed=seed)
    errs, lens = np.asarray(errors), np.asarray(lengths)
    rng = np.random.default_rng([seed, 1])  # the seed draws: a stream apart from the units' draws
    cols = np.arange(n_resamples)[:, None]
    point, total = np.zeros(len(systems)), np.zeros((len(systems), n_resamples))
    for i, groups in enumerate(systems):
        for rows in groups:
            point[i] += errs[rows].sum() / len(rows)
            if len(rows) == 1:
                total[i] += sums[1 + rows[0]]
                continue
            draws = rng.integers(0, len(rows), size=(n_resamples, len(rows)))
            total[i] += sums[1 + np.asarray(rows)][draws, cols].mean(axis=1)
    return 100.0 * point / lens.sum(), _rates(total, sums[0])


def _rates(errors: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Percent error rates of resampled sums; NaN where a resample holds no reference token."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = 100.0 * errors / lengths
    rates[:, lengths == 0] = np.nan
    return rates


def interval(errors: np.ndarray, lengths: np.ndarray, *, level: float = 0.95, **kw) -> Interval:
    """Error rate with a bootstrap ``level`` interval for one system.

    Example:
        >>> ci = interval(np.array([1, 0, 2, 0]), np.array([4, 3, 5, 2]), n_resamples=200)
        >>> ci.value
        21.428571428571427
        >>> ci.low <= ci.value <= ci.high
        True
    """
    rates = resample_rates(errors, lengths, **kw)[0]
    return _interval(_rate(errors, lengths), rates, level)


def compare(
    errors_a: np.ndarray, errors_b: np.ndarray, lengths: np.ndarray, *, level: float = 0.95, **kw
) -> Comparison:
    """Paired bootstrap of system B against baseline A: both intervals, difference, P(B better).

    Example:
        >>> a, b, n = np.array([3, 2, 4, 3]), np.array([0, 0, 1, 0]), np.array([5, 5, 6, 5])
        >>> c = compare(a, b, n, n_resamples=500)
        >>> c.significant, c.p_improvement
        (True, 1.0)
    """
    rates = resample_rates(np.vstack([errors_a, errors_b]), lengths, **kw)
    a, b = _rate(errors_a, lengths), _rate(errors_b, lengths)
    diff = rates[1] - rates[0]
    return Comparison(
        a=_interval(a, rates[0], level),
        b=_interval(b, rates[1], level),
        diff=_interval(b - a, diff, level),
        p_improvement=float(np.mean(diff[~np.isnan(diff)] < 0)),
    )


def _rate(errors: np.ndarray, lengths: np.ndarray) -> float:
    total = float(np.sum(lengths))
    return 100.0 * float(np.sum(errors)) / total if total else float("nan")


def _interval(value: float, samples: np.ndarray, level: float) -> Interval:
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.nanpercentile(samples, [tail, 100.0 - tail])
    return Interval(value, float(low), float(high))


def seed_relative_reduction(
    errors: np.ndarray,
    lengths: np.ndarray,
    seeds_a: list[list[int]],
    seeds_b: list[list[int]],
    *,
    level: float = 0.95,
    **kw,
) -> Interval:
    """Relative error-rate reduction of system B against baseline A, ``100 * (A - B) / A``, with a
    two-level bootstrap ``level`` interval (the same utterance draws for both systems; each system's
    training seeds drawn too): ``seeds_a`` and ``seeds_b`` are their groups of ``errors`` rows
    (:func:`seed_resampled_rates`).

    Example:
        >>> errs = np.array([[4, 2, 4, 2], [2, 1, 2, 1], [2, 1, 2, 1]])
        >>> r = seed_relative_reduction(errs, np.array([10, 10, 10, 10]), [[0]], [[1, 2]], n_resamples=300)
        >>> r.value, r.low, r.high
        (50.0, 50.0, 50.0)
    """
    point, rates = seed_resampled_rates(errors, lengths, [seeds_a, seeds_b], **kw)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = 100.0 * (rates[0] - rates[1]) / rates[0]
    # a resample where the baseline makes no error has no defined relative change
    samples[~np.isfinite(samples)] = np.nan
    a, b = map(float, point)
    return _interval(100.0 * (a - b) / a if a else float("nan"), samples, level)


def seed_difference(
    errors: np.ndarray,
    lengths: np.ndarray,
    seeds_a: list[list[int]],
    seeds_b: list[list[int]],
    *,
    level: float = 0.95,
    **kw,
) -> Interval:
    """WER(B) - WER(A) in points with its interval, for systems with several training seeds (as
    :func:`seed_relative_reduction`).

    Example:
        >>> errs = np.array([[1, 1, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]])
        >>> seed_difference(errs, np.array([10, 10, 10, 10]), [[0]], [[1, 2]], n_resamples=100).value
        10.0
    """
    point, rates = seed_resampled_rates(errors, lengths, [seeds_a, seeds_b], **kw)
    return _interval(float(point[1] - point[0]), rates[1] - rates[0], level)
