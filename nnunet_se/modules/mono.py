"""Monofractal recalibration (Martins et al., EUSIPCO 2024, "SSR"): per-position singularity (Hölder)
exponents alpha from box-counting measures -> batch norm -> global average -> SE MLP -> sigmoid channel gate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_se.modules.common import (
    ChannelExcitation,
    ChannelGate,
    batch_norm_any_batch,
    excitation_parameter_count,
    resolve_options,
)

EPS = 1e-7  # keras.backend.epsilon(), added to every measure before the log
MINMAX_LOW, MINMAX_HIGH = 1.0, 256.0
MINMAX_MODES = ("batch", "sample")


def ols_weights(radii: Sequence[int]) -> list[float]:
    """Weights ``w_k`` with ``slope = Σ w_k ln μ_k`` of the least-squares fit of ``ln μ`` on ``ln r``."""
    logs = [math.log(r) for r in radii]
    mean = sum(logs) / len(logs)
    denom = sum((v - mean) ** 2 for v in logs)
    return [(v - mean) / denom for v in logs]


def check_radii(radii: Sequence[int]) -> tuple[int, ...]:
    """At least two distinct positive integer box sizes."""
    radii = tuple(radii)
    if len(set(radii)) < 2 or any(not isinstance(r, int) or r < 1 for r in radii):
        raise ValueError(f"mono: radii must be >= 2 distinct positive ints, got {radii!r}")
    return radii


def minmax_scale(x: torch.Tensor, minmax: str) -> torch.Tensor:
    """Per-channel rescaling to [1, 256] over batch and space (``"batch"``, reference) or space only
    (``"sample"``): ``1 + 255 (x - min) / clip(max - min, 1e-7, 1e9)``."""
    if minmax not in MINMAX_MODES:
        raise ValueError(f"mono: minmax must be one of {', '.join(MINMAX_MODES)}, got {minmax!r}")
    dims = (0, *range(2, x.dim())) if minmax == "batch" else tuple(range(2, x.dim()))
    low, high = torch.amin(x, dim=dims, keepdim=True), torch.amax(x, dim=dims, keepdim=True)
    scale = (MINMAX_HIGH - MINMAX_LOW) / (high - low).clamp(1e-7, 1e9)
    return MINMAX_LOW + (x - low) * scale


def window_sum(x: torch.Tensor, dim: int, width: int) -> torch.Tensor:
    """Sums of ``width`` consecutive entries along ``dim`` (length ``L - width + 1``), built from
    power-of-two partial sums: ``popcount(width) + log2(width)`` additions per position, exact in order."""
    n_out = x.shape[dim] - width + 1
    result: torch.Tensor | None = None
    level, size, offset = x, 1, 0
    while True:
        if width & size:
            part = level.narrow(dim, offset, n_out)
            result = part if result is None else result + part
            offset += size
        if size * 2 > width:
            return result
        length = level.shape[dim] - size
        level = level.narrow(dim, 0, length) + level.narrow(dim, size, length)
        size *= 2


def box_sum(u: torch.Tensor, r: int) -> torch.Tensor:
    """Sum of ``u`` over the ``r^d`` box of every position with zero SAME padding (left ``(r-1)//2``,
    right ``r-1-left`` per axis, like Keras/PyTorch ``padding='same'``); separable, same shape as ``u``."""
    left = (r - 1) // 2
    spatial = u.dim() - 2
    out = F.pad(u, (left, r - 1 - left) * spatial)
    for dim in range(2, u.dim()):
        out = window_sum(out, dim, r)
    return out


def singularity_exponents(
    x: torch.Tensor, radii: Sequence[int] = (2, 4, 8), minmax: str | None = "batch"
) -> torch.Tensor:
    """Local singularity exponents alpha, ``(N, C, *S) -> (N, C, *S)``, float32 (float64 for float64 input),
    computed with autocast disabled.

    alpha = OLS slope of ``ln(μ_r + 1e-7)`` on ``ln r`` where ``μ_r`` is the box sum of the min-max rescaled
    input (``minmax=None`` skips the rescaling: the "raw" alpha of the reference's step 2-3)."""
    radii = check_radii(radii)
    with torch.autocast(device_type=x.device.type, enabled=False):
        u = x.to(torch.promote_types(x.dtype, torch.float32))
        if minmax is not None:
            u = minmax_scale(u, minmax)
        alpha: torch.Tensor | None = None
        for r, w in zip(radii, ols_weights(radii), strict=True):
            if abs(w) < 1e-12:  # e.g. r=4 of {2, 4, 8}: zero weight in the OLS slope
                continue
            term = torch.log(box_sum(u, r) + EPS) * w
            alpha = term if alpha is None else alpha + term
        return alpha


class Mono(ChannelGate):
    """Monofractal recalibration, ``(N, C, *S) -> (N, C, *S)``. Both flavours follow the authors' code
    (the only reference): alpha over radii (2, 4, 8), min-max over the batch, ``BatchNorm`` over alpha
    (Keras: eps 1e-3, momentum 0.99 -> 0.01), global average, MLP r=2 with biases (glorot init).
    In train mode the batch norm makes the squeeze of a batch of 1 equal to ``beta`` (input-independent)."""

    name = "mono"
    defaults = {
        flavour: {"reduction": 2, "minmax": "batch", "radii": (2, 4, 8)} for flavour in ("paper", "original")
    }

    def __init__(
        self, channels: int, spatial_dims: int = 2, flavour: str = "paper", feature_size: Any = None, **options: Any
    ) -> None:
        opts = resolve_options(self.name, flavour, self.defaults, options)
        super().__init__(channels, spatial_dims, flavour)
        if opts["minmax"] not in MINMAX_MODES:
            raise ValueError(f"mono: minmax must be one of {', '.join(MINMAX_MODES)}, got {opts['minmax']!r}")
        self.radii, self.minmax = check_radii(opts["radii"]), opts["minmax"]
        bn = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        self.bn = bn(channels, eps=1e-3, momentum=0.01)
        self.excitation = ChannelExcitation(channels, opts["reduction"], True, "glorot")

    def excite(self, x: torch.Tensor) -> torch.Tensor:
        alpha = singularity_exponents(x, self.radii, self.minmax)
        return self.excitation(batch_norm_any_batch(self.bn, alpha).flatten(2).mean(-1))

    @classmethod
    def parameter_count(cls, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any) -> int:
        """``2·C·h + h + C + 2C`` (MLP with biases + BN affine), ``h = max(1, C // r)``; ``C² + 3.5C`` for even C."""
        opts = resolve_options(cls.name, flavour, cls.defaults, options)
        return excitation_parameter_count(channels, opts["reduction"], True) + 2 * channels
