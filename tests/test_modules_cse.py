"""cSE, sSE and scSE against the numeric oracles of recalibration_reference.md §6."""

from __future__ import annotations

import pytest
import torch

from nnunet_se.modules import create_recalibration

FLAVOURS = ("paper", "original")


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
        expected = torch.tensor([0.982014, 0.017986]).view(1, 2, 1, 1) * x
        assert torch.allclose(y, expected, atol=1e-6)

    @pytest.mark.parametrize("flavour, hidden", [("paper", 16), ("original", 2)])
    def test_reduction_and_init(self, flavour: str, hidden: int) -> None:
        """paper: r=2 and Keras init (zero bias, glorot bound); original: r=16, PyTorch init."""
        module = create_recalibration("cse", 32, 2, flavour)
        fc1 = module.excitation.fc1
        assert fc1.out_features == hidden and fc1.bias is not None
        if flavour == "paper":
            assert torch.count_nonzero(fc1.bias) == 0
            assert fc1.weight.abs().max() <= (6 / (32 + hidden)) ** 0.5
        else:
            assert torch.count_nonzero(fc1.bias) > 0

    @pytest.mark.parametrize("flavour, dims", [(f, d) for f in FLAVOURS for d in (2, 3)])
    def test_zero_last_layer_halves(self, flavour: str, dims: int) -> None:
        """O-4: W2 = 0, b2 = 0 -> y = 0.5 x; O-5: large b2 -> y -> x."""
        module = create_recalibration("cse", 8, dims, flavour)
        x = torch.randn(2, 8, *(4,) * dims)
        with torch.no_grad():
            module.excitation.fc2.weight.zero_()
            module.excitation.fc2.bias.zero_()
            assert torch.equal(module(x), 0.5 * x)
            module.excitation.fc2.bias.fill_(30.0)
            assert torch.allclose(module(x), x)


class TestSSE:
    @pytest.mark.parametrize("flavour, dims", [(f, d) for f in FLAVOURS for d in (2, 3)])
    def test_gate_constant_over_channels(self, flavour: str, dims: int) -> None:
        module = create_recalibration("sse", 6, dims, flavour)
        x = torch.rand(2, 6, *(5,) * dims) + 0.1
        ratio = module(x) / x
        assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-6)
        with torch.no_grad():
            module.conv.weight.zero_()
            module.conv.bias.zero_()
        assert torch.equal(module(x), 0.5 * x)

    def test_spatial_gate_formula(self) -> None:
        module = create_recalibration("sse", 3, 2)
        x = torch.randn(1, 3, 4, 4)
        logits = torch.einsum("nchw,c->nhw", x, module.conv.weight.flatten()) + module.conv.bias
        assert torch.allclose(module(x), x * torch.sigmoid(logits)[:, None], atol=1e-6)


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
        assert torch.allclose(module(x), expected, atol=1e-6)

    def test_add_combination(self) -> None:
        module = create_recalibration("scse", 8, 2, combine="add")
        with torch.no_grad():
            module.excitation.fc2.weight.zero_()
            module.excitation.fc2.bias.zero_()
            module.conv.weight.zero_()
            module.conv.bias.zero_()
        x = torch.randn(2, 8, 4, 4)
        assert torch.allclose(module(x), x, atol=1e-6)

    def test_parts_match_cse_and_sse(self) -> None:
        """scSE = max(cSE(x), sSE(x)) with the same weights."""
        scse = create_recalibration("scse", 8, 2)
        cse, sse = create_recalibration("cse", 8, 2), create_recalibration("sse", 8, 2)
        cse.excitation.load_state_dict(scse.excitation.state_dict())
        sse.conv.load_state_dict(scse.conv.state_dict())
        x = torch.randn(3, 8, 5, 5)
        assert torch.allclose(scse(x), torch.maximum(cse(x), sse(x)))
