"""The recalibration modules' published constants, pinned where a wrong value would change the numbers a user gets:
Keras' epsilon in Mono's logs, the original flavours' reduction 16, and FcaNet's whole 'top16' frequency table.

Each test computes its expectation from the source (the paper's formula or the public code's table) and also
checks that the neighbouring wrong constant would fail it, so the test is known to be able to fail.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from nnunet_se.modules import create_recalibration, parameter_count

# keras.backend.epsilon() (default 1e-7), which the authors' Mono layer adds to every box measure before the log
KERAS_EPSILON = 1e-7
# FcaNet (Qin et al., ICCV 2021), github.com/cfzd/FcaNet model/layer.py, get_freq_indices('top16'): the first 16
# entries of all_top_indices_x (along H) and all_top_indices_y (along W) of the 7x7 DCT grid
FCANET_TOP16_X = (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2)
FCANET_TOP16_Y = (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2)


def _in_range(length: int, r: int) -> np.ndarray:
    """Number of in-range indices of the size-``r`` box at each position of an axis of ``length`` positions, with
    SAME padding (``(r - 1) // 2`` before, the rest after): the box measure of a constant 1 along one axis."""
    left = (r - 1) // 2
    return np.array([min(length - 1, i + r - 1 - left) - max(0, i - left) + 1 for i in range(length)], float)


def _mono_constant_gate(shape: tuple[int, ...], epsilon: float) -> float:
    """The Mono gate of a constant map (min-max makes it 1 everywhere) with BN at init in eval mode (mean 0, var 1,
    eps 1e-3) and the identity MLP: sigmoid(mean alpha / sqrt(1.001)), alpha = (ln(mu_8 + e) - ln(mu_2 + e)) / (2 ln 2)
    (the least-squares slope over radii 2, 4, 8, where r = 4 has weight 0), mu_r = product over axes of the counts."""
    mu = {r: functools.reduce(np.multiply.outer, [_in_range(n, r) for n in shape]) for r in (2, 8)}
    alpha = (np.log(mu[8] + epsilon) - np.log(mu[2] + epsilon)) / (2 * math.log(2))
    return 1 / (1 + math.exp(-float(alpha.mean()) / math.sqrt(1 + 1e-3)))


@pytest.mark.parametrize("shape", [(8, 8), (12, 5), (6, 6, 6)], ids=str)
def test_mono_adds_keras_epsilon_to_the_measures(shape: tuple[int, ...]) -> None:
    """float64 end to end: box sums of ones are exact integers and the log, mean and sigmoid each add a rounding of
    ~1e-16 to O(1) values, so the gate agrees with the closed form to far below the absolute bound 1e-12 (rtol=0);
    epsilon 1e-6 instead of 1e-7 moves the gate by more than 1e-9, a thousand times the bound."""
    module = create_recalibration("mono", 1, len(shape)).double().eval()
    with torch.no_grad():
        for fc in (module.excitation.fc1, module.excitation.fc2):
            fc.weight.fill_(1.0)
            fc.bias.zero_()
    x = torch.full((2, 1, *shape), 3.0, dtype=torch.float64)
    gate = module(x) / x
    expected = _mono_constant_gate(shape, KERAS_EPSILON)
    torch.testing.assert_close(gate, torch.full_like(gate, expected), rtol=0, atol=1e-12)
    assert abs(_mono_constant_gate(shape, 10 * KERAS_EPSILON) - expected) > 1e-9


@pytest.mark.parametrize(
    "name, channels, hidden, bias",
    [  # Hu et al. (SE, Caffe SE-ResNet) and FcaNet use r = 16: h = C // 16; 256 and 512 are nnU-Net widths where
        # C // 15 != C // 16 (17 and 34), 64 one where they agree
        ("cse", 64, 4, True),
        ("cse", 256, 16, True),
        ("cse", 512, 32, True),
        ("fca", 256, 16, False),
        ("fca", 512, 32, False),
    ],
)
def test_original_flavour_reduction_is_16(name: str, channels: int, hidden: int, bias: bool) -> None:
    """Hidden width and the paper's parameter count 2 C h (+ h + C with biases)."""
    module = create_recalibration(name, channels, 2, "original")
    assert module.excitation.fc1.out_features == hidden
    expected = 2 * channels * hidden + (hidden + channels if bias else 0)
    assert parameter_count(name, channels, 2, "original") == expected
    assert sum(p.numel() for p in module.parameters()) == expected


def _dct_filter(size: tuple[int, int], u: int, v: int) -> np.ndarray:
    """FcaNet's build_filter product: cos(pi u (h + 1/2) / H) cos(pi v (w + 1/2) / W), times 1/sqrt(H) (u = 0) or
    sqrt(2/H) (u > 0) per axis."""

    def axis(n: int, k: int) -> np.ndarray:
        scale = math.sqrt(1 / n) if k == 0 else math.sqrt(2 / n)
        return np.cos(math.pi * k * (np.arange(n) + 0.5) / n) * scale

    return np.outer(axis(size[0], u), axis(size[1], v))


def test_fca_top16_table_is_fcanets() -> None:
    """The whole (u, v) table in FcaNet's order, and each group's filter equals FcaNet's DCT filter."""
    from nnunet_se.modules.fca import filters, frequencies

    assert frequencies("original", (7, 7)) == list(zip(FCANET_TOP16_X, FCANET_TOP16_Y, strict=True))
    bank = filters("original", (7, 7)).double().numpy()
    for g, (u, v) in enumerate(zip(FCANET_TOP16_X, FCANET_TOP16_Y, strict=True)):
        # float32 filters of magnitude <= 2/7: one rounding each, 2**-24 * 0.29 < 1e-7
        np.testing.assert_allclose(bank[g], _dct_filter((7, 7), u, v), rtol=0, atol=1e-7, err_msg=str((g, u, v)))


@pytest.mark.parametrize("size", [(7, 7), (14, 21), (21, 14), (56, 56)], ids=str)
def test_fca_pools_each_group_on_its_own_frequency(size: tuple[int, int]) -> None:
    """C = 16 (one channel per group), channel g = FcaNet's filter of group g (indices times size // 7 per axis,
    FcaNet's scaling): the pooled vector is all ones (orthonormal filters), so a wrong u or v in any group, or the
    H and W scale factors swapped, gives a 0 there. float64 input is pooled in float64 with the float32 filters: each
    filter entry is rounded once (relative 2**-24), so by Cauchy-Schwarz on unit-norm filters the error is < 1e-7."""
    fh, fw = size[0] // 7, size[1] // 7
    images = np.stack([_dct_filter(size, u * fh, v * fw) for u, v in zip(FCANET_TOP16_X, FCANET_TOP16_Y, strict=True)])
    module = create_recalibration("fca", 16, 2, "original", feature_size=size).double()
    seen = []
    module.excitation.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    module(torch.from_numpy(images)[None])
    torch.testing.assert_close(seen[0], torch.ones(1, 16, dtype=torch.float64), rtol=0, atol=1e-7)


def test_fca_top16_filters_are_orthonormal() -> None:
    """FcaNet's 16 top frequencies are 16 different orthonormal basis functions at 7x7 (a duplicated or swapped
    entry breaks the identity): float32 filters, each entry rounded once (relative 2**-24), 49-term sums < 1e-6."""
    from nnunet_se.modules.fca import filters

    bank = filters("original", (7, 7)).double().flatten(1)
    torch.testing.assert_close(bank @ bank.T, torch.eye(16, dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("span, invariant", [(3e-7, True), (1.5e-7, True), (5e-8, False)])
def test_mono_minmax_floor_is_1e_7(span: float, invariant: bool) -> None:
    """The min-max divides by max(span, 1e-7) (the authors' clip): a channel whose values span more than 1e-7 is
    rescaled to [1, 256] like any other (alpha, hence the gate, invariant to the positive scaling, O-M5: float64,
    absolute 1e-9), one spanning less is not (its gate moves by more than 1e-5)."""
    module = create_recalibration("mono", 1, 2).double().eval()
    with torch.no_grad():
        for fc in (module.excitation.fc1, module.excitation.fc2):
            fc.weight.fill_(1.0)
            fc.bias.zero_()
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = (x - x.min()) / (x.max() - x.min())  # span exactly 1
    with torch.no_grad():
        moved = abs(float(module.channel_gate(x) - module.channel_gate(span * x)))
    assert (moved < 1e-9) is invariant
    assert invariant or moved > 1e-5
