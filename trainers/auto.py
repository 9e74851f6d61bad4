"""Trainers on nnU-Net's own plans (``2d``/``3d_fullres``, default or ResEnc presets) with one recalibration module
injected after every encoder stage but the bottleneck; everything else is the stock ``nnUNetTrainer``.

One class per variant; ``*_original`` use the official-paper semantics where they differ from the paper group's
reference (``recalibration_reference.md`` §8). sSE and Mono have a single definition, so no ``_original``.
"""

from __future__ import annotations

from nnunet_se.trainers.base import nnUNetTrainerRecalibration


class nnUNetTrainerCSE(nnUNetTrainerRecalibration):
    recalibration = "cse"


class nnUNetTrainerCSE_original(nnUNetTrainerRecalibration):
    recalibration = "cse"
    flavour = "original"


class nnUNetTrainerSSE(nnUNetTrainerRecalibration):
    recalibration = "sse"


class nnUNetTrainerSCSE(nnUNetTrainerRecalibration):
    recalibration = "scse"


class nnUNetTrainerSCSE_original(nnUNetTrainerRecalibration):
    recalibration = "scse"
    flavour = "original"


class nnUNetTrainerSRM(nnUNetTrainerRecalibration):
    recalibration = "srm"


class nnUNetTrainerSRM_original(nnUNetTrainerRecalibration):
    recalibration = "srm"
    flavour = "original"


class nnUNetTrainerFCA(nnUNetTrainerRecalibration):
    recalibration = "fca"


class nnUNetTrainerFCA_original(nnUNetTrainerRecalibration):
    recalibration = "fca"
    flavour = "original"


class nnUNetTrainerMono(nnUNetTrainerRecalibration):
    recalibration = "mono"


AUTO_TRAINERS: tuple[type[nnUNetTrainerRecalibration], ...] = (
    nnUNetTrainerCSE, nnUNetTrainerCSE_original, nnUNetTrainerSSE, nnUNetTrainerSCSE, nnUNetTrainerSCSE_original,
    nnUNetTrainerSRM, nnUNetTrainerSRM_original, nnUNetTrainerFCA, nnUNetTrainerFCA_original, nnUNetTrainerMono,
)
