"""Boundaries of ``nnunet_se/modules/mono.py`` that the mutation sample (benchmarks/results/mutation_holdout.md)
found unpinned: the adjoint box sums of odd radii (the backward pass), the hand-written backward at both ends of the
min-max span clamp, and which squeeze path runs under a process group."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mono_reference import singularity_exponents

from nnunet_se.modules import create_recalibration, mono, mono_fused
from nnunet_se.modules.mono import AlphaMoments, box_sum


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("r", [2, 3, 4, 5])
@pytest.mark.parametrize("dims", [2, 3])
def test_transposed_box_sum_is_the_adjoint(r: int, dims: int) -> None:
    """``transpose=True`` must be the adjoint B^T of the SAME-padded box sum B (the backward pass relies on it):
    <B a, b> = <a, B^T b> for all a, b, and B^T b is the input gradient (autograd) of PyTorch's own all-ones
    ``padding='same'`` convolution with output gradient b. For odd r the SAME window is centred, so B^T = B. A
    wrong adjoint gives wrong gradients (silently, the forward is unchanged) for odd radii such as (3, 5)."""
    gen = torch.Generator().manual_seed(r + 10 * dims)
    a = torch.rand(2, 3, *(7,) * dims, dtype=torch.float64, generator=gen)
    b = torch.rand(2, 3, *(7,) * dims, dtype=torch.float64, generator=gen)
    forward, adjoint = box_sum(a, r), box_sum(b, r, transpose=True)
    torch.testing.assert_close((forward * b).sum(), (a * adjoint).sum(), rtol=1e-12, atol=0)
    # the oracle: autograd of PyTorch's own 'same' convolution gives B^T b as the input gradient
    conv = F.conv2d if dims == 2 else F.conv3d
    weight = torch.ones(3, 1, *(r,) * dims, dtype=torch.float64)
    a_ = a.clone().requires_grad_()
    out = conv(a_, weight, padding="same", groups=3)
    (expected,) = torch.autograd.grad(out, a_, grad_outputs=b)
    torch.testing.assert_close(adjoint, expected, rtol=0, atol=1e-12)
    if r % 2:
        torch.testing.assert_close(adjoint, box_sum(b, r), rtol=0, atol=1e-12)


def _spanning(span: float) -> torch.Tensor:
    """(2, 2, 6, 6) float64 whose every (sample, channel) map has minimum exactly 0 and maximum exactly ``span``."""
    t = torch.rand(2, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t[..., 0, 0], t[..., -1, -1] = 0.0, 1.0
    return (t * span).requires_grad_()


def _gradients(span: float, minmax: str, reference: bool) -> torch.Tensor:
    """d/dx of sum(w1 m1 + w2 m2) (m1, m2: spatial means of alpha and alpha^2) for ``_spanning(span)``: through the
    hand-written backward of ``AlphaMoments``, or (``reference``) autograd through the unfused chain."""
    x = _spanning(span)
    w1 = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64).view(2, 2)
    w2 = torch.linspace(0.5, -0.5, 4, dtype=torch.float64).view(2, 2)
    if reference:
        alpha = singularity_exponents(x, minmax=minmax).flatten(2)
        m1, m2 = alpha.mean(-1), (alpha**2).mean(-1)
    else:
        m1, m2 = AlphaMoments.apply(x, (2, 4, 8), minmax)
    (g,) = torch.autograd.grad((m1 * w1 + m2 * w2).sum(), x)
    return g


def _close(g: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    torch.testing.assert_close(g, expected, rtol=rtol, atol=rtol * 1e-3 * expected.abs().max().item())


@pytest.mark.parametrize("minmax", ["batch", "sample"])
@pytest.mark.parametrize("span", [5e-8, 5e-7, 1.0, 2e9])
def test_backward_matches_autograd_off_the_span_bounds(span: float, minmax: str) -> None:
    """The rescaling 1 + 254 (x - min) / clip(max - min, 1e-7, 1e9): away from the two bounds the hand-written
    backward equals autograd through the unfused chain (mono_reference): 5e-8 and 2e9 are clamped (no gradient
    through the span), 5e-7 and 1 are inside (gradient through 1 / span). Clamping the backward's span at 1e-6
    instead would halve the gradients of a map spanning 5e-7 (a near-constant feature map)."""
    _close(_gradients(span, minmax, False), _gradients(span, minmax, True), 1e-7)


@pytest.mark.parametrize("minmax", ["batch", "sample"])
@pytest.mark.parametrize(("bound", "inside"), [(1e-7, 1e-7 * (1 + 1e-9)), (1e9, 1e9 * (1 - 1e-9))])
def test_backward_at_a_span_bound_is_the_limit_from_inside(bound: float, inside: float, minmax: str) -> None:
    """Exactly at a bound (span == 1e-7 or 1e9) the clip is not differentiable; the backward takes the gradient
    of the unclamped side, the limit from inside (TensorFlow's ``clip_by_value`` gradient, which the authors'
    Keras code uses, passes the gradient at x == min or max; ``torch.clamp``'s own autograd zeroes it there, so
    the oracle is autograd a relative 1e-9 inside the bound, where the gradient is continuous). Dropping the
    bound from the unclamped side changes the gradient of the extremes by ~3 % at 1e9."""
    _close(_gradients(bound, minmax, False), _gradients(inside, minmax, True), 1e-6)


class _Route(Exception):
    pass


@pytest.mark.parametrize(("group", "minmax", "route"), [
    (None, "batch", "fused"),
    (None, "sample", "fused"),
    ("group", "sample", "fused"),
    ("group", "batch", "unfused"),
])
def test_fused_path_only_where_it_sees_the_whole_batch(group: str | None, minmax: str, route: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused kernel reduces min and max over its own process's tensor. Under a process group (DDP with
    SyncBatchNorm), ``batch`` min-max must be that of the global batch, which only the unfused ``AlphaMoments``
    all-reduces: the fused path is taken without a group, or with a group for per-sample min-max only. Were the
    fused path taken there, each GPU would rescale with its own extremes: a result that changes with the number
    of GPUs."""
    sentinel = object()
    monkeypatch.setattr(mono, "sync_group", lambda bn: sentinel if group else None)
    monkeypatch.setattr(mono_fused, "fused_available", lambda x, radii=(2, 4, 8): True)

    def fused(*args: object) -> None:
        raise _Route("fused")

    def unfused(x: torch.Tensor, radii: tuple[int, ...], mode: str, process_group: object) -> None:
        assert process_group is (sentinel if group else None)
        raise _Route("unfused")

    monkeypatch.setattr(mono_fused, "alpha_moments_fused", fused)
    monkeypatch.setattr(AlphaMoments, "apply", unfused)
    module = create_recalibration("mono", 4, 2, "paper", minmax=minmax, fused=True)
    with pytest.raises(_Route) as taken:
        module.train()(torch.rand(2, 4, 8, 8))
    assert str(taken.value) == route
