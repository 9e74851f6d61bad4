"""The one reader of ``nnUNet_results``: which folds are finished, running or missing, and their Dice.

Layout: ``<nnUNet_results>/DatasetNNN_Name/<Trainer>__<Plans>__<configuration>/fold_<k>/``. Used by
``nnunet-se status``, ``nnunet-se grid`` (its job scripts' skip check is the same rule in bash, see
:data:`FINISHED_BASH`), ``nnunet-se-analyze table`` and the demo. Importing it is cheap (no torch, no nnU-Net).

**The finished rule** (docs/cluster.md, "Finished, running, missing"). nnU-Net writes, in this order:
``checkpoint_best.pth`` (from the first epoch on), ``checkpoint_latest.pth`` (every 50 epochs),
``checkpoint_final.pth`` at the end of training (then it deletes ``checkpoint_latest.pth``), and last
``validation/summary.json`` from the final validation. So a fold is

- *finished* when ``validation/summary.json`` exists and ``checkpoint_latest.pth`` does not: the summary is the
  result; the checkpoints may have been deleted to save space (``--c`` without any checkpoint would train afresh,
  so such a fold must not be re-run). A ``checkpoint_latest.pth`` beside a summary belongs to a newer training
  started in that folder, whose result the old summary is not.
- *running* (started, not finished: a live training or an interrupted one) when it is not finished and holds a
  checkpoint ``nnUNetv2_train --c`` resumes from: ``checkpoint_final.pth`` (only the final validation is left),
  ``checkpoint_latest.pth`` or ``checkpoint_best.pth``.
- *missing* otherwise (``--c`` would start afresh).

**Dice.** A fold's Dice is nnU-Net's own ``foreground_mean.Dice`` (0-1; NaN when no case of the fold has
foreground in reference or prediction). Per-case Dice follows nnU-Net (``evaluate_predictions.compute_metrics``):
2TP / (2TP + FP + FN) per label, NaN when reference and prediction are both empty. A case's Dice is the mean over
its foreground labels ignoring NaN labels; a case whose labels are all NaN is *empty* (NaN), as nnU-Net's
``nanmean`` leaves it out of the fold mean. An empty reference with a non-empty prediction has Dice 0.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from nnunet_se.errors import UserError
from nnunet_se.layout import DATASET_RE, MODEL_RE, model_folder_name, parse_model_folder_name

FOLD_RE = re.compile(r"fold_(\d{1,9})", re.ASCII)
SUMMARY = Path("validation") / "summary.json"
RESUMABLE = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")  # nnU-Net's --c order
FINISHED_BASH = '[ -f "{folder}/validation/summary.json" ] && [ ! -f "{folder}/checkpoint_latest.pth" ]'
"""The finished rule as a bash test; ``{folder}`` becomes a bash expression of the fold folder (such as
``$folder``), already inside double quotes."""
MAX_SUMMARY_BYTES = 256 * 2**20
"""Largest ``summary.json`` read (nnU-Net's for 10,000 cases and 10 labels is about 30 MB)."""
_LABEL_ENDINGS = (".nii.gz", ".nrrd", ".nii", ".png", ".tif", ".tiff", ".bmp", ".jpg", ".mha")


class FoldState(str, Enum):
    FINISHED = "finished"
    RUNNING = "running"
    MISSING = "missing"


@dataclass
class FoldResult:
    """One fold of one model: its state, nnU-Net's fold Dice (0-1, NaN unless finished) and per-case Dice (case id
    -> 0-1, NaN = empty case), and how many cases have no foreground in the reference."""

    dataset: str
    trainer: str
    plans: str
    configuration: str
    fold: int
    state: FoldState
    path: Path
    dice: float = math.nan
    per_case: dict[str, float] = field(default_factory=dict)
    n_empty_reference: int = 0

    @property
    def model(self) -> str:
        """The model folder name ``<trainer>__<plans>__<configuration>``."""
        return model_folder_name(self.trainer, self.plans, self.configuration)

    @property
    def finished(self) -> bool:
        return self.state is FoldState.FINISHED

    @property
    def n_empty(self) -> int:
        """Cases with NaN Dice (empty reference and empty prediction), left out of every mean and test."""
        return sum(1 for v in self.per_case.values() if math.isnan(v))


def fold_state(folder: Path) -> FoldState:
    """State of one ``fold_k`` folder (see the module docstring); a folder that does not exist is missing."""
    if (folder / SUMMARY).is_file() and not (folder / "checkpoint_latest.pth").is_file():
        return FoldState.FINISHED
    if any((folder / name).is_file() for name in RESUMABLE):
        return FoldState.RUNNING
    return FoldState.MISSING


def _dice(value: object, path: Path, where: str) -> float:
    """``value`` as a Dice in 0-1 or NaN (nnU-Net writes NaN, or null after a strict re-dump), else a UserError."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{path}: {where} is {value!r}, not a number")
    dice = float(value)
    if not (math.isnan(dice) or 0.0 <= dice <= 1.0):
        raise UserError(f"{path}: {where} is {dice}, not a Dice between 0 and 1")
    return dice


def _count(value: object, path: Path, where: str) -> int:
    """``value`` as a voxel count (an integer >= 0; nnU-Net writes ints), else a UserError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0 and value == int(value)):
        raise UserError(f"{path}: {where} is {value!r}, not a voxel count")
    return int(value)


