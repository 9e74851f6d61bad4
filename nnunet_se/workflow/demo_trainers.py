"""Demo-only trainers: each paper trainer with a 10x learning rate, for the CPU demo's ~0.3 % of the paper's steps.

``nnUNetTrainerPaperMono_demo`` is ``nnUNetTrainerPaperMono`` with ``learning_rate = 1e-3`` (paper: 1e-4) and
``progress.png`` drawn once at the end instead of every epoch (0.65 s a draw, about 45 s of the CPU demo), nothing
else changed: same U-Net, modules, loss, optimiser, dev-set rule and checkpoint choice. nnU-Net finds them
through a one-line shim module that :class:`nnunet_se.workflow.demo_runs.Pipeline` writes into the demo's output
folder and adds to ``nnUNet_extTrainer`` for the demo's commands only, so ``nnunet-se list`` and the user's
nU-Net never see them.
"""

from __future__ import annotations

from nnunet_se.trainers.paper import PAPER_TRAINERS, nnUNetTrainerPaper

SUFFIX = "_demo"
LEARNING_RATE = 1e-3


def _demo_variant(base: type[nnUNetTrainerPaper]) -> type[nnUNetTrainerPaper]:
    name = base.__name__ + SUFFIX
    doc = f"{base.__name__} with learning_rate {LEARNING_RATE:g} (demo only; nnunet_se.workflow.demo_trainers)."
    return type(name, (base,), {"learning_rate": LEARNING_RATE, "progress_plot_every": None, "__module__": __name__,
                                "__qualname__": name, "__doc__": doc})


DEMO_TRAINERS: dict[str, type[nnUNetTrainerPaper]] = {
    c.__name__: c for c in map(_demo_variant, PAPER_TRAINERS.values())
}
globals().update(DEMO_TRAINERS)  # module attributes, so that nnU-Net's lookup and pickle find them by name
__all__ = sorted(DEMO_TRAINERS)

