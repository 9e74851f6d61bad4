"""SRM, style-based recalibration (Lee, Kim, Nam 2019): style pooling [mean, std] -> channel-wise or shared
linear combination -> batch norm over the batch -> sigmoid channel gate."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nnunet_se.modules.common import ChannelGate, batch_norm_any_batch, resolve_options, squeeze_dtype


class SRM(ChannelGate):
    """Style-based recalibration, ``(N, C, *S) -> (N, C, *S)``.

    ``original`` (official ``SRMLayer``): ``std = sqrt(unbiased var + 1e-5)``, channel-wise ``cfc`` (C, 2)
    initialised to 0, ``BatchNorm1d(C)`` (eps 1e-5, momentum 0.1); 4C parameters.
    ``paper`` (Martins ``StyleBasedRecalibration``): ``std = sqrt(population var + 1e-12)``, two weights
    ``cfc`` (1, 2) shared by all channels (glorot-uniform), Keras BN (eps 1e-3, momentum 0.99 -> 0.01, and,
    as Keras's non-fused batch norm on an (N, C) tensor, a running variance tracking the biased batch
    variance); 2 + 2C parameters. In train mode with batch 1 the batch norm outputs ``beta`` (see
    ``batch_norm_any_batch``); a 1-position map uses variance 0 instead of the undefined unbiased one.
    """

    name = "srm"
    defaults = {
        "paper": {
            "unbiased": False, "var_eps": 1e-12, "shared": True, "bn_eps": 1e-3, "bn_momentum": 0.01,
            "bn_running_var": "biased",
        },
        "original": {
            "unbiased": True, "var_eps": 1e-5, "shared": False, "bn_eps": 1e-5, "bn_momentum": 0.1,
            "bn_running_var": "unbiased",
        },
    }

    def __init__(
        self, channels: int, spatial_dims: int = 2, flavour: str = "paper", feature_size: Any = None, **options: Any
    ) -> None:
        opts = resolve_options(self.name, flavour, self.defaults, options)
        super().__init__(channels, spatial_dims, flavour)
        if opts["bn_running_var"] not in ("biased", "unbiased"):
            raise ValueError(f"srm: bn_running_var must be one of biased, unbiased; got {opts['bn_running_var']!r}")
        self.unbiased, self.var_eps = bool(opts["unbiased"]), float(opts["var_eps"])
        self.biased_running_var = opts["bn_running_var"] == "biased"
        if opts["shared"]:
            self.cfc = nn.Parameter(torch.empty(1, 2).uniform_(-math.sqrt(2.0), math.sqrt(2.0)))  # glorot (2 -> 1)
        else:
            self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm1d(channels, eps=opts["bn_eps"], momentum=opts["bn_momentum"])

    def style(self, x: torch.Tensor) -> torch.Tensor:
        """Style pooling ``(N, C, *S) -> (N, C, 2)``: ``[mean, sqrt(var + var_eps)]`` over space, in
        ``squeeze_dtype(x)``."""
        flat = x.flatten(2).to(squeeze_dtype(x))
        correction = 1 if self.unbiased and flat.shape[-1] > 1 else 0
        var, mean = torch.var_mean(flat, dim=-1, correction=correction)
        return torch.stack((mean, torch.sqrt(var + self.var_eps)), dim=-1)

    def excite(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.style(x) * self.cfc).sum(-1)
        return batch_norm_any_batch(self.bn, z, self.biased_running_var)

    @classmethod
    def parameter_count(cls, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any) -> int:
        """``2 + 2C`` (shared cfc, ``paper``) or ``4C`` (channel-wise cfc, ``original``)."""
        opts = resolve_options(cls.name, flavour, cls.defaults, options)
        return (2 if opts["shared"] else 2 * channels) + 2 * channels
