"""The paper's fixed-configuration trainers: the authors' U-Net and protocol, one class per recalibration variant.

Model and protocol of the authors' code (miguelmartins/multifractal-recalibration; ``docs/trainers.md``): their
U-Net (:mod:`nnunet_se.trainers.paper_network`: 32/64/128/256, two 3x3 convs per stage, ReLU, max-pool, bilinear
upsampling, Keras initialisation, no deep supervision); 0.5 BCE + 0.5 per-image soft Dice
(:mod:`nnunet_se.trainers.paper_loss`); batch 16, patch 224x224, flips only, no foreground oversampling; Adam at a
constant 1e-4 without weight decay; 400 true epochs; the weights with the lowest dev (early-stopping, ES) loss are
kept and used for the final validation; the dev set follows the authors' rule. The planned nnU-Net network is
ignored; the plans still provide preprocessing, labels and the fold split.

One job per module: this one holds the protocol's settings (class attributes), the network and the loss; the
mixins :class:`~nnunet_se.trainers.paper_data.PaperData` (fit / ES split, loaders),
:class:`~nnunet_se.trainers.paper_optimisation.PaperOptimisation` (optimiser, schedule, train step, ES loss) and
:class:`~nnunet_se.trainers.paper_selection.BestEarlyStoppingCheckpoint` (best-ES checkpoint, early stop, resume)
do the rest.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunet_se.trainers.base import RecalibrationTrainer
from nnunet_se.trainers.early_stopping import EarlyStopping
from nnunet_se.trainers.paper_data import ESRule, PaperData
from nnunet_se.trainers.paper_loss import PaperLoss
from nnunet_se.trainers.paper_network import build_paper_unet
from nnunet_se.trainers.paper_optimisation import PaperOptimisation
from nnunet_se.trainers.paper_selection import BestEarlyStoppingCheckpoint
from nnunet_se.trainers.plateau import LRSchedule

_CUDA = torch.device("cuda")  # nnU-Net's default device
PAPER_BASELINE = "nnUNetTrainerPaper"  # the plain paper U-Net: Table I's "U-Net" row, baseline of the paper family


class nnUNetTrainerPaper(PaperData, PaperOptimisation, BestEarlyStoppingCheckpoint, RecalibrationTrainer):
    """Plain U-Net of the paper (no recalibration), trained with the paper's fixed protocol."""

    family: ClassVar[str] = "paper"
    baseline: ClassVar[str | None] = None  # the paper family's own baseline; every variant below is tested against it
    table_row: ClassVar[str | None] = "U-Net"
    network_summary: ClassVar[str] = "authors' U-Net: 32/64/128/256, ReLU, no norm, max-pool, bilinear up, no DS"
    # network
    features_per_stage: ClassVar[tuple[int, ...]] = (32, 64, 128, 256)
    conv_norm: ClassVar[str | None] = None  # authors' U-Net: no normalisation in the convs ("batch", "instance")
    downsampling: ClassVar[str] = "max"
    # protocol
    paper_batch_size: ClassVar[int] = 16
    paper_patch_size: ClassVar[tuple[int, int]] = (224, 224)
    paper_epochs: ClassVar[int] = 400
    learning_rate: ClassVar[float] = 1e-4
    lr_schedule: ClassVar[LRSchedule] = "constant"  # the authors' code (min_lr = initial lr); "plateau": paper text
    plateau_factor: ClassVar[float] = 0.5
    plateau_patience: ClassVar[int] = 5
    clip_gradients: ClassVar[bool] = False  # True: nnU-Net's clipping at gradient norm 12
    test_time_mirroring: ClassVar[bool] = False
    progress_plot_every: ClassVar[int | None] = 1  # epochs between progress.png redraws (nnU-Net: every epoch)
    env_iterations_cover_validation: ClassVar[bool] = False  # the dev loss is always one pass over the dev set
    early_stopping_rule: ClassVar[ESRule] = "authors"  # authors' dev set; "seeded": fraction/seed/groups below
    early_stopping_fraction: ClassVar[float] = 0.1
    early_stopping_patience: ClassVar[int | None] = None  # epochs without a better ES loss before stopping
    early_stopping_seed: ClassVar[int] = 12345  # + fold; NNUNET_SE_SEED replaces it when set

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = _CUDA):
        config = plans["configurations"][configuration]
        config["patch_size"] = self.fitted_patch_size(PlansManager(plans).get_configuration(configuration))
        config["batch_size"] = self.paper_batch_size
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False
        self.initial_lr = self.learning_rate
        self.weight_decay = 0.0
        self.oversample_foreground_percent = 0.0
        self.num_epochs = self.paper_epochs
        self.apply_schedule_overrides()
        self.early_stopping = EarlyStopping(self.early_stopping_patience)
        self._best_weights: dict[str, torch.Tensor] | None = None

    # ---- network -------------------------------------------------------------------------------------------------
    @classmethod
    def fitted_patch_size(cls, configuration_manager: Any) -> list[int]:
        """Paper patch, shrunk to small images: per axis min(paper, median image size rounded up to the divisor).

        The divisor is the network's total downsampling, 2 ** (stages - 1) = 8. Raises ValueError for non-2D plans.
        """
        median = [float(s) for s in configuration_manager.median_image_size_in_voxels]
        if len(median) != len(cls.paper_patch_size):
            raise ValueError(f"{cls.__name__} reproduces a 2D protocol; configuration "
                             f"{configuration_manager.data_identifier!r} has {len(median)}D images: use '2d'")
        div = 2 ** (len(cls.features_per_stage) - 1)
        return [min(p, div * math.ceil(m / div)) for p, m in zip(cls.paper_patch_size, median, strict=True)]

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: Any,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """The authors' U-Net (the plans' architecture is ignored; never deep supervision) with the modules.

        Without skip connections (cSE-NS) it is built without them rather than having them removed afterwards.
        """
        network = build_paper_unet(num_input_channels, num_output_channels, cls.features_per_stage, cls.conv_norm,
                                   cls.downsampling, cls.skip_connections)
        cls.inject_modules(network, configuration_manager.patch_size)
        return network

    def _build_loss(self) -> nn.Module:
        """The authors' 0.5 BCE + 0.5 per-image soft Dice (binary tasks only)."""
        labels = self.label_manager
        if labels.has_regions or labels.has_ignore_label or labels.num_segmentation_heads != 2:
            raise ValueError(f"{self.__class__.__name__} trains binary segmentation (background + 1 label, no "
                             f"regions or ignore label); this dataset has {labels.num_segmentation_heads} outputs")
        return PaperLoss()


