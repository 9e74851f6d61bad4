"""Boundaries of ``nnunet_se/modules/srm.py`` that the mutation sample (benchmarks/results/mutation_holdout.md) found
unpinned: the glorot-uniform range of the paper flavour's two shared weights."""

from __future__ import annotations

import math

import torch

from nnunet_se.modules import create_recalibration


def test_shared_weights_are_glorot_uniform_on_both_sides() -> None:
    """Keras's glorot_uniform draws U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)); the paper's Dense(1) on
    (mean, std) has fan_in 2, fan_out 1: limit = sqrt(6 / 3) = sqrt(2) = 1.41421. 100 modules (200 draws, seeded)
    must stay inside [-sqrt 2, sqrt 2] and reach near both ends (a symmetric range): a wider or lopsided range
    changes the initial gates of every paper SRM network."""
    torch.manual_seed(0)
    draws = torch.cat([create_recalibration("srm", 8, 2, "paper").cfc.detach().flatten() for _ in range(100)])
    limit = math.sqrt(6.0 / (2 + 1))
    assert draws.numel() == 200
    assert draws.max() <= limit and draws.min() >= -limit
    # 200 uniform draws miss the top or bottom 5 % of the range with probability 2 * 0.95^200 ~ 7e-5 (seeded here)
    assert draws.max() > 0.9 * limit and draws.min() < -0.9 * limit
