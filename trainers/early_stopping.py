"""Early-stopping (ES) set of the paper protocol: split, per-case classes, a loader that covers it once, stop rule.

The ES set is carved out of a fold's *training* cases (nnU-Net's held-out ``val`` cases stay the test set). It is
seeded; where the dataset's case table (``nnunet_se_cases.csv``, written by the converters) records a class per
case it is stratified by class, and cases of one duplicate group never straddle the fit/ES boundary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

from nnunet_se.conversion.cases import CASE_TABLE, read_case_table


def read_case_table_columns(raw_dataset_dir: str | Path | None) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """(``{case: class}``, ``{case: duplicate group}``) from the raw dataset's ``nnunet_se_cases.csv``.

    Either is None when the table is missing or the column is empty for every case.
    """
    if raw_dataset_dir is None or not (Path(raw_dataset_dir) / CASE_TABLE).is_file():
        return None, None
    rows = read_case_table(raw_dataset_dir)
    classes = {case: row["class"] for case, row in rows.items() if row.get("class")}
    groups = {case: row["duplicate_group"] for case, row in rows.items() if row.get("duplicate_group")}
    return classes or None, groups or None


def _allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Largest-remainder apportionment of ``total`` over groups of ``sizes`` (ties: larger group, then order)."""
    n = sum(sizes)
    quotas = [total * s / n for s in sizes]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - counts[i]), -sizes[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def split_early_stopping(
    train_keys: Sequence[str],
    fraction: float = 0.1,
    seed: int = 12345,
    classes: Mapping[str, str] | None = None,
    groups: Mapping[str, str] | None = None,
) -> tuple[list[str], list[str]]:
    """Split a fold's training cases into (fit, es), both sorted; deterministic in (keys as a set, seed, tables).

    ``len(es) = max(1, floor(fraction * n + 0.5))`` (0 when n < 2). With ``classes`` the ES cases are drawn per
    class in proportion to the class sizes (largest remainder; cases without a class form their own stratum).
    With ``groups`` (duplicate groups) the cases of a group stay on one side, so a stratum may get up to
    group size - 1 cases more than its share.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"early-stopping fraction must be in (0, 1), got {fraction}")
    keys = sorted(set(train_keys))
    if len(keys) < 2:
        return keys, []
    n_es = max(1, math.floor(fraction * len(keys) + 0.5))
    units: dict[tuple[str, str], list[str]] = {}  # sampling unit (a duplicate group or a single case) -> cases
    for k in keys:
        group = groups.get(k) if groups else None
        units.setdefault(("group", group) if group else ("case", k), []).append(k)
    strata: dict[str, list[tuple[str, str]]] = {}
    for unit in sorted(units):
        strata.setdefault(classes.get(units[unit][0], "") if classes else "", []).append(unit)
    names = sorted(strata)
    quotas = _allocate([sum(len(units[u]) for u in strata[name]) for name in names], n_es)
    rng = np.random.default_rng(seed)
    es: list[str] = []
    for name, quota in zip(names, quotas, strict=True):
        taken = 0
        for i in rng.permutation(len(strata[name])):
            if taken >= quota:
                break
            es += units[strata[name][i]]
            taken += len(units[strata[name][i]])
    es_set = set(es)
    return [k for k in keys if k not in es_set], sorted(es)


class SequentialCaseLoader(nnUNetDataLoader):
    """nnU-Net loader that walks its cases in order, ``batch_size`` at a time, wrapping round at the end.

    ``ceil(n / batch_size)`` batches cover every case exactly once (the last batch holds the remainder, so it may
    be smaller). Use it single-threaded (each worker of a multi-process augmenter would restart the walk).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.indices = sorted(self.indices)
        self._position = 0

    @property
    def batches_per_pass(self) -> int:
        """Number of batches that cover all cases once."""
        return math.ceil(len(self.indices) / self.batch_size)

    def get_indices(self) -> list[str]:
        keys = self.indices[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        if self._position >= len(self.indices):
            self._position = 0
        return keys

    def generate_train_batch(self) -> dict:
        batch = super().generate_train_batch()
        n = len(batch["keys"])  # the parent pre-allocates batch_size rows: drop the unfilled ones
        target = batch["target"]
        batch["data"] = batch["data"][:n]
        batch["target"] = [t[:n] for t in target] if isinstance(target, list) else target[:n]
        return batch


@dataclass
class EarlyStopping:
    """Best-loss tracker with optional patience (epochs without improvement before stopping; None = never)."""

    patience: int | None = None
    best_loss: float = math.inf
    best_epoch: int = -1
    stale_epochs: int = 0

    def update(self, loss: float, epoch: int) -> bool:
        """Record the ES loss of ``epoch``; True when it is a new best (strictly lower)."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.stale_epochs = float(loss), epoch, 0
            return True
        self.stale_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.stale_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "stale_epochs": self.stale_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_loss = float(state["best_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.stale_epochs = int(state["stale_epochs"])
