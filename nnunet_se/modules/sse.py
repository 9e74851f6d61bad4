"""sSE and scSE (Roy, Navab, Wachinger 2018): spatial gate from a 1x1 convolution C -> 1, and its
combination with the cSE channel gate (max-out, as in the official code and the Martins group's code)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnunet_se.modules.common import check_channels, check_spatial_dims, glorot_, resolve_options
from nnunet_se.modules.cse import CSE

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}


def _spatial_squeeze(channels: int, spatial_dims: int, init: str) -> nn.Module:
    """1x1(x1) convolution ``C -> 1`` with bias."""
    conv = _CONV[spatial_dims](channels, 1, kernel_size=1, bias=True)
    if init == "glorot":
        glorot_(conv)
    return conv


class SSE(nn.Module):
    """Spatial squeeze-and-excitation, ``(N, C, *S) -> (N, C, *S)``: ``y = x · σ(conv1x1(x))``; the child
    ``spatial_gate`` sees ``(N, 1, *S)``. Both flavours have the same maths (C + 1 parameters); ``paper``
    uses Keras glorot/zero-bias init, ``original`` PyTorch's default (ai-med ``SpatialSELayer``)."""

    name = "sse"
    defaults = {"paper": {"init": "glorot"}, "original": {"init": "torch"}}

    def __init__(
        self, channels: int, spatial_dims: int = 2, flavour: str = "paper", feature_size: Any = None, **options: Any
    ) -> None:
        opts = resolve_options(self.name, flavour, self.defaults, options)
        check_channels(self.name, channels)
        check_spatial_dims(self.name, spatial_dims)
        super().__init__()
        self.channels, self.spatial_dims, self.flavour = channels, spatial_dims, flavour
        self.conv = _spatial_squeeze(channels, spatial_dims, opts["init"])
        self.spatial_gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.spatial_gate(self.conv(x)).to(x.dtype)

    @classmethod
    def parameter_count(cls, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any) -> int:
        """``C + 1``."""
        resolve_options(cls.name, flavour, cls.defaults, options)
        return channels + 1


class SCSE(CSE):
    """Concurrent spatial and channel SE: ``max(x·s_c, x·s_s)`` (``combine="max"``, default in both flavours)
    or ``x·s_c + x·s_s`` (``combine="add"``, the MICCAI figure / smp). ``paper``: cSE r=2, glorot init;
    ``original``: ai-med ``ChannelSpatialSELayer`` (r=2, PyTorch init). Children: ``gate`` (channel
    excitations ``(N, C, 1, ...)``) and ``spatial_gate`` (``(N, 1, *S)``)."""

    name = "scse"
    defaults = {
        "paper": {"reduction": 2, "bias": True, "init": "glorot", "combine": "max"},
        "original": {"reduction": 2, "bias": True, "init": "torch", "combine": "max"},
    }

    def __init__(
        self, channels: int, spatial_dims: int = 2, flavour: str = "paper", feature_size: Any = None, **options: Any
    ) -> None:
        opts = resolve_options(self.name, flavour, self.defaults, options)
        if opts["combine"] not in ("max", "add"):
            raise ValueError(f"scse: combine must be one of max, add; got {opts['combine']!r}")
        combine = opts.pop("combine")
        super().__init__(channels, spatial_dims, flavour, **opts)
        self.combine = combine
        self.conv = _spatial_squeeze(channels, spatial_dims, opts["init"])
        self.spatial_gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel = x * self.channel_gate(x).to(x.dtype)
        spatial = x * self.spatial_gate(self.conv(x)).to(x.dtype)
        return torch.maximum(channel, spatial) if self.combine == "max" else channel + spatial

    @classmethod
    def parameter_count(cls, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any) -> int:
        """cSE count + ``C + 1``; r=2 with bias: ``C² + 2.5C + 1`` for even C."""
        opts = resolve_options(cls.name, flavour, cls.defaults, options)
        opts.pop("combine")
        return CSE.parameter_count(channels, spatial_dims, flavour, **opts) + channels + 1
