"""The interval for k(delta) (``jackknife_interval``) on small fixed scenarios, against an independent simulation.

Each scenario draws excitations as the sigmoid of Gaussian scores with a known covariance spectrum (generator
written here, not the benchmark's). The oracle is a Monte-Carlo of k_hat_n itself: ``TRUTH`` independent draws,
each reduced by ``threshold`` (checked against sklearn in test_analysis_thresholds.py), give E[k_hat_n] and the
true 95 % range of k_hat_n. The interval must cover E[k_hat_n] in >= 90 % of ``DRAWS`` draws, contain its own k
every time, and be no wider on average than 2 x the true range + 1 (the benchmark's criteria on the full grid).
Seeds are fixed, so each number is deterministic; the bounds are the acceptance criteria, not fitted values.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import benchmark_module

from nnunet_se.analysis.thresholds import (
    PRESETS,
    Convention,
    count_components,
    cumulative_ratio,
    expected_count,
    jackknife_interval,
    percentile_interval,
    spectrum,
    threshold,
)

TRUTH, DRAWS = 300, 40


def sigmoid_excitations(eigen: np.ndarray, n: int, rng: np.random.Generator, rotation: np.ndarray) -> np.ndarray:
    """(n, C) gates: sigmoid of N(0, R diag(eigen) R^T) scores."""
    return 1.0 / (1.0 + np.exp(-(rng.standard_normal((n, eigen.size)) * np.sqrt(eigen)) @ rotation.T))


SCENARIOS = [  # (name, eigenvalues of the logit covariance, n, preset)
    ("power-1, C=24, n=30, fig3", 2.0 / np.arange(1, 25), 30, "fig3"),
    ("low rank 4 + noise, C=16, n=40, text", np.r_[[1.0] * 4, [0.02] * 12], 40, "text"),
    ("geometric 0.8, C=32, n=60, fig3", 0.8 ** np.arange(32), 60, "fig3"),
]


def _truth_and_draws(eigen: np.ndarray, n: int, convention: Convention, seed: int):
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((eigen.size, eigen.size)))
    truth = np.array([threshold(sigmoid_excitations(eigen, n, rng, rotation), convention) for _ in range(TRUTH)])
    draws = [sigmoid_excitations(eigen, n, rng, rotation) for _ in range(DRAWS)]
    return truth, draws


@pytest.mark.parametrize("name,eigen,n,preset", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_jackknife_interval_covers_the_mean_k(name: str, eigen: np.ndarray, n: int, preset: str) -> None:
    convention = PRESETS[preset]
    truth, draws = _truth_and_draws(eigen, n, convention, seed=7)
    expected = truth.mean()
    spread = np.quantile(truth, 0.975, method="higher") - np.quantile(truth, 0.025, method="lower")
    intervals = [jackknife_interval(g, convention, seed=i) for i, g in enumerate(draws)]
    assert all(r.low <= r.k <= r.high for r in intervals)
    assert all(r.k == threshold(g, convention) for r, g in zip(intervals, draws, strict=True))
    coverage = np.mean([r.low <= expected <= r.high for r in intervals])
    width = np.mean([r.high - r.low for r in intervals])
    assert coverage >= 0.9, (coverage, expected)
    assert width <= 2 * spread + 1, (width, spread)


def test_percentile_bootstrap_sits_below_the_mean_k() -> None:
    """Why the default changed: resampling with replacement duplicates cases and lowers k, so the percentile
    interval (before it is widened to contain k) misses E[k_hat_n] in most draws of the power-law scenario."""
    _, eigen, n, preset = SCENARIOS[0]
    convention = PRESETS[preset]
    truth, draws = _truth_and_draws(eigen, n, convention, seed=7)
    below = [np.quantile(percentile_interval(g, convention, n_boot=100, seed=i).samples, 0.975, method="higher")
             < truth.mean() for i, g in enumerate(draws[:20])]
    assert np.mean(below) >= 0.5


@pytest.mark.parametrize("se2,delta,count,shift,expected", [
    (0.0, 0.8, "reach", 0.0, 3.0),  # r = 0.4, 0.7, 0.9, 1.0 without noise: 1 + #{0.4, 0.7 < 0.8}
    (0.0, 0.8, "below", 0.0, 2.0),
    (0.0, 0.9, "below", 0.0, 3.0),  # r_3 = 0.9 <= 0.9 counts
    (0.1, 0.8, "reach", 0.0, 2.0 + 0.8413447460685429),  # r_2 ~ N(0.7, 0.1^2): P(r_2 < 0.8) = Phi(1)
    (0.1, 0.8, "reach", -1.0, 2.5),  # shifted by one SE: Phi(0) = 1/2
    (0.1, 0.8, "below", 1.0, 1.0 + 0.9772498680518208),  # Phi(2)
    (0.0, 1.0, "below", 0.0, 4.0),  # never above the rank (4)
])
def test_expected_count_hand_values(se2: float, delta: float, count: str, shift: float, expected: float) -> None:
    ratio = cumulative_ratio(np.array([4.0, 3.0, 2.0, 1.0]))
    se = np.array([0.0, se2, 0.0, 0.0])
    assert expected_count(ratio, se, delta, count, 4, shift) == pytest.approx(expected, rel=0, abs=1e-12)
    if se2 == 0.0 and shift == 0.0:
        assert expected == int(count_components(ratio, delta, count))


def _rank_deficient(n: int, c: int, distinct: int) -> np.ndarray:
    """(n, c) gates with only ``distinct`` different rows (cyclically repeated)."""
    rows = np.random.default_rng(0).uniform(0.1, 0.9, (distinct, c))
    return rows[np.arange(n) % distinct]


@pytest.mark.parametrize("n,c,distinct,criterion,count,rank", [
    (10, 16, 10, "explained-variance", "reach", 9),  # centred: n - 1
    (10, 16, 10, "explained-variance", "below", 9),  # the notebook's count also stops at the rank
    (20, 8, 20, "explained-variance", "below", 8),  # C
    (10, 16, 10, "frobenius", "below", 10),  # uncentred: n
    (12, 16, 5, "explained-variance", "below", 4),  # repeated cases: 5 distinct rows, centred rank 4
    (12, 16, 5, "frobenius", "reach", 5),
])
def test_delta_one_gives_the_rank_never_more(n: int, c: int, distinct: int, criterion: str, count: str,
                                             rank: int) -> None:
    g = _rank_deficient(n, c, distinct)
    assert np.linalg.matrix_rank(g - g.mean(axis=0) if criterion == "explained-variance" else g) == rank
    assert threshold(g, Convention(criterion=criterion, count=count, delta=1.0)) == rank
    eigen, _ = spectrum(g, Convention(criterion=criterion))
    assert np.count_nonzero(eigen) == rank and np.all(eigen[rank:] == 0.0)


def test_coverage_benchmark_quick_mode(tmp_path: Path) -> None:
    """``benchmarks/k_interval_coverage.py --quick`` runs in seconds and every quick scenario passes."""
    with benchmark_module("k_interval_coverage") as module:
        assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "k_interval_coverage.json").read_text())
    assert result["passed"] == result["scenarios"] == 4
    assert all(row["contains_k"] == 1.0 and row["coverage"] >= 0.9 for row in result["rows"])
    assert "| fig3 | power-1 | 32 | 30 |" in (tmp_path / "k_interval_coverage.md").read_text()
