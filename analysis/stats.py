"""Paired significance tests against a baseline, and Holm's step-down correction.

Every test takes ``alternative``: ``"greater"`` (one-sided, H1: the model ``a`` beats the baseline ``b``, so only
an improvement can be significant, as the paper marks) or ``"two-sided"``.

- ``paired_ttest``: scipy's paired t-test over folds (the paper's test; it ignores that cross-validation folds share
  training cases, and its false-positive rate exceeds alpha: ``benchmarks/table_test_calibration.py``).
- ``nadeau_bengio``: corrected resampled t-test (Nadeau & Bengio 2003, Machine Learning 52:239-281; the test
  Table I's marks come from): with fold differences d_j = a_j - b_j
  (j = 1..k), t = mean(d) / sqrt((1/k + n_test/n_train) * var(d, ddof=1)); p from Student's t with k - 1 d.o.f.:
  P(T >= t) one-sided, P(|T| >= |t|) two-sided.
- ``wilcoxon``: scipy's Wilcoxon signed-rank test on paired per-case values (zero differences dropped, scipy's
  default ``zero_method="wilcox"``).
- ``holm``: Holm-adjusted p-values, p_(i) * (m - i + 1) for ascending p, made monotone, capped at 1; NaN kept.

Every test returns NaN when it is undefined (fewer than 2 pairs, zero variance, all differences zero).

``fold_mean_std`` is the one summary of per-fold values (Dice of the folds of one model) that ``table`` and
``status`` print: mean and sample std (ddof 1).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

ALTERNATIVES = ("greater", "two-sided")


def fold_mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof 1, n) of per-fold values (any unit; the result is in the same unit).

    One convention for every command: the std of a single fold is undefined, so it is NaN (shown as "–"), never 0;
    no value gives (NaN, NaN, 0). Every value must be finite: a NaN fold (no foreground anywhere) or an infinite one
    is the caller's to report, never silently averaged in or left out, so a non-finite value raises ValueError.
    """
    x = np.asarray(values, float).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"fold values must be finite, got {x.tolist()}")
    if x.size == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size)


def kfold_test_train_ratio(k: int) -> float:
    """Nadeau-Bengio's n_test/n_train for K-fold cross-validation: each fold tests on 1/K and trains on (K-1)/K of
    the cases, so 1/(K - 1) (1/4 for nnU-Net's 5 folds, 1/9 for 10). ValueError for K < 2."""
    if k < 2:
        raise ValueError(f"K-fold cross-validation needs K >= 2, got {k}")
    return 1.0 / (k - 1)


def _check(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r} (choose from {', '.join(ALTERNATIVES)})")


def paired_ttest(a: Sequence[float], b: Sequence[float], alternative: str = "greater") -> float:
    _check(alternative)
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or np.all(a - b == (a - b)[0]):
        return math.nan
    return float(stats.ttest_rel(a, b, alternative=alternative).pvalue)


def nadeau_bengio(a: Sequence[float], b: Sequence[float], test_train_ratio: float,
                  alternative: str = "greater") -> float:
    _check(alternative)
    d = np.asarray(a, float) - np.asarray(b, float)
    k = d.size
    if k < 2:
        return math.nan
    var = d.var(ddof=1)
    if var == 0.0:
        return math.nan
    t = d.mean() / math.sqrt((1.0 / k + test_train_ratio) * var)
    if alternative == "greater":
        return float(stats.t.sf(t, k - 1))
    return float(2.0 * stats.t.sf(abs(t), k - 1))


def wilcoxon(a: Sequence[float], b: Sequence[float], alternative: str = "greater") -> float:
    _check(alternative)
    d = np.asarray(a, float) - np.asarray(b, float)
    if d.size < 2 or np.all(d == 0.0):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.wilcoxon(np.asarray(a, float), np.asarray(b, float), alternative=alternative).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    p = np.asarray(pvalues, float)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(p.shape, np.nan)
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, p[idx] * (m - i)))
        adjusted[idx] = running
    return adjusted.tolist()


def significance_mark(p: float) -> str:
    """The paper's marks: ‡ for p <= 0.01, † for p <= 0.05, else nothing."""
    if math.isnan(p):
        return ""
    return "‡" if p <= 0.01 else "†" if p <= 0.05 else ""
