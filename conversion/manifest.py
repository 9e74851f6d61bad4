"""The description files of a raw dataset: nnU-Net's ``dataset.json``, the case table ``nnunet_se_cases.csv``
(:mod:`nnunet_se.conversion.cases`) and, when folds are given, ``splits_final.json`` with its sidecar
``nnunet_se_splits.json`` (how the folds were made, and the duplicate groups they keep together)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnunet_se.conversion.cases import CASE_TABLE, write_case_table
from nnunet_se.conversion.staging import FILE_ENDING, StagedCase

CHANNEL_NAMES = {"0": "rgb_to_0_1", "1": "rgb_to_0_1", "2": "rgb_to_0_1"}
"""``rgb_to_0_1`` selects nnU-Net's RGBTo01Normalization (x / 255); names like "R" would give per-image z-score."""
LABELS = {"background": 0, "lesion": 1}
SPLITS_FILE = "splits_final.json"
SPLITS_SIDECAR = "nnunet_se_splits.json"


def write_json(path: Path, data: Any) -> None:
    """Indented, key-sorted JSON with a final newline."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_manifest(
    folder: Path,
    dataset_name: str,
    records: Sequence[StagedCase],
    duplicate_groups: Sequence[Sequence[str]],
    metadata: dict[str, Any],
    splits: list[dict[str, list[str]]] | None,
    splits_meta: dict[str, Any],
) -> None:
    """Write the description files of the cases ``records`` (sorted by case id) into the dataset ``folder``.

    ``metadata`` is merged into ``dataset.json``; duplicate groups get the names ``dup_001``, ``dup_002``, ... in
    the case table, and are listed in the splits sidecar.
    """
    group_of = {c: f"dup_{i:03d}" for i, group in enumerate(duplicate_groups, 1) for c in group}
    dataset_json = {
        "channel_names": CHANNEL_NAMES,
        "labels": LABELS,
        "numTraining": sum(r.subset == "train" for r in records),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "NaturalImage2DIO",
        "name": dataset_name,
        **metadata,
    }
    write_json(folder / "dataset.json", dataset_json)
    write_case_table(
        folder / CASE_TABLE,
        (
            {
                "case_id": r.case_id,
                "subset": r.subset,
                "class": r.cls,
                "source_image": r.source_image,
                "source_masks": ";".join(r.source_masks),
                "original_size": f"{r.original_size[0]}x{r.original_size[1]}",
                "duplicate_group": group_of.get(r.case_id, ""),
                "notes": ";".join(r.notes),
            }
            for r in records
        ),
    )
    if splits is not None:
        write_json(folder / SPLITS_FILE, splits)
        write_json(folder / SPLITS_SIDECAR, {**splits_meta, "duplicate_groups": [list(g) for g in duplicate_groups]})
