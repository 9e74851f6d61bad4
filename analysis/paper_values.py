"""Table I of the paper (Dice %, mean +- std over folds, mark vs U-Net) and how our names map onto it."""

from __future__ import annotations

import re

# paper dataset -> paper model -> (mean %, std %, mark)
TABLE_I: dict[str, dict[str, tuple[float, float, str]]] = {
    "ISIC18": {"U-Net": (85.40, 0.25, ""), "+cSE": (85.94, 0.36, "†"), "+SRM": (84.33, 1.27, ""),
               "+FCA": (86.19, 0.75, ""), "+Mono": (86.24, 0.27, "‡")},
    "Kvasir-SEG": {"U-Net": (72.22, 1.82, ""), "+cSE": (72.72, 1.52, ""), "+SRM": (61.13, 3.42, ""),
                   "+FCA": (70.00, 2.51, ""), "+Mono": (71.86, 2.37, "")},
    "BUSI": {"U-Net": (62.20, 2.40, ""), "+cSE": (65.36, 1.36, ""), "+SRM": (68.09, 3.14, "†"),
             "+FCA": (66.27, 2.48, ""), "+Mono": (69.00, 2.53, "‡")},
}

_DATASET_PATTERNS = (("ISIC18", re.compile("isic", re.I)), ("Kvasir-SEG", re.compile("kvasir", re.I)),
                     ("BUSI", re.compile("busi", re.I)))
_MODELS = {"": "U-Net", "CSE": "+cSE", "SRM": "+SRM", "FCA": "+FCA", "Mono": "+Mono"}


def paper_dataset(dataset: str) -> str | None:
    """The paper's dataset column for an nnU-Net dataset name (by name: ISIC, Kvasir, BUSI), else None."""
    return next((name for name, pattern in _DATASET_PATTERNS if pattern.search(dataset)), None)


def paper_model(trainer: str) -> str | None:
    """The paper's row for a trainer: nnUNetTrainer[Paper]{,CSE,SRM,FCA,Mono}; others (sSE, _original...) None."""
    match = re.fullmatch(r"nnUNetTrainer(?:Paper)?(.*)", trainer)
    return _MODELS.get(match.group(1)) if match else None


def paper_value(dataset: str, trainer: str) -> tuple[float, float, str] | None:
    column, row = paper_dataset(dataset), paper_model(trainer)
    return TABLE_I[column][row] if column and row else None
