"""Mono (monofractal recalibration) and ``singularity_exponents`` against closed forms (Martins et al.'s box-counting
alpha with zero SAME padding), a NumPy re-implementation and autograd. Tolerances are absolute (rtol=0) and stated."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mono_reference import singularity_exponents

from nnunet_se.modules import create_recalibration
from nnunet_se.modules.mono import AlphaMoments, box_sum
from nnunet_se.modules.singularity import ols_weights

REFERENCE_4X4 = [
    [1.7813, 1.5434, 1.3648, 1.7897],
    [1.1024, 1.0000, 0.9104, 1.3694],
    [0.7589, 0.6936, 0.6338, 1.1056],
    [1.1338, 1.0785, 1.0272, 1.5028],
]


def brute_alpha(x: np.ndarray, radii: tuple[int, ...], minmax: bool = True) -> np.ndarray:
    """NumPy reference: batch min-max, r^d shifted-view box sums with zero padding, full OLS over all radii."""
    if minmax:
        axes = (0, *range(2, x.ndim))
        low, high = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
        x = 1 + 255 * (x - low) / np.clip(high - low, 1e-7, 1e9)
    logs = []
    for r in radii:
        left = (r - 1) // 2
        padded = np.pad(x, [(0, 0), (0, 0)] + [(left, r - 1 - left)] * (x.ndim - 2))
        total = np.zeros_like(x)
        for offset in np.ndindex(*(r,) * (x.ndim - 2)):
            index = (slice(None), slice(None)) + tuple(
                slice(o, o + n) for o, n in zip(offset, x.shape[2:], strict=True)
            )
            total += padded[index]
        logs.append(np.log(total + 1e-7))
    lr = np.log(np.array(radii, dtype=np.float64))
    lr = lr - lr.mean()
    stacked = np.stack(logs)
    stacked = stacked - stacked.mean(0)
    return np.tensordot(lr, stacked, axes=1) / (lr**2).sum()


class TestSingularityExponents:
    def test_ols_closed_form(self) -> None:
        """O-M1: for radii {2,4,8} the slope is (ln μ8 − ln μ2)/(2 ln 2), independent of μ4."""
        w = ols_weights((2, 4, 8))
        for mu4 in (100.0, 1.0, 1e6):
            slope = sum(wk * math.log(m + 1e-7) for wk, m in zip(w, (3.0, mu4, 50.0), strict=True))
            assert abs(slope - 2.0294468) < 1e-6
        assert abs(w[1]) < 1e-15

    def test_reference_vector(self) -> None:
        alpha = singularity_exponents(torch.arange(16.0).reshape(1, 1, 4, 4))
        # 4-decimal oracle (±5e-5) against float32 alpha (< 1e-6): absolute 1e-4
        torch.testing.assert_close(alpha[0, 0], torch.tensor(REFERENCE_4X4), rtol=0, atol=1e-4)

    @pytest.mark.parametrize(
        "shape, radii",
        [
            ((2, 3, 9, 11), (2, 4, 8)),
            ((1, 2, 6, 7, 5), (2, 4, 8)),
            ((2, 2, 10, 9), (3, 5)),
            ((2, 1, 8, 8), (1, 2, 3, 6)),
        ],
    )
    def test_matches_brute_force(self, shape: tuple[int, ...], radii: tuple[int, ...]) -> None:
        """General radii (odd, even, non-powers of two) and full OLS, 2D and 3D, against the NumPy reference."""
        x = torch.randn(shape, dtype=torch.float64)
        expected = brute_alpha(x.numpy(), radii)
        # float64: measures in [1, 256 r^d] carry relative errors < r^d 2**-53, their logs < 1e-13 absolute
        np.testing.assert_allclose(singularity_exponents(x, radii).numpy(), expected, rtol=0, atol=1e-12)

    @pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
    @pytest.mark.parametrize("r", [1, 2, 3, 4, 5, 8, 13])
    @pytest.mark.parametrize("dims", [2, 3])
    def test_box_sum_is_same_padded_convolution(self, r: int, dims: int) -> None:
        x = torch.rand(2, 3, *(9,) * dims, dtype=torch.float64)
        conv = F.conv2d if dims == 2 else F.conv3d
        expected = conv(x, torch.ones(3, 1, *(r,) * dims, dtype=torch.float64), padding="same", groups=3)
        # float64 sums of n = r^d values in [0, 1): worst case n * 2**-53 * n < 6e-10 for r = 13 in 3D
        torch.testing.assert_close(box_sum(x, r), expected, rtol=0, atol=6e-10)

    @pytest.mark.parametrize(
        "shape, index, expected",
        [
            ((12, 12), (0, 0), 0.5 * math.log2(6.25)),
            ((12, 12), (0, 3), 0.5 * math.log2(10)),
            ((12, 12), (3, 3), 2.0),
            ((12, 12), (10, 10), 1.321928),
            ((12, 12), (11, 11), 2.0),
            ((8, 8), (3, 7), 2.0),
            ((8, 8), (4, 4), math.log2(3.5)),
            ((10, 10, 10), (4, 4, 4), 3.0),
            ((10, 10, 10), (0, 0, 0), 0.5 * math.log2(125 / 8)),
            ((10, 10, 10), (9, 9, 9), 3.0),
        ],
    )
    @pytest.mark.parametrize("value, batch", [(3.0, 1), (-7.5, 3), (0.0, 2)])
    def test_constant_input(self, shape, index, expected, value: float, batch: int) -> None:
        """O-M2: constant input -> u ≡ 1 -> α = d inside, separable border values from zero SAME padding."""
        alpha = singularity_exponents(torch.full((batch, 2, *shape), value))
        # float32 logs of measures <= 512 (|ln| < 6.3, rounding < 4e-7 each), weighted by ±0.72: < 1e-6
        value = alpha[(slice(None), slice(None), *index)]
        torch.testing.assert_close(value, torch.full_like(value, expected), rtol=0, atol=1e-6)

    @pytest.mark.parametrize(
        "dims, support, expected",
        [
            (2, "point", 0.0),
            (2, "line", 1.0),
            (2, "plane", 2.0),
            (3, "point", 0.0),
            (3, "line", 1.0),
            (3, "plane", 2.0),
        ],
    )
    def test_geometric_measures(self, dims: int, support: str, expected: float) -> None:
        """O-M3 (raw α, no min-max): a point -> 0, a line -> 1, a plane -> 2 at interior positions."""
        x = torch.zeros((1, 1) + (17,) * dims, dtype=torch.float64)
        centre = (0, 0) + (8,) * dims
        index = {
            "point": centre,
            "line": (0, 0) + (8,) * (dims - 1) + (slice(None),),
            "plane": (0, 0) + (8,) * (dims - 2) + (slice(None), slice(None)),
        }[support]
        x[index] = 5.0
        assert abs(singularity_exponents(x, minmax=None)[centre].item() - expected) < 1e-6

    def test_invariances(self) -> None:
        """O-M5: raw α invariant to positive scaling; full α invariant to a per-channel positive affine map
        over the whole batch, but not to a negative one."""
        x = torch.rand(2, 3, 9, 9, dtype=torch.float64) + 0.5
        raw = singularity_exponents(x, minmax=None)
        # float64; only epsilon breaks the invariance: |delta alpha| < 0.72 * 1e-7 / min(mu) with mu >= 0.5 -> 1.5e-7
        torch.testing.assert_close(singularity_exponents(3.7 * x, minmax=None), raw, rtol=0, atol=1e-6)
        a, b = torch.tensor([0.5, 2.0, 9.0]).view(1, 3, 1, 1), torch.tensor([-1.0, 3.0, 0.2]).view(1, 3, 1, 1)
        full = singularity_exponents(x)
        torch.testing.assert_close(singularity_exponents(a * x + b, minmax="batch"), full, rtol=0, atol=1e-9)
        assert not torch.allclose(singularity_exponents(-x), full, rtol=0, atol=1e-3)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_float32_under_autocast(self, dtype: torch.dtype) -> None:
        """P-MONO-4: the 3D r=8 box sum reaches 512·256 > fp16 max; α is computed in float32 regardless."""
        x = torch.rand(1, 2, 9, 9, 9) * 100
        with torch.autocast("cpu", dtype=dtype):
            alpha = singularity_exponents(x.to(dtype))
        assert alpha.dtype == torch.float32 and torch.isfinite(alpha).all()
        assert torch.equal(alpha, singularity_exponents(x.to(dtype).float()))  # the same float32 operations

    def test_sample_minmax_is_per_sample(self) -> None:
        x = torch.randn(3, 2, 8, 8)
        per_sample = singularity_exponents(x, minmax="sample")
        torch.testing.assert_close(per_sample[1:2], singularity_exponents(x[1:2], minmax="batch"), rtol=0, atol=1e-6)
        assert not torch.allclose(per_sample, singularity_exponents(x, minmax="batch"), rtol=0, atol=1e-3)


class TestMono:
    def test_batch_norm_mean_is_beta(self) -> None:
        """O-M7: in train mode the batch mean of the squeeze vector is β; with B=1 the gate is
        σ(W2 δ(W1 β + b1) + b2) whatever the input."""
        module = create_recalibration("mono", 8, 2).train()
        with torch.no_grad():
            module.bn.bias.copy_(torch.linspace(-1, 1, 8))
        squeezes = []
        module.excitation.register_forward_pre_hook(lambda m, args: squeezes.append(args[0]))
        module(torch.randn(4, 8, 10, 10))
        torch.testing.assert_close(squeezes[0].mean(0), module.bn.bias.detach(), rtol=0, atol=1e-5)  # float32
        gates = [module(x) / x for x in (torch.rand(1, 8, 10, 10) + 0.1, torch.rand(1, 8, 10, 10) * 50 + 1)]
        expected = torch.sigmoid(module.excitation(module.bn.bias.detach()[None])).view(1, 8, 1, 1)
        for gate in gates:
            torch.testing.assert_close(gate, expected.expand_as(gate), rtol=0, atol=1e-5)

    @pytest.mark.parametrize("shape", [(2, 4, 1, 1), (1, 4, 1, 1), (2, 4, 2, 2), (1, 4, 2, 2, 2)])
    @pytest.mark.parametrize("train", [True, False])
    def test_tiny_maps_are_finite(self, shape: tuple[int, ...], train: bool) -> None:
        """O-M8: 1x1 and 2x2 maps, negative inputs."""
        module = create_recalibration("mono", 4, len(shape) - 2).train(train)
        assert torch.isfinite(module(-torch.rand(shape))).all()

    @pytest.mark.parametrize("dims", [2, 3])
    def test_zero_last_layer_halves(self, dims: int) -> None:
        module = create_recalibration("mono", 8, dims)
        with torch.no_grad():
            module.excitation.fc2.weight.zero_()
            module.excitation.fc2.bias.zero_()
        x = torch.randn(2, 8, *(6,) * dims)
        assert torch.equal(module(x), 0.5 * x)

    def test_eval_gate_of_constant_input(self) -> None:
        """O-M2 on an 8x8 constant map: α(i, j) = ½ log2(f(i) f(j)) with f = [2.5, 3, 3.5, 4, 3.5, 3, 2.5, 4], so the
        squeeze is mean_i log2 f(i) = 1.6785614; eval BN at init (mean 0, var 1, eps 1e-3) divides it by √1.001;
        W1 = [[1, 0]], W2 = [[1], [-1]], zero biases -> gates [σ(a), σ(-a)] with a = 1.6777227."""
        module = create_recalibration("mono", 2, 2).eval()
        with torch.no_grad():
            module.excitation.fc1.weight.copy_(torch.tensor([[1.0, 0.0]]))
            module.excitation.fc2.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            module.excitation.fc1.bias.zero_()
            module.excitation.fc2.bias.zero_()
        f = (2.5, 3, 3.5, 4, 3.5, 3, 2.5, 4)
        a = sum(math.log2(v) for v in f) / len(f) / math.sqrt(1 + 1e-3)
        assert abs(a - 1.6777227) < 1e-6
        x = torch.full((2, 2, 8, 8), 3.0)
        expected = torch.tensor([1 / (1 + math.exp(-a)), 1 / (1 + math.exp(a))]).view(1, 2, 1, 1) * x
        torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-5)

    @pytest.mark.parametrize("dims, minmax", [(2, "batch"), (3, "batch"), (2, "sample")])
    def test_fused_train_step_matches_batch_norm(self, dims: int, minmax: str) -> None:
        """The fused moments path == nn.BatchNorm over the alpha map, averaged (outputs, running statistics,
        input gradients)."""
        module = create_recalibration("mono", 4, dims, minmax=minmax).double().train()
        reference_bn = (
            torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.01)
            if dims == 2
            else torch.nn.BatchNorm3d(4, eps=1e-3, momentum=0.01)
        )
        reference_bn = reference_bn.double().train()
        x = torch.randn(3, 4, *(7,) * dims, dtype=torch.float64, requires_grad=True)
        y = module(x)
        squeeze = reference_bn(singularity_exponents(x, minmax=minmax)).flatten(2).mean(-1)
        expected = x * torch.sigmoid(module.excitation(squeeze)).view(3, 4, *(1,) * dims)
        # float64 throughout: moments vs an explicit map differ by summation order only
        torch.testing.assert_close(y, expected, rtol=0, atol=1e-10)
        torch.testing.assert_close(module.bn.running_mean, reference_bn.running_mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(module.bn.running_var, reference_bn.running_var, rtol=0, atol=1e-12)
        weights = torch.randn_like(y)
        (g,) = torch.autograd.grad((y * weights).sum(), x)
        (g_ref,) = torch.autograd.grad((expected * weights).sum(), x)
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-9)


def tied_input(shape: tuple[int, ...], dtype: torch.dtype, ties: int) -> torch.Tensor:
    """Random input whose per-channel minimum and maximum are each held by ``ties`` positions of every sample;
    sample ``b`` has extremes ``-5 - b`` / ``5 + b``, so batch-wide extremes are ``ties``-way ties in the last
    sample and per-sample extremes are ``ties``-way ties in every sample."""
    x = torch.rand(shape, dtype=dtype, generator=torch.Generator().manual_seed(3)) * 2 - 1
    flat = x.view(shape[0], shape[1], -1)
    offset = torch.arange(shape[0], dtype=dtype).view(-1, 1)
    for k in range(ties):
        flat[:, :, 2 * k] = -5 - offset
        flat[:, :, -1 - 3 * k] = 5 + offset
    return x


class TestAlphaMomentsTies:
    """``AlphaMoments`` (fused forward, hand-written dense backward) with ties at the min-max extremes."""

    @pytest.mark.parametrize("minmax", ["batch", "sample"])
    @pytest.mark.parametrize("shape", [(3, 4, 9, 11), (2, 3, 5, 6, 7)])
    @pytest.mark.parametrize("ties", [2, 3])
    def test_matches_numpy_and_autograd(self, shape: tuple[int, ...], minmax: str, ties: int) -> None:
        """float32: m1, m2 equal the NumPy oracle's spatial moments of alpha, and the input gradient equals
        autograd through ``singularity_exponents`` (``torch.amin``/``amax`` split ties evenly), to 1e-5."""
        x = tied_input(shape, torch.float32, ties).requires_grad_()
        m1, m2 = AlphaMoments.apply(x, (2, 4, 8), minmax)
        xs = x.detach().double().numpy()
        if minmax == "batch":
            alpha = brute_alpha(xs, (2, 4, 8))
        else:
            alpha = np.concatenate([brute_alpha(xs[b : b + 1], (2, 4, 8)) for b in range(shape[0])])
        flat = alpha.reshape(shape[0], shape[1], -1)
        np.testing.assert_allclose(m1.detach().numpy(), flat.mean(-1), rtol=0, atol=1e-5)
        np.testing.assert_allclose(m2.detach().numpy(), (flat**2).mean(-1), rtol=0, atol=1e-5)
        w1, w2 = torch.randn_like(m1), torch.randn_like(m2)
        (g,) = torch.autograd.grad((m1 * w1 + m2 * w2).sum(), x)
        reference = singularity_exponents(x, minmax=minmax).flatten(2)
        (g_ref,) = torch.autograd.grad((reference.mean(-1) * w1 + (reference**2).mean(-1) * w2).sum(), x)
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-5)
        # the tied extremes do receive gradient (the min/max path is exercised)
        assert g.view(shape[0], shape[1], -1)[-1, :, 0].abs().min() > 0

    @pytest.mark.parametrize("minmax", ["batch", "sample"])
    @pytest.mark.parametrize("shape", [(2, 2, 6, 5), (2, 2, 4, 3, 5)])
    def test_gradcheck_with_two_way_ties(self, shape: tuple[int, ...], minmax: str) -> None:
        """Finite differences at a two-way tie average the two one-sided derivatives, which is exactly the
        even split (½ each) of the min/max gradient: gradcheck is an independent oracle for the tie rule."""
        x = tied_input(shape, torch.float64, 2).requires_grad_()
        assert torch.autograd.gradcheck(lambda t: AlphaMoments.apply(t, (2, 4, 8), minmax), (x,))

    def test_backward_has_no_data_dependent_ops(self) -> None:
        """The backward graph is dense: no nonzero / index_put (data-dependent shapes break torch.compile)."""
        x = tied_input((2, 3, 6, 6), torch.float32, 2).requires_grad_()
        with torch.profiler.profile() as prof:
            m1, m2 = AlphaMoments.apply(x, (2, 4, 8), "batch")
            (m1.sum() + m2.sum()).backward()
        names = {event.name for event in prof.events()}
        assert "aten::nonzero" not in names and "aten::index_put_" not in names
        assert "aten::amin" in names  # the profile did see the module's ops


class TestSavedForBackward:
    """Activation memory: the backward recomputes the rescaled map, box sums and alpha from x."""

    @pytest.mark.parametrize(
        "minmax, dtype, extremes",
        [("batch", torch.float32, 2 * 4), ("sample", torch.float32, 2 * 2 * 4), ("batch", torch.bfloat16, 2 * 4)],
    )
    def test_saves_x_and_channel_statistics(self, minmax: str, dtype: torch.dtype, extremes: int) -> None:
        """A Mono module's forward (N=2, C=4, h=2, 32x32) saves x itself (its storage, its dtype: no float32 copy
        under autocast) and float32 statistics of hand-counted size: the min and max (``extremes``: 2C for
        "batch", 2NC for "sample"), the batch moments (2C), the batch variance and its rsqrt (2C), three (N, C)
        tensors of the normalisation and the MLP input, the ReLU output (N·h), the gate (N·C), plus the gate cast
        to x's dtype for bf16 (N·C·2 bytes). The former backward also kept alpha and two box sums: 3 float32 maps."""
        n, c, h, size = 2, 4, 2, 32
        module = create_recalibration("mono", c, 2, minmax=minmax).train()
        x = torch.randn(n, c, size, size).to(dtype).requires_grad_()
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x)
        for p in module.parameters():
            saved.pop(p.untyped_storage().data_ptr(), None)
        assert saved.pop(x.untyped_storage().data_ptr()) == x.numel() * x.element_size()
        cast = 2 * n * c if dtype != torch.float32 else 0
        statistics = 4 * (extremes + 2 * c + 2 * c + 3 * n * c + n * h + n * c) + cast
        assert sum(saved.values()) <= statistics
        assert max(saved.values()) <= 4 * 2 * n * c  # nothing map-sized besides x

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_low_precision_input_is_cast_inside(self, dtype: torch.dtype) -> None:
        """x is passed (and saved) in its own dtype; the moments are float32 and the input gradient comes back in
        x's dtype, bit-identical to running the float32 path on the upcast input (the same float32 operations)."""
        x = (torch.randn(2, 3, 9, 10) * 3).to(dtype).requires_grad_()
        x32 = x.detach().float().requires_grad_()
        w1, w2 = torch.randn(2, 3), torch.randn(2, 3)
        m1, m2 = AlphaMoments.apply(x, (2, 4, 8), "batch")
        r1, r2 = AlphaMoments.apply(x32, (2, 4, 8), "batch")
        assert m1.dtype == m2.dtype == torch.float32
        assert torch.equal(m1, r1) and torch.equal(m2, r2)
        (g,) = torch.autograd.grad((m1 * w1 + m2 * w2).sum(), x)
        (g32,) = torch.autograd.grad((r1 * w1 + r2 * w2).sum(), x32)
        assert g.dtype == dtype and torch.equal(g, g32.to(dtype))
