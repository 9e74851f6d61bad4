"""Fused Triton path of Mono's alpha moments (2D): ``x (N, C, H, W)`` -> per-(sample, channel) spatial means of
alpha and alpha², as one PyTorch custom op with a custom-op backward, so ``torch.compile`` sees one node.

Same numbers as :class:`nnunet_se.modules.mono.AlphaMoments` (the reference and the CPU path) up to float32
rounding; computes in float32 whatever the input dtype. Three kernels, each on tiles of the (N·C·H, W) plane with
their halo read through masked loads (zero SAME padding as ``box_sums``: left ``(r-1)//2``, right ``r-1-left``):

1. ``_measures_kernel``: min-max scale, the box sums of the radii with non-zero OLS weight, log, alpha; forward:
   per-row partial sums of alpha and alpha² (no full-size output); backward: ``s_r = g_alpha / μ_r`` per radius,
   with ``g_alpha = g1/|S| + 2 g2 alpha/|S|`` (box sums recomputed from x, nothing but x saved);
2. ``_transposed_kernel``: ``g_u = Σ_r w_r boxᵀ_r(s_r)``, writes ``g_u·scale`` and per-row partial sums of
   ``g_u``, ``g_u (x - min)`` and the counts of entries equal to the min and to the max;
3. ``_shares_kernel``: adds the min/max gradient shares (ties split evenly, as ``torch.amin/amax`` do).

Kernels run on CUDA tensors, and on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``: tests, CI).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence

import torch

from nnunet_se.modules import singularity

HAVE_TRITON = importlib.util.find_spec("triton") is not None
if HAVE_TRITON:
    import triton
    import triton.language as tl
else:  # the kernels below are only defined, never wrapped or launched
    tl = None

TILE_ELEMENTS, TILE_WIDTH = 1024, 32  # positions per tile and largest tile width on the GPU
FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SPAN_MIN, SPAN_MAX = 1e-7, 1e9
ENV_FUSED = "NNUNET_SE_MONO_FUSED"


def fused_option(value: bool | None) -> bool:
    """``Mono``'s ``fused`` option: True/False as given; None (default) reads ``NNUNET_SE_MONO_FUSED`` (``1`` on;
    ``0``, empty or unset off). Anything else raises ``ValueError`` naming the option or variable."""
    if value is None:
        env = os.environ.get(ENV_FUSED, "").strip()
        if env not in ("", "0", "1"):
            raise ValueError(f"{ENV_FUSED}={env!r} must be 0 or 1")
        return env == "1"
    if not isinstance(value, bool):
        raise ValueError(f"mono: fused must be None, True or False, got {value!r}")
    return value


def fused_available(x: torch.Tensor, radii: Sequence[int] = (2, 4, 8)) -> bool:
    """True where the fused op runs ``x``: a 4D (2D maps) float32/float16/bfloat16 tensor on CUDA with Triton, or on
    the CPU under ``TRITON_INTERPRET=1``, and radii with exactly two non-zero OLS weights (e.g. (2, 4, 8)); fewer
    than 2^30 entries (the kernels index in int32, the backward's two-map buffer included)."""
    if not HAVE_TRITON or x.dim() != 4 or x.dtype not in FUSED_DTYPES or x.numel() >= 2**30:
        return False
    if len(singularity.weighted_radii(radii)) != 2:
        return False
    return x.is_cuda or (x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


def alpha_moments_fused(x: torch.Tensor, radii: Sequence[int], minmax: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m1, m2)``, ``(N, C)`` float32 each: spatial means of alpha and alpha² of ``x (N, C, H, W)``; differentiable
    in x. Callers check :func:`fused_available` first."""
    m1, m2, _, _ = torch.ops.nnunet_se.mono_alpha_moments(x, list(singularity.check_radii(radii)), minmax)
    return m1, m2


# ---- kernels (plain functions; wrapped by ``kernels`` for the GPU or the interpreter) ------------------------------
# A tile covers BLOCK_H rows of the (N·C·H, W) plane (rows of several maps when H is small) and BLOCK_W columns;
# the box windows reach across the tile edge through masked loads (zero outside the map).
# Only builtins of triton.language (``tl.full``, ``tl.reduce`` with the library's sum combiner, not ``tl.zeros`` or
# ``tl.sum``, which are jit functions themselves): the interpreter then runs them even where ``triton`` was first
# imported without ``TRITON_INTERPRET=1``.


def _measures_kernel(
    x_ptr, low_ptr, scale_ptr, g1_ptr, g2_ptr, out_ptr, H, W, NCH, inv_size, w1, w2, eps,
    R1: tl.constexpr, L1: tl.constexpr, R2: tl.constexpr, L2: tl.constexpr,
    BACKWARD: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """Box sums μ1, μ2 (sizes R1, R2, left pads L1, L2) of ``u = 1 + scale (x - low)`` at the tile's positions,
    alpha = w1 ln(μ1 + EPS) + w2 ln(μ2 + EPS). Forward: ``out[row, tile column]`` = (Σ alpha, Σ alpha²) over the
    tile's part of the row; backward: ``out[k, row, col]`` = g_alpha / (μ_k + EPS), k = 0, 1."""
    row = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    rows, cols = row[:, None], tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    in_plane = rows < NCH
    nc = rows // H
    h = rows - nc * H
    low = tl.load(low_ptr + nc, mask=in_plane, other=0.0)
    scale = tl.load(scale_ptr + nc, mask=in_plane, other=0.0)
    LEFT: tl.constexpr = max(L1, L2)
    SPAN: tl.constexpr = LEFT + max(R1 - L1, R2 - L2)
    sum1 = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)  # Σ (x - low) over each window's positions inside the map
    sum2 = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
    for i in tl.static_range(SPAN):  # row offset i - LEFT, column offset j - LEFT
        row_ok = in_plane & (h + (i - LEFT) >= 0) & (h + (i - LEFT) < H)
        line = x_ptr + (rows + (i - LEFT)) * W
        part1 = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
        part2 = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
        for j in tl.static_range(SPAN):
            c = cols + (j - LEFT)
            inside = row_ok & (c >= 0) & (c < W)
            d = tl.where(inside, tl.load(line + c, mask=inside, other=0.0).to(tl.float32) - low, 0.0)
            if (j >= LEFT - L1) and (j < LEFT - L1 + R1):
                part1 += d
            if (j >= LEFT - L2) and (j < LEFT - L2 + R2):
                part2 += d
        if (i >= LEFT - L1) and (i < LEFT - L1 + R1):
            sum1 += part1
        if (i >= LEFT - L2) and (i < LEFT - L2 + R2):
            sum2 += part2
    # μ = Σ u = scale Σ (x - low) + (number of window positions inside the map)
    n1 = (tl.minimum(h + (R1 - 1 - L1), H - 1) - tl.maximum(h - L1, 0) + 1) * (
        tl.minimum(cols + (R1 - 1 - L1), W - 1) - tl.maximum(cols - L1, 0) + 1)
    n2 = (tl.minimum(h + (R2 - 1 - L2), H - 1) - tl.maximum(h - L2, 0) + 1) * (
        tl.minimum(cols + (R2 - 1 - L2), W - 1) - tl.maximum(cols - L2, 0) + 1)
    valid = in_plane & (cols < W)
    mu1 = tl.where(valid, sum1 * scale + n1.to(tl.float32) + eps, 1.0)  # 1 off the map: log 0, no NaN
    mu2 = tl.where(valid, sum2 * scale + n2.to(tl.float32) + eps, 1.0)
    alpha = tl.log(mu1) * w1 + tl.log(mu2) * w2
    if BACKWARD:
        g1 = tl.load(g1_ptr + nc, mask=in_plane, other=0.0)
        g2 = tl.load(g2_ptr + nc, mask=in_plane, other=0.0)
        g_alpha = g1 * inv_size + alpha * (2.0 * g2 * inv_size)
        tl.store(out_ptr + rows * W + cols, g_alpha / mu1, mask=valid)
        tl.store(out_ptr + (rows + NCH) * W + cols, g_alpha / mu2, mask=valid)
    else:
        out = out_ptr + (row * tl.num_programs(1) + tl.program_id(1)) * 2
        tl.store(out, tl.reduce(alpha, 1, tl.standard._sum_combine), mask=row < NCH)
        tl.store(out + 1, tl.reduce(alpha * alpha, 1, tl.standard._sum_combine), mask=row < NCH)


def _transposed_kernel(
    s_ptr, x_ptr, low_ptr, high_ptr, scale_ptr, gx_ptr, part_ptr, H, W, NCH, w1, w2,
    R1: tl.constexpr, L1: tl.constexpr, R2: tl.constexpr, L2: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """``g_u = w1 boxᵀ1(s1) + w2 boxᵀ2(s2)`` (the adjoint box: offsets -(R-1-L) .. L); writes ``gx = g_u·scale`` and
    ``part[row, tile column]`` = (Σ g_u, Σ g_u (x - low), #(x == low), #(x == high)) over the tile's part of the row."""
    row = tl.program_id(0) * BLOCK_H + tl.arange(0, BLOCK_H)
    rows, cols = row[:, None], tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    in_plane = rows < NCH
    nc = rows // H
    h = rows - nc * H
    T1: tl.constexpr = R1 - 1 - L1  # transposed: the right pads become the left pads
    T2: tl.constexpr = R2 - 1 - L2
    LEFT: tl.constexpr = max(T1, T2)
    SPAN: tl.constexpr = LEFT + max(L1, L2) + 1
    g1 = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
    g2 = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
    for i in tl.static_range(SPAN):
        row_ok = in_plane & (h + (i - LEFT) >= 0) & (h + (i - LEFT) < H)
        line = (rows + (i - LEFT)) * W
        part1 = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
        part2 = tl.full((BLOCK_H, BLOCK_W), 0.0, tl.float32)
        for j in tl.static_range(SPAN):
            c = cols + (j - LEFT)
            inside = row_ok & (c >= 0) & (c < W)
            if (j >= LEFT - T1) and (j < LEFT - T1 + R1):
                part1 += tl.load(s_ptr + line + c, mask=inside, other=0.0)
            if (j >= LEFT - T2) and (j < LEFT - T2 + R2):
                part2 += tl.load(s_ptr + NCH * W + line + c, mask=inside, other=0.0)
        if (i >= LEFT - T1) and (i < LEFT - T1 + R1):
            g1 += part1
        if (i >= LEFT - T2) and (i < LEFT - T2 + R2):
            g2 += part2
    valid = in_plane & (cols < W)
    g_u = tl.where(valid, g1 * w1 + g2 * w2, 0.0)
    at = rows * W + cols
    x = tl.load(x_ptr + at, mask=valid, other=0.0).to(tl.float32)
    low = tl.load(low_ptr + nc, mask=in_plane, other=0.0)
    high = tl.load(high_ptr + nc, mask=in_plane, other=0.0)
    tl.store(gx_ptr + at, g_u * tl.load(scale_ptr + nc, mask=in_plane, other=0.0), mask=valid)
    out = part_ptr + (row * tl.num_programs(1) + tl.program_id(1)) * 4
    tl.store(out, tl.reduce(g_u, 1, tl.standard._sum_combine), mask=row < NCH)
    tl.store(out + 1, tl.reduce(g_u * (x - low), 1, tl.standard._sum_combine), mask=row < NCH)
    tl.store(out + 2, tl.reduce(tl.where(valid & (x == low), 1.0, 0.0), 1, tl.standard._sum_combine), mask=row < NCH)
    tl.store(out + 3, tl.reduce(tl.where(valid & (x == high), 1.0, 0.0), 1, tl.standard._sum_combine), mask=row < NCH)


def _shares_kernel(gx_ptr, x_ptr, low_ptr, high_ptr, share_low_ptr, share_high_ptr, size, total, BLOCK: tl.constexpr):
    """``gx += [x == low]·share_low + [x == high]·share_high`` (per-map values; maps of ``size`` entries)."""
    at = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = at < total
    nc = at // size
    x = tl.load(x_ptr + at, mask=valid, other=0.0).to(tl.float32)
    g = tl.load(gx_ptr + at, mask=valid, other=0.0)
    g = g + tl.where(x == tl.load(low_ptr + nc, mask=valid, other=0.0),
                     tl.load(share_low_ptr + nc, mask=valid, other=0.0), 0.0)
    g = g + tl.where(x == tl.load(high_ptr + nc, mask=valid, other=0.0),
                     tl.load(share_high_ptr + nc, mask=valid, other=0.0), 0.0)
    tl.store(gx_ptr + at, g, mask=valid)


@functools.cache
def kernels(interpret: bool) -> tuple:
    """The three kernels, compiled for the GPU or run by Triton's interpreter (CPU tensors), whatever
    ``TRITON_INTERPRET`` said when ``triton.jit`` would have looked."""
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction as wrap
    else:
        from triton.runtime.jit import JITFunction as wrap
    return tuple(wrap(k) for k in (_measures_kernel, _transposed_kernel, _shares_kernel))


# ---- custom ops -----------------------------------------------------------------------------------------------------


def _extremes(x: torch.Tensor, minmax: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, channel) float32 min and max, ``(N·C,)`` each (``"batch"``: one value per channel over the batch,
    repeated)."""
    if minmax not in singularity.MINMAX_MODES:
        raise ValueError(f"mono: minmax must be one of {', '.join(singularity.MINMAX_MODES)}, got {minmax!r}")
    dims = (0, 2, 3) if minmax == "batch" else (2, 3)
    n, c = x.shape[:2]
    low = torch.amin(x, dim=dims, keepdim=True).float().expand(n, c, 1, 1).reshape(n * c)
    high = torch.amax(x, dim=dims, keepdim=True).float().expand(n, c, 1, 1).reshape(n * c)
    return low, high


def _span_scale(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``high - low`` and the min-max scale ``255 / clip(high - low, 1e-7, 1e9)``."""
    span = high - low
    return span, (singularity.MINMAX_HIGH - singularity.MINMAX_LOW) / span.clamp(SPAN_MIN, SPAN_MAX)


def _layout(x: torch.Tensor, radii: Sequence[int]) -> dict:
    """Tile grid over the (N·C·H, W) plane, its scalar arguments and the constexpr radius arguments shared by the
    two box kernels. A tile has ``TILE_ELEMENTS`` positions on the GPU; the interpreter, whose cost is per
    operation rather than per element, takes up to 64 times more in one program."""
    (r1, w1), (r2, w2) = singularity.weighted_radii(radii)
    n, c, h, w = x.shape
    elements = TILE_ELEMENTS * (1 if x.is_cuda else 64)
    block_w = min(triton.next_power_of_2(w), TILE_WIDTH * (1 if x.is_cuda else 8))
    block_h = min(triton.next_power_of_2(n * c * h), elements // block_w)
    return {
        "grid": (triton.cdiv(n * c * h, block_h), triton.cdiv(w, block_w)),
        "args": (h, w, n * c * h),
        "weights": (w1, w2),
        "const": {"R1": r1, "L1": (r1 - 1) // 2, "R2": r2, "L2": (r2 - 1) // 2, "BLOCK_H": block_h,
                  "BLOCK_W": block_w},
    }


def _per_map(partial: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-row, per-tile-column partial sums ``(N·C·H, tile columns, K)`` -> per-map sums ``(N, C, K)``."""
    n, c, h = x.shape[:3]
    return partial.view(n, c, h * partial.shape[1], partial.shape[2]).sum(2)


@torch.library.custom_op("nnunet_se::mono_alpha_moments", mutates_args=())
def mono_alpha_moments(
    x: torch.Tensor, radii: list[int], minmax: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(m1, m2, low, high)``: moments of alpha ``(N, C)`` and the min-max statistics ``(N, C)`` (float32) that the
    backward uses."""
    x = x.contiguous()
    low, high = _extremes(x, minmax)
    _, scale = _span_scale(low, high)
    layout = _layout(x, radii)
    measures = kernels(x.device.type == "cpu")[0]
    partial = x.new_empty((x.shape[0] * x.shape[1] * x.shape[2], layout["grid"][1], 2), dtype=torch.float32)
    measures[layout["grid"]](
        x, low, scale, low, low, partial, *layout["args"], 1.0, *layout["weights"], singularity.EPS, BACKWARD=False,
        **layout["const"],
    )
    m1, m2 = _per_map(partial, x).div_(x.shape[2] * x.shape[3]).unbind(-1)
    return m1.clone(), m2.clone(), low.view(x.shape[:2]), high.view(x.shape[:2])


@mono_alpha_moments.register_fake
def _(x: torch.Tensor, radii: list[int], minmax: str) -> tuple[torch.Tensor, ...]:
    return tuple(x.new_empty(x.shape[:2], dtype=torch.float32) for _ in range(4))


@torch.library.custom_op("nnunet_se::mono_alpha_moments_backward", mutates_args=())
def mono_alpha_moments_backward(
    x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, g1: torch.Tensor, g2: torch.Tensor, radii: list[int],
    minmax: str,
) -> torch.Tensor:
    """Input gradient of :func:`mono_alpha_moments` for the moment gradients ``g1, g2`` ``(N, C)``, in x's dtype."""
    x = x.contiguous()
    n, c, h, w = x.shape
    low, high = low.reshape(-1).float().contiguous(), high.reshape(-1).float().contiguous()
    span, scale = _span_scale(low, high)
    layout = _layout(x, radii)
    measures, transposed, shares = kernels(x.device.type == "cpu")
    s = x.new_empty((2, n * c * h, w), dtype=torch.float32)  # g_alpha / μ_r per radius: transient
    g1, g2 = g1.reshape(-1).float().contiguous(), g2.reshape(-1).float().contiguous()
    measures[layout["grid"]](
        x, low, scale, g1, g2, s, *layout["args"], 1.0 / (h * w), *layout["weights"], singularity.EPS,
        BACKWARD=True, **layout["const"]
    )
    g_x = torch.empty_like(x, dtype=torch.float32)
    partial = x.new_empty((n * c * h, layout["grid"][1], 4), dtype=torch.float32)
    transposed[layout["grid"]](s, x, low, high, scale, g_x, partial, *layout["args"], *layout["weights"],
                               **layout["const"])
    del s
    # gradients of low and high as in AlphaMoments._backward (u = 1 + scale (x - low), scale = 255 / clip(span)),
    # then an equal share to every entry equal to the extreme
    sums = _per_map(partial, x)
    if minmax == "batch":
        sums = sums.sum(0, keepdim=True).expand(n, c, 4)
    g_sum, g_dot, n_low, n_high = sums.reshape(n * c, 4).unbind(-1)
    unclamped = ((span >= SPAN_MIN) & (span <= SPAN_MAX)).float()
    g_t = g_dot / span.clamp(SPAN_MIN, SPAN_MAX) * unclamped
    share_low = (-scale * (g_sum - g_t) / n_low).contiguous()
    share_high = (-scale * g_t / n_high).contiguous()
    block = min(triton.next_power_of_2(x.numel()), TILE_ELEMENTS * (1 if x.is_cuda else 64))
    shares[(triton.cdiv(x.numel(), block),)](g_x, x, low, high, share_low, share_high, h * w, x.numel(), BLOCK=block)
    return g_x.to(x.dtype)


@mono_alpha_moments_backward.register_fake
def _(x, low, high, g1, g2, radii, minmax) -> torch.Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs: tuple, output: tuple) -> None:
    x, radii, minmax = inputs
    ctx.save_for_backward(x, output[2], output[3])
    ctx.radii, ctx.minmax = radii, minmax
    ctx.mark_non_differentiable(output[2], output[3])


def _backward(ctx, g1: torch.Tensor | None, g2: torch.Tensor | None, *_: torch.Tensor) -> tuple:
    x, low, high = ctx.saved_tensors
    g1 = torch.zeros_like(low) if g1 is None else g1
    g2 = torch.zeros_like(low) if g2 is None else g2
    return mono_alpha_moments_backward(x, low, high, g1, g2, ctx.radii, ctx.minmax), None, None


mono_alpha_moments.register_autograd(_backward, setup_context=_setup_context)
