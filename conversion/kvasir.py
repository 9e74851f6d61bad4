"""Kvasir-SEG (``kvasir-seg.zip`` or its extracted ``Kvasir-SEG/{images,masks}/*.jpg``): polyps, JPEG masks."""

from __future__ import annotations

from nnunet_se.conversion.converter import CaseSource, DatasetRules, is_image, pair_files, sanitize
from nnunet_se.conversion.sources import SourceFile

MASK_THRESHOLD = 128
"""JPEG masks carry 0-8 and 247-255 at the edges: foreground = grey >= 128 (as PIL's ``convert('1')``)."""


def find_cases(files: list[SourceFile], include_normal: bool) -> list[CaseSource]:
    """Pairs ``images/<stem>.jpg`` with ``masks/<stem>.jpg``; case id = the sanitised stem."""
    images = [(f.stem, f) for f in files if f.parent_name == "images" and is_image(f)]
    masks = [(f.stem, f) for f in files if f.parent_name == "masks" and is_image(f)]
    pairs = pair_files(images, masks, mask_folder="masks", image_folder="images")
    return [CaseSource(sanitize(key), image, masks) for key, image, masks in pairs]


RULES = DatasetRules(
    key="kvasir",
    default_name="KvasirSEG",
    layout="Kvasir-SEG/images/<name>.jpg and Kvasir-SEG/masks/<name>.jpg (kvasir-seg.zip or its extracted folder)",
    mask_threshold=MASK_THRESHOLD,
    find_cases=find_cases,
    metadata={
        "description": "Kvasir-SEG polyp segmentation (1000 colonoscopy images), converted by nnunet-se-convert",
        "reference": "Jha et al., Kvasir-SEG: A Segmented Polyp Dataset, MMM 2020; https://datasets.simula.no/kvasir-seg/",
        "licence": "research and educational use (see the dataset page)",
    },
)
