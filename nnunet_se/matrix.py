"""The benchmark matrix: (dataset, trainer, fold) jobs, and the state of each in ``nnUNet_results``.

Shared by ``nnunet-se grid`` and ``nnunet-se status``. Importing this module does not import torch or nnU-Net,
so both commands start in well under a second; the trainer families below are a static table that
``tests/test_grid.py`` checks against ``nnunet_se.trainers.ALL_TRAINERS``.

A fold is *finished* when ``fold_k/checkpoint_final.pth`` and ``fold_k/validation/summary.json`` exist, *running*
when training or its final validation has started (``checkpoint_latest.pth``, or ``checkpoint_final.pth`` without a
summary: nnU-Net's ``--c`` resumes both) and *missing* otherwise.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from nnunet_se.errors import UserError

BASELINE_TRAINER = "nnUNetTrainer"
TRAINER_FAMILIES: dict[str, tuple[str, ...]] = {
    # Table I (U-Net, +cSE, +SRM, +FCA, +Mono) and Fig. 3's cSE without skips, on the paper's fixed U-Net.
    "paper": (
        "nnUNetTrainerPaper",
        "nnUNetTrainerPaperCSE",
        "nnUNetTrainerPaperSRM",
        "nnUNetTrainerPaperFCA",
        "nnUNetTrainerPaperMono",
        "nnUNetTrainerPaperCSENoSkip",
    ),
    # nnU-Net's own planned network, plain and with every recalibration module.
    "auto": (
        BASELINE_TRAINER,
        "nnUNetTrainerCSE",
        "nnUNetTrainerSSE",
        "nnUNetTrainerSCSE",
        "nnUNetTrainerSRM",
        "nnUNetTrainerFCA",
        "nnUNetTrainerMono",
    ),
}
NNUNET_ROOTS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
DEFAULT_CONFIGURATION = "2d"
DEFAULT_PLANS = "nnUNetPlans"
DEFAULT_FOLDS = tuple(range(5))
_DATASET_RE = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9_\-]+)$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FOLD_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+))?$")


class State(str, Enum):
    FINISHED = "finished"
    RUNNING = "running"
    MISSING = "missing"


@dataclass(frozen=True, order=True)
class Dataset:
    """An nnU-Net dataset: ``id`` (1-999) and folder ``name`` (``DatasetNNN_Name``)."""

    id: int
    name: str


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
        return f"{self.dataset.name}/{self.trainer}__{self.plans}__{self.configuration}"

    def fold_folder(self, results: Path) -> Path:
        return results / self.model_dir / f"fold_{self.fold}"

    def train_command(self, device: str = "cuda") -> list[str]:
        """The resuming nnU-Net command (``--c`` starts afresh when there is no checkpoint yet)."""
        return ["nnUNetv2_train", str(self.dataset.id), self.configuration, str(self.fold), "-tr", self.trainer,
                "-p", self.plans, "-device", device, "--c"]


def fold_state(folder: Path) -> State:
    """State of one ``fold_k`` folder of ``nnUNet_results`` (see the module docstring)."""
    if (folder / "checkpoint_final.pth").is_file():
        return State.FINISHED if (folder / "validation" / "summary.json").is_file() else State.RUNNING
    if (folder / "checkpoint_latest.pth").is_file():
        return State.RUNNING
    return State.MISSING


def fold_dice(folder: Path) -> float | None:
    """Foreground-mean Dice of a fold's final validation (``validation/summary.json``), or None if absent.

    Raises UserError when the summary exists but is not nnU-Net's format.
    """
    path = folder / "validation" / "summary.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())["foreground_mean"]["Dice"]
        return float(value)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not an nnU-Net summary (no foreground_mean.Dice: {exc})") from exc


def nnunet_roots(environ: Mapping[str, str] | None = None) -> dict[str, Path | None]:
    """nnU-Net's three root folders from the environment (None where unset)."""
    environ = os.environ if environ is None else environ
    return {name: Path(environ[name]) if environ.get(name) else None for name in NNUNET_ROOTS}


