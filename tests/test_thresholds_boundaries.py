"""Boundaries of ``analysis/thresholds.py`` that the mutation sample (benchmarks/results/mutation_holdout.md) found
unpinned: the delete-d jackknife interval against an independent jackknife (sklearn PCA), its group count, the
percentile ends, the rank cap of ``batch_ratio``, the scale-relative round-off tolerance, single-case robust
scaling and the immutability of the presets.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.preprocessing import robust_scale

from nnunet_se.analysis.thresholds import (
    PRESETS,
    Convention,
    batch_ratio,
    jackknife_interval,
    percentile_interval,
    scale_columns,
    threshold,
)


def _decaying(n: int, c: int = 6, seed: int = 3) -> np.ndarray:
    """(n, c) Gaussian scores with column scales 0.7^j: a spread spectrum, so k moves between subsamples."""
    return np.random.default_rng(seed).standard_normal((n, c)) * 0.7 ** np.arange(c)


def _rank_deficient(n: int = 12, c: int = 16, distinct: int = 5) -> np.ndarray:
    """(n, c) gates with only ``distinct`` different rows: centred rank ``distinct - 1``, uncentred ``distinct``."""
    rows = np.random.default_rng(0).uniform(0.1, 0.9, (distinct, c))
    return rows[np.arange(n) % distinct]


def _pca_ratio(g: np.ndarray) -> np.ndarray:
    """Oracle r_k: cumulative explained-variance ratio of sklearn's PCA (no scaling)."""
    return np.cumsum(PCA().fit(g).explained_variance_ratio_)


def test_jackknife_interval_equals_an_independent_delete_one_jackknife() -> None:
    """n = 24 < 40 cases: d = max(1, 24 // 20) = 1, so G = 24 groups of one case each (seed-independent).
    Oracle, from the definitions only: r^(-i) by sklearn PCA without case i; jackknife SE
    se_j = sqrt((G - 1) / G * sum_i (r_j^(-i) - mean_i r_j^(-i))^2) (Efron's jackknife); z = Student-t 97.5 %
    quantile with G - 1 = 23 d.o.f. (the default level 0.95); ends 1 + sum_j Phi((delta - r_j) / se_j -+ z),
    widened to contain k. A user reads these ends as the interval for k in the table."""
    g, delta = _decaying(24), 0.9
    ratio = _pca_ratio(g)
    k = 1 + int(np.sum(ratio < delta))
    leave_one_out = np.array([_pca_ratio(np.delete(g, i, axis=0)) for i in range(24)])
    groups = 24
    se = np.sqrt((groups - 1) / groups * np.sum((leave_one_out - leave_one_out.mean(axis=0)) ** 2, axis=0))
    z = stats.t.ppf(0.975, df=23)
    assert z == pytest.approx(2.0687, abs=1e-4)  # printed t tables: t_{0.975, 23} = 2.069
    noisy = se > 1e-12  # r_6 = 1 in every subsample: no spread, counts as r_6 < delta (false)

    def expected(shift: float) -> float:
        return 1.0 + float(np.sum(stats.norm.cdf((delta - ratio[noisy]) / se[noisy] + shift))) \
            + float(np.sum(ratio[~noisy] < delta))

    result = jackknife_interval(g, Convention(delta=delta))  # default level: 0.95
    assert result.k == k == 3
    low, high = min(expected(-z), k), max(expected(z), k)
    assert low < k < high  # neither end is clamped to k, so both are pinned
    assert result.low == pytest.approx(low, rel=0, abs=1e-9)
    assert result.high == pytest.approx(high, rel=0, abs=1e-9)


@pytest.mark.parametrize(("n", "seed_dependent"), [(39, False), (40, True)])
def test_jackknife_deletes_n_over_20_cases_per_group(n: int, seed_dependent: bool) -> None:
    """d = max(1, n // 20): 39 cases give d = 1 (delete-one: every grouping is the same, the seed cannot matter);
    40 cases give d = 2 (pairs drawn by the seed: another seed, other pairs, another interval). A user with 40+
    cases gets a different (grouped) interval than the delete-one one."""
    g = _decaying(n, c=12, seed=5)
    a = jackknife_interval(g, Convention(delta=0.9), seed=0)
    b = jackknife_interval(g, Convention(delta=0.9), seed=1)
    assert a.k == b.k
    assert a.low < a.k  # the low end is not clamped to k: it carries the jackknife
    assert ((a.low, a.high) != (b.low, b.high)) is seed_dependent


