"""The benchmark matrix: nnU-Net datasets, their splits' folds, and (dataset, trainer, fold) jobs.

Shared by ``nnunet-se grid``, ``nnunet-se status`` and ``nnunet-se-analyze table`` / ``excitations`` (``-f all``).
Importing this module does not import torch or nnU-Net. Trainer names and families come from
:mod:`nnunet_se.trainer_registry`; the state and Dice of each fold from :mod:`nnunet_se.results` (the one finished
rule).
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_se.cli_options import ALL_FOLDS, FOLDS_OPTION
from nnunet_se.errors import UserError, shown
from nnunet_se.results import DATASET_RE

DATASETS_OPTION = "-d/--datasets"
NNUNET_ROOTS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
DEFAULT_CONFIGURATION = "2d"
DEFAULT_PLANS = "nnUNetPlans"
NNUNET_DEFAULT_FOLDS = 5  # nnU-Net's own split (made on the first training when there is no splits_final.json)
DEFAULT_FOLDS = tuple(range(NNUNET_DEFAULT_FOLDS))
MAX_NAME_LENGTH = 100  # configuration and plans names: <trainer>__<plans>__<configuration> is one folder name
_DATASET_ID_RE = re.compile(r"\d{1,3}", re.ASCII)
# nnU-Net configuration names (2d, 3d_fullres, 3d_cascade_fullres) and plans identifiers (nnUNetResEncUNetMPlans):
# a word of letters, digits, '_', '.', '-' that does not start like an option. Nothing a shell or read(1) splits on.
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", re.ASCII)


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
            match = DATASET_RE.fullmatch(entry.name)
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
        match = DATASET_RE.fullmatch(token)
        if match and int(match.group(1)) >= 1:
            number = int(match.group(1))
            if number in known and known[number] != token:
                raise UserError(f"{DATASETS_OPTION} {token}: dataset id {number} is {known[number]} in the nnU-Net "
                                "folders")
            datasets.append(Dataset(number, token))
            continue
        if not _DATASET_ID_RE.fullmatch(token) or not 1 <= int(token) <= 999:
            raise UserError(f"{DATASETS_OPTION} {shown(token)}: expected a dataset id (1-999) or a DatasetNNN_Name "
                            "folder name")
        number = int(token)
        if number not in known:
            searched = ", ".join(f"{k}={v}" for k, v in roots.items() if v is not None) or "none set"
            raise UserError(f"{DATASETS_OPTION} {token}: no Dataset{number:03d}_* folder in the nnU-Net folders "
                            f"({searched})")
        datasets.append(Dataset(number, known[number]))
    if len(set(datasets)) != len(datasets):
        raise UserError(f"{DATASETS_OPTION} {' '.join(map(shown, tokens))}: a dataset is named twice")
    return datasets


def check_name(option: str, value: str) -> str:
    """``value`` if it is a valid nnU-Net configuration or plans name (see ``_NAME_RE``), else a UserError.

    These names end up in job scripts, in ``read``-split manifest lines and in folder names, so nothing else is
    let through (no space, newline, quote, ``$``, ``;``, ``/``).
    """
    if not _NAME_RE.fullmatch(value) or len(value) > MAX_NAME_LENGTH:
        raise UserError(f"{option} {shown(value)}: expected a name of letters, digits, '_', '.' or '-' (at most "
                        f"{MAX_NAME_LENGTH} characters, not starting with '-' or '.'), such as 2d or nnUNetPlans")
    return value


def fold_ranges(folds: Iterable[int]) -> str:
    """``0-4,7`` for [0, 1, 2, 3, 4, 7]; ``-`` when empty."""
    runs: list[list[int]] = []
    for fold in sorted(folds):
        if runs and fold == runs[-1][-1] + 1:
            runs[-1].append(fold)
        else:
            runs.append([fold])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs) or "-"


SPLITS_FILE = "splits_final.json"


def splits_file(roots: Mapping[str, Path | None], dataset: Dataset) -> Path | None:
    """``nnUNet_preprocessed/<dataset>/splits_final.json``, else the raw folder's copy (``nnunet-se-convert`` writes
    both; nnU-Net copies the raw one into the preprocessed folder when planning), else None."""
    for name in ("nnUNet_preprocessed", "nnUNet_raw"):
        root = roots.get(name)
        if root is not None and (root / dataset.name / SPLITS_FILE).is_file():
            return root / dataset.name / SPLITS_FILE
    return None


def split_fold_count(path: Path) -> int:
    """Number of folds in an nnU-Net ``splits_final.json`` (a non-empty list of ``{"train": [...], "val": [...]}``).

    Raises UserError when the file is not in that format.
    """
    try:
        splits = json.loads(path.read_text())
    except (ValueError, RecursionError) as exc:  # ValueError covers JSON and UTF-8 errors
        raise UserError(f"{path}: not a splits file ({exc})") from exc
    if not isinstance(splits, list) or not splits or not all(
            isinstance(s, dict) and isinstance(s.get("train"), list) and isinstance(s.get("val"), list)
            for s in splits):
        raise UserError(f"{path}: not a splits file (expected a non-empty list of {{\"train\": [...], "
                        "\"val\": [...]}} folds)")
    return len(splits)


@dataclass(frozen=True)
class SplitFolds:
    """The folds nnU-Net trains for a dataset on a fixed split, and where that number comes from (for messages).

    ``assumed``: there is no ``splits_final.json`` (not converted with ``nnunet-se-convert``, or converted with
    ``--splits nnunet``), so the folds are nnU-Net's default 0-4, which nnU-Net saves on the first training.
    """

    folds: list[int]
    dataset: str
    lookup: str  # "<path> has K folds", or why there is no splits_final.json
    assumed: bool

    @property
    def source(self) -> str:
        """Where the folds come from, for messages."""
        if not self.assumed:
            return self.lookup
        return f"{self.lookup}, and nnU-Net's default split of {self.dataset} has {NNUNET_DEFAULT_FOLDS} folds"

    @property
    def warning(self) -> str | None:
        return f"{self.source}; assuming folds {fold_ranges(self.folds)}" if self.assumed else None


def dataset_folds(roots: Mapping[str, Path | None], dataset: Dataset) -> SplitFolds:
    """The folds of ``dataset``'s ``splits_final.json`` (see :func:`splits_file`), else nnU-Net's default ones."""
    path = splits_file(roots, dataset)
    if path is not None:
        count = split_fold_count(path)
        return SplitFolds(list(range(count)), dataset.name, f"{path} has {count} folds", assumed=False)
    searched = [str(root / dataset.name) for name in ("nnUNet_preprocessed", "nnUNet_raw")
                if (root := roots.get(name)) is not None]
    missing = (f"no {SPLITS_FILE} in {' or '.join(searched)} yet" if searched
               else "neither nnUNet_preprocessed nor nnUNet_raw is set")
    return SplitFolds(list(DEFAULT_FOLDS), dataset.name, missing, assumed=True)


def check_folds(folds: Sequence[int], roots: Mapping[str, Path | None], dataset: Dataset) -> SplitFolds:
    """``dataset``'s split, after checking that every fold of ``folds`` is in it (else a UserError).

    nnU-Net does not refuse a fold outside its split: it trains it on a random 80:20 split of its own, which
    ignores the duplicate grouping of our splits.
    """
    split = dataset_folds(roots, dataset)
    outside = sorted(set(folds) - set(split.folds))
    if outside:
        raise UserError(f"{FOLDS_OPTION} {fold_ranges(outside)}: not a fold of {dataset.name} ({split.source}, "
                        f"{fold_ranges(split.folds)}); nnU-Net would train it on a random split of its own")
    return split


def folds_for(requested: Sequence[int] | str | None, roots: Mapping[str, Path | None],
              dataset: Dataset) -> tuple[list[int], SplitFolds]:
    """The folds ``-f`` names for ``dataset`` and its split: ``requested`` after :func:`check_folds`, or for ``all``
    (and when ``-f`` is not given) every fold of the split."""
    if requested is None or requested == ALL_FOLDS:
        split = dataset_folds(roots, dataset)
        return list(split.folds), split
    return list(requested), check_folds(requested, roots, dataset)


def build_manifest(datasets: Sequence[Dataset], trainers: Sequence[str],
                   folds: Sequence[int] | Mapping[Dataset, Sequence[int]],
                   configuration: str = DEFAULT_CONFIGURATION, plans: str = DEFAULT_PLANS) -> list[Job]:
    """Every (dataset, trainer, fold), dataset-major, so a job array index maps to one distinct training.

    ``folds``: the same folds for every dataset, or per dataset.
    """
    per_dataset = folds if isinstance(folds, Mapping) else dict.fromkeys(datasets, folds)
    return [Job(d, t, f, configuration, plans) for d in datasets for t in trainers for f in per_dataset[d]]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value) ignoring NaN; (nan, nan) when empty."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    return statistics.fmean(clean), statistics.stdev(clean) if len(clean) > 1 else 0.0
