"""Reading nnU-Net results: ``<root>/<Dataset>/<Trainer>__<Plans>__<config>/fold_<k>/validation/summary.json``.

A fold is *finished* when its ``validation/summary.json`` exists (nnU-Net writes it after the final validation),
*unfinished* when ``fold_<k>`` exists without it, and *missing* when an expected fold has no folder at all.

Per-case Dice follows nnU-Net (``evaluate_predictions.compute_metrics``): 2TP / (2TP + FP + FN) per label, NaN when
reference and prediction are both empty (TP + FP + FN = 0). A case's Dice is the mean over foreground labels,
ignoring NaN labels; a case whose labels are all NaN is *empty* and excluded from every per-case test, as nnU-Net's
``nanmean`` excludes it from the fold mean. An empty reference with a non-empty prediction has Dice 0 and is kept.
The fold's Dice is nnU-Net's own ``foreground_mean.Dice``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_se.errors import UserError

MODEL_DIR = re.compile(r"^(?P<trainer>[^_].*?)__(?P<plans>.+)__(?P<config>[^_].*)$")
FOLD_DIR = re.compile(r"^fold_(\d+)$")
DATASET_DIR = re.compile(r"^Dataset\d{3}_.+$")


@dataclass
class FoldResult:
    """One fold of one model: status, nnU-Net's fold Dice (fraction) and per-case Dice (NaN = empty case)."""

    dataset: str
    model: str  # the results sub-folder name Trainer__Plans__config
    trainer: str
    plans: str
    configuration: str
    fold: int
    finished: bool
    path: Path
    dice: float = math.nan
    per_case: dict[str, float] = field(default_factory=dict)
    n_empty_reference: int = 0  # cases whose reference has no foreground (any label)

    @property
    def n_empty(self) -> int:
        """Cases excluded as NaN (empty reference and empty prediction)."""
        return sum(1 for v in self.per_case.values() if math.isnan(v))


def _case_id(reference_file: str) -> str:
    name = os.path.basename(reference_file)
    for ending in (".nii.gz", ".nrrd", ".nii", ".png", ".tif", ".tiff", ".bmp", ".jpg", ".mha"):
        if name.endswith(ending):
            return name[: -len(ending)]
    return name.rsplit(".", 1)[0]


def read_summary(path: Path) -> tuple[float, dict[str, float], int]:
    """(foreground_mean Dice, per-case Dice, number of empty references) from one nnU-Net ``summary.json``."""
    try:
        summary = json.loads(path.read_text())
        dice = float(summary["foreground_mean"]["Dice"])
        per_case: dict[str, float] = {}
        n_empty_ref = 0
        for case in summary["metric_per_case"]:
            labels = [m for key, m in case["metrics"].items() if key not in ("0", "(0,)")]
            values = [float(m["Dice"]) for m in labels if m["Dice"] is not None and not math.isnan(float(m["Dice"]))]
            per_case[_case_id(case["reference_file"])] = sum(values) / len(values) if values else math.nan
            n_empty_ref += int(all(int(m["n_ref"]) == 0 for m in labels))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not an nnU-Net summary.json ({type(exc).__name__}: {exc})") from exc
    return dice, per_case, n_empty_ref


def _model_dirs(folder: Path) -> Iterable[tuple[str, Path]]:
    """(dataset name, model folder) under a results root, a dataset folder or a model folder."""
    if MODEL_DIR.match(folder.name) and any(FOLD_DIR.match(p.name) for p in folder.iterdir() if p.is_dir()):
        yield folder.parent.name, folder
        return
    datasets = [folder] if DATASET_DIR.match(folder.name) else sorted(
        p for p in folder.iterdir() if p.is_dir() and DATASET_DIR.match(p.name))
    for dataset in datasets:
        for model in sorted(p for p in dataset.iterdir() if p.is_dir() and MODEL_DIR.match(p.name)):
            yield dataset.name, model


def scan_results(folders: Sequence[Path]) -> list[FoldResult]:
    """Every fold found under ``folders``, finished or not, sorted by dataset, model and fold."""
    found: dict[tuple[str, str, int], FoldResult] = {}
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder (expected nnUNet_results, a dataset or a model folder)")
        for dataset, model_dir in _model_dirs(folder):
            match = MODEL_DIR.match(model_dir.name)
            for fold_dir in sorted(model_dir.iterdir()):
                fold_match = FOLD_DIR.match(fold_dir.name)
                if not (fold_dir.is_dir() and fold_match):
                    continue
                summary = fold_dir / "validation" / "summary.json"
                result = FoldResult(dataset, model_dir.name, match["trainer"], match["plans"], match["config"],
                                    int(fold_match.group(1)), summary.is_file(), fold_dir)
                if result.finished:
                    result.dice, result.per_case, result.n_empty_reference = read_summary(summary)
                found[(dataset, model_dir.name, result.fold)] = result
    return [found[k] for k in sorted(found)]
