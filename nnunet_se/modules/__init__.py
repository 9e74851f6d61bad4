"""Channel-recalibration modules (cSE, sSE, scSE, SRM, FCA, Mono) in two flavours, "paper" and "original"."""

from nnunet_se.modules.registry import (
    available_recalibrations,
    create_recalibration,
    parameter_count,
    register_recalibration,
)

__all__ = ["available_recalibrations", "create_recalibration", "parameter_count", "register_recalibration"]
