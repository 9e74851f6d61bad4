"""``nnUNetv2_train`` / ``nnUNetv2_predict`` with measurement hooks, for ``benchmarks/gpu_acceptance.sh``.

    python benchmarks/nnunet_measured.py train 990 2d 0 -tr nnUNetTrainerMono -device cuda
    python benchmarks/nnunet_measured.py predict -i IN -o OUT -d 990 -c 2d -f 0 -tr nnUNetTrainerMono -device cuda

Runs nnU-Net's own console entry points (``run_training_entry``, ``predict_entry_point``) with the remaining
arguments, after wrapping three nnU-Net methods so the log gains machine-readable lines (stdout, flushed):

- ``measured: train_peak_mib epoch=E value=M``: ``torch.cuda.max_memory_allocated`` over the training iterations of
  epoch E (reset when the epoch starts; validation iterations excluded), MiB; nothing on the CPU;
- ``measured: predict_case_s value=S``: seconds of one case's sliding-window prediction (CUDA synchronised before
  and after; preprocessing and export excluded), one line per case.

The wrappers call the original methods unchanged; the trainer and predictor behave as under the console scripts.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def report(name: str, **values: Any) -> None:
    fields = " ".join(f"{k}={v}" for k, v in values.items())
    print(f"measured: {name} {fields}", flush=True)


def cuda_synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def wrap(cls: type, name: str, before: Callable | None = None, after: Callable | None = None) -> None:
    """Replace ``cls.name`` by a wrapper running ``before(self)`` and ``after(self, seconds)`` around it (seconds
    of the call, CUDA synchronised at both ends)."""
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        if before is not None:
            before(self)
        cuda_synchronize()
        start = time.perf_counter()
        result = original(self, *args, **kwargs)
        cuda_synchronize()
        if after is not None:
            after(self, time.perf_counter() - start)
        return result

    setattr(cls, name, wrapper)


def reset_peak(trainer: Any) -> None:
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)


def report_peak(trainer: Any) -> None:
    if trainer.device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(trainer.device) / 2**20
        report("train_peak_mib", epoch=trainer.current_epoch, value=f"{peak:.1f}")


def train() -> None:
    from nnunetv2.run.run_training import run_training_entry
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    wrap(nnUNetTrainer, "on_train_epoch_start", before=reset_peak)
    # on_train_epoch_end runs after the last training iteration and before the validation iterations
    wrap(nnUNetTrainer, "on_train_epoch_end", before=report_peak)
    run_training_entry()


def predict() -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor, predict_entry_point

    wrap(nnUNetPredictor, "predict_sliding_window_return_logits",
         after=lambda _, seconds: report("predict_case_s", value=f"{seconds:.4f}"))
    predict_entry_point()


COMMANDS = {"train": train, "predict": predict}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: {sys.argv[0]} {{{','.join(COMMANDS)}}} NNUNET_ARGS...", file=sys.stderr)
        raise SystemExit(2)
    command = COMMANDS[sys.argv.pop(1)]
    sys.argv[0] = f"nnUNetv2_{command.__name__}"
    command()


if __name__ == "__main__":
    main()
