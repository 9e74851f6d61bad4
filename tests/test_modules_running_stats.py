"""Running statistics of the modules' batch norms (Mono at the smallest batches, SRM's cumulative average) and Mono's
choice between the fused op and the PyTorch path. Oracles are closed forms (alpha on one- and two-position maps)."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_se.modules import create_recalibration, mono_fused

EPS = 1e-7  # keras.backend.epsilon(), added to every box measure
MOMENTUM = 0.01  # Keras momentum 0.99


def _alpha_of_two_positions() -> float:
    """alpha at the second position of the 1x2 map [0, 1]: min-max gives u = [1, 256]; the size-2 box there sees u_1
    alone (the other entry is padding), the size-8 box sees both: (ln(257 + e) - ln(256 + e)) / (2 ln 2); at the
    first position both boxes see both entries, so alpha = 0."""
    return (math.log(257 + EPS) - math.log(256 + EPS)) / (2 * math.log(2))


@pytest.mark.parametrize(
    "x, running_mean, running_var",
    [  # values per channel: 1 (undefined unbiased variance: the running variance stays 1), then 2 and 3
        ([[[[0.0]]]], 0.0, 1.0),
        ([[[[0.0]]], [[[1.0]]]], 0.0, 1 - MOMENTUM),  # a 1x1 map: every box holds the value alone, alpha = 0
        ([[[[0.0]]], [[[1.0]]], [[[5.0]]]], 0.0, 1 - MOMENTUM),
        ([[[[0.0, 1.0]]]], MOMENTUM * _alpha_of_two_positions() / 2,
         1 - MOMENTUM + MOMENTUM * _alpha_of_two_positions() ** 2 / 2),  # unbiased variance of [0, a]: a^2 / 2
    ],
    ids=["one-value", "two-samples", "three-samples", "two-positions"],
)
def test_mono_running_statistics_at_the_smallest_batches(x: list, running_mean: float, running_var: float) -> None:
    """PyTorch's update (exponential average with momentum 0.01 of the mean and the unbiased variance of the
    alpha values of a channel), computed by hand; float64 end to end, so absolute 1e-15 (rtol=0)."""
    module = create_recalibration("mono", 1, 2).double().train()
    module(torch.tensor(x, dtype=torch.float64))
    expected = {"running_mean": running_mean, "running_var": running_var}
    for name, value in expected.items():
        torch.testing.assert_close(getattr(module.bn, name), torch.tensor([value], dtype=torch.float64), rtol=0,
                                   atol=1e-15)
    assert int(module.bn.num_batches_tracked) == 1


@pytest.mark.parametrize("fused, expect_fused", [(False, False), (True, True)])
def test_mono_fused_option_decides_where_the_fused_op_is_available(
    fused: bool, expect_fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the fused op could run (availability forced on: this CPU has no Triton), ``fused=False`` keeps the
    PyTorch path and ``fused=True`` takes the fused op."""
    calls = []

    def fused_op(x: torch.Tensor, radii, minmax):
        calls.append(minmax)
        raise RuntimeError("fused op called")

    monkeypatch.setattr(mono_fused, "fused_available", lambda x, radii=(2, 4, 8): True)
    monkeypatch.setattr(mono_fused, "alpha_moments_fused", fused_op)
    module = create_recalibration("mono", 4, 2, fused=fused, minmax="sample")
    x = torch.rand(2, 4, 6, 6)
    if expect_fused:
        with pytest.raises(RuntimeError, match="fused op called"):
            module(x)
    else:
        assert torch.isfinite(module(x)).all()
    assert calls == (["sample"] if expect_fused else [])


@pytest.mark.parametrize(
    "flavour, running_var",
    [("paper", (0.5, (4 + 8 / 3) / 2)),  # Keras-style biased batch variances: step 1 (1, 4), step 2 (0, 8/3)
     ("original", (1.0, 6.0))],  # PyTorch's unbiased ones: step 1 (2, 8), step 2 (0, 4)
)
def test_srm_cumulative_running_statistics(flavour: str, running_var: tuple[float, float]) -> None:
    """``bn_momentum=None`` is PyTorch's cumulative average: after two batches the running statistics are the plain
    means of the two batches' statistics (the initial 0 / 1 drop out). z is the channel means (cfc = [1, 0]): step 1
    z = [[1, 2], [3, 6]] (means 2, 4), step 2 z = [[0, 0], [0, 2], [0, 4]] (means 0, 2). float64: absolute 1e-12."""
    module = create_recalibration("srm", 2, 2, flavour, bn_momentum=None).double().train()
    with torch.no_grad():
        module.cfc.copy_(torch.tensor([[1.0, 0.0]]).expand_as(module.cfc))
    for z in ([[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 2.0], [0.0, 4.0]]):
        module(torch.tensor(z, dtype=torch.float64)[:, :, None, None].expand(-1, -1, 3, 3))
    expected = {"running_mean": (1.0, 3.0), "running_var": running_var}
    for name, value in expected.items():
        torch.testing.assert_close(getattr(module.bn, name), torch.tensor(value, dtype=torch.float64), rtol=0,
                                   atol=1e-12)
