"""Monofractal recalibration (Martins et al., EUSIPCO 2024, "SSR"): per-position singularity (Hölder)
exponents alpha from box-counting measures -> batch norm -> global average -> SE MLP -> sigmoid channel gate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from nnunet_se.modules import mono_fused
from nnunet_se.modules.common import (
    ChannelExcitation,
    ChannelGate,
    affine_normalize,
    batch_mean,
    excitation_parameter_count,
    resolve_options,
    squeeze_dtype,
    sync_group,
    update_running_stats,
)
from nnunet_se.modules.singularity import (
    EPS,
    MINMAX_HIGH,
    MINMAX_LOW,
    MINMAX_MODES,
    check_radii,
    weighted_radii,
)

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

def window_sum(
    x: torch.Tensor, dim: int, width: int, start: int, length: int, levels: dict[int, torch.Tensor]
) -> torch.Tensor:
    """Sums of ``width`` consecutive entries along ``dim`` for windows starting at ``start ... start+length-1``,
    from power-of-two partial sums ``levels[s][j] = x[j] + ... + x[j+s-1]`` (``levels[1]`` is ``x``; missing
    levels are added to the dict, so radii can share them): ``popcount(width) + log2(width)`` additions per
    position, exact in order (no cumulative-sum cancellation)."""
    result: torch.Tensor | None = None
    size, offset = 1, start
    while True:
        if width & size:
            part = levels[size].narrow(dim, offset, length)
            result = part if result is None else result + part
            offset += size
        if size * 2 > width:
            return result
        if size * 2 not in levels:
            level = levels[size]
            n = level.shape[dim] - size
            levels[size * 2] = level.narrow(dim, 0, n) + level.narrow(dim, size, n)
        size *= 2


def pad_zeros(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Zero-pad every spatial axis by ``left``/``right`` (writes the interior once and only the border zeros)."""
    spatial = x.shape[2:]
    out = x.new_empty(x.shape[:2] + tuple(n + left + right for n in spatial))
    out[(slice(None), slice(None)) + tuple(slice(left, left + n) for n in spatial)] = x
    for dim in range(2, x.dim()):
        out.narrow(dim, 0, left).zero_()
        out.narrow(dim, out.shape[dim] - right, right).zero_()
    return out


