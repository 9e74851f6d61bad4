"""The one trainer mechanism shared by every plugin trainer: network build + injection, smoke-run controls, seeding.

A plugin trainer is a small subclass of :class:`RecalibrationTrainer` that only sets class attributes
(nnU-Net records ``__init__``'s arguments by signature, so variants must not add constructor parameters):

- ``recalibration``: registry name of :func:`nnunet_se.modules.create_recalibration` (``None``: no module);
- ``flavour``: ``"paper"`` or ``"original"``; ``recalibration_options``: extra options for the module factory;
- ``skip_connections``: ``False`` replaces the decoder by :class:`nnunet_se.no_skip.NoSkipUNetDecoder`;
- ``family`` (``"auto"``, ``"original"``, ``"paper"``), ``baseline`` (the trainer it is tested against in the paper's
  Table I; ``None`` for a baseline) and ``table_row`` (its Table I row: ``"U-Net"``, ``"+cSE"``, ``"+SRM"``,
  ``"+FCA"``, ``"+Mono"``; ``None`` when the paper has none): read by every consumer through
  :mod:`nnunet_se.trainer_registry`;
- ``network_summary``: shown by ``nnunet-se list``.

``build_network_architecture`` is a classmethod with nnU-Net 2.8.1's signature: nnU-Net calls it on the instance
during training and on the class (``enable_deep_supervision=False``) in ``nnUNetv2_predict``, so both build the same
module tree. Subclasses with their own backbone override :meth:`build_backbone`.

Environment controls (all plugin trainers; unset means nnU-Net's own behaviour):
``NNUNET_SE_NUM_EPOCHS`` (epochs), ``NNUNET_SE_NUM_ITERATIONS`` (train iterations per epoch, and val iterations
where ``env_iterations_cover_validation``),
``NNUNET_SE_SEED`` (0..2**32 - 1, the range of ``--seed``; seeds Python, NumPy and torch when the trainer is created
and again before the data loaders are built). A value out of range stops the trainer's creation with a ValueError
naming the variable.
"""

from __future__ import annotations

import os
import random
from typing import Any, ClassVar

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_se.cli_options import MAX_SEED
from nnunet_se.errors import shown
from nnunet_se.injection import inject_recalibration
from nnunet_se.no_skip import remove_skip_connections

ENV_EPOCHS = "NNUNET_SE_NUM_EPOCHS"
ENV_ITERATIONS = "NNUNET_SE_NUM_ITERATIONS"
ENV_SEED = "NNUNET_SE_SEED"
NNUNET_DEFAULT_DEVICE = torch.device("cuda")  # nnUNetTrainer's own default
STOCK_TRAINER = nnUNetTrainer.__name__  # nnU-Net's own trainer: baseline of the auto and original families
STOCK_TABLE_ROW = "U-Net"  # its Table I row (the registry lists it with these facts: it has no plugin class)


def env_int(name: str, minimum: int, maximum: int | None = None) -> int | None:
    """Integer value of environment variable ``name`` (``None`` when unset or empty); a ValueError naming the
    variable if it is not a decimal integer in ``minimum..maximum``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isascii() or not value.lstrip("+-").isdigit() or len(value) > 20:  # no int() of 5000 digits
        raise ValueError(f"{name}={shown(value)} is not an integer" + (
            f" from {minimum} to {maximum}" if maximum is not None else ""))
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}={number} must be {bound}")
    return number


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and CUDA); ``seed`` in 0..``MAX_SEED`` (NumPy's
    legacy seed range, so every generator gets the same seed)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RecalibrationTrainer(nnUNetTrainer):
    """nnUNetTrainer on nnU-Net's own plans with ``recalibration`` injected after every encoder stage but the last."""

    recalibration: ClassVar[str | None] = None
    flavour: ClassVar[str] = "paper"
    recalibration_options: ClassVar[dict[str, Any]] = {}
    skip_connections: ClassVar[bool] = True
    family: ClassVar[str] = "auto"
    baseline: ClassVar[str | None] = STOCK_TRAINER
    table_row: ClassVar[str | None] = None
    env_iterations_cover_validation: ClassVar[bool] = True  # NNUNET_SE_NUM_ITERATIONS also sets val iterations
    network_summary: ClassVar[str] = "nnU-Net plans (PlainConvUNet / ResidualEncoderUNet)"

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = NNUNET_DEFAULT_DEVICE):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.seed = env_int(ENV_SEED, 0, MAX_SEED)
        if self.seed is not None:
            seed_everything(self.seed)
        self.apply_schedule_overrides()

    def apply_schedule_overrides(self) -> None:
        """Apply ``NNUNET_SE_NUM_EPOCHS`` / ``NNUNET_SE_NUM_ITERATIONS`` over whatever schedule is set now."""
        epochs = env_int(ENV_EPOCHS, 1)
        iterations = env_int(ENV_ITERATIONS, 1)
        if epochs is not None:
            self.num_epochs = epochs
        if iterations is not None:
            self.num_iterations_per_epoch = iterations
            if self.env_iterations_cover_validation:
                self.num_val_iterations_per_epoch = iterations

    def on_train_start(self) -> None:
        """Seed again right before the data loaders exist; re-apply the overrides after subclasses set schedules."""
        if self.seed is not None:
            seed_everything(self.seed)
            self.print_to_log_file(f"{ENV_SEED}={self.seed}")
        super().on_train_start()
        self.apply_schedule_overrides()
        self.print_to_log_file(
            f"{type(self).__name__}: recalibration={self.recalibration} flavour={self.flavour} "
            f"options={self.recalibration_options} skip_connections={self.skip_connections} "
            f"epochs={self.num_epochs} iterations/epoch={self.num_iterations_per_epoch} "
            f"val iterations/epoch={self.num_val_iterations_per_epoch}"
        )

    @classmethod
    def build_backbone(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                       num_input_channels: int, num_output_channels: int,
                       enable_deep_supervision: bool = True) -> nn.Module:
        """The network before injection: here nnU-Net's planned network."""
        return nnUNetTrainer.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision
        )

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """Backbone, then the recalibration modules (sized for the configuration's patch), then the skip removal."""
        network = cls.build_backbone(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision
        )
        cls.inject_modules(network, configuration_manager.patch_size)
        if not cls.skip_connections:
            remove_skip_connections(network)
        return network

    @classmethod
    def inject_modules(cls, network: nn.Module, patch_size: Any) -> None:
        """Insert ``recalibration`` (if any) into ``network``, sized for ``patch_size``; in place."""
        if cls.recalibration is not None:
            inject_recalibration(network, cls.recalibration, cls.flavour, patch_size=patch_size,
                                 **cls.recalibration_options)
