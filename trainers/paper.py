"""The paper's fixed-configuration trainers: one small 2D U-Net, one protocol, one class per recalibration variant.

Protocol (Martins, Coimbra, Renna; ``docs/trainers.md``): PlainConvUNet with 4 stages of 32/64/128/256 features,
two 3x3 convs per stage, ReLU, no deep supervision; batch 16, patch 224x224, flips only, no foreground
oversampling; Adam lr 1e-4 without weight decay, ReduceLROnPlateau x0.5 / patience 5 on the early-stopping (ES)
loss; 400 true epochs; the checkpoint with the lowest ES loss is kept and used for the final validation.
The planned nnU-Net network is ignored; the plans still provide preprocessing, labels and the fold split.
"""

from __future__ import annotations

import math
from time import time
from typing import Any, ClassVar

import numpy as np
import torch
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.utilities.file_and_folder_operations import isfile, join, save_json
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from nnunetv2.paths import nnUNet_raw
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import autocast, nn
from torch._dynamo import OptimizedModule

from nnunet_se.trainers.base import RecalibrationTrainer
from nnunet_se.trainers.early_stopping import (
    EarlyStopping,
    SequentialCaseLoader,
    read_case_table_columns,
    split_early_stopping,
)
from nnunet_se.trainers.paper_augmentation import flips_only_transforms
from nnunet_se.trainers.plateau import LRSchedule, build_plateau_scheduler

CHECKPOINT_KEY = "nnunet_se_paper"
_CUDA = torch.device("cuda")  # nnU-Net's default device
ES_SPLIT_FILE = "early_stopping_split.json"
_NORM_OPS: dict[str | None, tuple[type[nn.Module] | None, dict[str, Any] | None]] = {
    None: (None, None),
    "batch": (nn.BatchNorm2d, {"eps": 1e-5, "affine": True}),
    "instance": (nn.InstanceNorm2d, {"eps": 1e-5, "affine": True}),
}


class _StopTraining(Exception):
    """Raised at the end of an epoch when the early-stopping patience is used up."""


def build_paper_unet(
    input_channels: int,
    num_classes: int,
    features_per_stage: tuple[int, ...] = (32, 64, 128, 256),
    conv_norm: str | None = None,
    downsampling: str = "max",
    deep_supervision: bool = False,
) -> PlainConvUNet:
    """The paper's 2D U-Net: per stage two 3x3 conv [+ norm] + ReLU; 2x downsampling between stages.

    ``conv_norm``: None (authors), "batch" or "instance". ``downsampling``: "max" (2x2 max-pool, authors) or
    "conv" (strided first conv, nnU-Net habit). Input (N, input_channels, H, W) with H, W divisible by
    ``2 ** (len(features_per_stage) - 1)``; output logits (N, num_classes, H, W).
    """
    if conv_norm not in _NORM_OPS:
        raise ValueError(f"unknown conv_norm {conv_norm!r}; valid: {sorted(_NORM_OPS, key=str)}")
    if downsampling not in ("max", "conv"):
        raise ValueError(f"unknown downsampling {downsampling!r}; valid: 'max', 'conv'")
    norm_op, norm_kwargs = _NORM_OPS[conv_norm]
    n = len(features_per_stage)
    common = dict(
        features_per_stage=list(features_per_stage), conv_op=nn.Conv2d, kernel_sizes=[[3, 3]] * n,
        strides=[[1, 1]] + [[2, 2]] * (n - 1), n_conv_per_stage=[2] * n, conv_bias=True, norm_op=norm_op,
        norm_op_kwargs=norm_kwargs, dropout_op=None, dropout_op_kwargs=None, nonlin=nn.ReLU,
        nonlin_kwargs={"inplace": True},
    )
    net = PlainConvUNet(input_channels=input_channels, n_stages=n, num_classes=num_classes,
                        n_conv_per_stage_decoder=[2] * (n - 1), deep_supervision=deep_supervision, **common)
    if downsampling == "max":  # PlainConvUNet does not expose the encoder's pool option: same encoder, max-pool
        net.encoder = PlainConvEncoder(input_channels, n, return_skips=True, pool="max", **common)
        net.decoder.encoder = net.encoder
    return net


