"""Trainers on nnU-Net's own plans (``2d``/``3d_fullres``, default or ResEnc presets) with one recalibration module
injected after every encoder stage but the bottleneck; everything else is the stock ``nnUNetTrainer``.

One class per variant; ``*_original`` use the official-paper semantics where they differ from the paper group's
reference (``recalibration_reference.md`` §8; sSE differs only in its initialisation). Mono has one definition;
its trainer min-maxes per image (``minmax="sample"``), as the paper trainers do (``docs/trainers.md``).
"""

from __future__ import annotations

from nnunet_se.trainers.base import RecalibrationTrainer


class nnUNetTrainerCSE(RecalibrationTrainer):
    recalibration = "cse"


class nnUNetTrainerCSE_original(RecalibrationTrainer):
    recalibration = "cse"
    flavour = "original"


class nnUNetTrainerSSE(RecalibrationTrainer):
    recalibration = "sse"


class nnUNetTrainerSSE_original(RecalibrationTrainer):
    recalibration = "sse"
    flavour = "original"


class nnUNetTrainerSCSE(RecalibrationTrainer):
    recalibration = "scse"


class nnUNetTrainerSCSE_original(RecalibrationTrainer):
    recalibration = "scse"
    flavour = "original"


class nnUNetTrainerSRM(RecalibrationTrainer):
    recalibration = "srm"


class nnUNetTrainerSRM_original(RecalibrationTrainer):
    recalibration = "srm"
    flavour = "original"


class nnUNetTrainerFCA(RecalibrationTrainer):
    recalibration = "fca"


class nnUNetTrainerFCA_original(RecalibrationTrainer):
    recalibration = "fca"
    flavour = "original"


class nnUNetTrainerMono(RecalibrationTrainer):
    """Mono with per-image min-max: a case's prediction does not depend on the other cases in its batch."""

    recalibration = "mono"
    recalibration_options = {"minmax": "sample"}


AUTO_TRAINERS: tuple[type[RecalibrationTrainer], ...] = (
    nnUNetTrainerCSE, nnUNetTrainerCSE_original, nnUNetTrainerSSE, nnUNetTrainerSSE_original,
    nnUNetTrainerSCSE, nnUNetTrainerSCSE_original, nnUNetTrainerSRM, nnUNetTrainerSRM_original,
    nnUNetTrainerFCA, nnUNetTrainerFCA_original, nnUNetTrainerMono,
)
