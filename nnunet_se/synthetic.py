"""Seeded synthetic lesion dataset: RGB textures with blob-shaped lesions, written as an nnU-Net raw dataset.

Each case is a function of (seed, case index) only, so any subset regenerates identically. The background is a
skin-like colour with smooth low-frequency colour variation and fine grain; each of the 1-2 lesions (the second
drawn apart from the first when a few tries find room) is a star-shaped blob (radius
``r0 * (1 + sum_k a_k cos(k * theta + phi_k))``) with a darker, differently tinted, mottled interior and a soft rim.
Masks are the blobs (0/1). The case table records ``one``/``two`` connected lesions as the class, so the seeded
folds are stratified by it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter, label

from nnunet_se.conversion.splits import make_splits
from nnunet_se.conversion.writer import Case, RawDatasetWriter

log = logging.getLogger(__name__)

CLASS_NAMES = {1: "one", 2: "two"}  # connected lesion components per case
SPLIT_SCHEME = "paper"
SECOND_LESION_TRIES = 20  # draws for a second lesion that leaves a 2-pixel gap to the first; else the last draw


@dataclass(frozen=True)
class SyntheticSpec:
    """Dataset size: ``n_train`` labelled cases, ``n_test`` test cases (imagesTs + labelsTs), square ``size`` px.

    ``radius``: range of the lesions' base radius as a fraction of ``size`` (larger for small images, where a
    lesion of a few pixels would be mostly rim).
    """

    n_train: int = 40
    n_test: int = 8
    size: int = 224
    folds: int = 5
    seed: int = 20261123
    radius: tuple[float, float] = (0.06, 0.18)  # lesion base radius range, fraction of the image side


def _smooth_field(rng: np.random.Generator, size: int, sigma: float, channels: int = 1) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean, unit std; shape (size, size, channels)."""
    field = gaussian_filter(rng.standard_normal((size, size, channels)), sigma=(sigma, sigma, 0), mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _blob(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray,
          radius: tuple[float, float]) -> np.ndarray:
    """A star-shaped blob mask (size, size) bool, base radius ``radius`` x side, fully inside the image."""
    r0 = rng.uniform(*radius) * size
    harmonics = np.arange(2, 6)
    amplitude = rng.uniform(0.0, 0.12, harmonics.size)
    phase = rng.uniform(0, 2 * np.pi, harmonics.size)
    margin = r0 * (1 + amplitude.sum()) + 2
    cy, cx = rng.uniform(margin, size - margin, 2)
    theta = np.arctan2(yy - cy, xx - cx)
    radius = r0 * (1 + (amplitude[:, None, None] * np.cos(harmonics[:, None, None] * theta + phase[:, None, None]))
                   .sum(axis=0))
    return np.hypot(yy - cy, xx - cx) <= radius


def synthetic_case(index: int, size: int = 224, seed: int = SyntheticSpec.seed,
                   radius: tuple[float, float] = SyntheticSpec.radius) -> tuple[np.ndarray, np.ndarray]:
    """Case ``index``: (image (size, size, 3) uint8 RGB, mask (size, size) bool)."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    base = rng.uniform([170, 120, 100], [230, 175, 150])  # skin-like RGB
    image = base + 8 * _smooth_field(rng, size, size / 8, 3) + 5 * _smooth_field(rng, size, 1.0, 3)
    mask = _blob(rng, size, yy, xx, radius)
    if rng.integers(1, 3) == 2:  # a second lesion, apart from the first when a few draws find room for it
        near = binary_dilation(mask, iterations=2)
        for _ in range(SECOND_LESION_TRIES):
            second = _blob(rng, size, yy, xx, radius)
            if not (second & near).any():
                break
        mask |= second
    soft = gaussian_filter(mask.astype(np.float64), sigma=max(size / 112, 0.8))[..., None]
    tint = rng.uniform([-90, -80, -60], [-40, -35, -10])  # darker, browner lesion
    grain = max(size / 45, 1.0)
    mottle = 14 * _smooth_field(rng, size, grain) + 6 * _smooth_field(rng, size, grain, 3)
    image = image + soft * (tint + mottle)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def synthetic_cases(spec: SyntheticSpec) -> Iterator[Case]:
    """``case_0000..`` (train) then ``test_0000..`` (test, with labels); class = connected lesions (one/two)."""
    for i in range(spec.n_train + spec.n_test):
        image, mask = synthetic_case(i, spec.size, spec.seed, spec.radius)
        train = i < spec.n_train
        case_id = f"case_{i:04d}" if train else f"test_{i - spec.n_train:04d}"
        lesions = min(int(label(mask)[1]), 2)
        yield Case(case_id, image, mask, subset="train" if train else "test", cls=CLASS_NAMES[lesions],
                   source_image=f"synthetic:seed={spec.seed}:index={i}")


def write_synthetic_dataset(raw_dir: Path, dataset_id: int, name: str, spec: SyntheticSpec,
                            preprocessed_dir: Path | None = None, overwrite: bool = True) -> Path:
    """Write the dataset with the converters' writer (atomic) plus seeded, class-stratified ``splits_final.json``.

    Returns the raw dataset folder ``<raw_dir>/DatasetNNN_<name>``.
    """
    metadata = {"description": "nnunet-se synthetic lesion demo", "nnunet_se_synthetic": asdict(spec)}
    with RawDatasetWriter(raw_dir, dataset_id, name, overwrite=overwrite, preprocessed_dir=preprocessed_dir,
                          metadata=metadata) as writer:
        classes = {}
        for case in synthetic_cases(spec):
            writer.add(case)
            classes[case.case_id] = case.cls
        train = [r.case_id for r in writer.training_cases()]
        splits = make_splits(train, [classes[c] for c in train], writer.duplicate_groups(), SPLIT_SCHEME,
                             spec.folds, spec.seed)
        writer.set_splits(splits, {"scheme": SPLIT_SCHEME, "folds": spec.folds, "seed": spec.seed})
    log.debug("wrote %s (%d train, %d test cases)", writer.output, spec.n_train, spec.n_test)
    return writer.output
