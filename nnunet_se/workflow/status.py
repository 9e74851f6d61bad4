"""``nnunet-se status``: finished / running / missing folds per dataset and trainer, with the Dice so far.

Reads ``nnUNet_results`` through :mod:`nnunet_se.results` (the one finished rule); ``-tr`` looks names and
families up in the trainer registry, which imports torch (about 4 s), so without ``-tr`` no torch is imported.
Dice is the foreground mean of each finished fold's
``validation/summary.json``, reported as mean +- sample std over the finished folds with a finite Dice; folds whose
summary holds NaN (no foreground anywhere) are listed separately and not counted in n.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nnunet_se import cli_options
from nnunet_se.analysis.stats import fold_mean_std
from nnunet_se.errors import UserError
from nnunet_se.layout import (
    ALL_FOLDS,
    DEFAULT_CONFIGURATION,
    DEFAULT_PLANS,
    PREPROCESSED,
    RAW,
    RESULTS,
    Dataset,
    find_datasets,
    fold_ranges,
    folds_for,
    model_folder,
    nnunet_roots,
    parse_model_folder_name,
    resolve_datasets,
)
from nnunet_se.results import fold_numbers, read_fold
from nnunet_se.text_table import format_table
from nnunet_se.workflow.matrix import check_name


@dataclass
class Row:
    """Status of one (dataset, trainer): fold numbers per state, the finished folds' finite Dice (0-1) and the
    finished folds whose Dice is NaN."""

    dataset: str
    trainer: str
    finished: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    dice: dict[int, float] = field(default_factory=dict)
    dice_nan: list[int] = field(default_factory=list)

    @property
    def dice_summary(self) -> str:
        """``mean +- std (n=N)`` over the finite Dice (std ``–`` for one fold, as in ``nnunet-se-analyze table``),
        then ``NaN: <folds>`` if any; ``-`` when there is neither."""
        mean, std, n = fold_mean_std(list(self.dice.values()))
        parts = [] if n == 0 else [f"{mean:.4f} +- {'–' if math.isnan(std) else f'{std:.4f}'} (n={n})"]
        if self.dice_nan:
            parts.append(f"NaN: fold {fold_ranges(self.dice_nan)}")
        return "; ".join(parts) or "-"

    def as_json(self) -> dict[str, object]:
        """The row as JSON-safe values: no NaN (``dice_mean`` is null without a finite Dice, ``dice_std`` with fewer
        than two)."""
        mean, std, n = fold_mean_std(list(self.dice.values()))
        return asdict(self) | {"dice_n": n, "dice_mean": None if math.isnan(mean) else mean,
                               "dice_std": None if math.isnan(std) else std}


def trained_trainers(results: Path, dataset: Dataset, plans: str, configuration: str) -> list[str]:
    """Trainer names with a ``<trainer>__<plans>__<configuration>`` folder under the dataset's results."""
    folder = results / dataset.name
    if not folder.is_dir():
        return []
    trainers = []
    for entry in folder.iterdir():
        try:
            trainer, *rest = parse_model_folder_name(entry.name)
        except ValueError:  # not a model folder
            continue
        if entry.is_dir() and rest == [plans, configuration]:
            trainers.append(trainer)
    return sorted(trainers)


def expected_folds(results: Path, roots: Mapping[str, Path | None], dataset: Dataset, trainers: Sequence[str],
                   folds: Sequence[int] | str | None, plans: str, configuration: str) -> list[int]:
    """``folds`` checked against the dataset's split; for ``all`` (or None) the folds of ``splits_final.json`` (0-4
    without one) plus any ``fold_k`` already present."""
    expected, _ = folds_for(folds, roots, dataset)
    if folds is None or folds == ALL_FOLDS:
        for trainer in trainers:
            expected += fold_numbers(model_folder(results, dataset.name, trainer, plans, configuration))
    return sorted(set(expected))


def collect(results: Path, preprocessed: Path | None, datasets: Sequence[Dataset], trainers: Sequence[str] | None,
            folds: Sequence[int] | str | None, plans: str, configuration: str, raw: Path | None = None) -> list[Row]:
    """One row per (dataset, trainer); trainers default to those found in the results folder, folds (``-f``: a
    list, ``all`` or None) to :func:`expected_folds`.

    ``preprocessed`` and ``raw`` are where the datasets' ``splits_final.json`` is looked for (see
    :func:`nnunet_se.layout.splits_file`).
    """
    roots = {PREPROCESSED: preprocessed, RAW: raw}
    rows = []
    for dataset in datasets:
        names = list(trainers) if trainers else trained_trainers(results, dataset, plans, configuration)
        expected = expected_folds(results, roots, dataset, names, folds, plans, configuration)
        for trainer in names:
            row = Row(dataset.name, trainer)
            for fold in expected:
                folder = model_folder(results, dataset.name, trainer, plans, configuration) / f"fold_{fold}"
                result = read_fold(folder, dataset.name, trainer, plans, configuration, fold)
                getattr(row, result.state.value).append(fold)
                if result.finished and math.isnan(result.dice):
                    row.dice_nan.append(fold)
                elif result.finished:
                    row.dice[fold] = result.dice
            rows.append(row)
    return rows


def render_table(rows: Sequence[Row]) -> str:
    """A plain-text table; fold lists are compressed to ranges (``0-4,7``)."""
    header = ("dataset", "trainer", "finished", "running", "missing", "Dice (finished folds)")
    body = [(r.dataset, r.trainer, fold_ranges(r.finished), fold_ranges(r.running), fold_ranges(r.missing),
             r.dice_summary) for r in rows]
    return format_table(header, body) + "\n"


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    cli_options.add_datasets(parser, help="dataset ids or folder names (default: every dataset in nnUNet_results)")
    cli_options.add_trainers(parser, help="trainer class names or family names (paper, auto, original) (default: "
                                          "the trainers found in the results)")
    cli_options.add_folds(parser, help="fold indices: 0-9, 0 1 2 or 0-4,7, or all (default: all = the folds of "
                                       "splits_final.json, 0-4 without one, plus any fold_k present)")
    cli_options.add_configuration(parser, DEFAULT_CONFIGURATION)
    cli_options.add_plans(parser, DEFAULT_PLANS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    check_name("-c", args.configuration)
    check_name("-p", args.plans)
    roots = nnunet_roots()
    results = roots[RESULTS]
    if results is None:
        raise UserError("nnUNet_results is not set: nnU-Net's results folder is where the status is read")
    if not results.is_dir():
        raise UserError(f"{results}: nnUNet_results is not a folder")
    if args.datasets:
        datasets = resolve_datasets(args.datasets, roots)
    else:
        datasets = [Dataset(i, name) for i, name in find_datasets([results]).items()]
    trainers = None
    if args.trainers:
        from nnunet_se.trainer_registry import expand_trainers  # imports the trainers (about 4 s)

        trainers = expand_trainers(args.trainers, "-tr/--trainers")
    rows = collect(results, roots[PREPROCESSED], datasets, trainers, args.folds, args.plans,
                   args.configuration, raw=roots[RAW])
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=2, allow_nan=False))
    elif not rows:
        print(f"no trainings found in {results}")
    else:
        print(render_table(rows), end="")
    return 0
