"""Linear excitation thresholds k(delta): the conventions of the paper's text, its equation and the authors' notebook.

For an excitation matrix ``G`` of shape ``(n cases, C channels)``:

1. scale (``none`` | ``standard`` | ``robust``) column-wise: standard = (g - mean) / std (ddof 0), robust =
   (g - median) / IQR(25 %, 75 %) as ``sklearn.preprocessing.robust_scale``; a zero spread is left at 1;
2. criterion:
   - ``explained-variance`` (PCA): X = G - mean, eigenvalues lambda_i of X^T X / (n - 1), weights w_i = lambda_i;
   - ``frobenius`` (eq. 8): A = G^T G / (n - 1) (G centred only with ``center=True``), eigenvalues mu_i of A,
     weights w_i = mu_i^2, because ||A_k||_F^2 = sum_{i<=k} mu_i^2 for the rank-k truncation A_k of a PSD matrix;
3. cumulative ratio r_k = sum_{i<=k} w_i / sum_i w_i (eigenvalues in decreasing order, k = 1..min(n, C));
4. count: ``reach`` = smallest k with r_k >= delta; ``below`` = #{k : r_k <= delta}, the notebook's
   ``np.sum(np.cumsum(pca.explained_variance_ratio_) <= delta)`` (= reach - 1 unless some r_k equals delta).

A matrix with zero total weight (all cases identical after scaling) has k = 0 under both counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CRITERIA = ("explained-variance", "frobenius")
COUNTS = ("reach", "below")
SCALES = ("none", "standard", "robust")


@dataclass(frozen=True)
class Convention:
    """One named way of turning excitations into k(delta)."""

    criterion: str = "explained-variance"
    count: str = "reach"
    scale: str = "none"
    delta: float = 0.95
    center: bool = False

    def __post_init__(self) -> None:
        for name, value, valid in (("criterion", self.criterion, CRITERIA), ("count", self.count, COUNTS),
                                   ("scale", self.scale, SCALES)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r} (choose from {', '.join(valid)})")
        if not 0.0 < self.delta <= 1.0:
            raise ValueError(f"delta must lie in (0, 1], got {self.delta}")

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    # default: reproduces the published Fig. 3 values best (docs/analysis.md, "Fig. 3 from the authors' data")
    "fig3": Convention(scale="robust"),  # robust_scale, PCA explained variance, smallest k reaching delta
    "text": Convention(),  # the paper's text: PCA explained variance, smallest k reaching delta, no scaling
    "authors": Convention(count="below", scale="robust"),  # the authors' notebook: robust_scale, PCA, count <= delta
    "equation": Convention(criterion="frobenius"),  # eq. 8 as written: uncentred A, squared singular values
}
DEFAULT_PRESET = "fig3"


def scale_columns(g: np.ndarray, scale: str) -> np.ndarray:
    """Column-wise scaling of ``g`` (n, C); see the module docstring."""
    g = np.asarray(g, dtype=np.float64)
    if scale == "none":
        return g
    if scale == "standard":
        centre, spread = g.mean(axis=0), g.std(axis=0)
    elif scale == "robust":
        q25, centre, q75 = np.percentile(g, [25.0, 50.0, 75.0], axis=0)
        spread = q75 - q25
    else:
        raise ValueError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    spread = np.where(spread == 0.0, 1.0, spread)
    return (g - centre) / spread


def spectrum(g: np.ndarray, convention: Convention) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (decreasing, length min(n, C)) of the criterion's matrix and the weights w_i summed by r_k."""
    x = scale_columns(g, convention.scale)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 cases for a covariance, got {n}")
    if convention.criterion == "explained-variance" or convention.center:
        x = x - x.mean(axis=0)
    singular = np.linalg.svd(x, compute_uv=False)
    eigen = singular**2 / (n - 1)
    weights = eigen if convention.criterion == "explained-variance" else eigen**2
    return eigen, weights


def cumulative_ratio(weights: np.ndarray) -> np.ndarray:
    """r_k for k = 1..len(weights); all zeros when the total weight is zero."""
    total = float(np.sum(weights))
    if total <= 0.0:
        return np.zeros_like(weights)
    return np.cumsum(weights) / total


def count_components(ratio: np.ndarray, delta: float, count: str) -> int:
    """k from the cumulative ratio under the ``reach`` or ``below`` count (0 for a zero spectrum)."""
    if ratio.size == 0 or ratio[-1] == 0.0:
        return 0
    if count == "reach":
        reached = np.nonzero(ratio >= delta)[0]
        return int(reached[0]) + 1 if reached.size else int(ratio.size)
    if count == "below":
        return int(np.sum(ratio <= delta))
    raise ValueError(f"unknown count {count!r} (choose from {', '.join(COUNTS)})")


def threshold(g: np.ndarray, convention: Convention) -> int:
    """k(delta) of one excitation matrix ``g`` (n, C) under ``convention``."""
    _, weights = spectrum(g, convention)
    return count_components(cumulative_ratio(weights), convention.delta, convention.count)


@dataclass(frozen=True)
class BootstrapResult:
    k: int
    ci_low: float
    ci_high: float
    samples: np.ndarray  # (n_boot,) bootstrap k values


def bootstrap_threshold(
    g: np.ndarray, convention: Convention, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> BootstrapResult:
    """k and a percentile bootstrap CI over cases (resampling rows of ``g`` with replacement, ``seed`` fixed)."""
    g = np.asarray(g, dtype=np.float64)
    k = threshold(g, convention)
    if n_boot <= 0:
        return BootstrapResult(k, float("nan"), float("nan"), np.zeros(0))
    rng = np.random.default_rng(seed)
    n = g.shape[0]
    samples = np.array([threshold(g[rng.integers(0, n, n)], convention) for _ in range(n_boot)], dtype=np.int64)
    alpha = (1.0 - level) / 2.0
    low = np.quantile(samples, alpha, method="lower")
    high = np.quantile(samples, 1.0 - alpha, method="higher")
    return BootstrapResult(k, float(low), float(high), samples)
