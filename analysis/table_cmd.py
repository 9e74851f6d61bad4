"""``nnunet-se-analyze table``: Table I (Dice mean +- std over folds, tests vs a baseline) from nnU-Net results.

The Nadeau-Bengio ratio n_test/n_train = 1/(K - 1) takes K per dataset from its ``splits_final.json`` (looked up
in ``nnUNet_preprocessed``, else ``nnUNet_raw``, as ``grid`` and ``status`` do); without one, K is nnU-Net's
default 5, or the highest fold found + 1 when that is more, with a warning. ``--test-train-ratio`` overrides it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from nnunet_se import cli_options
from nnunet_se.analysis.outputs import check_output_file, write_text_atomic
from nnunet_se.analysis.stats import ALTERNATIVES, kfold_test_train_ratio
from nnunet_se.analysis.tables import (
    Entry,
    baseline_trainer,
    build_table,
    entries_csv,
    is_model_folder_name,
    render_latex,
    render_markdown,
)
from nnunet_se.analysis.tabular import csv_text, json_text
from nnunet_se.errors import UserError
from nnunet_se.layout import (
    DATASET_RE,
    NNUNET_DEFAULT_FOLDS,
    RESULTS,
    Dataset,
    SplitFolds,
    dataset_folds,
    fold_ranges,
    match_dataset,
    nnunet_roots,
)
from nnunet_se.results import SUMMARY, FoldResult, scan_results

FORMATS = ("md", "latex", "csv", "json")


class FoldCount(int):
    """K as given to the deprecated ``--n-folds`` (stored where ``--test-train-ratio`` goes, converted in main)."""


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split(":", 1)[1].split("\n\n")[0].strip())
    p.add_argument("folders", nargs="*", type=Path,
                   help="nnUNet_results roots, dataset folders or Trainer__Plans__config folders "
                        "(default: $nnUNet_results)")
    cli_options.add_datasets(p, help="keep these datasets: ids (601) or folder names (default: every dataset found)")
    cli_options.add_trainers(p, help="keep these trainers: class names or family names (paper, auto, original); "
                                     "each one's baseline is kept too (default: every trainer found)")
    cli_options.add_plans(p, None, help="keep this plans identifier (default: every plans found)")
    cli_options.add_configuration(p, None, help="keep this configuration (default: every configuration found)")
    p.add_argument("--baseline", help="trainer to test against (default: each trainer's baseline in the trainer "
                                      "registry, with the same plans and configuration)")
    cli_options.add_folds(p, help="expected folds: 0-4, 0 1 2, or all = every fold of each dataset's "
                                  "splits_final.json (default: every fold found per dataset)")
    p.add_argument("--test-train-ratio", type=float, metavar="R",
                   help="Nadeau-Bengio n_test/n_train, >= 0 (default: 1/(K-1) with K from each dataset's "
                        "splits_final.json)")
    cli_options.add_deprecated(p, "--n-folds", "--test-train-ratio", type=FoldCount, metavar="K")
    p.add_argument("--alternative", choices=ALTERNATIVES, default="greater",
                   help="greater (default): one-sided tests, H1 = the model beats its baseline, so only improvements "
                        "are marked, as in the paper; two-sided: any difference")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    cli_options.add_output(p, "file", help="write the table (one file) here instead of stdout")
    p.add_argument("--cases-csv", type=Path, help="also write per-case Dice in long format "
                                                  "(dataset, model, trainer, fold, case, dice)")
    p.add_argument("--compare-paper", action="store_true", help="add the paper's Table I values beside ours")
    return p


def _wanted_datasets(tokens: Sequence[str] | None, found: Sequence[FoldResult], where: str) -> set[str] | None:
    """The dataset folder names ``-d`` picks among those found (:func:`nnunet_se.layout.match_dataset`: an id or a
    DatasetNNN_Name); None without ``-d`` or when nothing was found (reported by :func:`_check_names`)."""
    if not tokens or not found:
        return None
    known = {int(m.group(1)): d for d in sorted({r.dataset for r in found}) if (m := DATASET_RE.fullmatch(d))}
    where = f"{where} (found {', '.join(sorted({r.dataset for r in found}))})"
    return {match_dataset(token, known, where).name for token in tokens}


def _expand(tokens: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``-tr`` token -> trainer names: a family's members, else the name itself (third-party trainers included)."""
    from nnunet_se.trainer_registry import families

    members = families()
    return {token: members.get(token, (token,)) for token in tokens}


