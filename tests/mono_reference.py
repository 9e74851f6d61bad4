"""The unfused Mono chain (min-max -> box sums -> log -> OLS), the reference that ``AlphaMoments``, the fused
forward and backward of :mod:`nnunet_se.modules.mono`, is tested against; built from the module's box sums and
weights, with autograd through ``torch.amin``/``torch.amax`` for the gradients."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nnunet_se.modules.common import squeeze_dtype
from nnunet_se.modules.mono import box_sums
from nnunet_se.modules.singularity import EPS, MINMAX_HIGH, MINMAX_LOW, MINMAX_MODES, check_radii, weighted_radii


def minmax_scale(x: torch.Tensor, minmax: str) -> torch.Tensor:
    """Per-channel rescaling to [1, 256] over batch and space (``"batch"``, reference) or space only
    (``"sample"``): ``1 + 255 (x - min) / clip(max - min, 1e-7, 1e9)``."""
    if minmax not in MINMAX_MODES:
        raise ValueError(f"mono: minmax must be one of {', '.join(MINMAX_MODES)}, got {minmax!r}")
    dims = (0, *range(2, x.dim())) if minmax == "batch" else tuple(range(2, x.dim()))
    low, high = torch.amin(x, dim=dims, keepdim=True), torch.amax(x, dim=dims, keepdim=True)
    scale = (MINMAX_HIGH - MINMAX_LOW) / (high - low).clamp(1e-7, 1e9)
    return MINMAX_LOW + (x - low) * scale


def singularity_exponents(
    x: torch.Tensor, radii: Sequence[int] = (2, 4, 8), minmax: str | None = "batch"
) -> torch.Tensor:
    """Local singularity exponents alpha, ``(N, C, *S) -> (N, C, *S)``, float32 (float64 for float64 input),
    computed with autocast disabled.

    alpha = OLS slope of ``ln(μ_r + 1e-7)`` on ``ln r`` where ``μ_r`` is the box sum of the min-max rescaled
    input (``minmax=None`` skips the rescaling: the "raw" alpha of the reference's step 2-3)."""
    radii = check_radii(radii)
    with torch.autocast(device_type=x.device.type, enabled=False):
        u = x.to(squeeze_dtype(x))
        if minmax is not None:
            u = minmax_scale(u, minmax)
        terms = weighted_radii(radii)
        alpha: torch.Tensor | None = None
        for (_, w), mu in zip(terms, box_sums(u, [r for r, _ in terms]), strict=True):
            term = torch.log(mu + EPS) * w
            alpha = term if alpha is None else alpha + term
        return alpha
