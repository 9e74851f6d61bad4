"""nnU-Net v2's folder conventions, one function per concept; every command finds datasets, models and folds here.

- Folder variables: ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results`` (:func:`nnunet_roots`).
- Datasets: ``<root>/DatasetNNN_Name`` (:data:`DATASET_RE`, :func:`find_datasets`, :func:`resolve_datasets`).
- Models: ``<nnUNet_results>/DatasetNNN_Name/<trainer>__<plans>__<configuration>`` (:func:`model_folder_name`,
  :func:`parse_model_folder_name`, :func:`model_folder`), as nnU-Net's
  ``nnunetv2.utilities.file_path_utilities.get_output_folder`` builds it.
- Trainer search folders: ``nnUNet_extTrainer``, where nnU-Net looks for trainer classes besides its own
  (:func:`ext_trainer_value`, with the plugin's :func:`shim_folder` first).
- Folds: ``fold_<k>`` inside a model folder; which folds a dataset has comes from its ``splits_final.json``
  (:func:`dataset_folds`), nnU-Net's default 5 folds without one; ``-f all`` means every fold of that split
  (:func:`folds_for`).

Importing this module does not import torch or nnU-Net.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nnunet_se.nnunet_ext
from nnunet_se.errors import UserError, shown

DEFAULT_CONFIGURATION = "2d"
DEFAULT_PLANS = "nnUNetPlans"
RAW, PREPROCESSED, RESULTS = "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"
NNUNET_ROOTS = (RAW, PREPROCESSED, RESULTS)
"""nnU-Net's folder variables (environment variables read by ``nnunetv2.paths``)."""
EXT_VARIABLE = "nnUNet_extTrainer"
"""Folders (``os.pathsep``-separated) that nnU-Net's trainer lookup searches besides ``nnunetv2.training``."""
NNUNET_DEFAULT_FOLDS = 5  # nnU-Net's own split (made on the first training when there is no splits_final.json)
DEFAULT_FOLDS = tuple(range(NNUNET_DEFAULT_FOLDS))
SPLITS_FILE = "splits_final.json"
ALL_FOLDS = "all"
"""``-f all``: every fold of the dataset's split (:func:`folds_for`)."""
DATASETS_OPTION = "-d/--datasets"
FOLDS_OPTION = "-f/--folds"

DATASET_RE = re.compile(r"Dataset(\d{3})_([A-Za-z0-9_\-]+)", re.ASCII)
"""The one dataset-folder pattern (fullmatch): ``DatasetNNN_Name``, the name one shell word (grid writes it into
job scripts)."""
MODEL_RE = re.compile(r"(?P<trainer>[^_].*?)__(?P<plans>.+)__(?P<configuration>[^_].*)")
"""A model folder name (fullmatch): the trainer ends at the first ``__``, the configuration starts after the last."""
_DATASET_ID_RE = re.compile(r"\d{1,3}", re.ASCII)


# --- folder variables -------------------------------------------------------------------------------------------

def nnunet_roots(environ: Mapping[str, str] | None = None) -> dict[str, Path | None]:
    """nnU-Net's three folders from the environment (``os.environ`` by default): name -> path, None where unset or
    empty (nnU-Net treats an empty variable as unset)."""
    environ = os.environ if environ is None else environ
    return {name: Path(environ[name]) if environ.get(name) else None for name in NNUNET_ROOTS}


def shim_folder() -> Path:
    """The folder holding only the shim module (``nnunet_se_trainers_shim.py``) for ``nnUNet_extTrainer``."""
    return Path(nnunet_se.nnunet_ext.__file__).resolve().parent


def ext_trainer_value(current: str | None) -> str:
    """``nnUNet_extTrainer`` with the shim folder first, keeping any other folders the user already has."""
    ours = str(shim_folder())
    others = [p for p in (current or "").split(os.pathsep) if p and Path(p).resolve() != Path(ours)]
    return os.pathsep.join([ours, *others])


# --- model folders ----------------------------------------------------------------------------------------------

