"""Learning-rate schedule of the paper protocol: ReduceLROnPlateau on the early-stopping loss, or constant.

The paper states "x0.5 after 5 stagnant epochs"; the authors' code builds the same scheduler with ``min_lr`` equal to
the initial rate, so their rate never drops (``constant``). Both are the same torch scheduler, so both save and
restore their state the same way (``state_dict`` in the checkpoint).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

LRSchedule = Literal["plateau", "constant"]


def build_plateau_scheduler(
    optimizer: torch.optim.Optimizer, schedule: LRSchedule = "plateau", factor: float = 0.5, patience: int = 5
) -> ReduceLROnPlateau:
    """ReduceLROnPlateau in ``min`` mode on a loss; ``constant`` pins ``min_lr`` to the initial rate (authors' code)."""
    if schedule not in ("plateau", "constant"):
        raise ValueError(f"unknown lr schedule {schedule!r}; valid: 'plateau', 'constant'")
    min_lr = [g["lr"] for g in optimizer.param_groups] if schedule == "constant" else 0.0
    return ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience, min_lr=min_lr)
