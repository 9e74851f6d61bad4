"""The paper's no-skip ablation (cSE-NS): a dynamic-network-architectures ``UNetDecoder`` that ignores the skips."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn


class NoSkipUNetDecoder(UNetDecoder):
    """``UNetDecoder`` without skip connections (the paper's cSE-NS ablation).

    Every decoder stage sees only the transposed-conv output of the stage below: ``(N, C_skip, *spatial)`` instead
    of the concatenation ``(N, 2 * C_skip, *spatial)``; its first conv is narrowed accordingly. Built from an existing
    decoder (sharing its encoder, transposed convs, stages and segmentation heads); deep supervision is unchanged.
    """

    def __init__(self, decoder: UNetDecoder):
        nn.Module.__init__(self)
        self.deep_supervision = decoder.deep_supervision
        self.encoder = decoder.encoder
        self.num_classes = decoder.num_classes
        self.stages = decoder.stages
        self.transpconvs = decoder.transpconvs
        self.seg_layers = decoder.seg_layers
        for stage in self.stages:
            _narrow_first_conv(stage.convs[0])

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """``skips`` as for ``UNetDecoder``; only the bottleneck ``skips[-1]`` is read."""
        x = skips[-1]
        seg_outputs = []
        for s in range(len(self.stages)):
            x = self.stages[s](self.transpconvs[s](x))
            if self.deep_supervision or s == len(self.stages) - 1:
                seg_outputs.append(self.seg_layers[s](x))
        seg_outputs = seg_outputs[::-1]
        return seg_outputs if self.deep_supervision else seg_outputs[0]


def _narrow_first_conv(block: ConvDropoutNormReLU) -> None:
    """Replace the block's conv by one taking half the input channels (the skip half is gone)."""
    old = block.conv
    new = type(old)(
        old.in_channels // 2, old.out_channels, old.kernel_size, old.stride, padding=old.padding,
        dilation=old.dilation, bias=old.bias is not None,
    )
    index = next(i for i, m in enumerate(block.all_modules) if m is old)
    block.all_modules[index] = new
    block.conv = new
    block.input_channels = new.in_channels


def remove_skip_connections(network: nn.Module) -> nn.Module:
    """Make ``network.decoder`` ignore the skips (:class:`NoSkipUNetDecoder`); in place, returns ``network``.

    The narrowed convs are initialised with the network's own ``initialize`` (He init) when it has one.
    """
    decoder = getattr(network, "decoder", None)
    if type(decoder) is not UNetDecoder:
        raise TypeError(
            f"cannot remove skip connections from {type(network).__name__}: expected a .decoder of type UNetDecoder, "
            f"got {type(decoder).__name__}"
        )
    network.decoder = NoSkipUNetDecoder(decoder)
    init = getattr(network, "initialize", None)
    if init is not None:
        for stage in network.decoder.stages:
            stage.convs[0].conv.apply(init)
    return network
