"""Table I of the paper (Dice %, mean +- std over folds, mark vs U-Net) and how our names map onto it.

Datasets map by name (ISIC, Kvasir, BUSI); trainers by their ``table_row`` class attribute, read through
:func:`nnunet_se.trainer_registry.table_row_of` (the first call imports the trainers, about 4 s).
"""

from __future__ import annotations

import re

from nnunet_se.trainer_registry import table_row_of

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


def paper_dataset(dataset: str) -> str | None:
    """The paper's dataset column for an nnU-Net dataset name (by name: ISIC, Kvasir, BUSI), else None."""
    return next((name for name, pattern in _DATASET_PATTERNS if pattern.search(dataset)), None)


def paper_value(dataset: str, trainer: str) -> tuple[float, float, str] | None:
    """Table I's (mean %, std %, mark) for an nnU-Net dataset name and a trainer name, or None if it has none."""
    column = paper_dataset(dataset)
    row = table_row_of(trainer) if column else None
    return TABLE_I[column][row] if column and row else None