def find_datasets(roots: Iterable[Path | None]) -> dict[int, str]:
    """``{id: DatasetNNN_Name}`` for every dataset folder in the given roots; an id named differently is an error."""
    found: dict[int, tuple[str, Path]] = {}
    for root in roots:
        if root is None or not root.is_dir():
            continue
        for entry in sorted(root.iterdir()):
            match = _DATASET_RE.match(entry.name)
            if not match or not entry.is_dir():
                continue
            number = int(match.group(1))
            if number in found and found[number][0] != entry.name:
                raise UserError(f"{entry}: dataset id {number} is also named {found[number][0]} in "
                                f"{found[number][1].parent}; rename one of them")
            found.setdefault(number, (entry.name, entry))
    return {number: name for number, (name, _) in sorted(found.items())}


def resolve_datasets(tokens: Sequence[str], roots: Mapping[str, Path | None]) -> list[Dataset]:
    """Datasets from ids (``601``) or folder names (``Dataset601_Kvasir``), looked up in the nnU-Net roots."""
    known = find_datasets(roots.values())
    datasets: list[Dataset] = []
    for token in tokens:
        match = _DATASET_RE.match(token)
        if match:
            number = int(match.group(1))
            if number in known and known[number] != token:
                raise UserError(f"--datasets {token}: dataset id {number} is {known[number]} in the nnU-Net folders")
            datasets.append(Dataset(number, token))
            continue
        if not token.isdigit() or not 1 <= int(token) <= 999:
            raise UserError(f"--datasets {token}: expected a dataset id (1-999) or a DatasetNNN_Name folder name")
        number = int(token)
        if number not in known:
            searched = ", ".join(f"{k}={v}" for k, v in roots.items() if v is not None) or "none set"
            raise UserError(f"--datasets {token}: no Dataset{number:03d}_* folder in the nnU-Net folders "
                            f"({searched})")
        datasets.append(Dataset(number, known[number]))
    if len(set(datasets)) != len(datasets):
        raise UserError(f"--datasets {' '.join(tokens)}: a dataset is named twice")
    return datasets


def expand_trainers(tokens: Sequence[str]) -> list[str]:
    """Trainer names from family names (``paper``, ``auto``) and class names, in order, without duplicates."""
    trainers: list[str] = []
    for token in tokens:
        names = TRAINER_FAMILIES.get(token, (token,))
        for name in names:
            if not _IDENTIFIER_RE.match(name):
                raise UserError(f"--trainers {name}: not a trainer class name or one of the families "
                                f"{', '.join(TRAINER_FAMILIES)}")
            if name not in trainers:
                trainers.append(name)
    return trainers


def parse_folds(tokens: Sequence[str]) -> list[int]:
    """Folds from ``0-9``, ``0 1 2`` or ``0-4,7`` (sorted, unique)."""
    folds: set[int] = set()
    for token in tokens:
        for part in token.split(","):
            match = _FOLD_RANGE_RE.match(part.strip())
            if not match:
                raise UserError(f"--folds {token}: expected fold numbers or ranges like 0-9 or 0,2,4")
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise UserError(f"--folds {token}: range {part} is empty")
            folds.update(range(first, last + 1))
    return sorted(folds)


def split_fold_count(preprocessed: Path | None, dataset: Dataset) -> int | None:
    """Number of folds in ``nnUNet_preprocessed/<dataset>/splits_final.json``, or None when there is none."""
    if preprocessed is None:
        return None
    path = preprocessed / dataset.name / "splits_final.json"
    if not path.is_file():
        return None
    try:
        return len(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"{path}: not a splits file ({exc})") from exc


def build_manifest(datasets: Sequence[Dataset], trainers: Sequence[str], folds: Sequence[int],
                   configuration: str = DEFAULT_CONFIGURATION, plans: str = DEFAULT_PLANS) -> list[Job]:
    """Every (dataset, trainer, fold), dataset-major, so a job array index maps to one distinct training."""
    return [Job(d, t, f, configuration, plans) for d in datasets for t in trainers for f in folds]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) ignoring NaN; (nan, nan) when empty."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0
