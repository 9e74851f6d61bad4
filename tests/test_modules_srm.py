"""SRM against hand-computed style pooling and gates (Lee et al.'s official SRMLayer and the Martins flavour).

Tolerance: an absolute 1e-6 (rtol=0) on float32 gates in (0, 1) and on float32 products with |x| <= 5, which a few
roundings of relative 2**-24 (6e-8) stay below; the 6- and 7-decimal oracles are exact to 5e-7."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_se.modules import create_recalibration

SAMPLE = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)


class TestSRM:
    @pytest.mark.parametrize("flavour, std", [("original", 1.2909983), ("paper", 1.1180340)])
    def test_style_pooling(self, flavour: str, std: float) -> None:
        """Unbiased std (+1e-5 inside sqrt) for the official layer, population std for the Martins layer."""
        style = create_recalibration("srm", 1, 2, flavour).style(SAMPLE)
        assert style.shape == (1, 1, 2)
        assert torch.allclose(style.flatten(), torch.tensor([1.5, std]), rtol=0, atol=1e-6)

    @pytest.mark.parametrize(
        "flavour, expected",
        [
            ("original", 0.9421867),
            ("paper", 1 / (1 + math.exp(-(1.5 + math.sqrt(1.25 + 1e-12)) / math.sqrt(1 + 1e-3)))),
        ],
    )
    def test_eval_gate(self, flavour: str, expected: float) -> None:
        """cfc = [1, 1], BN at init in eval mode: gate = σ(z / sqrt(1 + eps))."""
        module = create_recalibration("srm", 1, 2, flavour).eval()
        with torch.no_grad():
            module.cfc.fill_(1.0)
        assert torch.allclose(module(SAMPLE), expected * SAMPLE, rtol=0, atol=1e-6)

    @pytest.mark.parametrize("flavour", ["original", "paper"])
    def test_train_batch_of_two_is_binary(self, flavour: str) -> None:
        """BN over two values gives ≈ ∓1 whatever the inputs (z=[0.3, 1.7] -> [0.268943, 0.731057])."""
        module = create_recalibration("srm", 1, 2, flavour).train()
        with torch.no_grad():
            module.cfc.copy_(torch.tensor([[1.0, 0.0]]))
        x = torch.stack([torch.full((1, 3, 3), 0.3), torch.full((1, 3, 3), 1.7)])
        gates = (module(x) / x)[:, 0, 0, 0]
        eps = module.bn.eps
        expected = torch.sigmoid(torch.tensor([-0.7, 0.7]) / math.sqrt(0.49 + eps))
        assert torch.allclose(gates, expected, rtol=0, atol=1e-6)
        if flavour == "original":
            assert torch.allclose(gates, torch.tensor([0.268943, 0.731057]), rtol=0, atol=1e-6)

    @pytest.mark.parametrize("flavour, dims", [(f, d) for f in ("original", "paper") for d in (2, 3)])
    def test_train_batch_of_one_gives_beta(self, flavour: str, dims: int) -> None:
        """B=1 in train mode: no error; the normalised value is β, running statistics stay untouched."""
        module = create_recalibration("srm", 4, dims, flavour).train()
        with torch.no_grad():
            module.bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
        x = torch.randn(1, 4, *(5,) * dims)
        expected = torch.sigmoid(module.bn.bias.detach()).view(1, 4, *(1,) * dims) * x
        assert torch.allclose(module(x), expected, rtol=0, atol=1e-6)
        assert torch.equal(module.bn.running_mean, torch.zeros(4))

    @pytest.mark.parametrize("train", [True, False])
    def test_official_zero_init_halves(self, train: bool) -> None:
        """O-4: official cfc = 0 -> z = 0 -> BN output β = 0 -> y = 0.5 x, train and eval."""
        module = create_recalibration("srm", 6, 2, "original").train(train)
        x = torch.randn(3, 6, 5, 5)
        assert torch.equal(module(x), 0.5 * x)

    @pytest.mark.parametrize("flavour, shared", [("paper", True), ("original", False)])
    def test_cfc_sharing(self, flavour: str, shared: bool) -> None:
        """Martins' layer applies one Dense(1) to the (mean, std) axis: 2 weights shared by all channels, so
        channels with equal statistics get equal gates whatever the weights; the official CFC is channel-wise."""
        torch.manual_seed(0)
        module = create_recalibration("srm", 4, 2, flavour).eval()  # BN at init: the same affine map per channel
        with torch.no_grad():
            module.cfc.copy_(torch.randn_like(module.cfc))
        x = (torch.rand(2, 1, 5, 5) + 0.5).expand(-1, 4, -1, -1)  # four identical channels
        gate = (module(x) / x)[:, :, 0, 0]
        assert torch.allclose(gate, gate[:, :1].expand_as(gate), rtol=0, atol=1e-6) is shared

    def test_single_position_map_has_no_nan(self) -> None:
        """P-SRM-2: the unbiased variance of one value is undefined; SRM uses 0 there."""
        module = create_recalibration("srm", 3, 2, "original")
        assert torch.isfinite(module(torch.randn(2, 3, 1, 1))).all()

    @pytest.mark.parametrize(
        "flavour, running_var, running_mean",
        [  # hand-computed; z = per-(sample, channel) mean because cfc = [1, 0]
            # paper (Keras non-fused BN, momentum 0.99 -> 0.01), biased batch variance:
            #   step 1: z[:, 0] = (1, 3) -> var 1, z[:, 1] = (2, 6) -> var 4: rv = (0.99 + 0.01, 0.99 + 0.04)
            #   step 2: z[:, 0] = (0, 0, 0) -> var 0, z[:, 1] = (0, 2, 4) -> var 8/3
            ("paper", (0.99 * 1.0, 0.99 * 1.03 + 0.01 * 8 / 3), (0.99 * 0.02, 0.99 * 0.04 + 0.01 * 2)),
            # original (PyTorch BatchNorm1d, momentum 0.1), unbiased: step 1 var (2, 8), step 2 var (0, 4)
            ("original", (0.9 * 1.1, 0.9 * 1.7 + 0.1 * 4), (0.9 * 0.2, 0.9 * 0.4 + 0.1 * 2)),
        ],
    )
    def test_running_variance_update(self, flavour: str, running_var: tuple, running_mean: tuple) -> None:
        """The paper flavour's running variance tracks the biased batch variance (Keras), the
        original flavour PyTorch's unbiased one; eval mode then normalises with these statistics."""
        module = create_recalibration("srm", 2, 2, flavour).train()
        with torch.no_grad():
            module.cfc.copy_(torch.tensor([[1.0, 0.0]]).expand_as(module.cfc))
        for z in ([[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 2.0], [0.0, 4.0]]):
            module(torch.tensor(z)[:, :, None, None].expand(-1, -1, 3, 3))
        assert torch.allclose(module.bn.running_var, torch.tensor(running_var), rtol=0, atol=1e-6)
        assert torch.allclose(module.bn.running_mean, torch.tensor(running_mean), rtol=0, atol=1e-6)
        assert int(module.bn.num_batches_tracked) == 2
        module.eval()
        x = torch.tensor([[5.0, -1.0]])[:, :, None, None].expand(-1, -1, 3, 3)
        logits = (torch.tensor([5.0, -1.0]) - torch.tensor(running_mean)) / torch.sqrt(
            torch.tensor(running_var) + module.bn.eps
        )
        assert torch.allclose(module(x), torch.sigmoid(logits)[None, :, None, None] * x, rtol=0, atol=1e-6)

    def test_bad_running_var_option(self) -> None:
        with pytest.raises(ValueError, match="bn_running_var must be one of biased, unbiased"):
            create_recalibration("srm", 2, 2, "paper", bn_running_var="keras")

    @pytest.mark.parametrize(
        "flavour, running_var",
        [("paper", (0.5, (4 + 8 / 3) / 2)), ("original", (1.0, 6.0))],  # averages of the batch variances above
    )
    def test_cumulative_running_average(self, flavour: str, running_var: tuple) -> None:
        """``bn_momentum=None``: as PyTorch's BatchNorm, the running statistics are the plain average over the
        batches seen (z as in the test above: batch means (2, 4) then (0, 2) -> (1, 3)), for the paper flavour's
        own update as for PyTorch's."""
        module = create_recalibration("srm", 2, 2, flavour, bn_momentum=None).train()
        with torch.no_grad():
            module.cfc.copy_(torch.tensor([[1.0, 0.0]]).expand_as(module.cfc))
        for z in ([[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 2.0], [0.0, 4.0]]):
            module(torch.tensor(z)[:, :, None, None].expand(-1, -1, 3, 3))
        torch.testing.assert_close(module.bn.running_mean, torch.tensor([1.0, 3.0]), rtol=0, atol=1e-6)
        torch.testing.assert_close(module.bn.running_var, torch.tensor(running_var), rtol=0, atol=1e-6)
