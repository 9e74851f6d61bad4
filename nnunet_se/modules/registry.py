"""Registry of the recalibration modules: ``create_recalibration``, ``available_recalibrations``,
``parameter_count`` (in the style of timm's ``create_attn``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from nnunet_se.modules.common import FLAVOURS
from nnunet_se.modules.cse import CSE
from nnunet_se.modules.fca import FCA
from nnunet_se.modules.mono import Mono
from nnunet_se.modules.srm import SRM
from nnunet_se.modules.sse import SCSE, SSE

REGISTRY: dict[str, type[nn.Module]] = {cls.name: cls for cls in (CSE, SSE, SCSE, SRM, FCA, Mono)}
NONE_NAMES = ("none",)


def available_recalibrations() -> list[str]:
    """Registry names, in the paper's order: cse, sse, scse, srm, fca, mono."""
    return list(REGISTRY)


def _lookup(name: str, flavour: str) -> type[nn.Module]:
    if name not in REGISTRY:
        valid = ", ".join([*REGISTRY, *NONE_NAMES])
        raise ValueError(f"unknown recalibration module {name!r}; valid names: {valid}")
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; valid flavours: {', '.join(FLAVOURS)}")
    return REGISTRY[name]


def create_recalibration(
    name: str | None, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any
) -> nn.Module | None:
    """Module ``name`` for ``channels`` channels and ``spatial_dims`` (2 or 3) spatial axes, or ``None`` for
    ``None``/``"none"``. ``options`` override the flavour's defaults (see docs/modules.md); every module
    accepts ``feature_size`` (the training map size; FCA uses it as its filter size)."""
    if name is None or name in NONE_NAMES:
        return None
    return _lookup(name, flavour)(channels, spatial_dims, flavour, **options)


def parameter_count(name: str, channels: int, spatial_dims: int = 2, flavour: str = "paper", **options: Any) -> int:
    """Closed-form trainable-parameter count of ``create_recalibration(name, channels, ...)``."""
    if name is None or name in NONE_NAMES:
        return 0
    options.pop("feature_size", None)
    return _lookup(name, flavour).parameter_count(channels, spatial_dims, flavour, **options)