class nnUNetTrainerPaper(RecalibrationTrainer):
    """Plain U-Net of the paper (no recalibration), trained with the paper's fixed protocol."""

    family: ClassVar[str] = "paper"
    network_summary: ClassVar[str] = "paper U-Net: PlainConvUNet 32/64/128/256, ReLU, no norm, max-pool, no DS"
    # network
    features_per_stage: ClassVar[tuple[int, ...]] = (32, 64, 128, 256)
    conv_norm: ClassVar[str | None] = None  # authors' U-Net: no normalisation in the convs ("batch", "instance")
    downsampling: ClassVar[str] = "max"
    # protocol
    paper_batch_size: ClassVar[int] = 16
    paper_patch_size: ClassVar[tuple[int, int]] = (224, 224)
    paper_epochs: ClassVar[int] = 400
    learning_rate: ClassVar[float] = 1e-4
    lr_schedule: ClassVar[LRSchedule] = "plateau"  # "constant": the authors' code (min_lr = initial lr)
    plateau_factor: ClassVar[float] = 0.5
    plateau_patience: ClassVar[int] = 5
    clip_gradients: ClassVar[bool] = False  # True: nnU-Net's clipping at gradient norm 12
    test_time_mirroring: ClassVar[bool] = False
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
    def build_backbone(cls, plans_manager: PlansManager, configuration_manager: Any, num_input_channels: int,
                       num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        """The paper U-Net (the plans' architecture is ignored); the base class injects the modules."""
        return build_paper_unet(num_input_channels, num_output_channels, cls.features_per_stage, cls.conv_norm,
                                cls.downsampling, enable_deep_supervision)

    # ---- data ----------------------------------------------------------------------------------------------------
    def _early_stopping_seed(self) -> int:
        base = self.seed if self.seed is not None else self.early_stopping_seed
        return base + (self.fold if isinstance(self.fold, int) else 0)

    def get_tr_and_val_datasets(self):
        """(fit, early-stopping) datasets from the fold's training cases; sets the iterations per epoch."""
        tr_keys, test_keys = self.do_split()
        raw_dir = join(nnUNet_raw.get(), self.plans_manager.dataset_name) if nnUNet_raw.is_set() else None
        classes, groups = read_case_table_columns(raw_dir)
        seed = self._early_stopping_seed()
        fit_keys, es_keys = split_early_stopping(tr_keys, self.early_stopping_fraction, seed, classes, groups)
        if not es_keys:
            raise ValueError(f"{self.__class__.__name__} needs at least 2 training cases in fold {self.fold}, "
                             f"got {len(fit_keys)}")
        self.num_iterations_per_epoch = math.ceil(len(fit_keys) / self.batch_size)
        self.num_val_iterations_per_epoch = math.ceil(len(es_keys) / self.batch_size)
        self.apply_schedule_overrides()
        self.print_to_log_file(
            f"Early-stopping split (seed {seed}, {'stratified by class' if classes else 'unstratified'}"
            f"{', duplicate groups kept together' if groups else ''}): "
            f"{len(fit_keys)} fit / {len(es_keys)} early-stopping cases; {len(test_keys)} held-out test cases. "
            f"Iterations per epoch: {self.num_iterations_per_epoch} train, {self.num_val_iterations_per_epoch} ES.")
        if self.local_rank == 0:
            save_json({"seed": seed, "fraction": self.early_stopping_fraction, "stratified": classes is not None,
                       "grouped": groups is not None,
                       "fit": fit_keys, "early_stopping": es_keys, "test": sorted(test_keys)},
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

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        super().on_validation_epoch_end(val_outputs)
        self.lr_scheduler.step(float(self.logger.get_value("val_losses", step=-1)))

    # ---- checkpoint selection, early stopping ------------------------------------------------------------------------
    def _plain_network(self) -> nn.Module:
        net = self.network.module if self.is_ddp else self.network
        return net._orig_mod if isinstance(net, OptimizedModule) else net

    def on_epoch_end(self):
        """nnU-Net's epoch end with the best checkpoint chosen on the ES loss (not the EMA pseudo Dice)."""
        epoch = self.current_epoch
        self.logger.log("epoch_end_timestamps", time(), epoch)
        es_loss = float(self.logger.get_value("val_losses", step=-1))
        self.print_to_log_file("train_loss", np.round(self.logger.get_value("train_losses", step=-1), decimals=4))
        self.print_to_log_file("early_stopping_loss", np.round(es_loss, decimals=4))
        self.print_to_log_file("Pseudo dice (ES set)", [np.round(i, decimals=4) for i in
                                                        self.logger.get_value("dice_per_class_or_region", step=-1)])
        self.print_to_log_file("Epoch time: %.2f s" % (self.logger.get_value("epoch_end_timestamps", step=-1)
                                                       - self.logger.get_value("epoch_start_timestamps", step=-1)))
        ema = self.logger.get_value("ema_fg_dice", step=-1)
        self._best_ema = ema if self._best_ema is None else max(self._best_ema, ema)
        if self.early_stopping.update(es_loss, epoch):
            self._best_weights = {k: v.detach().clone() for k, v in self._plain_network().state_dict().items()}
            self.print_to_log_file(f"New best early-stopping loss: {es_loss:.4f}")
            self.save_checkpoint(join(self.output_folder, "checkpoint_best.pth"))
        if (epoch + 1) % self.save_every == 0 and epoch != self.num_epochs - 1:
            self.save_checkpoint(join(self.output_folder, "checkpoint_latest.pth"))
        if self.local_rank == 0:
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1
        if self.early_stopping.should_stop and self.current_epoch < self.num_epochs:
            es = self.early_stopping
            self.print_to_log_file(f"Early stop: no better ES loss for {es.stale_epochs} epochs "
                                   f"(best {es.best_loss:.4f} at epoch {es.best_epoch})")
            raise _StopTraining

    def run_training(self):
        if self.early_stopping.should_stop:  # resumed (--c) from a run that had already stopped early
            self.num_epochs = self.current_epoch
        try:
            super().run_training()
        except _StopTraining:
            self.on_train_end()

    def on_train_end(self):
        """Load the best-ES-loss weights, so checkpoint_final.pth and the final validation use them."""
        weights = self._best_weights
        best_file = join(self.output_folder, "checkpoint_best.pth")
        if weights is None and isfile(best_file):  # resumed: the best weights are only on disk
            weights = torch.load(best_file, map_location=self.device, weights_only=False)["network_weights"]
        if weights is not None:
            self._plain_network().load_state_dict(weights)
            self.print_to_log_file(f"Restored the weights of epoch {self.early_stopping.best_epoch} "
                                   f"(best early-stopping loss {self.early_stopping.best_loss:.4f})")
        super().on_train_end()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint plus the plateau scheduler and early-stopping state (exact ``--c`` resume)."""
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        torch.save({
            "network_weights": self._plain_network().state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": self._best_ema,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
            CHECKPOINT_KEY: {"lr_scheduler": self.lr_scheduler.state_dict(),
                             "early_stopping": self.early_stopping.state_dict()},
        }, filename)

    def load_checkpoint(self, filename_or_checkpoint: str) -> None:
        """nnU-Net's load (a path: nnU-Net 2.8.1 cannot load a dict), then the plateau and early-stopping state."""
        super().load_checkpoint(filename_or_checkpoint)
        state = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False).get(CHECKPOINT_KEY)
        if state is None:
            self.print_to_log_file("WARNING: checkpoint has no plateau/early-stopping state; they start afresh")
            return
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.early_stopping.load_state_dict(state["early_stopping"])


class nnUNetTrainerPaperCSE(nnUNetTrainerPaper):
    """Paper U-Net + cSE after each encoder stage but the bottleneck."""

    recalibration = "cse"


class nnUNetTrainerPaperSSE(nnUNetTrainerPaper):
    """Paper U-Net + sSE."""

    recalibration = "sse"


class nnUNetTrainerPaperSCSE(nnUNetTrainerPaper):
    """Paper U-Net + scSE."""

    recalibration = "scse"


class nnUNetTrainerPaperSRM(nnUNetTrainerPaper):
    """Paper U-Net + SRM."""

    recalibration = "srm"


class nnUNetTrainerPaperFCA(nnUNetTrainerPaper):
    """Paper U-Net + FCA."""

    recalibration = "fca"


class nnUNetTrainerPaperMono(nnUNetTrainerPaper):
    """Paper U-Net + Mono (singularity-strength recalibration)."""

    recalibration = "mono"


class nnUNetTrainerPaperCSENoSkip(nnUNetTrainerPaperCSE):
    """cSE-NS ablation: paper U-Net + cSE, decoder without skip connections."""

    skip_connections = False


PAPER_TRAINERS: dict[str, type[nnUNetTrainerPaper]] = {
    c.__name__: c for c in (nnUNetTrainerPaper, nnUNetTrainerPaperCSE, nnUNetTrainerPaperSSE, nnUNetTrainerPaperSCSE,
                            nnUNetTrainerPaperSRM, nnUNetTrainerPaperFCA, nnUNetTrainerPaperMono,
                            nnUNetTrainerPaperCSENoSkip)
}
