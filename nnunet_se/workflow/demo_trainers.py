"""Demo-only trainers: each paper trainer with a 10x learning rate, for the CPU demo's ~0.3 % of the paper's steps.

``nnUNetTrainerPaperMono_demo`` is ``nnUNetTrainerPaperMono`` with ``learning_rate = 1e-3`` (paper: 1e-4) and
``progress.png`` drawn once at the end instead of every epoch (0.65 s a draw, about 45 s of the CPU demo), nothing
else changed: same U-Net, modules, loss, optimiser, dev-set rule and checkpoint choice; the registry attributes
follow the variant (``baseline`` of ``nnUNetTrainerPaperCSE_demo`` is ``nnUNetTrainerPaper_demo``, ``table_row`` and
``family`` are the base's). nnU-Net finds them
through a one-line shim module that :class:`nnunet_se.workflow.demo_runs.Pipeline` writes into the demo's output
folder and adds to ``nnUNet_extTrainer`` for the demo's commands only, so ``nnunet-se list`` and the user's
nU-Net never see them.
"""

from __future__ import annotations

from collections.abc import Sequence

from nnunet_se.trainer_registry import TrainerInfo, info_of, trainer_infos
from nnunet_se.trainers.paper import PAPER_TRAINERS, nnUNetTrainerPaper

SUFFIX = "_demo"
LEARNING_RATE = 1e-3


def _demo_variant(base: type[nnUNetTrainerPaper]) -> type[nnUNetTrainerPaper]:
    name = base.__name__ + SUFFIX
    doc = f"{base.__name__} with learning_rate {LEARNING_RATE:g} (demo only; nnunet_se.workflow.demo_trainers)."
    baseline = None if base.baseline is None else base.baseline + SUFFIX
    return type(name, (base,), {"learning_rate": LEARNING_RATE, "progress_plot_every": None, "baseline": baseline,
                                "__module__": __name__, "__qualname__": name, "__doc__": doc})


DEMO_TRAINERS: dict[str, type[nnUNetTrainerPaper]] = {
    c.__name__: c for c in map(_demo_variant, PAPER_TRAINERS.values())
}
globals().update(DEMO_TRAINERS)  # module attributes, so that nnU-Net's lookup and pickle find them by name
__all__ = sorted(DEMO_TRAINERS)


def demo_infos(trainers: Sequence[str]) -> dict[str, TrainerInfo]:
    """Registry facts of ``trainers``: ``_demo`` trainers from their classes, the others from the registry."""
    known = trainer_infos()
    return {t: info_of(DEMO_TRAINERS[t]) if t in DEMO_TRAINERS else known[t] for t in trainers}


def common_baseline(trainers: Sequence[str]) -> str:
    """The one trainer that the models among ``trainers`` are tested against (their ``baseline``); ValueError if
    they have none or several (``table --baseline`` takes one)."""
    baselines = {info.baseline for info in demo_infos(trainers).values() if info.baseline is not None}
    if len(baselines) != 1:
        raise ValueError(f"{', '.join(trainers)}: expected one common baseline, found {sorted(baselines)}")
    return baselines.pop()
