"""cSE, sSE and scSE against hand-computed gates (Hu et al.; Roy, Navab, Wachinger)."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_se.modules import create_recalibration

FLAVOURS = ("paper", "original")
# float32 gates and products of inputs |x| <= 5: a few roundings of relative 2**-24 (6e-8) each stay below 1e-6
F32_ATOL = 1e-6


class TestCSE:
    @pytest.mark.parametrize("flavour", FLAVOURS)
    def test_numeric_gate(self, flavour: str) -> None:
        """C=2, W1=[[1,1]], W2=[[1],[-1]], zero biases, channel means [1, 3] -> gate [σ(4), σ(-4)]."""
        module = create_recalibration("cse", 2, 2, flavour)
        with torch.no_grad():
            module.excitation.fc1.weight.copy_(torch.tensor([[1.0, 1.0]]))
            module.excitation.fc2.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            module.excitation.fc1.bias.zero_()
            module.excitation.fc2.bias.zero_()
        x = torch.stack([torch.full((4, 4), 1.0), torch.full((4, 4), 3.0)])[None]
        y = module(x)
        expected = torch.tensor([1 / (1 + math.exp(-4)), 1 / (1 + math.exp(4))]).view(1, 2, 1, 1) * x
        torch.testing.assert_close(y, expected, rtol=0, atol=F32_ATOL)

    @pytest.mark.parametrize("flavour", FLAVOURS)
    def test_init(self, flavour: str) -> None:
        """paper (Keras): zero biases, so channel means of 0 give the gate σ(0) = 0.5, and glorot-uniform weights
        with variance 2 / (fan_in + fan_out) = 2 / (64 + 32) for C=64, r=2 (PyTorch's Linear init: 1 / (3 · 64),
        four times less); original (PyTorch): uniform nonzero biases move the same gate away from 0.5."""
        torch.manual_seed(0)
        module = create_recalibration("cse", 64, 2, flavour)
        seen = []
        module.gate.register_forward_hook(lambda m, args, out: seen.append(out))
        x = torch.randn(2, 64, 6, 6)
        module(x - x.mean((2, 3), keepdim=True))
        if flavour == "paper":
            torch.testing.assert_close(seen[0], torch.full_like(seen[0], 0.5), rtol=0, atol=1e-6)
            variance = module.excitation.fc1.weight.var().item()
            # 2048 uniform draws (kurtosis 1.8): the sample variance's relative sd is sqrt(0.8 / 2048) = 2 %; five sds
            # (PyTorch's init is 4x smaller)
            assert abs(variance / (2 / 96) - 1) < 5 * math.sqrt(0.8 / 2048)
        else:
            assert (seen[0] - 0.5).abs().max() > 1e-3

    @pytest.mark.parametrize("flavour, dims", [(f, d) for f in FLAVOURS for d in (2, 3)])
    def test_zero_last_layer_halves(self, flavour: str, dims: int) -> None:
        """O-4: W2 = 0, b2 = 0 -> y = 0.5 x; O-5: large b2 -> y -> x."""
        module = create_recalibration("cse", 8, dims, flavour)
        x = torch.randn(2, 8, *(4,) * dims)
        with torch.no_grad():
            module.excitation.fc2.weight.zero_()
            module.excitation.fc2.bias.zero_()
            assert torch.equal(module(x), 0.5 * x)
            module.excitation.fc2.bias.fill_(30.0)  # sigmoid(30) = 1 - 9e-14 rounds to 1 in float32
            assert torch.equal(module(x), x)


class TestSSE:
    @pytest.mark.parametrize("flavour, dims", [(f, d) for f in FLAVOURS for d in (2, 3)])
    def test_gate_constant_over_channels(self, flavour: str, dims: int) -> None:
        module = create_recalibration("sse", 6, dims, flavour)
        x = torch.rand(2, 6, *(5,) * dims) + 0.1
        ratio = module(x) / x
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=0, atol=F32_ATOL)
        with torch.no_grad():
            module.conv.weight.zero_()
            module.conv.bias.zero_()
        assert torch.equal(module(x), 0.5 * x)

    def test_spatial_gate_numeric(self) -> None:
        """C=2, w = [1, -1], b = 0.5: position (3, 1) -> logit 2.5 -> σ = 0.924142; (0, 2) -> -1.5 -> 0.182426."""
        module = create_recalibration("sse", 2, 2)
        with torch.no_grad():
            module.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(1, 2, 1, 1))
            module.conv.bias.fill_(0.5)
        x = torch.tensor([[3.0, 0.0], [1.0, 2.0]]).view(1, 2, 1, 2)
        expected = x * torch.tensor([0.924142, 0.182426]).view(1, 1, 1, 2)
        torch.testing.assert_close(module(x), expected, rtol=0, atol=1e-6)


class TestSCSE:
    @pytest.mark.parametrize("flavour, dims", [(f, d) for f in FLAVOURS for d in (2, 3)])
    def test_max_out(self, flavour: str, dims: int) -> None:
        """cSE gate 0.5, sSE bias +10 -> max picks ~x where x > 0 and 0.5 x where x < 0."""
        module = create_recalibration("scse", 8, dims, flavour)
        with torch.no_grad():
            module.excitation.fc2.weight.zero_()
            module.excitation.fc2.bias.zero_()
            module.conv.weight.zero_()
            module.conv.bias.fill_(10.0)
        x = torch.randn(2, 8, *(4,) * dims)
        expected = torch.where(x > 0, x * torch.sigmoid(torch.tensor(10.0)), 0.5 * x)
        torch.testing.assert_close(module(x), expected, rtol=0, atol=F32_ATOL)

    def test_add_combination(self) -> None:
        module = create_recalibration("scse", 8, 2, combine="add")
        with torch.no_grad():
            module.excitation.fc2.weight.zero_()
            module.excitation.fc2.bias.zero_()
            module.conv.weight.zero_()
            module.conv.bias.zero_()
        x = torch.randn(2, 8, 4, 4)
        assert torch.equal(module(x), x)  # 0.5 x + 0.5 x: exact in binary floating point

    def test_parts_match_cse_and_sse(self) -> None:
        """scSE = max(cSE(x), sSE(x)) with the same weights."""
        scse = create_recalibration("scse", 8, 2)
        cse, sse = create_recalibration("cse", 8, 2), create_recalibration("sse", 8, 2)
        cse.excitation.load_state_dict(scse.excitation.state_dict())
        sse.conv.load_state_dict(scse.conv.state_dict())
        x = torch.randn(3, 8, 5, 5)
        assert torch.equal(scse(x), torch.maximum(cse(x), sse(x)))  # the same operations in the same order
