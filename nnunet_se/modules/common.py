"""Shared building blocks of the recalibration modules: the excitation MLP, the channel-gate base class,
initialisers, flavour/option resolution and a batch-norm that survives one value per channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

FLAVOURS = ("paper", "original")


def hidden_width(channels: int, reduction: int) -> int:
    """Hidden width of the excitation MLP: ``max(1, channels // reduction)``."""
    return max(1, channels // reduction)


def excitation_parameter_count(channels: int, reduction: int, bias: bool) -> int:
    """Trainable parameters of ``Linear(C, h) -> ReLU -> Linear(h, C)``: ``2·C·h (+ h + C with bias)``."""
    h = hidden_width(channels, reduction)
    return 2 * channels * h + ((h + channels) if bias else 0)


def squeeze_dtype(x: torch.Tensor) -> torch.dtype:
    """Precision of every squeeze (global reductions) and excitation: float32, or float64 for float64 input."""
    return torch.promote_types(x.dtype, torch.float32)


def glorot_(module: nn.Module) -> None:
    """Keras default initialisation: glorot-uniform weights, zero biases (for Linear and Conv layers)."""
    nn.init.xavier_uniform_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def gate_shape(n: int, c: int, spatial_dims: int) -> tuple[int, ...]:
    """Broadcastable channel-gate shape ``(N, C, 1, ...)``."""
    return (n, c) + (1,) * spatial_dims


def resolve_options(
    name: str, flavour: str, defaults: Mapping[str, Mapping[str, Any]], options: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge user ``options`` over the flavour ``defaults``; unknown flavours/options raise ``ValueError``."""
    if flavour not in defaults:
        raise ValueError(f"unknown flavour {flavour!r} for {name!r}; valid flavours: {', '.join(defaults)}")
    merged = dict(defaults[flavour])
    unknown = sorted(set(options) - set(merged))
    if unknown:
        valid = ", ".join(sorted(merged)) or "(none)"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {name!r}; valid options: {valid}")
    merged.update(options)
    return merged


def check_channels(name: str, channels: int) -> None:
    """Reject non-positive channel counts."""
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"{name}: channels must be a positive int, got {channels!r}")


def check_spatial_dims(name: str, spatial_dims: int) -> None:
    """Only 2D and 3D feature maps are supported."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"{name}: spatial_dims must be 2 or 3, got {spatial_dims!r}")


def batch_norm_any_batch(
    bn: nn.modules.batchnorm._BatchNorm, z: torch.Tensor, biased_running_var: bool = False
) -> torch.Tensor:
    """``bn(z)``, except

    * in train mode with one value per channel (e.g. batch 1 on an ``(N, C)`` vector), where PyTorch raises:
      there the normalised value ``(z - mean)/std`` is exactly 0, so the output is ``beta`` (what Keras
      computes) and the running statistics are left unchanged;
    * with ``biased_running_var`` (Keras's non-fused ``BatchNormalization``): the running variance tracks the
      biased (population) batch variance instead of PyTorch's unbiased one. The output is the same.
    """
    if not bn.training:
        return bn(z)
    if z.numel() // z.shape[1] == 1:
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        return (z * 0 + beta.view((1, -1) + (1,) * (z.dim() - 2))).to(z.dtype)
    if not biased_running_var:
        return bn(z)
    with torch.no_grad():
        var, mean = torch.var_mean(z, dim=(0, *range(2, z.dim())), correction=0)
        bn.num_batches_tracked += 1
        weight = bn.momentum if bn.momentum is not None else 1.0 / bn.num_batches_tracked  # cumulative average
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), weight)
        bn.running_var.lerp_(var.to(bn.running_var.dtype), weight)
    return F.batch_norm(z, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)


class ChannelExcitation(nn.Module):
    """SE excitation MLP ``Linear(C, h) -> ReLU -> Linear(h, C)``: ``(N, C) -> (N, C)`` logits."""

    def __init__(self, channels: int, reduction: int, bias: bool, init: str) -> None:
        super().__init__()
        h = hidden_width(channels, reduction)
        self.fc1 = nn.Linear(channels, h, bias=bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(h, channels, bias=bias)
        if init == "glorot":
            glorot_(self.fc1)
            glorot_(self.fc2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(z.to(self.fc1.weight.dtype))))


class ChannelGate(nn.Module):
    """Base of every channel-gating module: subclasses implement ``excite(x) -> (N, C)`` logits; the
    forward applies the child ``gate`` (``nn.Sigmoid``) on shape ``(N, C, 1, ...)`` and returns ``x * gate``
    in the dtype of ``x``. ``excite`` and the gate run with autocast disabled: subclasses squeeze in
    ``squeeze_dtype(x)`` (float32 under fp16/bf16 autocast), so large activations cannot overflow."""

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]]

    def __init__(self, channels: int, spatial_dims: int, flavour: str) -> None:
        super().__init__()
        check_channels(self.name, channels)
        check_spatial_dims(self.name, spatial_dims)
        self.channels = channels
        self.spatial_dims = spatial_dims
        self.flavour = flavour
        self.gate = nn.Sigmoid()

    def excite(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def channel_gate(self, x: torch.Tensor) -> torch.Tensor:
        """Excitations ``(N, C, 1, ...)`` in (0, 1), in ``squeeze_dtype(x)``."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = self.excite(x)
            return self.gate(logits.reshape(gate_shape(x.shape[0], self.channels, self.spatial_dims)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.channel_gate(x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, spatial_dims={self.spatial_dims}, flavour={self.flavour!r}"


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Global average pool ``(N, C, *S) -> (N, C)``, accumulated and returned in ``squeeze_dtype(x)``."""
    return x.flatten(2).mean(-1, dtype=squeeze_dtype(x))


__all__ = [
    "FLAVOURS",
    "ChannelExcitation",
    "ChannelGate",
    "batch_norm_any_batch",
    "excitation_parameter_count",
    "gate_shape",
    "glorot_",
    "hidden_width",
    "resolve_options",
    "spatial_mean",
    "squeeze_dtype",
]
