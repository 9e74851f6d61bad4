"""ISIC 2018 Task 1 (official zips or extracted folders): training pairs -> imagesTr, validation/test -> imagesTs."""

from __future__ import annotations

from nnunet_se.conversion.converter import CaseSource, DatasetRules, is_image, pair_files
from nnunet_se.conversion.sources import SourceFile

SUBSETS = (
    # (input folder, ground-truth folder, subset, ground truth required)
    ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth", "train", True),
    ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth", "test", False),
    ("ISIC2018_Task1-2_Test_Input", "ISIC2018_Task1_Test_GroundTruth", "test", False),
)
_SUFFIX = "_segmentation"


def find_cases(files: list[SourceFile], include_normal: bool) -> list[CaseSource]:
    """Pairs ``ISIC_<id>.jpg`` with ``ISIC_<id>_segmentation.png``; non-image files (LICENSE.txt, ...) are skipped.

    Validation/test ground truth is optional; where its folder is present, every image needs its mask, and a
    ground-truth folder without its input folder is refused (never dropped). The official folders may be given
    themselves (their files are then top-level files of the source, matched by the folder's name).
    """
    cases = []
    for input_dir, gt_dir, subset, required in SUBSETS:
        images = [(f.stem, f) for f in files if f.parent_name == input_dir and is_image(f)]
        gts = [f for f in files if f.parent_name == gt_dir and is_image(f)]
        masks = [(f.stem.removesuffix(_SUFFIX), f) for f in gts]
        cases += [
            CaseSource(key, image, ms, subset=subset)
            for key, image, ms in pair_files(images, masks, require_mask=required or bool(gts), mask_folder=gt_dir,
                                             image_folder=input_dir)
        ]
    return cases


RULES = DatasetRules(
    key="isic2018",
    default_name="ISIC2018",
    layout=(
        "ISIC2018_Task1-2_Training_Input/ISIC_<id>.jpg with ISIC2018_Task1_Training_GroundTruth/"
        "ISIC_<id>_segmentation.png (the official zips or their extracted folders)"
    ),
    mask_threshold=None,
    find_cases=find_cases,
    metadata={
        "description": "ISIC 2018 Task 1 lesion boundary segmentation, converted by nnunet-se-convert",
        "reference": "Codella et al. 2019 (arXiv:1902.03368); Tschandl et al. 2018 (HAM10000); "
        "https://challenge.isic-archive.com/data/#2018",
        "licence": "CC BY-NC 4.0",
    },
)
