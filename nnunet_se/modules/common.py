"""Shared building blocks of the recalibration modules: the excitation MLP, the channel-gate base class,
initialisers, flavour/option resolution and a batch-norm that survives one value per channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

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


def sync_group(bn: nn.modules.batchnorm._BatchNorm) -> ProcessGroup | None:
    """The process group whose global batch the batch statistics of ``bn`` cover: ``bn``'s group when ``bn`` is
    a ``SyncBatchNorm`` (what ``nnUNetv2_train -num_gpus N`` converts every BatchNorm to) in train mode and
    ``torch.distributed`` is initialised with more than one process in that group (``SyncBatchNorm``'s own
    rule); ``None`` (statistics of the local batch) otherwise."""
    if not (isinstance(bn, nn.SyncBatchNorm) and bn.training and dist.is_available() and dist.is_initialized()):
        return None
    group = bn.process_group or dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None


def batch_mean(values: torch.Tensor, group: ProcessGroup | None) -> tuple[torch.Tensor, torch.Tensor | int]:
    """Mean of ``values (N, ...)`` over its first axis and that axis's length, over the global batch of ``group``
    (every process's ``values`` stacked; ``None``: the local batch, length an int). Differentiable: the
    all-reduce's backward sums the incoming gradients over the processes, so every process receives the gradient
    of the total loss. The global length is a 0-d tensor (no host synchronisation); it is >= 2 (>= 1 per process)."""
    if group is None:
        return values.mean(0), values.shape[0]
    from torch.distributed._functional_collectives import all_reduce  # autograd-aware and traceable by dynamo

    local = torch.cat((values.sum(0).flatten(), values.new_full((1,), values.shape[0])))
    total = all_reduce(local, "sum", group)
    return total[:-1].view(values.shape[1:]) / total[-1], total[-1]


@torch.no_grad()
def update_running_stats(
    bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor | int,
    unbiased: bool,
) -> None:
    """``nn.BatchNorm``'s train-mode update of ``bn``'s running statistics from the batch ``mean`` and biased
    ``var`` of ``count`` values per channel: exponential average with ``momentum`` (cumulative for ``None``);
    the running variance tracks ``var·count/(count − 1)`` if ``unbiased`` (PyTorch) or ``var`` (Keras's
    non-fused batch norm). A single value (``count`` 1) leaves the running variance unchanged (undefined)."""
    bn.num_batches_tracked += 1
    weight = bn.momentum if bn.momentum is not None else 1.0 / bn.num_batches_tracked
    bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), weight)
    if unbiased:
        if isinstance(count, int) and count < 2:
            return
        var = var * count / (count - 1)
    bn.running_var.lerp_(var.to(bn.running_var.dtype), weight)


def affine_normalize(
    bn: nn.modules.batchnorm._BatchNorm, z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
) -> torch.Tensor:
    """``γ (z − mean)/sqrt(var + eps) + β`` with ``bn``'s affine parameters and eps, ``z (N, C, *S)``, per-channel
    ``mean``/``var (C,)``."""
    shape = (1, -1) + (1,) * (z.dim() - 2)
    out = (z - mean.view(shape)) * torch.rsqrt(var.view(shape) + bn.eps)
    if bn.weight is not None:
        out = out * bn.weight.view(shape) + bn.bias.view(shape)
    return out


def batch_norm_any_batch(
    bn: nn.modules.batchnorm._BatchNorm, z: torch.Tensor, biased_running_var: bool = False
) -> torch.Tensor:
    """``bn(z)``, except

    * in train mode with one value per channel (e.g. batch 1 on an ``(N, C)`` vector), where PyTorch raises:
      there the normalised value ``(z - mean)/std`` is exactly 0, so the output is ``beta`` (what Keras
      computes) and the running statistics are left unchanged;
    * with ``biased_running_var`` (Keras's non-fused ``BatchNormalization``): the running variance tracks the
      biased (population) batch variance instead of PyTorch's unbiased one. The output is the same;
    * under multi-process training (``sync_group``): the batch statistics are those of the global batch
      (two-pass mean and variance, each one all-reduce), as ``SyncBatchNorm`` computes them, on any device
      (PyTorch's ``SyncBatchNorm`` runs on GPUs only).
    """
    if not bn.training:
        return bn(z)
    group = sync_group(bn)
    if group is None and z.numel() // z.shape[1] == 1:
        beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        return (z * 0 + beta.view((1, -1) + (1,) * (z.dim() - 2))).to(z.dtype)
    if group is None and not biased_running_var:
        return bn(z)
    values = z.transpose(0, 1).flatten(1).T  # (values per channel, C)
    mean, count = batch_mean(values, group)
    var, _ = batch_mean((values - mean).square(), group)
    update_running_stats(bn, mean, var, count, unbiased=not biased_running_var)
    return affine_normalize(bn, z, mean, var)


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
    "affine_normalize",
    "batch_mean",
    "batch_norm_any_batch",
    "excitation_parameter_count",
    "gate_shape",
    "glorot_",
    "hidden_width",
    "resolve_options",
    "spatial_mean",
    "squeeze_dtype",
    "sync_group",
    "update_running_stats",
]
