"""``nnunet-se-convert``: downloaded dataset -> nnU-Net raw dataset plus seeded splits."""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Sequence

from nnunet_se.cli_options import DEFAULT_SEED, add_debug, add_deprecated, add_seed, add_workers
from nnunet_se.conversion.converter import DatasetRules, Options, conversion_metadata, convert
from nnunet_se.conversion.safety import os_errors_as_user_errors, resolve_path
from nnunet_se.conversion.sources import collect_sources, source_locations
from nnunet_se.conversion.splits import SCHEMES, check_authors_options
from nnunet_se.conversion.writer import RawDatasetWriter, install_sigterm_handler
from nnunet_se.errors import UserError, run_cli, shown


def _rules(dataset: str) -> DatasetRules:
    if dataset == "isic2018":
        from nnunet_se.conversion.isic2018 import RULES
    elif dataset == "kvasir":
        from nnunet_se.conversion.kvasir import RULES
    else:
        from nnunet_se.conversion.busi import RULES
    return RULES


MAX_SIZE = 8192
"""Largest ``--size``: 8192x8192 RGB is 200 MB per image in memory."""


def _size(value: str) -> int | None:
    if value == "native":
        return None
    if not value.isdigit() or not 8 <= int(value) <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"expected a side length of 8-{MAX_SIZE} pixels (e.g. 224) or 'native'")
    return int(value)


MAX_FOLDS = 100
"""Largest ``--n-folds`` the parser accepts; the number of training cases (and duplicate groups) bounds it too."""


def _n_folds(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 3 or not 2 <= int(value) <= MAX_FOLDS:
        raise argparse.ArgumentTypeError(f"expected a number of folds from 2 to {MAX_FOLDS}, got {shown(value)}")
    return int(value)


def _dataset_id(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 999:
        raise argparse.ArgumentTypeError("expected an nnU-Net dataset id, 1-999")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-se-convert", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("dataset", choices=["isic2018", "kvasir", "busi"])
    parser.add_argument("source", nargs="+", help="extracted folder(s) or official archive(s) (zip)")
    parser.add_argument("-d", "--dataset-id", type=_dataset_id, required=True, metavar="ID",
                        help="nnU-Net id of the dataset written (1-999)")
    parser.add_argument("--name", help="dataset name (default: ISIC2018, KvasirSEG, BUSI)")
    parser.add_argument("--size", type=_size, default=224, help="square side in pixels, or 'native' (default 224)")
    parser.add_argument("--splits", choices=SCHEMES, default="paper", help="fold scheme (default paper)")
    parser.add_argument("--n-folds", type=_n_folds, metavar="K",
                        help=f"number of folds, 2-{MAX_FOLDS} (default: paper 10, authors 5)")
    add_seed(parser, help="split seed (42: the authors' BUSI seed)")
    parser.add_argument("--include-normal", action="store_true", help="BUSI: keep the 'normal' class")
    parser.add_argument("--dedupe", action="store_true", help="drop duplicates (keep one per group)")
    add_workers(parser, help="decoding processes")
    parser.add_argument("--raw-dir", default=os.environ.get("nnUNet_raw"), help="default $nnUNet_raw")
    parser.add_argument("--preprocessed-dir", default=os.environ.get("nnUNet_preprocessed"),
                        help="where splits_final.json goes (default $nnUNet_preprocessed)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset with the same id")
    add_debug(parser)
    add_deprecated(parser, "--id", "--dataset-id")
    add_deprecated(parser, "--folds", "--n-folds")
    return parser


def _convert(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.raw_dir:
        raise UserError("nnUNet_raw is not set: export it or pass --raw-dir")
    if args.splits == "nnunet" and args.n_folds is not None:
        raise UserError("--n-folds has no effect with --splits nnunet (nnU-Net makes 5 folds itself)")
    if args.splits == "nnunet" and args.seed != DEFAULT_SEED:
        raise UserError(f"--seed {args.seed} has no effect with --splits nnunet (nnU-Net seeds its own folds)")
    if args.splits == "authors":
        check_authors_options(args.n_folds, args.seed, args.dedupe, args.include_normal)
    if args.dataset != "busi" and args.include_normal:
        raise UserError("--include-normal only applies to busi")
    rules = _rules(args.dataset)
    options = Options(
        size=args.size, workers=args.workers, include_normal=args.include_normal, dedupe=args.dedupe,
        scheme=args.splits, folds=args.n_folds, seed=args.seed,
    )
    files = collect_sources(args.source)
    sources = [resolve_path(s, "source") for s in args.source]
    read, folders = source_locations(files, sources)
    writer = RawDatasetWriter(
        args.raw_dir, args.dataset_id, rules.default_name if args.name is None else args.name, overwrite=args.overwrite,
        preprocessed_dir=args.preprocessed_dir, metadata=conversion_metadata(rules, options), sources=read,
        source_folders=folders,
    )
    previous = install_sigterm_handler()
    try:
        with writer:
            summary = convert(rules, files, writer, options, [str(s) for s in sources])
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"wrote {writer.output}: {summary['train']} training + {summary['test']} test cases, "
        f"{summary['duplicate_groups']} duplicate group(s), {summary['dropped']} dropped"
    )
    if summary["scheme"] == "nnunet":
        print("splits: none written (nnU-Net makes its own 5 folds)")
    else:
        print(f"splits: {summary['scheme']}, {summary['folds']} folds, seed {summary['seed']}"
              + (", grouped by duplicates" if summary["scheme"] == "paper" else ", the authors' assignment"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("nnunet-se-convert", os_errors_as_user_errors(_convert), argv)
