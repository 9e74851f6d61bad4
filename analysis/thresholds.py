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
   k never exceeds the numerical rank of the matrix (at most n - 1 for centred data): ``delta = 1`` gives the rank.

A matrix with zero total weight (all cases identical after scaling) has k = 0 under both counts. The interval for k
(``jackknife_interval``) is argued and measured in docs/analysis.md section 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

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


def _column_quantiles(g: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Quantiles of ``g`` (..., n, C) over axis -2, each (..., 1, C): numpy's default (linear) method, one sort."""
    ordered = np.sort(np.swapaxes(g, -1, -2), axis=-1)
    n = ordered.shape[-1]
    out = []
    for q in qs:
        position = (n - 1) * q
        low = int(np.floor(position))
        high = min(low + 1, n - 1)
        value = ordered[..., low] + (ordered[..., high] - ordered[..., low]) * (position - low)
        out.append(value[..., None, :])
    return out


def scale_columns(g: np.ndarray, scale: str) -> np.ndarray:
    """Column-wise scaling of ``g`` (..., n, C) over its cases axis (-2); see the module docstring."""
    g = np.asarray(g, dtype=np.float64)
    if scale == "none":
        return g
    if scale == "standard":
        centre, spread = g.mean(axis=-2, keepdims=True), g.std(axis=-2, keepdims=True)
    elif scale == "robust":
        q25, centre, q75 = _column_quantiles(g, (0.25, 0.5, 0.75))
        spread = q75 - q25
    else:
        raise ValueError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    spread = np.where(spread == 0.0, 1.0, spread)
    return (g - centre) / spread


def batch_spectrum(g: np.ndarray, convention: Convention) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and weights of a batch ``g`` (B, n, C): two arrays (B, min(n, C)), eigenvalues decreasing.

    The eigenvalues come from ``eigvalsh`` of the smaller Gram matrix (X X^T or X^T X, divided by n - 1; both have
    the same non-zero eigenvalues). Eigenvalues at or below ``max(n, C) * 16 * eps * lambda_max`` are round-off of
    a rank-deficient matrix and are set to 0, so the number of non-zero eigenvalues is the numerical rank (at most
    n - 1 for centred data, n for uncentred).
    """
    x = scale_columns(g, convention.scale)
    n, c = x.shape[-2:]
    if n < 2:
        raise ValueError(f"need at least 2 cases for a covariance, got {n}")
    if convention.criterion == "explained-variance" or convention.center:
        x = x - x.mean(axis=-2, keepdims=True)
    xt = np.swapaxes(x, -1, -2)
    gram = x @ xt if n <= c else xt @ x
    eigen = np.linalg.eigvalsh(gram / (n - 1))[..., ::-1]
    tol = max(n, c) * 16 * np.finfo(np.float64).eps * np.maximum(eigen[..., :1], 0.0)
    eigen = np.where(eigen > tol, eigen, 0.0)
    weights = eigen if convention.criterion == "explained-variance" else eigen**2
    return eigen, weights


def spectrum(g: np.ndarray, convention: Convention) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (decreasing, length min(n, C)) of one matrix ``g`` (n, C) and the weights w_i summed by r_k."""
    eigen, weights = batch_spectrum(np.asarray(g, dtype=np.float64)[None], convention)
    return eigen[0], weights[0]


def cumulative_ratio(weights: np.ndarray) -> np.ndarray:
    """r_k for k = 1..len(weights) along the last axis; all zeros where the total weight is zero.

    The total is the cumulative sum's own last element, so r_k is exactly 1 from the rank on.
    """
    cumulative = np.cumsum(weights, axis=-1)
    total = cumulative[..., -1:]
    return np.divide(cumulative, total, out=np.zeros_like(cumulative), where=total > 0.0)


def count_components(ratio: np.ndarray, delta: float, count: str, rank: np.ndarray | int | None = None) -> np.ndarray:
    """k from the cumulative ratio(s) ``ratio`` (..., m) under the ``reach`` or ``below`` count.

    k is capped at ``rank`` (default m): components beyond the rank carry no weight and are never counted. A zero
    spectrum gives 0. Returns an int array of shape ``ratio.shape[:-1]`` (a 0-d array for one ratio).
    """
    ratio = np.asarray(ratio, dtype=np.float64)
    m = ratio.shape[-1]
    rank = np.full(ratio.shape[:-1], m) if rank is None else np.asarray(rank)
    if count == "reach":
        reached = ratio >= delta
        k = np.where(reached.any(axis=-1), reached.argmax(axis=-1) + 1, m)
    elif count == "below":
        k = np.sum(ratio <= delta, axis=-1)
    else:
        raise ValueError(f"unknown count {count!r} (choose from {', '.join(COUNTS)})")
    zero = ratio[..., -1] == 0.0 if m else np.ones(ratio.shape[:-1], bool)
    return np.where(zero, 0, np.minimum(k, rank)).astype(np.int64)


def batch_threshold(g: np.ndarray, convention: Convention) -> np.ndarray:
    """k(delta) of each matrix of a batch ``g`` (B, n, C): int array (B,), never above the matrix's rank."""
    _, weights = batch_spectrum(g, convention)
    rank = np.count_nonzero(weights > 0.0, axis=-1)
    return count_components(cumulative_ratio(weights), convention.delta, convention.count, rank)


def threshold(g: np.ndarray, convention: Convention) -> int:
    """k(delta) of one excitation matrix ``g`` (n, C) under ``convention``."""
    return int(batch_threshold(np.asarray(g, dtype=np.float64)[None], convention)[0])


def batch_ratio(g: np.ndarray, convention: Convention) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative ratios r (B, min(n, C)) and ranks (B,) of a batch ``g`` (B, n, C); r_k = 1 from the rank on."""
    _, weights = batch_spectrum(g, convention)
    return cumulative_ratio(weights), np.count_nonzero(weights > 0.0, axis=-1)


def expected_count(ratio: np.ndarray, se: np.ndarray, delta: float, count: str, rank: int, shift: float = 0.0
                   ) -> float:
    """E[k] when each r_j is N(mu_j, se_j^2) with (delta - mu_j) / se_j = (delta - ratio_j) / se_j + ``shift``.

    k = 1 + #{j : r_j < delta} (``reach``) or #{j : r_j <= delta} (``below``) for a non-decreasing r, so
    E[k] = 1 + sum_j P(r_j < delta) or sum_j P(r_j <= delta), over j = 1..rank. A zero se_j counts 0 or 1.
    """
    ratio, se = ratio[:rank], se[:rank]
    t = np.divide(delta - ratio, se, out=np.zeros_like(ratio), where=se > 0.0) + shift
    at_zero = (ratio < delta) if count == "reach" else (ratio <= delta)
    p = np.where(se > 0.0, stats.norm.cdf(t), at_zero.astype(np.float64))
    return float(np.sum(p)) + (1.0 if count == "reach" and rank > 0 else 0.0)


INTERVALS = ("jackknife", "percentile")
JACKKNIFE_GROUPS = 20  # delete-d jackknife: d = max(1, n // 20) cases per group, n // d groups
MAX_BATCH_VALUES = 20_000_000  # float64 values per batched evaluation (160 MB)


@dataclass(frozen=True)
class ThresholdInterval:
    """k and its interval at ``level``, and how it was made."""

    k: int
    low: float
    high: float
    method: str
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0))  # percentile: the (n_boot,) bootstrap k


def jackknife_interval(g: np.ndarray, convention: Convention, level: float = 0.95, seed: int = 42
                       ) -> ThresholdInterval:
    """Interval for E[k_hat_n], the mean k of n cases drawn like ``g`` (n, C); see docs/analysis.md section 2.

    1. r_j, j = 1..rank: the cumulative ratios of ``g``; k = 1 + #{j : r_j < delta} (reach);
    2. se_j: delete-d jackknife SE of each r_j, with the column scaling of all n cases held fixed (a delete-one
       jackknife of a median or IQR is inconsistent and inflates se). The cases are shuffled (``seed``) into
       G = n // d groups of d = max(1, n // 20) (the n mod d left over are always kept);
       se_j^2 = (G - 1) / G * sum_g (r_j(g) - mean_g r_j)^2;
    3. each r_j normal around its mean: E[k] = 1 + sum_j Phi((delta - mu_j) / se_j). Moving every mu_j by
       -+ t se_j (t the Student quantile of ``level`` with G - 1 degrees of freedom, as se_j is estimated from G
       groups) gives the ends 1 + sum_j Phi((delta - r_j) / se_j -+ t), widened to contain k.
    Needs n >= 3 (the jackknife keeps n - d >= 2 cases); else the interval is NaN.
    """
    g = np.asarray(g, dtype=np.float64)
    n = g.shape[0]
    ratio, rank = (a[0] for a in batch_ratio(g[None], convention))
    k = int(count_components(ratio, convention.delta, convention.count, rank))
    if n < 3:
        return ThresholdInterval(k, float("nan"), float("nan"), "jackknife")
    d = max(1, n // JACKKNIFE_GROUPS)
    groups = n // d
    order = np.random.default_rng(seed).permutation(n)
    deleted = order[: groups * d].reshape(groups, d)
    keep = np.array([np.setdiff1d(order, group) for group in deleted])
    scaled = scale_columns(g, convention.scale)  # the scaling of all n cases is kept fixed in the jackknife
    fixed = Convention(**{**convention.as_dict(), "scale": "none"})
    chunk = max(1, MAX_BATCH_VALUES // (keep.shape[1] * g.shape[1]))
    values = np.concatenate([batch_ratio(scaled[keep[i:i + chunk]], fixed)[0] for i in range(0, groups, chunk)])
    values = np.pad(values, ((0, 0), (0, ratio.size - values.shape[1])), constant_values=1.0)
    se = np.sqrt((groups - 1) / groups * np.sum((values - values.mean(axis=0)) ** 2, axis=0))
    z = float(stats.t.ppf(0.5 + level / 2.0, df=groups - 1))  # se has G - 1 degrees of freedom
    low = expected_count(ratio, se, convention.delta, convention.count, int(rank), -z)
    high = expected_count(ratio, se, convention.delta, convention.count, int(rank), z)
    return ThresholdInterval(k, min(low, k), max(high, k), "jackknife")


def percentile_interval(g: np.ndarray, convention: Convention, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 42) -> ThresholdInterval:
    """The percentile bootstrap over cases (rows of ``g`` resampled with replacement), widened to contain k.

    Kept for comparison: resampling duplicates cases, so the bootstrap k sit below k (docs/analysis.md section 2).
    """
    g = np.asarray(g, dtype=np.float64)
    n = g.shape[0]
    rows = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    chunk = max(1, MAX_BATCH_VALUES // (n * g.shape[1]))
    samples = np.concatenate([batch_threshold(g[rows[i:i + chunk]], convention) for i in range(0, n_boot, chunk)])
    alpha = (1.0 - level) / 2.0
    low = float(np.quantile(samples, alpha, method="lower"))
    high = float(np.quantile(samples, 1.0 - alpha, method="higher"))
    k = threshold(g, convention)
    return ThresholdInterval(k, min(low, k), max(high, k), "percentile", samples=samples)
