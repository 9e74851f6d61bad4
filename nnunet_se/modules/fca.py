"""FCA, frequency channel attention (Qin et al., FcaNet 2021): 16 contiguous channel groups, each pooled with
one fixed 2D/3D cosine filter, -> SE MLP -> sigmoid channel gate."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from nnunet_se.modules.common import (
    ChannelExcitation,
    ChannelGate,
    excitation_parameter_count,
    resolve_options,
    squeeze_dtype,
)

logger = logging.getLogger(__name__)

GROUPS = 16
# FcaNet get_freq_indices('top16') on the 7x7 grid: (u along H, v along W).
TOP16_U = (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2)
TOP16_V = (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2)
# Martins FrequencyChannelAttention(low_freq=4): group g <-> (g // 4, g % 4).
LOW4X4_U = tuple(g // 4 for g in range(GROUPS))
LOW4X4_V = tuple(g % 4 for g in range(GROUPS))


def dct_basis_1d(length: int, frequency: int) -> torch.Tensor:
    """Orthonormal DCT-II basis vector ``cos(π f (p + ½) / L) / √L`` (× √2 for f ≠ 0), shape ``(L,)``, float64."""
    pos = torch.arange(length, dtype=torch.float64)
    basis = torch.cos(math.pi * frequency * (pos + 0.5) / length) / math.sqrt(length)
    return basis * math.sqrt(2.0) if frequency != 0 else basis


def martins_basis_1d(length: int, frequency: int) -> torch.Tensor:
    """The Martins group's unnormalised basis ``cos(π p (f + ½) / L)`` (half offset on the frequency), ``(L,)``."""
    pos = torch.arange(length, dtype=torch.float64)
    return torch.cos(math.pi * pos * (frequency + 0.5) / length)


def frequencies(flavour: str, dct_size: Sequence[int]) -> list[tuple[int, ...]]:
    """The 16 frequency tuples (one per channel group) for a filter of size ``dct_size`` (2 or 3 axes).

    ``original``: FcaNet 'top16' scaled by ``size // 7`` per axis (sizes < 7 collapse to 0, as official).
    ``paper``: the 4x4 lowest block. 3D: frequency 0 on the first (depth) axis, the 2D set on (H, W).
    """
    h, w = dct_size[-2:]
    if flavour == "original":
        pairs = [(u * (h // 7), v * (w // 7)) for u, v in zip(TOP16_U, TOP16_V, strict=True)]
    else:
        pairs = list(zip(LOW4X4_U, LOW4X4_V, strict=True))
    return [(0,) * (len(dct_size) - 2) + p for p in pairs]


def filters(flavour: str, dct_size: Sequence[int]) -> torch.Tensor:
    """The 16 separable filters, shape ``(16, *dct_size)``, float32."""
    basis_1d = dct_basis_1d if flavour == "original" else martins_basis_1d
    out = []
    for freq in frequencies(flavour, dct_size):
        f = torch.ones((), dtype=torch.float64)
        for length, k in zip(dct_size, freq, strict=True):
            f = f[..., None] * basis_1d(length, k)
        out.append(f)
    return torch.stack(out).float()


class FCA(ChannelGate):
    """Frequency channel attention, ``(N, C, *S) -> (N, C, *S)``; needs ``C % 16 == 0``.

    The filter size is ``feature_size`` (the map size seen in training; default 7 per axis). Inputs of
    another size are adaptive-average-pooled to it (FcaNet's arbitrary-size path) before pooling.
    ``original``: DCT-II 'top16' (scaled by size // 7), MLP r=16 without biases, PyTorch init.
    ``paper``: Martins basis on the 4x4 lowest frequencies, MLP r=2 with biases, glorot init.
    """

    name = "fca"
    defaults = {
        "paper": {"reduction": 2, "bias": True, "init": "glorot"},
        "original": {"reduction": 16, "bias": False, "init": "torch"},
    }

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        flavour: str = "paper",
        feature_size: Sequence[int] | None = None,
        **options: Any,
    ) -> None:
        opts = resolve_options(self.name, flavour, self.defaults, options)
        super().__init__(channels, spatial_dims, flavour)
        check_fca_channels(channels)
        dct_size = tuple(int(s) for s in feature_size) if feature_size is not None else (7,) * spatial_dims
        if len(dct_size) != spatial_dims or min(dct_size) < 1:
            raise ValueError(f"fca: feature_size must be {spatial_dims} positive ints, got {feature_size!r}")
        if flavour == "original" and min(dct_size[-2:]) < 7:
            logger.info("fca: feature size %s < 7: FcaNet's size // 7 scaling maps every frequency to 0", dct_size)
        self.dct_size = dct_size
        self.register_buffer("filters", filters(flavour, dct_size), persistent=False)
        self.excitation = ChannelExcitation(channels, opts["reduction"], opts["bias"], opts["init"])

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Frequency pooling ``(N, C, *S) -> (N, C)`` in ``squeeze_dtype(x)`` (at 224x224 the paper basis's
        (0, 0) filter sums to about 2e4: an fp16 sum overflows for mean activations above about 3)."""
        x = x.to(squeeze_dtype(x))
        if tuple(x.shape[2:]) != self.dct_size:
            pool = F.adaptive_avg_pool2d if self.spatial_dims == 2 else F.adaptive_avg_pool3d
            x = pool(x, self.dct_size)
        n = x.shape[0]
        grouped = x.reshape(n, GROUPS, self.channels // GROUPS, -1)
        pooled = torch.einsum("ngcp,gp->ngc", grouped, self.filters.flatten(1).to(x.dtype))
        return pooled.reshape(n, self.channels)

    def excite(self, x: torch.Tensor) -> torch.Tensor:
        return self.excitation(self.pool(x))

    @classmethod
    def parameter_count(cls, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any) -> int:
        """``2·C·h`` (``original``, no bias, r=16) or ``2·C·h + h + C`` (``paper``, r=2); ``h = max(1, C // r)``."""
        opts = resolve_options(cls.name, flavour, cls.defaults, options)
        check_fca_channels(channels)
        return excitation_parameter_count(channels, opts["reduction"], opts["bias"])


def check_fca_channels(channels: int) -> None:
    """FCA splits the channels into 16 equal groups."""
    if channels % GROUPS != 0:
        raise ValueError(f"fca: channels must be a multiple of {GROUPS} (one frequency per group), got {channels}")
