"""FCA against hand-computed pooling: FcaNet's orthonormal DCT-II filters (Qin et al.) and the Martins basis.

Tolerances: the filter banks are float32, so one rounding (relative 2**-24 = 6e-8) per filter entry; where the
input is float64 the pooling runs in float64 and, by Cauchy-Schwarz on unit-norm filters, differs from the exact
value by < 1e-7 times the input's norm."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnunet_se.modules import create_recalibration
from nnunet_se.modules.fca import dct_basis_1d, filters, frequencies


def _pooled(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The frequency-pooled squeeze vector (input of the excitation MLP), via a forward pre-hook."""
    seen = []
    handle = module.excitation.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    module(x)
    handle.remove()
    return seen[0]


class TestFCA:
    def test_dct_filters_orthonormal(self) -> None:
        """The 49 DCT-II filters of the 7x7 grid are orthonormal; (0, 0) is 1/7 everywhere."""
        basis = torch.stack([dct_basis_1d(7, f) for f in range(7)])
        grid = torch.einsum("ah,bw->abhw", basis, basis).reshape(49, 49)
        torch.testing.assert_close(grid @ grid.T, torch.eye(49, dtype=torch.float64), rtol=0, atol=1e-12)  # float64
        # one float32 rounding: half an ulp at 1/7 is 7.5e-9
        dc = filters("original", (7, 7))[0].double()
        torch.testing.assert_close(dc, torch.full((7, 7), 1 / 7, dtype=torch.float64), rtol=0, atol=1e-8)

    @pytest.mark.parametrize(
        "size, factor", [((7, 7), 1), ((14, 14), 2), ((56, 56), 8), ((4, 4), 0), ((6, 6), 0), ((20, 20), 2)]
    )
    def test_frequency_scaling(self, size: tuple[int, int], factor: int) -> None:
        """FcaNet 'top16' indices times size // 7 (sizes below 7 collapse to (0, 0), as the official code)."""
        u = [p[0] for p in frequencies("original", size)]
        assert u == [factor * v for v in (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2)]

    def test_basis_image(self) -> None:
        """C=16, every channel = F_(0,1): pooled vector e_1; constant c: [7c, 0, ..., 0]."""
        module = create_recalibration("fca", 16, 2, "original", feature_size=(7, 7))
        f01 = torch.outer(dct_basis_1d(7, 0), dct_basis_1d(7, 1))  # float64, unit norm
        e1 = torch.zeros(1, 16, dtype=torch.float64)
        e1[0, 1] = 1.0
        torch.testing.assert_close(_pooled(module, f01.expand(1, 16, 7, 7)), e1, rtol=0, atol=1e-7)
        const = _pooled(module, torch.full((1, 16, 7, 7), 2.0, dtype=torch.float64))  # norm 14: bound 1.4e-6
        expected = torch.zeros(1, 16, dtype=torch.float64)
        expected[0, 0] = 14.0
        torch.testing.assert_close(const, expected, rtol=0, atol=1.4e-6)

    def test_larger_input_is_pooled(self) -> None:
        """14x14 input, dct 7: pooled (0,0) response = 7 · mean; the gate equals the one of the pooled input."""
        module = create_recalibration("fca", 16, 2, "original")
        x = torch.randn(2, 16, 14, 14, dtype=torch.float64)
        # pooled map of norm <= 7 max|x| < 35: bound 35 * 1e-7
        torch.testing.assert_close(_pooled(module, x)[:, 0], 7 * x[:, 0].mean((1, 2)), rtol=0, atol=3.5e-6)
        gate = module(x) / x
        small = F.avg_pool2d(x, 2)
        # the same float32 MLP on pooled vectors that differ by < 1e-6: float32 gates in (0, 1) agree to 1e-6
        torch.testing.assert_close(gate[..., :1, :1], module(small)[..., :1, :1] / small[..., :1, :1], rtol=0,
                                   atol=1e-6)

    @pytest.mark.parametrize("dims", [2, 3])
    def test_below_seven_is_scaled_se(self, dims: int) -> None:
        """Feature size 4 (< 7): every group uses (0, 0), filter 1/√P, so FCA == SE without bias with √P·W1."""
        size = (4,) * dims
        fca = create_recalibration("fca", 32, dims, "original", feature_size=size)
        cse = create_recalibration("cse", 32, dims, "original", bias=False)
        with torch.no_grad():
            cse.excitation.fc1.weight.copy_(fca.excitation.fc1.weight * math.sqrt(4**dims))
            cse.excitation.fc2.weight.copy_(fca.excitation.fc2.weight)
        x = torch.randn(2, 32, *size, dtype=torch.float64)
        # float64, and the filter 1/sqrt(P) = 1/4 or 1/8 is exact in float32: equal up to float64 rounding
        torch.testing.assert_close(fca.double()(x), cse.double()(x), rtol=0, atol=1e-12)

    def test_paper_basis(self) -> None:
        """Martins basis on 7x7: (a, b) filter = cos(π i (a+½)/7) cos(π j (b+½)/7), groups on the 4x4 low block;
        the (0, 0) filter decays from 1.0 to ≈ 0.05 at the far corner."""
        bank = filters("paper", (7, 7))
        i = torch.arange(7, dtype=torch.float64)
        for g, (a, b) in enumerate(frequencies("paper", (7, 7))):
            assert (a, b) == (g // 4, g % 4)
            expected = torch.outer(torch.cos(math.pi * i * (a + 0.5) / 7), torch.cos(math.pi * i * (b + 0.5) / 7))
            torch.testing.assert_close(bank[g].double(), expected, rtol=0, atol=1e-7)  # one rounding of |f| <= 1
        assert bank[0, 0, 0] == 1.0 and abs(bank[0, 6, 6].item() - math.cos(3 * math.pi / 7) ** 2) < 1e-7
        module = create_recalibration("fca", 32, 2, "paper", feature_size=(7, 7))
        x = torch.randn(2, 32, 7, 7, dtype=torch.float64)
        expected = torch.einsum("nghw,ghw->ng", x.view(2, 16, 2, 7, 7).flatten(1, 2),
                                bank.double().repeat_interleave(2, 0))
        torch.testing.assert_close(_pooled(module, x), expected, rtol=0, atol=1e-12)  # the same float64 products

    def test_3d_filters_are_constant_in_depth(self) -> None:
        """3D: depth frequency 0 and the 2D set on (H, W) — DCT: depth-constant filters."""
        bank = filters("original", (3, 7, 7))
        assert bank.shape == (16, 3, 7, 7)
        assert torch.equal(bank, bank[:, :1].expand_as(bank))  # the same products at every depth
        # float32 values <= 2/7, four roundings of relative 6e-8 apart: < 1e-7
        torch.testing.assert_close(bank[:, 0] * math.sqrt(3), filters("original", (7, 7)), rtol=0, atol=1e-7)

    @pytest.mark.parametrize("flavour", ["paper", "original"])
    def test_zero_last_layer_halves(self, flavour: str) -> None:
        module = create_recalibration("fca", 16, 2, flavour, feature_size=(6, 6))
        with torch.no_grad():
            module.excitation.fc2.weight.zero_()
            if module.excitation.fc2.bias is not None:
                module.excitation.fc2.bias.zero_()
        x = torch.randn(2, 16, 6, 6)
        assert torch.equal(module(x), 0.5 * x)
