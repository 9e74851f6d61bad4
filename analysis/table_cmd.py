"""``nnunet-se-analyze table``: Table I (Dice mean +- std over folds, tests vs a baseline) from nnU-Net results."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nnunet_se.analysis.results import FoldResult, scan_results
from nnunet_se.analysis.tables import build_table, entry_rows, render_latex, render_markdown
from nnunet_se.analysis.tabular import csv_text, json_text, write_csv
from nnunet_se.errors import UserError

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
    p.add_argument("--test-train-ratio", type=float, help="override the Nadeau-Bengio n_test/n_train ratio")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    p.add_argument("--cases-csv", type=Path, help="also write per-case Dice in long format "
                                                  "(dataset, model, trainer, fold, case, dice)")
    p.add_argument("--compare-paper", action="store_true", help="add the paper's Table I values beside ours")
    return p


def _keep(r: FoldResult, args: argparse.Namespace) -> bool:
    if args.datasets and not any(d == r.dataset or r.dataset.startswith(f"Dataset{d.zfill(3)}_") for d in
                                 args.datasets):
        return False
    if args.plans and r.plans != args.plans or args.configuration and r.configuration != args.configuration:
        return False
    keep = set(args.trainers or []) | ({args.baseline} if args.baseline else set())
    if args.trainers and not args.baseline:
        keep |= {"nnUNetTrainer", "nnUNetTrainerPaper"}
    return not args.trainers or r.trainer in keep


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    folders = args.folders
    if not folders:
        root = os.environ.get("nnUNet_results")
        if not root:
            raise UserError("no folders given and nnUNet_results is not set")
        folders = [Path(root)]
    if args.n_folds < 2:
        raise UserError(f"--n-folds must be >= 2, got {args.n_folds}")
    ratio = args.test_train_ratio if args.test_train_ratio is not None else 1.0 / (args.n_folds - 1)
    results = [r for r in scan_results(folders) if _keep(r, args)]
    if not results:
        raise UserError(f"{', '.join(map(str, folders))}: no Dataset*/Trainer__Plans__config/fold_* folders found")
    entries = build_table(results, args.baseline, args.folds, ratio, args.compare_paper)
    if args.format == "md":
        text = render_markdown(entries, ratio)
    elif args.format == "latex":
        text = render_latex(entries, ratio)
    else:
        text = _structured(entries, results, ratio, args.format)
    if args.cases_csv:
        write_csv(args.cases_csv, [{"dataset": r.dataset, "model": r.model, "trainer": r.trainer, "fold": r.fold,
                                    "case": c, "dice": d} for r in results if r.finished for c, d in
                                   sorted(r.per_case.items())])
    if args.output:
        tmp = args.output.with_name(f".{args.output.name}.tmp")
        tmp.write_text(text)
        tmp.replace(args.output)
    else:
        sys.stdout.write(text)
    return 0


def _structured(entries: list, results: list[FoldResult], ratio: float, fmt: str) -> str:
    """CSV (one row per dataset x model) or JSON (settings, entries, and every fold's Dice)."""
    if fmt == "csv":
        return csv_text(entry_rows(entries))
    folds = [{"dataset": r.dataset, "model": r.model, "trainer": r.trainer, "fold": r.fold, "finished": r.finished,
              "dice": r.dice * 100.0, "n_cases": len(r.per_case), "n_empty_excluded": r.n_empty,
              "n_empty_reference": r.n_empty_reference} for r in results]
    settings = {"dice_unit": "%", "std_ddof": 1, "nadeau_bengio_test_train_ratio": ratio,
                "empty_rule": "NaN Dice (empty reference and empty prediction) excluded, as nnU-Net's nanmean"}
    return json_text({"settings": settings, "entries": [e.as_dict() for e in entries], "folds": folds})
