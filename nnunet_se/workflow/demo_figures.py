"""The demo's figures: training examples, learning curves and Dice per fold (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnunet_se.layout import DEFAULT_CONFIGURATION, DEFAULT_PLANS, model_folder
from nnunet_se.workflow.demo_scoring import ModelScores, learning_curve

DICE_BAR = 0.8  # the demo's "it learned" line: every fold's model reaches it on the test cases (docs/demo.md)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    _pyplot().close(fig)
    return target


def example_figure(raw_folder: Path, target: Path, count: int = 4) -> Path:
    """The first ``count`` training images with their lesion outlines (PNG)."""
    from PIL import Image

    plt = _pyplot()
    labels = sorted((raw_folder / "labelsTr").glob("*.png"))[:count]
    fig, axes = plt.subplots(1, len(labels), figsize=(2.4 * len(labels), 2.6), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        image = np.asarray(Image.open(raw_folder / "imagesTr" / f"{label.stem}_0000.png").convert("RGB"))
        ax.imshow(image, interpolation="nearest")
        ax.contour(np.asarray(Image.open(label)) > 0, levels=[0.5], colors="cyan", linewidths=1.2)
        ax.set_title(f"{label.stem} ({image.shape[1]}x{image.shape[0]} px)", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, target)


def curves_figure(results: Path, dataset: str, trainers: Sequence[str], folds: int, schedule: str,
                  target: Path) -> Path:
    """Training loss, dev loss and dev pseudo Dice per epoch: one colour per trainer, thin lines per fold, thick
    the mean over folds (PNG)."""
    plt = _pyplot()
    panels = (("train_loss", "training loss (0.5 BCE + 0.5 soft Dice)"),
              ("dev_loss", "early-stopping (dev) loss"), ("dev_dice", "dev-set pseudo Dice"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, trainer in enumerate(trainers):
        folder = model_folder(results, dataset, trainer, DEFAULT_PLANS, DEFAULT_CONFIGURATION)
        curves = [c for f in range(folds) if (c := learning_curve(folder / f"fold_{f}")) is not None]
        if not curves:
            continue
        colour = f"C{i}"
        for ax, (key, ylabel) in zip(axes, panels, strict=True):
            series = [getattr(c, key) for c in curves]
            for s in series:
                ax.plot(np.arange(1, s.size + 1), s, color=colour, lw=0.7, alpha=0.45)
            n = min(s.size for s in series)
            ax.plot(np.arange(1, n + 1), np.mean([s[:n] for s in series], axis=0), color=colour, lw=2.2,
                    label=trainer.replace("nnUNetTrainer", ""))
            ax.set_xlabel(f"epoch ({schedule})")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    axes[2].axhline(DICE_BAR, color="grey", ls="--", lw=1)
    axes[2].set_ylim(0, 1)
    axes[0].legend(title=f"mean of {folds} folds (thin: each fold)", fontsize=8, title_fontsize=8)
    fig.suptitle("Learning curves of the demo trainings (nnU-Net's per-epoch log)", fontsize=11)
    fig.tight_layout()
    return _save(fig, target)


def dice_figure(scores: Sequence[ModelScores], target: Path) -> Path:
    """Validation (held-out fold) and test Dice of every fold's model, per trainer (PNG)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(scores), 3.6))
    for x, s in enumerate(scores):
        for offset, values, marker, name in ((-0.12, s.validation, "o", "validation (held-out fold)"),
                                             (0.12, s.test, "s", "test set")):
            ax.scatter(np.full(len(values), x + offset), list(values.values()), marker=marker,
                       color="C0" if marker == "o" else "C1", label=name if x == 0 else None, zorder=3)
    ax.axhline(DICE_BAR, color="grey", ls="--", lw=1, label=f"Dice {DICE_BAR}")
    ax.set_xticks(range(len(scores)), [s.trainer.replace("nnUNetTrainer", "") for s in scores], fontsize=8)
    ax.set_xlabel("trainer")
    ax.set_ylabel("foreground Dice (one point per fold)")
    ax.set_ylim(min(0.5, *(v for s in scores for v in (*s.validation.values(), *s.test.values()))) - 0.02, 1.0)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, target)
