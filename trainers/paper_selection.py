"""Checkpoint selection of the paper protocol: the weights with the lowest early-stopping (ES) loss.

The authors keep the best ``val_loss`` weights (Keras ``ModelCheckpoint(save_best_only=True)``, strictly lower) and
evaluate those. Mixed into the paper trainers before :class:`RecalibrationTrainer`: ``checkpoint_best.pth`` is
written on every new best ES loss, the best weights are restored before ``checkpoint_final.pth`` and the final
validation, an optional patience stops training early, and the scheduler and ES state travel in every checkpoint
(exact ``--c`` resume), and ``progress.png`` is redrawn every ``progress_plot_every`` epochs (``None``: only at the
last epoch or an early stop). Needs ``self.early_stopping`` (:class:`EarlyStopping`), ``self._best_weights`` and
``self.progress_plot_every``.
"""

from __future__ import annotations

from time import time

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join
from torch import nn
from torch._dynamo import OptimizedModule

CHECKPOINT_KEY = "nnunet_se_paper"


class _StopTraining(Exception):
    """Raised at the end of an epoch when the early-stopping patience is used up."""


class BestEarlyStoppingCheckpoint:
    """nnUNetTrainer mixin: best-ES-loss checkpoint, early stop, resumable state.

    List it before the nnUNetTrainer subclass among the bases (its methods override nnUNetTrainer's and call them
    through ``super()``); its order among the other paper mixins does not matter, as they override other methods.
    """

    def _plain_network(self) -> nn.Module:
        net = self.network.module if self.is_ddp else self.network
        return net._orig_mod if isinstance(net, OptimizedModule) else net

    def on_epoch_end(self):
        """nnU-Net's epoch end with the best checkpoint chosen on the ES loss (not the EMA pseudo Dice)."""
        epoch = self.current_epoch
        self.logger.log("epoch_end_timestamps", time(), epoch)
        es_loss = float(self.logger.get_value("val_losses", step=-1))
        self.print_to_log_file("train_loss", np.round(self.logger.get_value("train_losses", step=-1), decimals=4))
        self.print_to_log_file("early_stopping_loss", np.round(es_loss, decimals=4))
        self.print_to_log_file("Pseudo dice (ES set)", [np.round(i, decimals=4) for i in
                                                        self.logger.get_value("dice_per_class_or_region", step=-1)])
        self.print_to_log_file("Epoch time: %.2f s" % (self.logger.get_value("epoch_end_timestamps", step=-1)
                                                       - self.logger.get_value("epoch_start_timestamps", step=-1)))
        ema = self.logger.get_value("ema_fg_dice", step=-1)
        self._best_ema = ema if self._best_ema is None else max(self._best_ema, ema)
        if self.early_stopping.update(es_loss, epoch):
            self._best_weights = {k: v.detach().clone() for k, v in self._plain_network().state_dict().items()}
            self.print_to_log_file(f"New best early-stopping loss: {es_loss:.4f}")
            self.save_checkpoint(join(self.output_folder, "checkpoint_best.pth"))
        if (epoch + 1) % self.save_every == 0 and epoch != self.num_epochs - 1:
            self.save_checkpoint(join(self.output_folder, "checkpoint_latest.pth"))
        last = epoch == self.num_epochs - 1 or self.early_stopping.should_stop
        every = self.progress_plot_every
        if self.local_rank == 0 and (last or (every is not None and (epoch + 1) % every == 0)):
            self.logger.plot_progress_png(self.output_folder)
        self.current_epoch += 1
        if self.early_stopping.should_stop and self.current_epoch < self.num_epochs:
            es = self.early_stopping
            self.print_to_log_file(f"Early stop: no better ES loss for {es.stale_epochs} epochs "
                                   f"(best {es.best_loss:.4f} at epoch {es.best_epoch})")
            raise _StopTraining

    def run_training(self):
        if self.early_stopping.should_stop:  # resumed (--c) from a run that had already stopped early
            self.num_epochs = self.current_epoch
        try:
            super().run_training()
        except _StopTraining:
            self.on_train_end()

    def on_train_end(self):
        """Load the best-ES-loss weights, so checkpoint_final.pth and the final validation use them."""
        weights = self._best_weights
        best_file = join(self.output_folder, "checkpoint_best.pth")
        if weights is None and isfile(best_file):  # resumed: the best weights are only on disk
            weights = torch.load(best_file, map_location=self.device, weights_only=False)["network_weights"]
        if weights is not None:
            self._plain_network().load_state_dict(weights)
            self.print_to_log_file(f"Restored the weights of epoch {self.early_stopping.best_epoch} "
                                   f"(best early-stopping loss {self.early_stopping.best_loss:.4f})")
        super().on_train_end()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint plus the plateau scheduler and early-stopping state (exact ``--c`` resume)."""
        if self.local_rank != 0:
            return
        if self.disable_checkpointing:
            self.print_to_log_file("No checkpoint written, checkpointing is disabled")
            return
        torch.save({
            "network_weights": self._plain_network().state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": self._best_ema,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
            CHECKPOINT_KEY: {"lr_scheduler": self.lr_scheduler.state_dict(),
                             "early_stopping": self.early_stopping.state_dict()},
        }, filename)

    def load_checkpoint(self, filename_or_checkpoint: str) -> None:
        """nnU-Net's load (a path: nnU-Net 2.8.1 cannot load a dict), then the plateau and early-stopping state."""
        super().load_checkpoint(filename_or_checkpoint)
        state = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False).get(CHECKPOINT_KEY)
        if state is None:
            self.print_to_log_file("WARNING: checkpoint has no plateau/early-stopping state; they start afresh")
            return
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.early_stopping.load_state_dict(state["early_stopping"])