def box_sums(u: torch.Tensor, radii: Sequence[int], transpose: bool = False) -> list[torch.Tensor]:
    """Sums of ``u`` over the ``r^d`` box of every position, one tensor (shape of ``u``) per radius, with zero
    SAME padding (left ``(r-1)//2``, right ``r-1-left`` per axis, like Keras/PyTorch ``padding='same'``).
    Separable; one padded copy and the first axis's partial sums are shared by all radii. ``transpose=True``
    applies the adjoint (left and right swapped), used by the backward pass."""
    pads = [((r - 1) // 2, r - 1 - (r - 1) // 2) for r in radii]
    if transpose:
        pads = [(right, left) for left, right in pads]
    left_max, right_max = max(p[0] for p in pads), max(p[1] for p in pads)
    padded = pad_zeros(u, left_max, right_max)
    shared: dict[int, torch.Tensor] = {1: padded}
    out = []
    for r, (left, _) in zip(radii, pads, strict=True):
        box = padded
        for dim in range(2, u.dim()):
            levels = shared if dim == 2 else {1: box}
            box = window_sum(box, dim, r, left_max - left, u.shape[dim], levels)
        out.append(box)
    return out


def box_sum(u: torch.Tensor, r: int, transpose: bool = False) -> torch.Tensor:
    """``box_sums`` for one radius."""
    return box_sums(u, (r,), transpose)[0]


class AlphaMoments(torch.autograd.Function):
    """Fused min-max -> box sums -> log -> OLS chain: ``x (N, C, *S)`` (any float dtype) -> per-(sample, channel)
    spatial means of alpha and alpha², ``(N, C)`` each in ``squeeze_dtype(x)``, with a hand-written backward (no
    intermediate autograd graph). Saves only x (its own storage and dtype) and the per-channel (``"batch"``) or
    per-(sample, channel) (``"sample"``) min and max; the backward recomputes the rescaled map, the box sums and
    alpha from them. Equal to the unfused chain (``tests/mono_reference.py``) followed by ``mean`` and
    ``mean of squares``. With a process ``group`` and ``"batch"`` min-max, min and max are those of the global
    batch (all processes of the group), and so are their gradients' shares among ties."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, radii: tuple[int, ...], minmax: str, group: ProcessGroup | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        group = group if minmax == "batch" else None
        dims = (0, *range(2, x.dim())) if minmax == "batch" else tuple(range(2, x.dim()))
        xs = x.to(squeeze_dtype(x))
        low, high = torch.amin(xs, dim=dims, keepdim=True), torch.amax(xs, dim=dims, keepdim=True)
        if group is not None:
            dist.all_reduce(low, dist.ReduceOp.MIN, group=group)
            dist.all_reduce(high, dist.ReduceOp.MAX, group=group)
        terms = weighted_radii(radii)
        alpha, _ = AlphaMoments.alpha(xs, low, high, terms)
        flat = alpha.flatten(2)
        m1 = flat.mean(-1)
        m2 = torch.linalg.vecdot(flat, flat) / flat.shape[-1]
        ctx.save_for_backward(x, low, high)
        ctx.terms, ctx.dims, ctx.group, ctx.device_type = terms, dims, group, x.device.type
        return m1, m2

    @staticmethod
    def alpha(
        xs: torch.Tensor, low: torch.Tensor, high: torch.Tensor, terms: list[tuple[int, float]]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """alpha and the box measures ``μ_r + 1e-7`` (one per weighted radius) of ``xs`` rescaled with ``low``
        and ``high`` (the forward computes them, the backward recomputes them)."""
        scale = (MINMAX_HIGH - MINMAX_LOW) / (high - low).clamp(1e-7, 1e9)
        u = torch.sub(xs, low).mul_(scale).add_(MINMAX_LOW)  # not x·s + (1 − low·s): cancellation
        measures = [mu.add_(EPS) for mu in box_sums(u, [r for r, _ in terms])]
        del u
        alpha = None
        for (_, w), mu in zip(terms, measures, strict=True):
            term = torch.log(mu)
            alpha = term.mul_(w) if alpha is None else alpha.add_(term, alpha=w)
        return alpha, measures

    @staticmethod
    def backward(ctx, g1: torch.Tensor, g2: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        # float32 whatever autocast state the backward runs under (a compiled graph may trace it under the
        # forward's outer fp16 autocast, where vecdot would drop to fp16 and overflow)
        with torch.autocast(device_type=ctx.device_type, enabled=False):
            return AlphaMoments._backward(ctx, g1, g2)

    @staticmethod
    def _backward(ctx, g1: torch.Tensor, g2: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        x, low, high = ctx.saved_tensors
        xs = x.to(g1.dtype)
        alpha, measures = AlphaMoments.alpha(xs, low, high, ctx.terms)
        span = high - low
        scale = (MINMAX_HIGH - MINMAX_LOW) / span.clamp(1e-7, 1e9)
        size = math.prod(x.shape[2:])
        shape = g1.shape + (1,) * (x.dim() - 2)
        g_alpha = alpha.mul_((2 * g2 / size).view(shape)).add_((g1 / size).view(shape))
        g_u = None
        for (r, w), mu in zip(ctx.terms, measures, strict=True):
            part = box_sum(g_alpha.div(mu), r, transpose=True)
            g_u = part.mul_(w) if g_u is None else g_u.add_(part, alpha=w)
        del alpha, g_alpha, measures
        # u = 1 + scale·(x − low), scale = 255 / clip(high − low): gradients of low and high go to the
        # minimum/maximum entries, split evenly among ties (as torch.amin/amax do).
        unclamped = ((span >= 1e-7) & (span <= 1e9)).to(xs.dtype)
        dims = ctx.dims
        hits = [xs == low, xs == high]
        g_sum = g_u.sum(dim=dims, keepdim=True)
        g_dot = torch.linalg.vecdot(g_u.flatten(2), (xs - low).flatten(2)).view(shape)
        g_dot = g_dot.sum(0, keepdim=True) if 0 in dims else g_dot
        counts = [hit.sum(dim=dims, keepdim=True, dtype=xs.dtype) for hit in hits]
        if ctx.group is not None:  # global batch: the sums run over every process's share of the batch
            totals = torch.stack((g_sum, g_dot, *counts))
            dist.all_reduce(totals, group=ctx.group)
            g_sum, g_dot, *counts = totals.unbind(0)
        g_t = g_dot / span.clamp(1e-7, 1e9) * unclamped
        g_low, g_high = -scale * (g_sum - g_t), -scale * g_t
        # Dense masked form (no nonzero/index_put_: no data-dependent shapes, no host sync, one graph under
        # torch.compile): every entry equal to the extreme gets an equal share; the others get + 0 (exact).
        g_x = g_u.mul_(scale)
        for hit, count, g_extreme in zip(hits, counts, (g_low, g_high), strict=True):
            g_x = g_x.addcmul_(hit, g_extreme / count)
        return g_x.to(x.dtype), None, None, None


class Mono(ChannelGate):
    """Monofractal recalibration, ``(N, C, *S) -> (N, C, *S)``. Both flavours follow the authors' code
    (the only reference): alpha over radii (2, 4, 8), min-max over the batch, ``BatchNorm`` over alpha
    (Keras: eps 1e-3, momentum 0.99 -> 0.01), global average, MLP r=2 with biases (glorot init).
    In train mode the batch norm makes the squeeze of a batch of 1 equal to ``beta`` (input-independent);
    a batch of 1 with a 1-position map does not update the running variance (undefined)."""

    name = "mono"
    defaults = {
        flavour: {"reduction": 2, "minmax": "batch", "radii": (2, 4, 8), "fused": None}
        for flavour in ("paper", "original")
    }

    def __init__(
        self, channels: int, spatial_dims: int = 2, flavour: str = "paper", feature_size: Any = None, **options: Any
    ) -> None:
        opts = resolve_options(self.name, flavour, self.defaults, options)
        super().__init__(channels, spatial_dims, flavour)
        if opts["minmax"] not in MINMAX_MODES:
            raise ValueError(f"mono: minmax must be one of {', '.join(MINMAX_MODES)}, got {opts['minmax']!r}")
        self.radii, self.minmax = check_radii(opts["radii"]), opts["minmax"]
        self.fused = mono_fused.fused_option(opts["fused"])  # the Triton path where it runs (docs: Fused path)
        bn = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        self.bn = bn(channels, eps=1e-3, momentum=0.01)
        self.excitation = ChannelExcitation(channels, opts["reduction"], True, "glorot")

    def excite(self, x: torch.Tensor) -> torch.Tensor:
        return self.excitation(self.squeeze(x))

    def squeeze(self, x: torch.Tensor) -> torch.Tensor:
        """``mean_space(BatchNorm(alpha))``, ``(N, C, *S) -> (N, C)``, from the per-sample moments of alpha
        (equal to running ``self.bn`` on the alpha map and averaging, without materialising either); called
        by ``channel_gate`` with autocast disabled."""
        bn = self.bn
        group = sync_group(bn)
        if self.fused and (group is None or self.minmax == "sample") and mono_fused.fused_available(x, self.radii):
            m1, m2 = mono_fused.alpha_moments_fused(x, self.radii, self.minmax)
        else:
            m1, m2 = AlphaMoments.apply(x, self.radii, self.minmax, group)
        if bn.training:
            moments, samples = batch_mean(torch.stack((m1, m2), -1), group)
            mean = moments[:, 0]
            var = (moments[:, 1] - mean * mean).clamp_min(0)
            update_running_stats(bn, mean, var, samples * math.prod(x.shape[2:]), unbiased=True)
        else:
            mean, var = bn.running_mean, bn.running_var
        return affine_normalize(bn, m1, mean, var)

    @classmethod
    def parameter_count(cls, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any) -> int:
        """``2·C·h + h + C + 2C`` (MLP with biases + BN affine), ``h = max(1, C // r)``; ``C² + 3.5C`` for even C."""
        opts = resolve_options(cls.name, flavour, cls.defaults, options)
        return excitation_parameter_count(channels, opts["reduction"], True) + 2 * channels
