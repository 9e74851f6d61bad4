"""The per-case table ``nnunet_se_cases.csv`` in a raw dataset folder: one row per converted case.

Columns: ``case_id``, ``subset`` (``train`` = imagesTr, ``test`` = imagesTs), ``class`` (BUSI: benign/malignant/
normal; empty otherwise), ``source_image``, ``source_masks`` (``;``-separated, relative to the source root),
``original_size`` (``WxH`` pixels before resizing), ``duplicate_group`` (``dup_NNN`` shared by exact/near duplicates,
empty for unique cases) and ``notes`` (conversions applied, ``;``-separated).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

CASE_TABLE = "nnunet_se_cases.csv"
COLUMNS = ("case_id", "subset", "class", "source_image", "source_masks", "original_size", "duplicate_group", "notes")


def write_case_table(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """Write rows (dicts with :data:`COLUMNS` keys) sorted by (subset, case_id); ``\\n`` line endings."""
    ordered = sorted(rows, key=lambda r: (r["subset"] != "train", r["case_id"]))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in COLUMNS} for row in ordered)


def read_case_table(raw_dataset_dir: str | Path) -> dict[str, dict[str, str]]:
    """``{case_id: row}`` from ``<raw_dataset_dir>/nnunet_se_cases.csv`` (rows are dicts of :data:`COLUMNS`).

    Trainers use ``row["class"]`` to stratify their early-stopping subset (empty string = no class).
    """
    path = Path(raw_dataset_dir) / CASE_TABLE
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["case_id"]: row for row in csv.DictReader(fh)}
