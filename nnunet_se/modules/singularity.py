"""Definitions shared by Mono's PyTorch and fused paths: box-counting radii, the OLS weights of the singularity
exponent ``alpha = slope of ln(mu_r + EPS) on ln r``, and the min-max range (Martins et al., EUSIPCO 2024)."""

from __future__ import annotations

import math
from collections.abc import Sequence

EPS = 1e-7  # keras.backend.epsilon(), added to every measure before the log
MINMAX_LOW, MINMAX_HIGH = 1.0, 256.0
MINMAX_MODES = ("batch", "sample")


def ols_weights(radii: Sequence[int]) -> list[float]:
    """Weights ``w_k`` with ``slope = Σ w_k ln μ_k`` of the least-squares fit of ``ln μ`` on ``ln r``."""
    logs = [math.log(r) for r in radii]
    mean = sum(logs) / len(logs)
    denom = sum((v - mean) ** 2 for v in logs)
    return [(v - mean) / denom for v in logs]


def weighted_radii(radii: Sequence[int]) -> list[tuple[int, float]]:
    """``(r, w)`` pairs with non-zero OLS weight (r=4 of {2, 4, 8} has weight 0 and is skipped)."""
    return [(r, w) for r, w in zip(radii, ols_weights(radii), strict=True) if abs(w) >= 1e-12]


def check_radii(radii: Sequence[int]) -> tuple[int, ...]:
    """At least two distinct positive integer box sizes."""
    radii = tuple(radii)
    if len(set(radii)) < 2 or any(not isinstance(r, int) or r < 1 for r in radii):
        raise ValueError(f"mono: radii must be >= 2 distinct positive ints, got {radii!r}")
    return radii
