"""Data side of the paper protocol: the fold's training cases split into fit and early-stopping (ES) cases, and
the loaders (random flipped fit batches; one sequential pass over the ES cases per epoch).

Mixed into :class:`nnunet_se.trainers.paper.nnUNetTrainerPaper` (before nnU-Net's trainer among the bases); reads
its class attributes ``early_stopping_rule``, ``early_stopping_fraction``, ``early_stopping_seed``. The ES split is
written to ``fold_k/early_stopping_split.json``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.utilities.file_and_folder_operations import join, save_json
from nnunetv2.paths import nnUNet_raw
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

from nnunet_se.conversion.splits import authors_dev_split
from nnunet_se.trainers.early_stopping import SequentialCaseLoader, read_case_table_columns, split_early_stopping
from nnunet_se.trainers.paper_augmentation import flips_only_transforms

ES_SPLIT_FILE = "early_stopping_split.json"
ESRule = Literal["authors", "seeded"]


class PaperData:
    """nnUNetTrainer mixin: the paper's fit / early-stopping split and data loaders."""

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