def _kept_trainers(args: argparse.Namespace) -> set[str] | None:
    """Trainers that pass ``-tr``: the named ones and their registry baselines (or ``--baseline``); None = all."""
    if not args.trainers:
        return None
    from nnunet_se.trainer_registry import baseline_of

    named = {t for names in _expand(args.trainers).values() for t in names}
    if args.baseline:
        return named | {baseline_trainer(args.baseline)}
    return named | {b for t in named if (b := baseline_of(t)) is not None}


def _check_names(found: list[FoldResult], kept: list[FoldResult], args: argparse.Namespace, where: str,
                 datasets: set[str] | None) -> None:
    """One-line errors for filters that match nothing: a dataset, trainer or baseline name not among the results."""
    if not found:
        raise UserError(f"{where}: no Dataset*/Trainer__Plans__config/fold_* folders found")

    def known(values: set[str]) -> str:
        return ", ".join(sorted(values))

    for wanted in sorted(datasets or []):
        if not any(r.dataset == wanted for r in found):
            raise UserError(f"-d {wanted!r}: no such dataset in {where} (found {known({r.dataset for r in found})})")
    for option, value, attr in (("-p", args.plans, "plans"), ("-c", args.configuration, "configuration")):
        if value and not any(getattr(r, attr) == value for r in found):
            raise UserError(f"{option} {value!r}: not in {where} (found {known({getattr(r, attr) for r in found})})")
    trainers = {r.trainer for r in found}
    for wanted, names in _expand(args.trainers or []).items():
        if not trainers & set(names):
            raise UserError(f"-tr {wanted!r}: no results for this trainer (known: {known(trainers)})")
    if args.baseline:
        names = {r.model for r in found} if is_model_folder_name(args.baseline) else trainers
        if args.baseline not in names:
            raise UserError(f"--baseline {args.baseline!r}: no results for this baseline (known: {known(names)})")
    if not kept:
        raise UserError(f"{where}: the filters match no fold together (-d, -tr, -p, -c)")


def dataset_splits(results: Sequence[FoldResult]) -> dict[str, SplitFolds | None]:
    """Each dataset's split (:func:`~nnunet_se.layout.dataset_folds`); None for a folder not named like a
    dataset (a model folder given on its own)."""
    roots = nnunet_roots()
    return {d: dataset_folds(roots, Dataset(int(m.group(1)), d)) if (m := DATASET_RE.fullmatch(d)) else None
            for d in sorted({r.dataset for r in results})}


def nadeau_bengio_ratios(results: Sequence[FoldResult], splits: Mapping[str, SplitFolds | None],
                         prog: str) -> dict[str, float]:
    """Dataset -> n_test/n_train = 1/(K - 1), K from its ``splits_final.json`` (see the module docstring)."""
    ratios = {}
    for dataset, split in splits.items():
        if split is not None and not split.assumed:
            k = len(split.folds)
        else:
            k = max([NNUNET_DEFAULT_FOLDS, *(r.fold + 1 for r in results if r.dataset == dataset)])
            where = split.lookup if split else "not a DatasetNNN_Name folder"
            print(f"{prog}: warning: {dataset}: no splits_final.json ({where}); the Nadeau-Bengio correction assumes "
                  f"K = {k} folds (n_test/n_train = 1/{k - 1}); give --test-train-ratio if that is wrong",
                  file=sys.stderr)
        ratios[dataset] = kfold_test_train_ratio(k)
    return ratios


def expected_folds(results: Sequence[FoldResult], folds: list[int] | str | None,
                   splits: Mapping[str, SplitFolds | None], prog: str) -> dict[str, list[int]] | None:
    """``-f`` per dataset: the given folds, every fold of each dataset's split for ``all``, or None (folds found).
    A given fold outside a dataset's ``splits_final.json`` is a UserError (without a split file any fold is taken)."""
    if folds != cli_options.ALL_FOLDS:
        for dataset, split in splits.items():
            outside = sorted(set(folds or []) - set(split.folds)) if split is not None and not split.assumed else []
            if outside:
                raise UserError(f"-f {fold_ranges(outside)}: not a fold of {dataset} ({split.lookup}, "
                                f"{fold_ranges(split.folds)})")
        return None if folds is None else {r.dataset: list(folds) for r in results}
    expected = {}
    for dataset, split in splits.items():
        if split is None:
            raise UserError(f"-f all: {dataset} is not a DatasetNNN_Name folder, so it has no split; give the folds")
        if split.warning:
            print(f"{prog}: warning: -f all: {split.warning}", file=sys.stderr)
        expected[dataset] = split.folds
    return expected