class nnUNetTrainerPaperCSE(nnUNetTrainerPaper):
    """Paper U-Net + cSE after each encoder stage but the bottleneck."""

    recalibration = "cse"
    baseline = PAPER_BASELINE
    table_row = "+cSE"


class nnUNetTrainerPaperSSE(nnUNetTrainerPaper):
    """Paper U-Net + sSE."""

    recalibration = "sse"
    baseline = PAPER_BASELINE
    table_row = None


class nnUNetTrainerPaperSCSE(nnUNetTrainerPaper):
    """Paper U-Net + scSE."""

    recalibration = "scse"
    baseline = PAPER_BASELINE
    table_row = None


class nnUNetTrainerPaperSRM(nnUNetTrainerPaper):
    """Paper U-Net + SRM."""

    recalibration = "srm"
    baseline = PAPER_BASELINE
    table_row = "+SRM"


class nnUNetTrainerPaperFCA(nnUNetTrainerPaper):
    """Paper U-Net + FCA."""

    recalibration = "fca"
    baseline = PAPER_BASELINE
    table_row = "+FCA"


class nnUNetTrainerPaperMono(nnUNetTrainerPaper):
    """Paper U-Net + Mono (singularity-strength recalibration), min-max per image (docs/trainers.md)."""

    recalibration = "mono"
    recalibration_options = {"minmax": "sample"}
    baseline = PAPER_BASELINE
    table_row = "+Mono"


class nnUNetTrainerPaperCSENoSkip(nnUNetTrainerPaperCSE):
    """cSE-NS ablation: paper U-Net + cSE, decoder without skip connections."""

    skip_connections = False
    table_row = None  # Fig. 3's ablation; Table I has no row for it


PAPER_TRAINERS: dict[str, type[nnUNetTrainerPaper]] = {
    c.__name__: c for c in (nnUNetTrainerPaper, nnUNetTrainerPaperCSE, nnUNetTrainerPaperSSE, nnUNetTrainerPaperSCSE,
                            nnUNetTrainerPaperSRM, nnUNetTrainerPaperFCA, nnUNetTrainerPaperMono,
                            nnUNetTrainerPaperCSENoSkip)
}