def model_folder_name(trainer: str, plans: str = DEFAULT_PLANS, configuration: str = DEFAULT_CONFIGURATION) -> str:
    """``<trainer>__<plans>__<configuration>``: nnU-Net's folder of one trained model inside a dataset's results."""
    return f"{trainer}__{plans}__{configuration}"


def parse_model_folder_name(name: str) -> tuple[str, str, str]:
    """``(trainer, plans, configuration)`` of a model folder name (see :data:`MODEL_RE`); ValueError for any other
    name."""
    match = MODEL_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a <trainer>__<plans>__<configuration> folder name")
    return match["trainer"], match["plans"], match["configuration"]


def model_folder(results: Path, dataset: str, trainer: str, plans: str = DEFAULT_PLANS,
                 configuration: str = DEFAULT_CONFIGURATION) -> Path:
    """``<results>/<dataset>/<trainer>__<plans>__<configuration>``; ``dataset`` is the ``DatasetNNN_Name`` folder."""
    return results / dataset / model_folder_name(trainer, plans, configuration)


# --- datasets ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Dataset:
    """An nnU-Net dataset: ``id`` (1-999) and folder ``name`` (``DatasetNNN_Name``)."""

    id: int
    name: str


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


def match_dataset(token: str, known: Mapping[int, str], where: str) -> Dataset:
    """The dataset a ``-d`` token names among ``known`` (``{id: DatasetNNN_Name}``, found in ``where``).

    ``token`` is an id (``601``, ``0601`` is not one) or a folder name (``Dataset601_Kvasir``); a folder name is taken
    as given unless ``known`` names its id differently.
    """
    match = DATASET_RE.fullmatch(token)
    if match and int(match.group(1)) >= 1:
        number = int(match.group(1))
        if number in known and known[number] != token:
            raise UserError(f"{DATASETS_OPTION} {token}: dataset id {number} is {known[number]} in {where}")
        return Dataset(number, token)
    if not _DATASET_ID_RE.fullmatch(token) or not 1 <= int(token) <= 999:
        raise UserError(f"{DATASETS_OPTION} {shown(token)}: expected a dataset id (1-999) or a DatasetNNN_Name "
                        "folder name")
    number = int(token)
    if number not in known:
        raise UserError(f"{DATASETS_OPTION} {token}: no Dataset{number:03d}_* folder in {where}")
    return Dataset(number, known[number])


def resolve_datasets(tokens: Sequence[str], roots: Mapping[str, Path | None]) -> list[Dataset]:
    """Datasets from ids (``601``) or folder names (``Dataset601_Kvasir``), looked up in the nnU-Net folders
    ``roots`` (see :func:`nnunet_roots`); a dataset named twice is an error."""
    searched = ", ".join(f"{k}={v}" for k, v in roots.items() if v is not None) or "none set"
    known = find_datasets(roots.values())
    datasets = [match_dataset(token, known, f"the nnU-Net folders ({searched})") for token in tokens]
    if len(set(datasets)) != len(datasets):
        raise UserError(f"{DATASETS_OPTION} {' '.join(map(shown, tokens))}: a dataset is named twice")
    return datasets


# --- folds ------------------------------------------------------------------------------------------------------

def fold_ranges(folds: Iterable[int]) -> str:
    """``0-4,7`` for [0, 1, 2, 3, 4, 7]; ``-`` when empty."""
    runs: list[list[int]] = []
    for fold in sorted(folds):
        if runs and fold == runs[-1][-1] + 1:
            runs[-1].append(fold)
        else:
            runs.append([fold])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs) or "-"


def splits_file(roots: Mapping[str, Path | None], dataset: Dataset) -> Path | None:
    """``nnUNet_preprocessed/<dataset>/splits_final.json``, else the raw folder's copy (``nnunet-se-convert`` writes
    both; nnU-Net copies the raw one into the preprocessed folder when planning), else None."""
    for name in (PREPROCESSED, RAW):
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
    searched = [str(root / dataset.name) for name in (PREPROCESSED, RAW) if (root := roots.get(name)) is not None]
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
