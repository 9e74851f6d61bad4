"""Flips-only data augmentation of the paper protocol (no rotation, scaling, intensity or resolution changes)."""

from __future__ import annotations

from collections.abc import Sequence

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform


def flips_only_transforms(
    mirror_axes: Sequence[int] | None, deep_supervision_scales: Sequence[Sequence[float]] | None = None
) -> BasicTransform:
    """Random flip of each axis in ``mirror_axes`` (p=0.5 each), padding label -1 -> 0, optional DS targets.

    The loader must already deliver patches of the final size (initial patch = patch), since nothing crops here.
    """
    transforms: list[BasicTransform] = []
    if mirror_axes:
        transforms.append(MirrorTransform(allowed_axes=tuple(mirror_axes)))
    transforms.append(RemoveLabelTansform(-1, 0))
    if deep_supervision_scales is not None:
        transforms.append(DownsampleSegForDSTransform(ds_scales=deep_supervision_scales))
    return ComposeTransforms(transforms)
