"""The demo's sizes (``nnunet-se demo --profile``): cases, image side, folds, trainers, schedule, device.

Imports no other demo module, so the demo's command, report and figures can all import it.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_SEVEN = ("nnUNetTrainerPaper", "nnUNetTrainerPaperCSE", "nnUNetTrainerPaperSSE", "nnUNetTrainerPaperSCSE",
               "nnUNetTrainerPaperSRM", "nnUNetTrainerPaperFCA", "nnUNetTrainerPaperMono")


@dataclass(frozen=True)
class Profile:
    """Demo size: synthetic cases, image side (px) and lesion radius range (fraction of the side), folds (all
    trained), trainers (the first: the plain U-Net, baseline of Table I), epochs x iterations per epoch (``None``:
    the trainer's own), device, bootstrap resamples."""

    n_train: int
    n_test: int
    size: int
    radius: tuple[float, float]
    folds: int
    trainers: tuple[str, ...]
    epochs: int
    iterations: int | None
    device: str
    bootstrap: int


DEMO_CPU_TRAINERS = ("nnUNetTrainerPaper_demo", "nnUNetTrainerPaperCSE_demo", "nnUNetTrainerPaperMono_demo")
PROFILES = {
    # 3 trainers x 3 folds x 8 epochs x 10 iterations of batch 16 on 32x32 (docs/demo.md: time budget); the _demo
    # trainers are the paper trainers at a 10x learning rate (nnunet_se.workflow.demo_trainers)
    "cpu": Profile(n_train=60, n_test=10, size=32, radius=(0.15, 0.27), folds=3, epochs=8, iterations=10,
                   device="cpu", bootstrap=200, trainers=DEMO_CPU_TRAINERS),
    # unmeasured on a GPU so far (docs/demo.md): the stock paper trainers, 7 x 5 folds, true epochs of 64x64 images
    "gpu": Profile(n_train=100, n_test=20, size=64, radius=(0.08, 0.2), folds=5, epochs=40, iterations=None,
                   device="cuda", bootstrap=1000, trainers=PAPER_SEVEN),
    "quick": Profile(n_train=12, n_test=2, size=32, radius=(0.15, 0.27), folds=3, epochs=1, iterations=2,
                     device="cpu", bootstrap=20, trainers=DEMO_CPU_TRAINERS[::2]),
}
