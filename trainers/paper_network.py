"""The authors' U-Net (``models/unet.py`` of miguelmartins/multifractal-recalibration) in PyTorch.

Encoder: per stage two 3x3 convs (bias) + ReLU, 2x2 max-pool between stages (d-n-a's ``PlainConvEncoder``, so the
recalibration modules are injected by :mod:`nnunet_se.injection` as into any nnU-Net network). Decoder: per level
bilinear 2x upsampling (Keras ``UpSampling2D(interpolation="bilinear")`` = half-pixel centres = PyTorch
``align_corners=False``), concatenation ``[upsampled, skip]``, two 3x3 convs + ReLU. Head: one 1x1 conv.

Two classes (nnU-Net's binary case): the authors' single sigmoid channel ``z``, returned as the logits ``[0, z]``.
``softmax([0, z])[1] = sigmoid(z)`` and ``argmax = [z > 0]``, so nnU-Net's softmax/argmax prediction, validation and
probability export are exactly the sigmoid model's, with the authors' parameter count (no second output channel).
More classes: a ``num_classes``-channel softmax head (the authors' multi-class head).

Initialisation as Keras: 3x3 convs ``HeNormal`` (truncated normal, std sqrt(2 / fan_in) after truncation at two
standard deviations), zero biases; the head ``GlorotUniform`` with zero bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from torch import nn

# std of a standard normal truncated to [-2, 2] (Keras' VarianceScaling divides by it)
TRUNCATED_NORMAL_STD = 0.87962566103423978
NORM_OPS: dict[str | None, tuple[type[nn.Module] | None, dict[str, Any] | None]] = {
    None: (None, None),
    "batch": (nn.BatchNorm2d, {"eps": 1e-3, "momentum": 0.01, "affine": True}),  # Keras' BatchNormalization defaults
    "instance": (nn.InstanceNorm2d, {"eps": 1e-5, "affine": True}),
}
DOWNSAMPLING = ("max", "conv")


def he_normal_truncated_(weight: torch.Tensor) -> torch.Tensor:
    """Keras ``HeNormal``: truncated normal on [-2 s, 2 s] with s = sqrt(2 / fan_in) / 0.8796 (in place)."""
    fan_in = weight.shape[1] * math.prod(weight.shape[2:])
    std = math.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD
    return nn.init.trunc_normal_(weight, 0.0, std, -2.0 * std, 2.0 * std)


def _conv_block(in_channels: int, out_channels: int, norm: str | None) -> nn.Sequential:
    """3x3 conv (same padding, bias) [+ norm] + ReLU."""
    norm_op, norm_kwargs = NORM_OPS[norm]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1)]
    if norm_op is not None:
        layers.append(norm_op(out_channels, **norm_kwargs))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BinaryLogitHead(nn.Module):
    """1x1 conv to one channel ``z``; returns ``[0, z]``: ``(N, C, H, W) -> (N, 2, H, W)``."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)
        return torch.cat((torch.zeros_like(z), z), dim=1)


class BilinearUNetDecoder(nn.Module):
    """Upsample (bilinear, 2x) -> concat skip -> two 3x3 conv + ReLU per level, then the head.

    ``skips`` are the encoder outputs, shallowest first; the last is the bottleneck. ``skip_connections=False``
    (cSE-NS) reads only the bottleneck: each level's first conv takes the upsampled channels alone.
    """

    def __init__(self, features_per_stage: Sequence[int], num_classes: int, conv_norm: str | None = None,
                 skip_connections: bool = True):
        super().__init__()
        widths = list(features_per_stage)
        self.skip_connections = skip_connections
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.stages = nn.ModuleList()
        for deep, width in zip(widths[:0:-1], widths[-2::-1], strict=True):
            first_in = deep + width if skip_connections else deep
            self.stages.append(nn.Sequential(_conv_block(first_in, width, conv_norm),
                                             _conv_block(width, width, conv_norm)))
        self.head: nn.Module = (BinaryLogitHead(widths[0]) if num_classes == 2
                                else nn.Conv2d(widths[0], num_classes, 1))

    @property
    def deep_supervision(self) -> bool:
        """Always False: one output. nnU-Net's trainer sets the flag (True again after its final validation);
        setting it has no effect."""
        return False

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        pass

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        x = skips[-1]
        for stage, skip in zip(self.stages, skips[-2::-1], strict=True):
            x = self.upsample(x)
            x = stage(torch.cat((x, skip), dim=1) if self.skip_connections else x)
        return self.head(x)


class PaperUNet(nn.Module):
    """``encoder`` (PlainConvEncoder, returns skips) + ``decoder`` (BilinearUNetDecoder).

    Input ``(N, C_in, H, W)``, H and W divisible by ``2 ** (stages - 1)``; output logits ``(N, classes, H, W)``.
    """

    def __init__(self, encoder: PlainConvEncoder, decoder: BilinearUNetDecoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def initialize_like_keras(network: nn.Module) -> None:
    """HeNormal (truncated) + zero bias on every 3x3 conv, GlorotUniform + zero bias on 1x1 convs (the head)."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            if module.kernel_size == (1, 1):
                nn.init.xavier_uniform_(module.weight)
            else:
                he_normal_truncated_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_paper_unet(
    input_channels: int,
    num_classes: int,
    features_per_stage: Sequence[int] = (32, 64, 128, 256),
    conv_norm: str | None = None,
    downsampling: str = "max",
    skip_connections: bool = True,
) -> PaperUNet:
    """The authors' U-Net, Keras-initialised (before any recalibration module is injected).

    ``conv_norm``: None (authors' ``with_bn=False``), "batch" or "instance"; ``downsampling``: "max" (2x2 max-pool,
    authors) or "conv" (strided first conv of the stage, nnU-Net habit).
    """
    if conv_norm not in NORM_OPS:
        raise ValueError(f"unknown conv_norm {conv_norm!r}; valid: {sorted(NORM_OPS, key=str)}")
    if downsampling not in DOWNSAMPLING:
        raise ValueError(f"unknown downsampling {downsampling!r}; valid: {', '.join(map(repr, DOWNSAMPLING))}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background included), got {num_classes}")
    norm_op, norm_kwargs = NORM_OPS[conv_norm]
    n = len(features_per_stage)
    encoder = PlainConvEncoder(
        input_channels, n, list(features_per_stage), nn.Conv2d, [[3, 3]] * n, [[1, 1]] + [[2, 2]] * (n - 1),
        [2] * n, conv_bias=True, norm_op=norm_op, norm_op_kwargs=norm_kwargs, nonlin=nn.ReLU,
        nonlin_kwargs={"inplace": True}, return_skips=True, pool=downsampling,
    )
    network = PaperUNet(encoder, BilinearUNetDecoder(features_per_stage, num_classes, conv_norm, skip_connections))
    initialize_like_keras(network)
    return network
