"""Trainers on nnU-Net's own plans (``2d``/``3d_fullres``, default or ResEnc presets) with one recalibration module
injected after every encoder stage but the bottleneck; everything else is the stock ``nnUNetTrainer``.

One class per variant (family ``auto``, tested against the stock ``nnUNetTrainer``); ``*_original`` (family
``original``, no Table I row) use the official-paper semantics where they differ from the paper group's
reference code (docs/modules.md, "Choices per module and flavour"; sSE differs only in its initialisation). Mono
has one definition; its trainer min-maxes per image (``minmax="sample"``), as the paper trainers do
(``docs/trainers.md``).
"""

from __future__ import annotations

from nnunet_se.trainers.base import RecalibrationTrainer


class nnUNetTrainerCSE(RecalibrationTrainer):
    recalibration = "cse"
    table_row = "+cSE"


class nnUNetTrainerCSE_original(RecalibrationTrainer):
    recalibration = "cse"
    flavour = "original"
    family = "original"


class nnUNetTrainerSSE(RecalibrationTrainer):
    recalibration = "sse"


class nnUNetTrainerSSE_original(RecalibrationTrainer):
    recalibration = "sse"
    flavour = "original"
    family = "original"


class nnUNetTrainerSCSE(RecalibrationTrainer):
    recalibration = "scse"


class nnUNetTrainerSCSE_original(RecalibrationTrainer):
    recalibration = "scse"
    flavour = "original"
    family = "original"


class nnUNetTrainerSRM(RecalibrationTrainer):
    recalibration = "srm"
    table_row = "+SRM"


class nnUNetTrainerSRM_original(RecalibrationTrainer):
    recalibration = "srm"
    flavour = "original"
    family = "original"


class nnUNetTrainerFCA(RecalibrationTrainer):
    recalibration = "fca"
    table_row = "+FCA"


class nnUNetTrainerFCA_original(RecalibrationTrainer):
    recalibration = "fca"
    flavour = "original"
    family = "original"


class nnUNetTrainerMono(RecalibrationTrainer):
    """Mono with per-image min-max: a case's prediction does not depend on the other cases in its batch."""

    recalibration = "mono"
    recalibration_options = {"minmax": "sample"}
    table_row = "+Mono"


AUTO_TRAINERS: tuple[type[RecalibrationTrainer], ...] = (
    nnUNetTrainerCSE, nnUNetTrainerCSE_original, nnUNetTrainerSSE, nnUNetTrainerSSE_original,
    nnUNetTrainerSCSE, nnUNetTrainerSCSE_original, nnUNetTrainerSRM, nnUNetTrainerSRM_original,
    nnUNetTrainerFCA, nnUNetTrainerFCA_original, nnUNetTrainerMono,
)
