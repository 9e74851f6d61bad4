"""nnUNetTrainer subclasses with recalibration modules (installed as ``nnunet_se.trainers``).

``ALL_TRAINERS`` maps every plugin trainer's name (the ``-tr`` argument of nnU-Net) to its class; the
``nnUNet_extTrainer`` shim re-exports this module with ``from nnunet_se.trainers import *``. Families, baselines
and Table I rows are class attributes of these trainers, read through :mod:`nnunet_se.trainer_registry`.
"""

from nnunet_se.trainers.auto import (
    AUTO_TRAINERS,
    nnUNetTrainerCSE,
    nnUNetTrainerCSE_original,
    nnUNetTrainerFCA,
    nnUNetTrainerFCA_original,
    nnUNetTrainerMono,
    nnUNetTrainerSCSE,
    nnUNetTrainerSCSE_original,
    nnUNetTrainerSRM,
    nnUNetTrainerSRM_original,
    nnUNetTrainerSSE,
    nnUNetTrainerSSE_original,
)
from nnunet_se.trainers.base import RecalibrationTrainer
from nnunet_se.trainers.paper import (
    PAPER_TRAINERS,
    nnUNetTrainerPaper,
    nnUNetTrainerPaperCSE,
    nnUNetTrainerPaperCSENoSkip,
    nnUNetTrainerPaperFCA,
    nnUNetTrainerPaperMono,
    nnUNetTrainerPaperSCSE,
    nnUNetTrainerPaperSRM,
    nnUNetTrainerPaperSSE,
)

ALL_TRAINERS: dict[str, type[RecalibrationTrainer]] = {
    **{t.__name__: t for t in AUTO_TRAINERS},
    **PAPER_TRAINERS,
}

__all__ = [
    "ALL_TRAINERS",
    "RecalibrationTrainer",
    "nnUNetTrainerCSE",
    "nnUNetTrainerCSE_original",
    "nnUNetTrainerSSE",
    "nnUNetTrainerSSE_original",
    "nnUNetTrainerSCSE",
    "nnUNetTrainerSCSE_original",
    "nnUNetTrainerSRM",
    "nnUNetTrainerSRM_original",
    "nnUNetTrainerFCA",
    "nnUNetTrainerFCA_original",
    "nnUNetTrainerMono",
    "nnUNetTrainerPaper",
    "nnUNetTrainerPaperCSE",
    "nnUNetTrainerPaperSSE",
    "nnUNetTrainerPaperSCSE",
    "nnUNetTrainerPaperSRM",
    "nnUNetTrainerPaperFCA",
    "nnUNetTrainerPaperMono",
    "nnUNetTrainerPaperCSENoSkip",
]
