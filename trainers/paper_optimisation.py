"""Optimisation side of the paper protocol: Adam, a scheduler stepped on the early-stopping (ES) loss, nnU-Net's
train step without gradient clipping, and the ES loss as the case-weighted mean of its batches (Keras' ``val_loss``).

Mixed into :class:`nnunet_se.trainers.paper.nnUNetTrainerPaper` (before nnU-Net's trainer among the bases); reads
its class attributes ``lr_schedule``, ``plateau_factor``, ``plateau_patience`` and ``clip_gradients``.
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast

from nnunet_se.trainers.plateau import build_plateau_scheduler


class PaperOptimisation:
    """nnUNetTrainer mixin: the paper's optimiser, schedule, train step and ES loss."""

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, build_plateau_scheduler(optimizer, self.lr_schedule, self.plateau_factor,
                                                  self.plateau_patience)

    def on_train_epoch_start(self):
        """As nnU-Net, minus its per-epoch scheduler step (the plateau scheduler steps on the ES loss)."""
        self.network.train()
        lr = self.optimizer.param_groups[0]["lr"]
        self.print_to_log_file("")
        self.print_to_log_file(f"Epoch {self.current_epoch}")
        self.print_to_log_file(f"Current learning rate: {lr:.3g}")
        self.logger.log("lrs", lr, self.current_epoch)

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's train step; without its gradient clipping unless ``clip_gradients``."""
        if self.clip_gradients:
            return super().train_step(batch)
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            loss = self.loss(self.network(data), target)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy()}

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step, plus the number of cases in the batch (the last ES batch may be smaller)."""
        cases = int(batch["data"].shape[0])
        return {**super().validation_step(batch), "cases": cases}

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        """ES loss = case-weighted mean of the batch losses (Keras' ``val_loss``), then nnU-Net's epoch end."""
        weights = [o.pop("cases") for o in val_outputs]
        es_loss = float(np.average([float(o["loss"]) for o in val_outputs], weights=weights))
        for o in val_outputs:  # nnU-Net logs the plain mean of the batch losses: make each one the weighted mean
            o["loss"] = np.float32(es_loss)
        super().on_validation_epoch_end(val_outputs)
        self.lr_scheduler.step(float(self.logger.get_value("val_losses", step=-1)))
