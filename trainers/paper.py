"""The paper's fixed-configuration trainers: the authors' U-Net and protocol, one class per recalibration variant.

Model and protocol of the authors' code (miguelmartins/multifractal-recalibration; ``docs/trainers.md``): their
U-Net (:mod:`nnunet_se.trainers.paper_network`: 32/64/128/256, two 3x3 convs per stage, ReLU, max-pool, bilinear
upsampling, Keras initialisation, no deep supervision); 0.5 BCE + 0.5 per-image soft Dice
(:mod:`nnunet_se.trainers.paper_loss`); batch 16, patch 224x224, flips only, no foreground oversampling; Adam at a
constant 1e-4 without weight decay; 400 true epochs; the weights with the lowest dev (early-stopping, ES) loss are
kept and used for the final validation; the dev set follows the authors' rule. The planned nnU-Net network is
ignored; the plans still provide preprocessing, labels and the fold split.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.utilities.file_and_folder_operations import join, save_json
from nnunetv2.paths import nnUNet_raw
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import autocast, nn

from nnunet_se.conversion.splits import authors_dev_split
from nnunet_se.trainers.base import RecalibrationTrainer
from nnunet_se.trainers.early_stopping import (
    EarlyStopping,
    SequentialCaseLoader,
    read_case_table_columns,
    split_early_stopping,
)
from nnunet_se.trainers.paper_augmentation import flips_only_transforms
from nnunet_se.trainers.paper_loss import PaperLoss
from nnunet_se.trainers.paper_network import build_paper_unet
from nnunet_se.trainers.paper_selection import BestEarlyStoppingCheckpoint
from nnunet_se.trainers.plateau import LRSchedule, build_plateau_scheduler

_CUDA = torch.device("cuda")  # nnU-Net's default device
ES_SPLIT_FILE = "early_stopping_split.json"
ESRule = Literal["authors", "seeded"]
PAPER_BASELINE = "nnUNetTrainerPaper"  # the plain paper U-Net: Table I's "U-Net" row, baseline of the paper family


class nnUNetTrainerPaper(BestEarlyStoppingCheckpoint, RecalibrationTrainer):
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

    # ---- data ----------------------------------------------------------------------------------------------------
    def _early_stopping_seed(self) -> int:
        base = self.seed if self.seed is not None else self.early_stopping_seed
        return base + (self.fold if isinstance(self.fold, int) else 0)

    def split_fit_and_early_stopping(self, train_keys: list[str]) -> tuple[list[str], list[str], dict[str, Any]]:
        """(fit, ES) cases of the fold's training cases by ``early_stopping_rule``, plus a record of the rule."""
        raw_dir = join(nnUNet_raw.get(), self.plans_manager.dataset_name) if nnUNet_raw.is_set() else None
        classes, groups = read_case_table_columns(raw_dir)
        record: dict[str, Any] = {"rule": self.early_stopping_rule, "stratified": classes is not None}
        if self.early_stopping_rule == "authors":
            try:
                fit_keys, es_keys = authors_dev_split(train_keys, classes)
            except ValueError as err:  # a class with a single training case (tiny datasets)
                self.print_to_log_file(f"WARNING: {err}; using the unstratified rule")
                classes, record["stratified"] = None, False
                fit_keys, es_keys = authors_dev_split(train_keys, None)
            record["description"] = ("stratified 20 %, train_test_split(random_state=42)" if classes
                                     else "last 10 % of the sorted training cases")
        elif self.early_stopping_rule == "seeded":
            seed = self._early_stopping_seed()
            fit_keys, es_keys = split_early_stopping(train_keys, self.early_stopping_fraction, seed, classes, groups)
            record.update(seed=seed, fraction=self.early_stopping_fraction, grouped=groups is not None)
        else:
            raise ValueError(f"unknown early_stopping_rule {self.early_stopping_rule!r}; valid: 'authors', 'seeded'")
        return fit_keys, es_keys, record

    def get_tr_and_val_datasets(self):
        """(fit, early-stopping) datasets from the fold's training cases; sets the iterations per epoch."""
        tr_keys, test_keys = self.do_split()
        fit_keys, es_keys, record = self.split_fit_and_early_stopping(tr_keys)
        if not es_keys:
            raise ValueError(f"{self.__class__.__name__} needs at least 2 training cases in fold {self.fold}, "
                             f"got {len(fit_keys)}")
        self.num_iterations_per_epoch = math.ceil(len(fit_keys) / self.batch_size)
        self.num_val_iterations_per_epoch = math.ceil(len(es_keys) / self.batch_size)
        self.apply_schedule_overrides()
        self.print_to_log_file(
            f"Early-stopping split {record}: {len(fit_keys)} fit / {len(es_keys)} early-stopping cases; "
            f"{len(test_keys)} held-out test cases. "
            f"Iterations per epoch: {self.num_iterations_per_epoch} train, {self.num_val_iterations_per_epoch} ES.")
        if self.local_rank == 0:
            save_json({**record, "fit": fit_keys, "early_stopping": es_keys, "test": sorted(test_keys)},
                      join(self.output_folder, ES_SPLIT_FILE), sort_keys=False)
        return self._dataset(fit_keys), self._dataset(es_keys)

    def _dataset(self, keys: list[str]):
        return self.dataset_class(self.preprocessed_dataset_folder, keys,
                                  folder_with_segs_from_previous_stage=self.folder_with_segs_from_previous_stage)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """No rotation/scaling, so the loader samples the final patch directly (initial patch = patch)."""
        rotation, dummy_2d, _, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = mirror_axes if self.test_time_mirroring else None
        return rotation, dummy_2d, list(self.configuration_manager.patch_size), mirror_axes

    @staticmethod
    def get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None):
        return flips_only_transforms(mirror_axes, deep_supervision_scales)

    def get_dataloaders(self):
        """Random fit batches (nnU-Net's loader, flips only) and a single-threaded walk over the whole ES set."""
        if self.dataset_class is None:
            self.dataset_class = infer_dataset_class(self.preprocessed_dataset_folder)
        patch = self.configuration_manager.patch_size
        rotation, dummy_2d, initial_patch, mirror_axes = \
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        ds_scales = self._get_deep_supervision_scales()
        tr_transforms = self.get_training_transforms(patch, rotation, ds_scales, mirror_axes, dummy_2d)
        val_transforms = self.get_validation_transforms(
            ds_scales, is_cascaded=self.is_cascaded, foreground_labels=self.label_manager.foreground_labels,
            regions=self.label_manager.foreground_regions if self.label_manager.has_regions else None,
            ignore_label=self.label_manager.ignore_label)
        fit, es = self.get_tr_and_val_datasets()
        dl_fit = nnUNetDataLoader(fit, self.batch_size, initial_patch, patch, self.label_manager,
                                  oversample_foreground_percent=self.oversample_foreground_percent,
                                  transforms=tr_transforms)
        dl_es = SequentialCaseLoader(es, self.batch_size, patch, patch, self.label_manager,
                                     oversample_foreground_percent=0.0, transforms=val_transforms)
        n_proc = get_allowed_n_proc_DA()
        if n_proc == 0:
            gen_fit = SingleThreadedAugmenter(dl_fit, None)
        else:
            gen_fit = NonDetMultiThreadedAugmenter(
                data_loader=dl_fit, transform=None, num_processes=n_proc, num_cached=max(6, n_proc // 2),
                seeds=[self.seed + i for i in range(n_proc)] if self.seed is not None else None,
                pin_memory=self.device.type == "cuda", wait_time=0.002)
        _ = next(gen_fit)
        return gen_fit, SingleThreadedAugmenter(dl_es, None)

    # ---- optimisation --------------------------------------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, build_plateau_scheduler(optimizer, self.lr_schedule, self.plateau_factor,
                                                  self.plateau_patience)

    def on_train_epoch_start(self):
        """As nnU-Net, minus its per-epoch scheduler step (the plateau scheduler steps on the ES loss)."""
        self.network.train()
        lr = self.optimizer.param_groups[0]["lr"]
        self.print_to_log_file("")
        self.print_to_log_file(f"Epoch {self.current_epoch}")
        self.print_to_log_file(f"Current learning rate: {lr:.3g}")
        self.logger.log("lrs", lr, self.current_epoch)

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's train step; without its gradient clipping unless ``clip_gradients``."""
        if self.clip_gradients:
            return super().train_step(batch)
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            loss = self.loss(self.network(data), target)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy()}

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step, plus the number of cases in the batch (the last ES batch may be smaller)."""
        cases = int(batch["data"].shape[0])
        return {**super().validation_step(batch), "cases": cases}

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        """ES loss = case-weighted mean of the batch losses (Keras' ``val_loss``), then nnU-Net's epoch end."""
        weights = [o.pop("cases") for o in val_outputs]
        es_loss = float(np.average([float(o["loss"]) for o in val_outputs], weights=weights))
        for o in val_outputs:  # nnU-Net logs the plain mean of the batch losses: make each one the weighted mean
            o["loss"] = np.float32(es_loss)
        super().on_validation_epoch_end(val_outputs)
        self.lr_scheduler.step(float(self.logger.get_value("val_losses", step=-1)))


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
