"""BUSI (``Dataset_BUSI_with_GT``: ``{benign,malignant,normal}/<class> (N).png`` + ``_mask.png``/``_mask_K.png``)."""

from __future__ import annotations

import re

from nnunet_se.conversion.converter import CaseSource, DatasetRules, pair_files, sanitize
from nnunet_se.conversion.sources import SourceFile

CLASSES = ("benign", "malignant", "normal")
_MASK = re.compile(r"^(?P<key>.+?)_mask(_\d+)?$")
_NUMBERED = re.compile(r"^(?P<cls>[a-z]+) \((?P<num>\d+)\)$")


def case_id(stem: str) -> str:
    """``benign (25)`` -> ``benign_025``; other names are sanitised."""
    match = _NUMBERED.match(stem)
    return f"{match['cls']}_{int(match['num']):03d}" if match else sanitize(stem)


def find_cases(files: list[SourceFile], include_normal: bool) -> list[CaseSource]:
    """Per class folder, pairs ``<key>.png`` with every ``<key>_mask*.png`` (their union is the label).

    ``normal`` (no lesion, all-zero masks) is skipped unless ``include_normal`` (the authors exclude it).
    """
    classes = CLASSES if include_normal else CLASSES[:2]
    cases = []
    for cls in classes:
        pngs = [f for f in files if f.parent_name == cls and f.suffix == ".png"]
        masks = [(m["key"], f) for f in pngs if (m := _MASK.match(f.stem))]
        images = [(f.stem, f) for f in pngs if not _MASK.match(f.stem)]
        cases += [CaseSource(case_id(key), image, ms, cls=cls) for key, image, ms in pair_files(images, masks)]
    return sorted(cases, key=lambda c: c.case_id)


RULES = DatasetRules(
    key="busi",
    default_name="BUSI",
    layout="Dataset_BUSI_with_GT/{benign,malignant}/<class> (N).png with <class> (N)_mask.png",
    mask_threshold=None,
    find_cases=find_cases,
    metadata={
        "description": "Breast Ultrasound Images (BUSI), benign + malignant, converted by nnunet-se-convert",
        "reference": "Al-Dhabyani et al., Dataset of breast ultrasound images, Data in Brief 28 (2020) 104863",
        "licence": "CC BY 4.0",
    },
)