def test_percentile_interval_ends_are_the_2_5_and_97_5_percent_order_statistics() -> None:
    """Level 0.95 leaves 2.5 % in each tail: of 200 sorted bootstrap k, the low end is s[floor(0.025 * 199)] = s[4]
    and the high end s[ceil(0.975 * 199)] = s[195] (then widened to contain k). A 10 % tail would read s[19]."""
    g = np.random.default_rng(3).standard_normal((30, 12)) * 0.7 ** np.arange(12)
    result = percentile_interval(g, Convention(delta=0.9), n_boot=200, seed=0)
    s = np.sort(result.samples)
    assert s[4] != s[19]  # the tails differ here, so the level is observable
    assert result.low == min(s[4], result.k)
    assert result.high == max(s[195], result.k)
    assert result.low < result.k  # the low end is a bootstrap value, not k


@pytest.mark.parametrize(("distinct", "rank"), [(5, 4), (12, 11)])
def test_jackknife_k_is_capped_at_the_rank(distinct: int, rank: int) -> None:
    """``below`` at delta = 1 counts every r_k <= 1, i.e. all min(n, C) = 12 components, but k never exceeds the
    numerical rank (oracle: numpy's matrix_rank of the centred matrix): 4 for 5 distinct rows, 11 = n - 1 for 12
    distinct ones. A k above the rank would count components that carry no variance."""
    g = _rank_deficient(12, 16, distinct)
    assert np.linalg.matrix_rank(g - g.mean(axis=0)) == rank
    convention = Convention(count="below", delta=1.0)
    _, ranks = batch_ratio(g[None], convention)
    assert ranks.tolist() == [rank]
    assert jackknife_interval(g, convention).k == rank


@pytest.mark.parametrize("factor", [1.0, 1e-7])
def test_rank_is_scale_invariant(factor: float) -> None:
    """Scaling the excitations by a constant scales every eigenvalue alike, so the numerical rank (k at delta = 1)
    cannot change: 5 distinct rows give centred rank 4 whether the gates spread over ~0.8 or ~8e-8 (non-zero
    eigenvalues 0.10..0.35 or 1e-15..3.5e-15, in both cases ~1e16 x the round-off of the 12 rank-deficient
    directions, ~1e-17 x lambda_max). The round-off cut must be relative to lambda_max, not to 1."""
    g = _rank_deficient() * factor
    assert threshold(g, Convention(delta=1.0)) == 4
    assert threshold(g, Convention(delta=1.0, count="below")) == 4


@pytest.mark.parametrize("n", [1, 2])
def test_robust_scaling_of_one_and_two_cases_matches_sklearn(n: int) -> None:
    """One case: median = the case, IQR = 0 (left at 1), so robust scaling gives zeros (sklearn's robust_scale);
    two cases: quartiles interpolate between them. A single case must reach the 'at least 2 cases' error."""
    g = _decaying(n, c=4)
    np.testing.assert_allclose(scale_columns(g, "robust"), robust_scale(g), rtol=0, atol=1e-12)
    if n == 1:
        with pytest.raises(ValueError, match="need at least 2 cases"):
            threshold(g, Convention(scale="robust"))
    else:
        assert threshold(g, Convention(scale="robust", delta=1.0)) == 1  # 2 centred cases: rank 1


def test_presets_are_immutable_and_hashable() -> None:
    """PRESETS are shared module-level objects: assigning a field must fail (else one analysis could silently
    change the convention of every later one), and equal conventions hash alike (usable as dict keys)."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["fig3"].delta = 0.5  # type: ignore[misc]
    assert PRESETS["fig3"].delta == 0.95
    assert hash(Convention(scale="robust")) == hash(PRESETS["fig3"])
    assert {PRESETS["text"]: "text"}[Convention()] == "text"
