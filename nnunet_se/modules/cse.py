"""cSE / SE (Hu et al. 2018; "cSE" in Roy et al. 2018): global average pool -> MLP -> sigmoid channel gate."""

from __future__ import annotations

from typing import Any

import torch

from nnunet_se.modules.common import (
    ChannelExcitation,
    ChannelGate,
    excitation_parameter_count,
    resolve_options,
    spatial_mean,
)


class CSE(ChannelGate):
    """Channel squeeze-and-excitation, ``(N, C, *S) -> (N, C, *S)``.

    ``paper``: r=2, biases, glorot-uniform/zero-bias init (the Martins group's Keras ``SqueezeExcite``).
    ``original``: r=16, biases, PyTorch default init (Hu et al.'s Caffe SE-ResNet).
    """

    name = "cse"
    defaults = {
        "paper": {"reduction": 2, "bias": True, "init": "glorot"},
        "original": {"reduction": 16, "bias": True, "init": "torch"},
    }

    def __init__(
        self, channels: int, spatial_dims: int = 2, flavour: str = "paper", feature_size: Any = None, **options: Any
    ) -> None:
        opts = resolve_options(self.name, flavour, self.defaults, options)
        super().__init__(channels, spatial_dims, flavour)
        self.excitation = ChannelExcitation(channels, opts["reduction"], opts["bias"], opts["init"])

    def excite(self, x: torch.Tensor) -> torch.Tensor:
        return self.excitation(spatial_mean(x))

    @classmethod
    def parameter_count(cls, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any) -> int:
        """``2·C·h + h + C`` with bias (``2·C·h`` without), ``h = max(1, C // r)``."""
        opts = resolve_options(cls.name, flavour, cls.defaults, options)
        return excitation_parameter_count(channels, opts["reduction"], opts["bias"])
