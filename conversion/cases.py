"""The per-case table ``nnunet_se_cases.csv`` in a raw dataset folder: one row per converted case.

Columns: ``case_id``, ``subset`` (``train`` = imagesTr, ``test`` = imagesTs), ``class`` (BUSI: benign/malignant/
normal; empty otherwise), ``source_image``, ``source_masks`` (``;``-separated, relative to the source root),
``original_size`` (``WxH`` pixels before resizing), ``duplicate_group`` (``dup_NNN`` shared by exact/near duplicates,
empty for unique cases) and ``notes`` (conversions applied, ``;``-separated).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

from nnunet_se.errors import UserError
from nnunet_se.reading import read_file

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

    Trainers use ``row["class"]`` to stratify their early-stopping subset (empty string = no class). The file is
    checked where it is read (a size-bounded regular UTF-8 file, every column, one row per non-empty case id);
    anything else raises :class:`UserError` naming it.
    """
    path = Path(raw_dataset_dir) / CASE_TABLE
    try:
        text = read_file(path, str(path)).decode("utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise UserError(f"{path}: not a case table, columns {', '.join(missing)} are missing")
        rows: dict[str, dict[str, str]] = {}
        for row in reader:
            case = row["case_id"]
            if not case or None in row or None in row.values():
                raise UserError(f"{path}: line {reader.line_num}: an empty case id or a wrong number of fields")
            if rows.setdefault(case, row) is not row:
                raise UserError(f"{path}: line {reader.line_num}: case {case} is listed twice")
        return rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: unreadable case table ({exc})") from exc
