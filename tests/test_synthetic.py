"""The seeded synthetic lesion dataset of the demo: determinism, lesion geometry and contrast, nnU-Net raw layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import label

from nnunet_se.conversion.cases import read_case_table
from nnunet_se.synthetic import SyntheticSpec, synthetic_case, write_synthetic_dataset


@pytest.mark.parametrize("size", [64, 224])
def test_case_shapes_and_lesion_geometry(size: int) -> None:
    for index in range(8):
        image, mask = synthetic_case(index, size, seed=7)
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
        assert mask.shape == (size, size) and mask.dtype == bool
        assert 0.002 < mask.mean() < 0.4, f"case {index}: lesion fraction {mask.mean():.3f}"
        assert 1 <= label(mask)[1] <= 2
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        assert not border.any(), "lesions lie fully inside the image"


def test_cases_are_a_function_of_seed_and_index() -> None:
    a_image, a_mask = synthetic_case(3, 64, seed=1)
    b_image, b_mask = synthetic_case(3, 64, seed=1)
    assert np.array_equal(a_image, b_image) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_image, synthetic_case(4, 64, seed=1)[0])
    assert not np.array_equal(a_image, synthetic_case(3, 64, seed=2)[0])


def test_lesions_are_darker_than_their_surroundings() -> None:
    """The lesion is learnable: its mean brightness is well below the background's in every case."""
    for index in range(10):
        image, mask = synthetic_case(index, 224)
        gray = image.astype(float).mean(axis=2)
        assert gray[~mask].mean() - gray[mask].mean() > 25, f"case {index}"


def test_written_dataset_layout_and_stratified_splits(tmp_path: Path) -> None:
    spec = SyntheticSpec(n_train=20, n_test=3, size=64, folds=4, seed=5)
    folder = write_synthetic_dataset(tmp_path / "raw", 123, "Synth", spec, preprocessed_dir=tmp_path / "pre")
    assert folder == tmp_path / "raw" / "Dataset123_Synth"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["numTraining"] == 20 and dataset["labels"] == {"background": 0, "lesion": 1}
    assert dataset["nnunet_se_synthetic"]["seed"] == 5
    assert len(list((folder / "imagesTr").glob("*_0000.png"))) == 20
    assert len(list((folder / "imagesTs").glob("*_0000.png"))) == 3
    label_png = np.asarray(Image.open(folder / "labelsTr" / "case_0000.png"))
    image, mask = synthetic_case(0, 64, seed=5)
    assert np.array_equal(label_png, mask.astype(np.uint8))
    assert np.array_equal(np.asarray(Image.open(folder / "imagesTr" / "case_0000_0000.png")), image)
    table = read_case_table(folder)
    for case, row in table.items():
        if row["subset"] == "train":
            components = label(np.asarray(Image.open(folder / "labelsTr" / f"{case}.png")))[1]
            assert row["class"] == ("one" if components == 1 else "two")
    splits = json.loads((tmp_path / "pre" / "Dataset123_Synth" / "splits_final.json").read_text())
    assert splits == json.loads((folder / "splits_final.json").read_text())
    assert len(splits) == 4
    val = [case for fold in splits for case in fold["val"]]
    assert sorted(val) == sorted(c for c, r in table.items() if r["subset"] == "train")  # each case once
    per_fold = [Counter(table[c]["class"] for c in fold["val"]) for fold in splits]
    for cls in ("one", "two"):
        counts = [c[cls] for c in per_fold]
        assert max(counts) - min(counts) <= 1, f"class {cls} not stratified: {counts}"


def test_radius_range_sets_the_lesion_size() -> None:
    """Each lesion's equivalent radius sqrt(area / pi) lies within the star-shape bounds of the requested range:
    r0 * (1 +- sum of the 4 harmonic amplitudes <= 0.48), r0 in radius x side."""
    size, radius = 32, (0.14, 0.26)
    for index in range(12):
        _, mask = synthetic_case(index, size, seed=3, radius=radius)
        labels, n = label(mask)
        for component in range(1, n + 1):
            r_eq = np.sqrt((labels == component).sum() / np.pi) / size
            if n == 1 and r_eq > radius[1] * 1.48:  # two touching lesions merge into one component
                continue
            assert radius[0] * 0.52 - 1 / size <= r_eq <= radius[1] * 1.48 + 1 / size, (index, r_eq)


def test_second_lesions_are_drawn_apart_so_both_classes_occur() -> None:
    """Half the cases draw a second lesion (binomial(100, 1/2): 40-60 within 2 sd); drawn apart from the first, it
    stays a separate component (drawn anywhere, 38 of these 100 cases had two components)."""
    counts = Counter(min(label(synthetic_case(i, 112, seed=11)[1])[1], 2) for i in range(100))
    assert 40 <= counts[2] <= 60 and counts[1] + counts[2] == 100, counts
