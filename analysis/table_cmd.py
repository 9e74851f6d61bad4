"""``nnunet-se-analyze table``: Table I (Dice mean +- std over folds, tests vs a baseline) from nnU-Net results."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from nnunet_se.analysis.outputs import check_output_file, write_text_atomic
from nnunet_se.analysis.stats import ALTERNATIVES
from nnunet_se.analysis.tables import BASELINES, build_table, entry_rows, render_latex, render_markdown
from nnunet_se.analysis.tabular import csv_text, json_text
from nnunet_se.errors import UserError
from nnunet_se.results import FoldResult, scan_results

FORMATS = ("md", "latex", "csv", "json")


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split(":", 1)[1].strip())
    p.add_argument("folders", nargs="*", type=Path,
                   help="nnUNet_results roots, dataset folders or Trainer__Plans__config folders "
                        "(default: $nnUNet_results)")
    p.add_argument("-d", "--datasets", nargs="+", help="keep datasets whose name or 3-digit id matches")
    p.add_argument("-tr", "--trainers", nargs="+", help="keep these trainers (the baseline is kept automatically)")
    p.add_argument("-p", "--plans", help="keep this plans identifier")
    p.add_argument("-c", "--configuration", help="keep this configuration")
    p.add_argument("--baseline", help="trainer to test against (default: nnUNetTrainerPaper for nnUNetTrainerPaper*, "
                                      "else nnUNetTrainer, with the same plans and configuration)")
    p.add_argument("--folds", nargs="+", type=int, help="expected folds (default: every fold found per dataset)")
    p.add_argument("--n-folds", type=int, default=5, help="K of the K-fold CV, for the Nadeau-Bengio ratio "
                                                        "n_test/n_train = 1/(K-1) (default 5, nnU-Net's)")
    p.add_argument("--test-train-ratio", type=float, help="override the Nadeau-Bengio n_test/n_train ratio (>= 0)")
    p.add_argument("--alternative", choices=ALTERNATIVES, default="greater",
                   help="greater (default): one-sided tests, H1 = the model beats its baseline, so only improvements "
                        "are marked, as in the paper; two-sided: any difference")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument("--cases-csv", type=Path, help="also write per-case Dice in long format "
                                                  "(dataset, model, trainer, fold, case, dice)")
    p.add_argument("--compare-paper", action="store_true", help="add the paper's Table I values beside ours")
    return p


def _dataset_match(r: FoldResult, wanted: str) -> bool:
    return wanted == r.dataset or r.dataset.startswith(f"Dataset{wanted.zfill(3)}_")


def _keep(r: FoldResult, args: argparse.Namespace) -> bool:
    """Whether ``r`` passes -d, -p, -c and -tr (with -tr the baseline trainers are kept too)."""
    if args.datasets and not any(_dataset_match(r, d) for d in args.datasets):
        return False
    if args.plans and r.plans != args.plans or args.configuration and r.configuration != args.configuration:
        return False
    keep = set(args.trainers or []) | ({_baseline_trainer(args.baseline)} if args.baseline else set())
    if args.trainers and not args.baseline:
        keep |= set(BASELINES)
    return not args.trainers or r.trainer in keep


def _baseline_trainer(baseline: str) -> str:
    return baseline.split("__")[0]


def _check_names(found: list[FoldResult], kept: list[FoldResult], args: argparse.Namespace, where: str) -> None:
    """One-line errors for filters that match nothing: a dataset, trainer or baseline name not among the results."""
    if not found:
        raise UserError(f"{where}: no Dataset*/Trainer__Plans__config/fold_* folders found")

    def known(values: set[str]) -> str:
        return ", ".join(sorted(values))

    for wanted in args.datasets or []:
        if not any(_dataset_match(r, wanted) for r in found):
            raise UserError(f"-d {wanted!r}: no such dataset in {where} (found {known({r.dataset for r in found})})")
    for option, value, attr in (("-p", args.plans, "plans"), ("-c", args.configuration, "configuration")):
        if value and not any(getattr(r, attr) == value for r in found):
            raise UserError(f"{option} {value!r}: not in {where} (found {known({getattr(r, attr) for r in found})})")
    trainers = {r.trainer for r in found}
    for wanted in args.trainers or []:
        if wanted not in trainers:
            raise UserError(f"-tr {wanted!r}: no results for this trainer (known: {known(trainers)})")
    if args.baseline:
        models = {r.model for r in found}
        if args.baseline not in (models if "__" in args.baseline else trainers):
            raise UserError(f"--baseline {args.baseline!r}: no results for this baseline (known: "
                            f"{known(models if '__' in args.baseline else trainers)})")
    if not kept:
        raise UserError(f"{where}: the filters match no fold together (-d, -tr, -p, -c)")


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    folders = args.folders
    if not folders:
        root = os.environ.get("nnUNet_results")
        if not root:
            raise UserError("no folders given and nnUNet_results is not set")
        folders = [Path(root)]
    for option, value in (("-p", args.plans), ("-c", args.configuration), ("--baseline", args.baseline),
                          *(("-d", d) for d in args.datasets or []), *(("-tr", t) for t in args.trainers or [])):
        if value is not None and not value.strip():
            raise UserError(f"{option}: empty value")
    if args.n_folds < 2:
        raise UserError(f"--n-folds must be >= 2, got {args.n_folds}")
    if args.test_train_ratio is not None and not (math.isfinite(args.test_train_ratio) and args.test_train_ratio >= 0):
        raise UserError(f"--test-train-ratio must be a finite number >= 0, got {args.test_train_ratio}")
    if args.folds and min(args.folds) < 0:
        raise UserError(f"--folds must be >= 0, got {min(args.folds)}")
    outputs = [p for p in (args.output, args.cases_csv) if p is not None]
    if len(outputs) == 2 and os.path.abspath(outputs[0]) == os.path.abspath(outputs[1]):
        raise UserError(f"{args.output}: -o and --cases-csv name the same file")
    for path in outputs:  # before the scan: a wrong -o fails fast
        check_output_file(path)
    ratio = args.test_train_ratio if args.test_train_ratio is not None else 1.0 / (args.n_folds - 1)
    found = scan_results(folders)
    results = [r for r in found if _keep(r, args)]
    _check_names(found, results, args, ", ".join(map(str, folders)))
    inputs = [r.path / "validation" / "summary.json" for r in found if r.finished]
    for path in outputs:  # both checked against the inputs before either is written
        check_output_file(path, inputs)
    entries = build_table(results, args.baseline, args.folds, ratio, args.compare_paper, args.alternative)
    if args.format == "md":
        text = render_markdown(entries, ratio)
    elif args.format == "latex":
        text = render_latex(entries, ratio)
    else:
        text = _structured(entries, results, ratio, args.format)
    if args.cases_csv:
        write_text_atomic(args.cases_csv, csv_text(
            [{"dataset": r.dataset, "model": r.model, "trainer": r.trainer, "fold": r.fold, "case": c, "dice": d}
             for r in results if r.finished for c, d in sorted(r.per_case.items())]), inputs)
    if args.output:
        write_text_atomic(args.output, text, inputs)
    else:
        sys.stdout.write(text)
    return 0


def _structured(entries: list, results: list[FoldResult], ratio: float, fmt: str) -> str:
    """CSV (one row per dataset x model) or JSON (settings, entries, and every fold's Dice)."""
    if fmt == "csv":
        return csv_text(entry_rows(entries))
    folds = [{"dataset": r.dataset, "model": r.model, "trainer": r.trainer, "plans": r.plans,
              "configuration": r.configuration, "fold": r.fold, "state": r.state.value,
              "finished": r.finished,
              "dice": r.dice * 100.0, "n_cases": len(r.per_case), "n_empty_excluded": r.n_empty,
              "n_empty_reference": r.n_empty_reference} for r in results]
    settings = {"dice_unit": "%", "std_ddof": 1, "nadeau_bengio_test_train_ratio": ratio,
                "alternative": entries[0].alternative if entries else None,
                "empty_rule": "NaN Dice (empty reference and empty prediction) excluded, as nnU-Net's nanmean"}
    return json_text({"settings": settings, "entries": [e.as_dict() for e in entries], "folds": folds})
