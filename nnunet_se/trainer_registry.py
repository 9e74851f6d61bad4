"""The one trainer registry: every ``-tr`` name the plugin knows, its family, baseline and Table I row.

The facts live on the trainer classes as class attributes (``family``, ``baseline``, ``table_row``; see
:mod:`nnunet_se.trainers.base`); this module only reads them, so every consumer (``list``, ``grid``, ``status``,
``table``, paper values, the demo, ``excitations``) agrees. Importing this module is cheap (no torch); the first
call of any function imports :mod:`nnunet_se.trainers` (torch and nnU-Net, about 4-6 s) and caches the answer.

Families: ``auto`` (nnU-Net's planned network + one module, paper flavour), ``original`` (the same with each
module's original flavour) and ``paper`` (the authors' fixed U-Net and protocol). A family's members are its
trainers, preceded by their baseline: the stock ``nnUNetTrainer`` for ``auto`` and ``original`` (it is a member
of both; its own ``family`` is ``auto``), ``nnUNetTrainerPaper`` for ``paper``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nnunet_se.errors import UserError, shown


@dataclass(frozen=True)
class TrainerInfo:
    """What the registry knows about one ``-tr`` name (all read from the trainer class)."""

    name: str
    family: str
    baseline: str | None  # trainer this one is tested against in Table I; None for a baseline
    table_row: str | None  # the paper's Table I row ("U-Net", "+cSE", ...); None where the paper has none
    recalibration: str | None  # module registry name; None for a plain U-Net
    flavour: str  # "paper" / "original" ("-" without a module)
    skip_connections: bool
    network: str  # one-line description of the network (``nnunet-se list``)


def info_of(cls: Any) -> TrainerInfo:
    """The :class:`TrainerInfo` of a :class:`~nnunet_se.trainers.base.RecalibrationTrainer` subclass."""
    return TrainerInfo(name=cls.__name__, family=cls.family, baseline=cls.baseline, table_row=cls.table_row,
                       recalibration=cls.recalibration, flavour=cls.flavour if cls.recalibration else "-",
                       skip_connections=cls.skip_connections, network=cls.network_summary)


_REGISTERED: dict[str, Any] = {}
"""Trainers of other packages, by name (:func:`register_trainers`)."""


def register_trainers(*classes: Any) -> None:
    """Add trainer classes of another package to the registry (docs/extending.md): ``nnunet-se list``, ``-tr``
    names and families, ``status`` and ``table`` baselines then know them. Each class subclasses
    :class:`~nnunet_se.trainers.base.RecalibrationTrainer` and carries the registry's class attributes (``family``,
    ``baseline``, ``table_row``, ``recalibration``, ...). A name of the plugin's own trainers or of another class
    already registered is a ValueError; registering the same class again is allowed. nnU-Net itself finds the class
    through a folder on ``nnUNet_extTrainer``, not through this registry."""
    from nnunet_se.trainers import ALL_TRAINERS, RecalibrationTrainer
    from nnunet_se.trainers.base import STOCK_TRAINER

    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, RecalibrationTrainer)):
            raise TypeError(f"{cls!r} is not a subclass of nnunet_se.trainers.RecalibrationTrainer")
        name = cls.__name__
        if name in ALL_TRAINERS or name == STOCK_TRAINER or _REGISTERED.get(name, cls) is not cls:
            raise ValueError(f"trainer name {name} is taken; choose another class name")
        _REGISTERED[name] = cls
    trainer_infos.cache_clear()
    _families.cache_clear()


@functools.cache
def trainer_infos() -> dict[str, TrainerInfo]:
    """Every ``-tr`` name we know, by name: the stock ``nnUNetTrainer`` first, then the plugin's trainers, then those
    of other packages (:mod:`nnunet_se.plugins`)."""
    from nnunet_se.plugins import load_plugins
    from nnunet_se.trainers import ALL_TRAINERS, RecalibrationTrainer
    from nnunet_se.trainers.base import STOCK_TABLE_ROW, STOCK_TRAINER

    load_plugins()
    stock = TrainerInfo(name=STOCK_TRAINER, family=RecalibrationTrainer.family, baseline=None,
                        table_row=STOCK_TABLE_ROW, recalibration=None, flavour="-", skip_connections=True,
                        network=RecalibrationTrainer.network_summary)
    return {STOCK_TRAINER: stock, **{name: info_of(cls) for name, cls in {**ALL_TRAINERS, **_REGISTERED}.items()}}


def families() -> dict[str, tuple[str, ...]]:
    """Family name -> its trainers in registry order, the family's baseline first (no duplicates)."""
    return _families()


@functools.cache
def _families() -> dict[str, tuple[str, ...]]:
    infos = trainer_infos()
    grouped: dict[str, list[str]] = {}
    for info in infos.values():
        grouped.setdefault(info.family, []).append(info.name)
    # a member's baseline (a baseline stands for itself) leads: nnUNetTrainer also heads the original family
    return {family: tuple(dict.fromkeys([*(infos[m].baseline or m for m in members), *members]))
            for family, members in grouped.items()}


def check_trainer(name: str, option: str = "-tr", families: bool = True) -> str:
    """``name`` if it is a known trainer (or, with ``families``, a family), else a UserError that lists them and
    suggests the closest. Shared by every command that takes a trainer name."""
    known = list(trainer_infos())
    family_names = list(_families())
    choices = [*family_names, *known] if families else known
    if name in choices:
        return name
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    if name in family_names:  # a family where one trainer is expected
        hint = f"{name} is a family ({' '.join(_families()[name])}), this option takes trainer names; "
    listed = f"families: {', '.join(family_names)}; " if families else ""
    raise UserError(f"{option} {shown(name)}: unknown trainer{' or family' if families else ''}; {hint}{listed}"
                    f"trainers: {', '.join(known)}")


def expand_trainers(tokens: Sequence[str], option: str = "-tr") -> list[str]:
    """Trainer names from family names (``paper``, ``auto``, ``original``) and known trainer names, in order,
    without duplicates.

    Any other name is an error listing the known ones: a typo would otherwise become a job that fails (or, for
    ``status``, a row of missing folds).
    """
    members = _families()
    trainers: list[str] = []
    for token in tokens:
        for name in members.get(check_trainer(token, option), (token,)):
            if name not in trainers:
                trainers.append(name)
    return trainers


def baseline_of(trainer: str) -> str | None:
    """The trainer ``trainer`` is tested against in Table I; None for baselines and unknown (third-party) trainers."""
    info = trainer_infos().get(trainer)
    return info.baseline if info else None


def table_row_of(trainer: str) -> str | None:
    """The paper's Table I row of ``trainer``; None for unknown trainers and trainers the paper has no row for."""
    info = trainer_infos().get(trainer)
    return info.table_row if info else None
