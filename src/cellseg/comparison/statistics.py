"""Replicate statistics of a sweep: mean, standard deviation, bootstrap intervals, paired sign-flip tests.

Small samples are the rule (three to five seeds per setting), so both resampling procedures are exact
where that is cheap: the bootstrap distribution of the mean is enumerated over every multiset of the
``n`` values (with its multinomial probability) up to ``n = 8``, and the sign-flip test enumerates all
``2**n`` sign patterns up to ``n = 16``. Larger samples fall back to seeded Monte Carlo draws, so every
figure is reproducible.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_BOOTSTRAP_MAX_N = 8
EXACT_SIGN_FLIP_MAX_N = 16
MONTE_CARLO_DRAWS = 20_000


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def overlaps(self, other: Interval) -> bool:
        return self.low <= other.high and other.low <= self.high


def mean_and_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; NaN for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else math.nan


def _weighted_quantile(points: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest point whose cumulative probability reaches ``q`` (the inverse of the exact CDF)."""
    order = np.argsort(points, kind="stable")
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, q * cumulative[-1] - 1e-12, side="left"))
    return float(points[order][min(index, len(points) - 1)])


def _bootstrap_means(values: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of bootstrap resamples and their probabilities (exact for small n)."""
    n = len(values)
    if n <= EXACT_BOOTSTRAP_MAX_N:
        means, weights = [], []
        for combo in itertools.combinations_with_replacement(range(n), n):
            counts = np.bincount(combo, minlength=n)
            ways = math.factorial(n) / math.prod(math.factorial(int(c)) for c in counts)
            means.append(float(values[list(combo)].mean()))
            weights.append(ways / n**n)
        return np.asarray(means), np.asarray(weights)
    draws = np.random.default_rng(seed).integers(0, n, size=(MONTE_CARLO_DRAWS, n))
    return values[draws].mean(axis=1), np.full(MONTE_CARLO_DRAWS, 1.0 / MONTE_CARLO_DRAWS)


def bootstrap_interval(values: Sequence[float], level: float = 0.95, seed: int = 0) -> Interval | None:
    """Percentile bootstrap interval of the mean; None for fewer than two values (no spread to resample)."""
    array = np.asarray(values, dtype=np.float64)
    if len(array) < 2:
        return None
    means, weights = _bootstrap_means(array, seed)
    tail = (1.0 - level) / 2.0
    return Interval(_weighted_quantile(means, weights, tail), _weighted_quantile(means, weights, 1.0 - tail))


def sign_flip_p_value(differences: Sequence[float], seed: int = 0) -> float:
    """Two-sided p-value of a mean paired difference of 0: the share of sign patterns whose mean is at
    least as far from 0 as the observed one (the observed pattern included)."""
    array = np.asarray(differences, dtype=np.float64)
    n = len(array)
    if n == 0:
        return math.nan
    observed = abs(array.mean())
    if n <= EXACT_SIGN_FLIP_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(MONTE_CARLO_DRAWS, n))
        signs[0] = 1.0
    flipped = np.abs((signs * array).mean(axis=1))
    return float(np.mean(flipped >= observed - 1e-12))


@dataclass(frozen=True)
class PairedComparison:
    """A setting against the reference setting, seed by seed: mean of (setting - reference)."""

    seeds: tuple[int, ...]
    mean_difference: float
    interval: Interval | None
    p_value: float


def paired_comparison(
    values: dict[int, float], reference: dict[int, float], seed: int = 0
) -> PairedComparison | None:
    """Paired differences on the seeds both settings ran; None when they share no seed."""
    shared = tuple(sorted(set(values) & set(reference)))
    if not shared:
        return None
    differences = [values[s] - reference[s] for s in shared]
    return PairedComparison(
        shared,
        float(np.mean(differences)),
        bootstrap_interval(differences, seed=seed),
        sign_flip_p_value(differences, seed=seed),
    )
