"""nnUNetTrainer subclasses with recalibration modules (installed as ``nnunet_se.trainers``).

``ALL_TRAINERS`` maps every plugin trainer's name (the ``-tr`` argument of nnU-Net) to its class; ``__all__`` is
derived from it, and the ``nnUNet_extTrainer`` shim re-exports this module with ``from nnunet_se.trainers import *``.
Type checkers see each class in its own module (``nnunet_se.trainers.auto``, ``nnunet_se.trainers.paper``).
Families, baselines and Table I rows are class attributes of these trainers, read through
:mod:`nnunet_se.trainer_registry`.
"""

from nnunet_se.trainers.auto import AUTO_TRAINERS
from nnunet_se.trainers.base import RecalibrationTrainer
from nnunet_se.trainers.paper import PAPER_TRAINERS

ALL_TRAINERS: dict[str, type[RecalibrationTrainer]] = {
    **{t.__name__: t for t in AUTO_TRAINERS},
    **PAPER_TRAINERS,
}

globals().update(ALL_TRAINERS)  # every trainer as an attribute of this module: nnunet_se.trainers.<name>
__all__ = ["ALL_TRAINERS", "AUTO_TRAINERS", "PAPER_TRAINERS", "RecalibrationTrainer", *ALL_TRAINERS]
