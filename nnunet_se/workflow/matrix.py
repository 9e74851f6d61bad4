"""The benchmark matrix: (dataset, trainer, fold) jobs for ``nnunet-se grid`` and the fold folders they write.

Datasets, model folder names and folds come from :mod:`nnunet_se.layout` (nnU-Net's folder conventions); trainer
names and families from :mod:`nnunet_se.trainer_registry`. Importing this module does not import torch or nnU-Net.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_se.errors import UserError, shown
from nnunet_se.layout import DEFAULT_CONFIGURATION, DEFAULT_PLANS, Dataset, model_folder_name

MAX_NAME_LENGTH = 100  # configuration and plans names: <trainer>__<plans>__<configuration> is one folder name
# nnU-Net configuration names (2d, 3d_fullres, 3d_cascade_fullres) and plans identifiers (nnUNetResEncUNetMPlans):
# a word of letters, digits, '_', '.', '-' that does not start like an option. Nothing a shell or read(1) splits on.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", re.ASCII)


@dataclass(frozen=True)
class Job:
    """One training: ``nnUNetv2_train <dataset.id> <configuration> <fold> -tr <trainer> -p <plans>``."""

    dataset: Dataset
    trainer: str
    fold: int
    configuration: str = DEFAULT_CONFIGURATION
    plans: str = DEFAULT_PLANS

    @property
    def model_dir(self) -> str:
        """``DatasetNNN_Name/<trainer>__<plans>__<configuration>``, relative to ``nnUNet_results``."""
        return f"{self.dataset.name}/{model_folder_name(self.trainer, self.plans, self.configuration)}"

    def fold_folder(self, results: Path) -> Path:
        return results / self.model_dir / f"fold_{self.fold}"

    def train_command(self, device: str = "cuda") -> list[str]:
        """The resuming nnU-Net command (``--c`` starts afresh when there is no checkpoint yet)."""
        return ["nnUNetv2_train", str(self.dataset.id), self.configuration, str(self.fold), "-tr", self.trainer,
                "-p", self.plans, "-device", device, "--c"]


def check_name(option: str, value: str) -> str:
    """``value`` if it is a valid nnU-Net configuration or plans name (see ``_NAME_RE``), else a UserError.

    These names end up in job scripts, in ``read``-split manifest lines and in folder names, so nothing else is
    let through (no space, newline, quote, ``$``, ``;``, ``/``).
    """
    if not _NAME_RE.fullmatch(value) or len(value) > MAX_NAME_LENGTH:
        raise UserError(f"{option} {shown(value)}: expected a name of letters, digits, '_', '.' or '-' (at most "
                        f"{MAX_NAME_LENGTH} characters, not starting with '-' or '.'), such as 2d or nnUNetPlans")
    return value


def build_manifest(datasets: Sequence[Dataset], trainers: Sequence[str],
                   folds: Sequence[int] | Mapping[Dataset, Sequence[int]],
                   configuration: str = DEFAULT_CONFIGURATION, plans: str = DEFAULT_PLANS) -> list[Job]:
    """Every (dataset, trainer, fold), dataset-major, so a job array index maps to one distinct training.

    ``folds``: the same folds for every dataset, or per dataset.
    """
    per_dataset = folds if isinstance(folds, Mapping) else dict.fromkeys(datasets, folds)
    return [Job(d, t, f, configuration, plans) for d in datasets for t in trainers for f in per_dataset[d]]