def _check_args(args: argparse.Namespace) -> None:
    for option, value in (("-p", args.plans), ("-c", args.configuration), ("--baseline", args.baseline),
                          *(("-d", d) for d in args.datasets or []), *(("-tr", t) for t in args.trainers or [])):
        if value is not None and not value.strip():
            raise UserError(f"{option}: empty value")
    if isinstance(args.test_train_ratio, FoldCount):
        if args.test_train_ratio < 2:
            raise UserError(f"--n-folds must be >= 2, got {args.test_train_ratio}")
        args.test_train_ratio = kfold_test_train_ratio(args.test_train_ratio)
    if args.test_train_ratio is not None and not (math.isfinite(args.test_train_ratio) and args.test_train_ratio >= 0):
        raise UserError(f"--test-train-ratio must be a finite number >= 0, got {args.test_train_ratio}")
    outputs = [p for p in (args.output, args.cases_csv) if p is not None]
    if len(outputs) == 2 and os.path.abspath(outputs[0]) == os.path.abspath(outputs[1]):
        raise UserError(f"{args.output}: -o and --cases-csv name the same file")
    for path in outputs:  # before the scan: a wrong -o fails fast
        check_output_file(path)


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    folders = args.folders
    if not folders:
        root = nnunet_roots()[RESULTS]
        if root is None:
            raise UserError("no folders given and nnUNet_results is not set")
        folders = [root]
    _check_args(args)
    found = scan_results(folders)
    kept = _kept_trainers(args)
    where = ", ".join(map(str, folders))
    datasets = _wanted_datasets(args.datasets, found, where)
    results = [r for r in found if (datasets is None or r.dataset in datasets)
               and (not args.plans or r.plans == args.plans)
               and (not args.configuration or r.configuration == args.configuration)
               and (kept is None or r.trainer in kept)]
    _check_names(found, results, args, where, datasets)
    inputs = [r.path / "validation" / "summary.json" for r in found if r.finished]
    for path in (p for p in (args.output, args.cases_csv) if p is not None):  # checked against the inputs first
        check_output_file(path, inputs)
    splits = dataset_splits(results)
    expected = expected_folds(results, args.folds, splits, prog)
    ratio = args.test_train_ratio if args.test_train_ratio is not None else nadeau_bengio_ratios(results, splits, prog)
    if expected is not None:  # -f: only the named folds are read
        results = [r for r in results if r.fold in expected[r.dataset]]
        if not any(r.finished for r in results):
            named = args.folds if isinstance(args.folds, str) else fold_ranges(args.folds)
            raise UserError(f"-f {named}: no finished fold of these numbers in {where}")
    for r in results:
        if r.finished and math.isnan(r.dice):
            print(f"{prog}: warning: {r.path / SUMMARY}: foreground_mean Dice is NaN (no case with foreground in "
                  f"reference or prediction); fold {r.fold} of {r.model} is left out of its mean and tests",
                  file=sys.stderr)
    entries = build_table(results, args.baseline, expected, ratio, args.compare_paper, args.alternative)
    for e in entries:
        if e.n_unpaired_cases:
            print(f"{prog}: warning: {e.dataset} {e.model} vs {e.baseline}: {e.n_unpaired_cases} cases of the paired "
                  f"folds are in only one of the two summary.json files (another split?); the Wilcoxon test uses the "
                  f"{e.n_paired_cases} paired ones", file=sys.stderr)
    if args.format == "json":
        text = _json(entries, results)
    else:
        text = {"md": render_markdown, "latex": render_latex, "csv": entries_csv}[args.format](entries)
    if args.cases_csv:
        write_text_atomic(args.cases_csv, csv_text(
            [{"dataset": r.dataset, "model": r.model, "trainer": r.trainer, "fold": r.fold, "case": c, "dice": d}
             for r in results if r.finished for c, d in sorted(r.per_case.items())]), inputs)
    if args.output:
        write_text_atomic(args.output, text, inputs)
    else:
        sys.stdout.write(text)
    return 0


def _json(entries: list[Entry], results: list[FoldResult]) -> str:
    """Settings, entries, and every fold's state and Dice."""
    folds = [{"dataset": r.dataset, "model": r.model, "trainer": r.trainer, "plans": r.plans,
              "configuration": r.configuration, "fold": r.fold, "state": r.state.value, "finished": r.finished,
              "dice": r.dice * 100.0, "n_cases": len(r.per_case), "n_empty_excluded": r.n_empty,
              "n_empty_reference": r.n_empty_reference} for r in results]
    settings = {"dice_unit": "%", "std_ddof": 1,
                "nadeau_bengio_test_train_ratio": {e.dataset: e.test_train_ratio for e in entries},
                "alternative": entries[0].alternative if entries else None,
                "empty_rule": "NaN Dice (empty reference and empty prediction) excluded, as nnU-Net's nanmean"}
    return json_text({"settings": settings, "entries": [e.as_dict() for e in entries], "folds": folds})
