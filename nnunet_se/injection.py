"""Insert recalibration modules into dynamic-network-architectures U-Nets (skip removal: :mod:`nnunet_se.no_skip`).

Placement, as in the authors' U-Net (``models/recalibrated_unet.py`` of the paper's code): one module after every
encoder stage except the bottleneck, before its output becomes the skip. In
d-n-a encoders the output of stage ``s`` is both the skip of depth ``s`` and the input of stage ``s + 1``, so the
module is appended *inside* the stage:

- ``PlainConvEncoder``: to ``stages[s][-1].convs`` (the ``StackedConvBlocks`` of the stage);
- ``ResidualEncoder``: to ``stages[s].blocks`` (or ``stages[s][-1].blocks`` when a pooling op precedes it).

Appending there keeps every existing ``state_dict`` key, and the d-n-a VRAM estimators
(``compute_conv_feature_map_size``) keep working: each module sits in a :class:`RecalibrationSlot` that reports
the one feature map it writes.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from torch import nn

logger = logging.getLogger(__name__)

ModuleFactory = Callable[[int, int], nn.Module]
SUPPORTED_ENCODERS = (PlainConvEncoder, ResidualEncoder)


class RecalibrationSlot(nn.Module):
    """Holds one inserted module (child ``module``) inside an encoder stage.

    ``forward`` maps ``(N, C, *spatial)`` to the same shape. ``compute_conv_feature_map_size`` reports the
    module's output map (``C * prod(spatial)`` elements), as every d-n-a block does for its own output.
    """

    def __init__(self, module: nn.Module, channels: int):
        super().__init__()
        self.module = module
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        return np.prod([self.channels, *input_size], dtype=np.int64)


def _encoder_of(network: nn.Module) -> nn.Module:
    encoder = network if isinstance(network, SUPPORTED_ENCODERS) else getattr(network, "encoder", None)
    if not isinstance(encoder, SUPPORTED_ENCODERS):
        known = ", ".join(c.__name__ for c in SUPPORTED_ENCODERS)
        raise TypeError(
            f"cannot inject into {type(network).__name__}: expected a network whose .encoder is one of {known} "
            "(PlainConvUNet, ResidualEncoderUNet) or such an encoder itself"
        )
    return encoder


def _stage_container(encoder: nn.Module, stage: int) -> nn.Sequential:
    """The ``nn.Sequential`` whose last output is the output (= skip) of ``stage``."""
    block = encoder.stages[stage]
    if isinstance(block, nn.Sequential):  # optional pooling op first, the conv/residual blocks last
        block = block[-1]
    return block.convs if isinstance(encoder, PlainConvEncoder) else block.blocks


def _stage_feature_sizes(encoder: nn.Module, patch_size: Sequence[int] | None) -> list[tuple[int, ...] | None]:
    """Spatial size of every stage's output for an input of ``patch_size`` (voxels), or ``None`` per stage.

    Observed with forward hooks on a weightless (meta-device) copy of the encoder, so it is exact for every kernel,
    stride and pooling choice: ``size // stride`` is wrong for odd sizes (a stride-2 conv with same padding gives
    ``ceil(size / 2)``). The copy shares no storage with ``encoder`` and costs no weight memory.
    """
    if patch_size is None:
        return [None] * len(encoder.stages)
    tensors = itertools.chain(encoder.parameters(), encoder.buffers())
    meta = copy.deepcopy(encoder, {id(t): torch.empty_like(t, device="meta") for t in tensors})
    sizes: list[tuple[int, ...]] = []
    for stage in meta.stages:
        stage.register_forward_hook(lambda module, args, out: sizes.append(tuple(out.shape[2:])))
    first_conv = next(m for m in meta.modules() if isinstance(m, nn.modules.conv._ConvNd))
    try:
        with torch.no_grad():
            meta(torch.empty(1, first_conv.in_channels, *(int(p) for p in patch_size), device="meta"))
    except RuntimeError as exc:  # e.g. odd sizes in d-n-a residual blocks: the pooled skip floors, the conv rounds up
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(
            f"patch_size {tuple(patch_size)} does not run through {type(encoder).__name__}: {first_line}"
        ) from exc
    return sizes


def inject_recalibration(
    network: nn.Module,
    module: str | ModuleFactory,
    flavour: str = "paper",
    *,
    patch_size: Sequence[int] | None = None,
    **options,
) -> list[str]:
    """Insert one module after every encoder stage except the bottleneck; return their dotted paths.

    ``network`` is a d-n-a ``PlainConvUNet``/``ResidualEncoderUNet`` (or their encoder), 2D or 3D, changed in place.
    ``module`` is a registry name of :func:`nnunet_se.modules.create_recalibration` (built with ``flavour``,
    ``options`` and ``feature_size`` = the stage's spatial output size for an input of ``patch_size``), or a factory
    ``f(channels, spatial_dims) -> nn.Module``. Paths are shallowest first (depth l=1 is ``paths[0]``);
    ``network.get_submodule(paths[l - 1])`` is depth l's module, whose gate child (``gate``, or ``spatial_gate`` for
    sSE: :mod:`nnunet_se.analysis.capture`) outputs that depth's excitations.
    """
    encoder = _encoder_of(network)
    if recalibration_paths(network):
        raise ValueError(f"{type(network).__name__} already contains recalibration modules")
    if "feature_size" in options:
        raise ValueError("pass patch_size, not feature_size: the feature size differs per stage")
    spatial_dims = convert_conv_op_to_dim(encoder.conv_op)
    if patch_size is not None and len(patch_size) != spatial_dims:
        raise ValueError(f"patch_size {tuple(patch_size)} does not match a {spatial_dims}D network")
    if isinstance(module, str):
        from nnunet_se.modules import create_recalibration

        def factory(channels: int, dims: int, size: tuple[int, ...] | None) -> nn.Module | None:
            return create_recalibration(module, channels, dims, flavour, feature_size=size, **options)
    else:
        if options:
            raise ValueError(f"options {sorted(options)} only apply to registry names, not to a module factory")

        def factory(channels: int, dims: int, size: tuple[int, ...] | None) -> nn.Module | None:
            return module(channels, dims)

    sizes = _stage_feature_sizes(encoder, patch_size)
    for s in range(len(encoder.stages) - 1):
        channels = int(encoder.output_channels[s])
        inserted = factory(channels, spatial_dims, sizes[s])
        if inserted is None:  # registry name "none": nothing to insert
            return []
        _stage_container(encoder, s).append(RecalibrationSlot(inserted, channels))
    paths = recalibration_paths(network)
    logger.debug("inserted %d recalibration modules: %s", len(paths), paths)
    return paths


def recalibration_paths(network: nn.Module) -> list[str]:
    """Dotted paths of the modules inserted by :func:`inject_recalibration`, shallowest first."""
    return [f"{name}.module" for name, m in network.named_modules() if isinstance(m, RecalibrationSlot)]
