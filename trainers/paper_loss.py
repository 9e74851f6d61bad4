"""The authors' loss on nnU-Net's two-channel logits: 0.5 binary cross-entropy + 0.5 soft Dice per image.

Authors (``optimization/loss_functions.py``, ``config/parser.py`` "weighted"): on the sigmoid output p and the 0/1
mask y of a batch, ``0.5 * mean_pixels BCE(p, y) + 0.5 * mean_images (1 - (2 sum(p y) + e) / (sum(y) + sum(p) + e))``
with e = 1e-12, sums per image. Here p = sigmoid(l1 - l0) = softmax(l)[1] of the logits ``l = (l0, l1)``, which
is the authors' p for the paper network's ``[0, z]`` head; the BCE is evaluated from the logit (``log sigmoid``),
exact where Keras' probability clipping at 1e-7 is inactive (|z| < 16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DICE_EPSILON = 1e-12


class PaperLoss(nn.Module):
    """``(logits (N, 2, *S), target (N, 1, *S) with labels 0/1) -> scalar``; computed in float32."""

    def __init__(self, bce_weight: float = 0.5, epsilon: float = DICE_EPSILON):
        super().__init__()
        self.bce_weight = bce_weight
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != 2:
            raise ValueError(f"PaperLoss is binary: expected 2 logit channels, got {logits.shape[1]}")
        z = (logits[:, 1:2] - logits[:, 0:1]).float()
        y = target.float()
        bce = F.binary_cross_entropy_with_logits(z, y)
        p = torch.sigmoid(z).flatten(1)
        y = y.flatten(1)
        dice = (2.0 * (p * y).sum(1) + self.epsilon) / (y.sum(1) + p.sum(1) + self.epsilon)
        return self.bce_weight * bce + (1.0 - self.bce_weight) * (1.0 - dice).mean()
