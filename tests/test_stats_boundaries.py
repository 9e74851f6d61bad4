"""Boundaries of ``analysis/stats.py`` that the mutation sample (benchmarks/results/mutation_holdout.md) found
unpinned: the paired t-test is undefined (NaN) exactly when every fold difference is the same."""

from __future__ import annotations

import math

import pytest

from nnunet_se.analysis.stats import paired_ttest


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
def test_constant_nonzero_difference_is_undefined_not_significant(alternative: str) -> None:
    """Differences d = (0.5, 0.5, 0.5) (exact in binary): var(d) = 0, so t = 0.5 / 0 is undefined and the test
    returns NaN, not p = 0 (scipy's t = inf would print a significance mark for a model that is merely shifted)."""
    assert math.isnan(paired_ttest([1.0, 2.0, 3.0], [0.5, 1.5, 2.5], alternative))


@pytest.mark.parametrize(("alternative", "expected"), [
    # d = (0.5, 0.5, 1.0): mean 2/3, var (ddof 1) = ((1/6)^2 + (1/6)^2 + (1/3)^2) / 2 = 1/12,
    # t = (2/3) / sqrt(1/12 / 3) = (2/3) / (1/6) = 4 with 2 d.o.f.; Student t with 2 d.o.f. has
    # P(T >= t) = 1/2 - t / (2 sqrt(2 + t^2)) = 1/2 - 4 / (2 sqrt(18)) = 0.0285954792...
    ("greater", 0.5 - 4.0 / (2.0 * math.sqrt(18.0))),
    ("two-sided", 1.0 - 4.0 / math.sqrt(18.0)),
])
def test_one_differing_fold_gives_the_student_t_p_value(alternative: str, expected: float) -> None:
    """Just past the boundary: one difference differs, so the test is defined and p is Student's t tail,
    from the closed form of the t distribution with 2 degrees of freedom."""
    assert paired_ttest([1.0, 2.0, 3.5], [0.5, 1.5, 2.5], alternative) == pytest.approx(expected, rel=1e-9)


def test_all_equal_values_are_undefined_too() -> None:
    """Zero differences everywhere (a model compared with itself): NaN as well."""
    assert math.isnan(paired_ttest([0.8, 0.9, 0.7], [0.8, 0.9, 0.7]))