def _json_constant(name: str, path: Path) -> float:
    """JSON's non-standard constants: NaN is nnU-Net's Dice of an empty case; an infinity is never a valid value."""
    if name == "NaN":
        return math.nan
    raise UserError(f"{path}: holds {name}, not a valid value (nnU-Net writes NaN for an empty case, never {name})")


def case_id(reference_file: str) -> str:
    """``case_007`` for ``/gt/case_007.nii.gz``: the reference file name without its image ending."""
    name = os.path.basename(reference_file)
    for ending in _LABEL_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return name.rsplit(".", 1)[0]


def read_summary(path: Path) -> tuple[float, dict[str, float], int]:
    """(``foreground_mean`` Dice, per-case Dice, number of empty references) of one nnU-Net ``summary.json``.

    Raises UserError (one line naming the file) when the file is not a regular file of at most
    :data:`MAX_SUMMARY_BYTES`, not nnU-Net's format, holds Infinity, a Dice outside 0-1 or an ``n_ref`` that is not a
    voxel count, or names a case twice.
    """
    try:
        if not path.is_file():
            raise UserError(f"{path}: not a regular file")
        if (size := path.stat().st_size) > MAX_SUMMARY_BYTES:
            raise UserError(f"{path}: {size} bytes, more than the {MAX_SUMMARY_BYTES} a summary.json may have")
        summary = json.loads(path.read_text(), parse_constant=lambda name: _json_constant(name, path))
        dice = _dice(summary["foreground_mean"]["Dice"], path, "foreground_mean.Dice")
        per_case: dict[str, float] = {}
        n_empty_reference = 0
        for index, case in enumerate(summary["metric_per_case"]):
            labels = [m for key, m in case["metrics"].items() if key not in ("0", "(0,)")]
            values = [_dice(m["Dice"], path, f"metric_per_case[{index}] Dice") for m in labels]
            finite = [v for v in values if not math.isnan(v)]
            name = case_id(case["reference_file"])
            if name in per_case:
                raise UserError(f"{path}: case {name!r} appears twice in metric_per_case")
            per_case[name] = sum(finite) / len(finite) if finite else math.nan
            n_empty_reference += all(_count(m["n_ref"], path, f"metric_per_case[{index}] n_ref") == 0 for m in labels)
    except (OSError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        # ValueError covers JSON and UTF-8 errors
        raise UserError(f"{path}: not an nnU-Net summary.json ({type(exc).__name__}: {exc})") from exc
    return dice, per_case, n_empty_reference


def read_fold(folder: Path, dataset: str, trainer: str, plans: str, configuration: str, fold: int) -> FoldResult:
    """The state of ``folder`` (``.../fold_<fold>``) and, when finished, its summary's Dice."""
    result = FoldResult(dataset, trainer, plans, configuration, fold, fold_state(folder), folder)
    if result.finished:
        result.dice, result.per_case, result.n_empty_reference = read_summary(folder / SUMMARY)
    return result


def fold_numbers(model_folder: Path) -> list[int]:
    """The ``k`` of every ``fold_k`` sub-folder of a model folder (sorted; empty when it does not exist)."""
    if not model_folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in model_folder.iterdir() if (m := FOLD_RE.fullmatch(p.name)) and p.is_dir())


def _model_folders(folder: Path) -> Iterable[tuple[str, Path]]:
    """(dataset name, model folder) under a results root, a dataset folder or a model folder."""
    if MODEL_RE.fullmatch(folder.name) and fold_numbers(folder):
        yield folder.parent.name, folder
        return
    datasets = [folder] if DATASET_RE.fullmatch(folder.name) else sorted(
        p for p in folder.iterdir() if p.is_dir() and DATASET_RE.fullmatch(p.name))
    for dataset in datasets:
        for model in sorted(p for p in dataset.iterdir() if p.is_dir() and MODEL_RE.fullmatch(p.name)):
            yield dataset.name, model


def scan_results(folders: Sequence[Path]) -> list[FoldResult]:
    """Every ``fold_k`` folder under ``folders`` (results roots, dataset folders or model folders), in any state,
    sorted by dataset, model and fold. A folder reached twice (a root and a dataset inside it) is read once; the
    same dataset, model and fold in two different folders is a UserError (which one is meant is not known)."""
    found: dict[tuple[str, str, int], FoldResult] = {}
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder (expected nnUNet_results, a dataset or a model folder)")
        for dataset, model in _model_folders(folder):
            trainer, plans, configuration = parse_model_folder_name(model.name)
            for fold in fold_numbers(model):
                key, fold_folder = (dataset, model.name, fold), model / f"fold_{fold}"
                if key not in found:
                    found[key] = read_fold(fold_folder, dataset, trainer, plans, configuration, fold)
                elif found[key].path.resolve() != fold_folder.resolve():
                    raise UserError(f"{fold_folder}: {dataset} {model.name} fold {fold} is also in {found[key].path}; "
                                    "give only one of the two results folders")
    return [found[key] for key in sorted(found)]
