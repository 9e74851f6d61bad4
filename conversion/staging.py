"""One case on disk: an in-memory case is validated and written as PNGs into a dataset folder (``imagesTr``/
``labelsTr`` for training, ``imagesTs``/``labelsTs`` for test cases). Safe to call from worker processes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_se.conversion.duplicates import phash, pixel_digest
from nnunet_se.conversion.png import save_png
from nnunet_se.errors import UserError

FILE_ENDING = ".png"
CASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")


@dataclass
class Case:
    """One in-memory case: ``image`` (H, W, 3) uint8 RGB, ``mask`` (H, W) bool/0-1 or None (test without labels).

    ``subset`` is ``train`` (imagesTr/labelsTr) or ``test`` (imagesTs[/labelsTs]); ``cls`` the case's class or "";
    ``original_size`` (width, height) before resizing (defaults to the image's size).
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray | None
    subset: str = "train"
    cls: str = ""
    source_image: str = ""
    source_masks: tuple[str, ...] = ()
    original_size: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StagedCase:
    """What was written for one case, plus its pixel digest and perceptual hash (for duplicate detection)."""

    case_id: str
    subset: str
    has_label: bool
    cls: str
    source_image: str
    source_masks: tuple[str, ...]
    original_size: tuple[int, int]
    notes: tuple[str, ...]
    digest: str
    phash: int


def case_files(folder: Path, case_id: str, subset: str) -> tuple[Path, Path]:
    """``(image, label)`` paths of a case in a dataset ``folder``, nnU-Net's layout for ``subset``."""
    images_dir, labels_dir = ("imagesTr", "labelsTr") if subset == "train" else ("imagesTs", "labelsTs")
    return folder / images_dir / f"{case_id}_0000{FILE_ENDING}", folder / labels_dir / f"{case_id}{FILE_ENDING}"


def stage_case(staging: Path, case: Case) -> StagedCase:
    """Validate ``case`` and write its PNGs under ``staging``."""
    if not CASE_ID_RE.fullmatch(case.case_id):
        raise UserError(f"case id {case.case_id!r}: use letters, digits, '_', '-', '.' only")
    if case.subset not in ("train", "test"):
        raise UserError(f"case {case.case_id}: subset must be 'train' or 'test', not {case.subset!r}")
    image = np.asarray(case.image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"case {case.case_id}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if case.subset == "train" and case.mask is None:
        raise UserError(f"case {case.case_id}: training cases need a mask")
    image_path, label_path = case_files(staging, case.case_id, case.subset)
    image_path.parent.mkdir(exist_ok=True)
    save_png(image, image_path)
    if case.mask is not None:
        mask = np.asarray(case.mask)
        if mask.shape != image.shape[:2]:
            raise UserError(f"case {case.case_id}: mask shape {mask.shape} differs from image shape {image.shape[:2]}")
        if mask.dtype != np.bool_ and not np.isin(mask, (0, 1)).all():
            raise UserError(f"case {case.case_id}: mask values must be 0/1")
        label_path.parent.mkdir(exist_ok=True)
        save_png(mask.astype(np.uint8), label_path)
    size = case.original_size or (image.shape[1], image.shape[0])
    return StagedCase(
        case.case_id, case.subset, case.mask is not None, case.cls, case.source_image, tuple(case.source_masks),
        (int(size[0]), int(size[1])), tuple(case.notes), pixel_digest(image), phash(image),
    )


def unstage_case(staging: Path, staged: StagedCase) -> None:
    """Delete the files :func:`stage_case` wrote for ``staged``."""
    image_path, label_path = case_files(staging, staged.case_id, staged.subset)
    image_path.unlink()
    if staged.has_label:
        label_path.unlink()
