"""The demo's numbers: validation and test Dice per fold, learning curves from nnU-Net's checkpoints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_se.layout import model_folder


@dataclass
class ModelScores:
    """One trainer over the folds: validation Dice (held-out fold), test Dice (``imagesTs``), per fold (0-1)."""

    trainer: str
    validation: dict[int, float] = field(default_factory=dict)
    test: dict[int, float] = field(default_factory=dict)

    @staticmethod
    def summary(values: dict[int, float]) -> str:
        """``mean ± sd (min-max)`` over folds (sample sd), or ``-``."""
        if not values:
            return "-"
        v = np.array(list(values.values()), float)
        sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
        return f"{v.mean():.3f} ± {sd:.3f} ({v.min():.3f}-{v.max():.3f})"


def validation_dice(results: Path, dataset: str, trainer: str, folds: Sequence[int], plans: str,
                    configuration: str) -> dict[int, float]:
    """Fold -> nnU-Net's final-validation foreground Dice (``validation/summary.json``) for the folds finished by
    :func:`nnunet_se.results.fold_state`'s rule."""
    from nnunet_se.results import read_fold

    model = model_folder(results, dataset, trainer, plans, configuration)
    found = (read_fold(model / f"fold_{fold}", dataset, trainer, plans, configuration, fold) for fold in folds)
    return {r.fold: r.dice for r in found if r.finished}


def score_test_set(labels: Path, predictions: Path) -> float:
    """Foreground Dice averaged over cases with nnU-Net's own per-case metric (empty/empty cases are NaN, skipped).

    In-process: nnUNetv2_evaluate_simple would cost a process start and a worker pool for a handful of images.
    """
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    reader = NaturalImage2DIO()
    scores = [compute_metrics(str(ref), str(predictions / ref.name), reader, [1])["metrics"][1]["Dice"]
              for ref in sorted(labels.glob("*.png"))]
    return float(np.nanmean(scores)) if scores else math.nan


@dataclass(frozen=True)
class Curve:
    """One fold's training log per epoch: mean training loss, early-stopping (dev) loss, dev pseudo Dice."""

    train_loss: np.ndarray
    dev_loss: np.ndarray
    dev_dice: np.ndarray


def learning_curve(fold_folder: Path) -> Curve | None:
    """The per-epoch log nnU-Net stores in ``checkpoint_final.pth`` (``logging``), or None when absent."""
    import torch

    path = fold_folder / "checkpoint_final.pth"
    if not path.is_file():
        return None
    log = torch.load(path, map_location="cpu", weights_only=False)["logging"]
    return Curve(np.asarray(log["train_losses"], float), np.asarray(log["val_losses"], float),
                 np.asarray(log["mean_fg_dice"], float))
