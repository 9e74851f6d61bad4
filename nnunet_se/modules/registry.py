"""Registry of the recalibration modules: ``create_recalibration``, ``available_recalibrations``,
``parameter_count`` (in the style of timm's ``create_attn``), and ``register_recalibration`` for modules of other
packages (docs/extending.md; loaded through :mod:`nnunet_se.plugins`)."""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from nnunet_se.modules.common import FLAVOURS
from nnunet_se.modules.cse import CSE
from nnunet_se.modules.fca import FCA
from nnunet_se.modules.mono import Mono
from nnunet_se.modules.srm import SRM
from nnunet_se.modules.sse import SCSE, SSE
from nnunet_se.plugins import load_plugins

REGISTRY: dict[str, type[nn.Module]] = {cls.name: cls for cls in (CSE, SSE, SCSE, SRM, FCA, Mono)}
NONE_NAMES = ("none",)
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)


def register_recalibration(cls: type[nn.Module]) -> type[nn.Module]:
    """Add a module class of another package under ``cls.name``; returns ``cls`` (so it works as a decorator).

    The class must have a ``name`` (lower-case letters, digits, ``_``; not a registered or reserved name), be built
    as ``cls(channels, spatial_dims, flavour, feature_size=..., **options)`` and have
    ``cls.parameter_count(channels, spatial_dims, flavour, **options)``; its channel gate is a child ``gate`` whose
    output is ``(N, C, 1, ...)`` (what ``nnunet-se-analyze excitations`` records). Registering the same class twice
    is allowed; another class under a taken name is a ValueError.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in NONE_NAMES:
        raise ValueError(f"{cls.__qualname__}.name must be a lower-case identifier other than "
                         f"{', '.join(NONE_NAMES)}, got {name!r}")
    if REGISTRY.get(name, cls) is not cls:
        taken = REGISTRY[name]
        raise ValueError(f"recalibration module name {name!r} is taken by {taken.__module__}.{taken.__qualname__}")
    if not callable(getattr(cls, "parameter_count", None)):
        raise ValueError(f"{cls.__qualname__} has no parameter_count(channels, spatial_dims, flavour, **options)")
    REGISTRY[name] = cls
    return cls


def available_recalibrations() -> list[str]:
    """Registry names, in the paper's order (cse, sse, scse, srm, fca, mono), then those of plugins."""
    load_plugins()
    return list(REGISTRY)


def _lookup(name: str, flavour: str) -> type[nn.Module]:
    if name not in REGISTRY:
        load_plugins()
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
