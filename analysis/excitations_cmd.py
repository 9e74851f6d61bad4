"""``nnunet-se-analyze excitations``: capture the gate excitations of trained folds (one .npz + JSON per dataset,
trainer and fold)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nnunet_se.analysis.excitation_io import save_excitations
from nnunet_se.analysis.outputs import check_output_folder, staged_output
from nnunet_se.cli_options import (
    ALL_FOLDS,
    add_configuration,
    add_datasets,
    add_deprecated,
    add_device,
    add_folds,
    add_output,
    add_plans,
    add_trainers,
)
from nnunet_se.errors import UserError
from nnunet_se.layout import RESULTS, Dataset, dataset_folds, model_folder, nnunet_roots, resolve_datasets

logger = logging.getLogger(__name__)
COMMAND = "nnunet-se-analyze excitations"


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split(":", 1)[1].strip())
    add_datasets(p, required=True, help="dataset ids or names (e.g. 601 or Dataset601_KvasirSEG); several allowed")
    add_trainers(p, required=True, families=False, help="trainer class names, e.g. nnUNetTrainerPaperMono; "
                                                        "several allowed")
    add_plans(p)
    add_configuration(p)
    add_folds(p, required=True, help="folds to capture: 0 1 2, 0-4, 0-4,7 or all (every fold of the dataset's "
                                     "splits_final.json)")
    p.add_argument("--checkpoint", choices=("best", "final"), default="best",
                   help="checkpoint_best.pth (default) or checkpoint_final.pth")
    p.add_argument("--cases", default="val",
                   help="val (the fold's held-out cases, default), train, all, or a folder of raw images "
                        "(<case>_0000.<ending>)")
    add_device(p, help="torch device (default: cuda when available, else cpu)")
    add_output(p, "folder", default="excitations", help="one .npz + .json per dataset, trainer and fold")
    add_deprecated(p, "DATASET", "--datasets")
    add_deprecated(p, "--trainer", "--trainers")
    return p


def output_stem(dataset: str, trainer: str, plans: str, configuration: str, fold: int) -> str:
    return f"{dataset}__{trainer}__{plans}__{configuration}__fold_{fold}"


@dataclass(frozen=True)
class Capture:
    """One fold to capture: ``model_dir/fold_<fold>/checkpoint_<checkpoint>.pth`` of ``dataset`` and ``trainer``."""

    dataset: str
    trainer: str
    model_dir: Path
    fold: int


def resolve_folds(folds: list[int] | str, roots: Mapping[str, Path | None], dataset: Dataset) -> list[int]:
    """``folds`` as given (a trained fold outside the split is still captured), or for ``all`` every fold of
    ``dataset``'s split (:func:`nnunet_se.layout.dataset_folds`: splits_final.json, nnU-Net's 0-4 without one)."""
    if folds != ALL_FOLDS:
        return list(folds)
    split = dataset_folds(roots, dataset)
    if split.warning:
        logger.warning("-f all: %s", split.warning)
    return split.folds


def plan_captures(args: argparse.Namespace) -> list[Capture]:
    """Every (dataset, trainer, fold) of the command line, after checking that its checkpoint exists.

    A trainer is any name with a trained model folder (the demo's and third-party trainers included); without
    one, an unknown name is reported with the closest known trainer (``check_trainer``), a known one as untrained.
    """
    from nnunet_se.trainer_registry import check_trainer

    roots = nnunet_roots()
    if roots[RESULTS] is None:
        raise UserError("nnUNet_results is not set: it must point to the folder with the trained models")
    captures = []
    for dataset in resolve_datasets(list(dict.fromkeys(args.datasets)), roots):
        folds = resolve_folds(args.folds, roots, dataset)
        for trainer in dict.fromkeys(args.trainers):
            model_dir = model_folder(roots[RESULTS], dataset.name, trainer, args.plans, args.configuration)
            if not model_dir.is_dir():
                check_trainer(trainer, families=False)  # a typo: name the closest known trainer
                raise UserError(f"{model_dir}: no trained model folder for {trainer} / {args.plans} / "
                                f"{args.configuration}")
            for fold in folds:
                ckpt = model_dir / f"fold_{fold}" / f"checkpoint_{args.checkpoint}.pth"
                if not ckpt.is_file():
                    raise UserError(f"{ckpt}: checkpoint not found (is fold {fold} trained? try --checkpoint "
                                    "final|best)")
                captures.append(Capture(dataset.name, trainer, model_dir, fold))
    return captures


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    import torch

    from nnunet_se.analysis.excitations import (
        CASE_SETS,
        capture_fold,
        ensure_trainer_discovery,
        load_predictor,
        preprocessed_root,
        versions,
    )

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device available")
    ensure_trainer_discovery()
    from nnunetv2.paths import nnUNet_results

    from nnunet_se.injection import recalibration_paths

    captures = plan_captures(args)  # fail before any work when a fold is not there
    inputs = [Path(str(nnUNet_results))]  # the output must never contain what is read
    if args.cases in CASE_SETS:
        inputs.append(preprocessed_root())
    elif Path(args.cases).is_dir():
        inputs.append(Path(args.cases))
    else:
        raise UserError(f"--cases {args.cases!r}: must be val, train, all or a folder of images")
    identity = {"dataset": ", ".join(dict.fromkeys(c.dataset for c in captures)),
                "trainer": ", ".join(dict.fromkeys(c.trainer for c in captures)), "plans": args.plans,
                "configuration": args.configuration, "folds": sorted({c.fold for c in captures})}
    check_output_folder(args.output, COMMAND, inputs, identity)
    report = []
    with staged_output(args.output, COMMAND, inputs, identity) as tmp:
        for capture in captures:
            dataset, trainer, fold = capture.dataset, capture.trainer, capture.fold
            trainer_cls = _plugin_trainer(trainer)
            predictor = load_predictor(capture.model_dir, fold, args.checkpoint, device, trainer, args.plans,
                                       args.configuration)
            paths = recalibration_paths(predictor.network)
            if not paths:
                raise UserError(f"{capture.model_dir}: {trainer} has no recalibration modules to capture")
            stream, gate_names = capture_fold(predictor, paths, dataset, fold, args.cases)
            meta = {
                "dataset": dataset, "trainer": trainer, "plans": args.plans,
                "configuration": args.configuration, "fold": fold, "checkpoint": args.checkpoint,
                "module": getattr(trainer_cls, "recalibration", None),
                "flavour": getattr(trainer_cls, "flavour", None),
                "recalibration_options": dict(getattr(trainer_cls, "recalibration_options", {}) or {}),
                "cases": args.cases, "n_cases": len(stream.case_ids), "module_paths": paths,
                "hook": "forward hook on <module path>.<gate>, output averaged over its spatial dims per channel",
                "gates": {str(d): name for d, name in enumerate(gate_names, start=1)},
                "gate_summary": "gate: channel gate (N, C, 1, ...), one value per channel; spatial_gate: sSE's "
                                "spatial gate (N, 1, *S), summarised by its spatial mean (one channel)",
                "test_time_augmentation": False, "tile_step_size": predictor.tile_step_size,
                "patch_size": list(predictor.configuration_manager.patch_size),
                "tiles_per_case": {"min": min(stream.tiles), "max": max(stream.tiles)},
                "tiles_averaged": max(stream.tiles) > 1,
                "tile_rule": "a case's vector is the unweighted mean of its sliding-window tiles' gate vectors",
                "device": str(device), "versions": versions(),
            }
            stem = output_stem(dataset, trainer, args.plans, args.configuration, fold)
            arrays = stream.arrays()
            save_excitations(tmp / f"{stem}.npz", arrays, stream.case_ids, meta)
            shapes = ", ".join(f"l={d}: {a.shape[0]}x{a.shape[1]}" for d, a in arrays.items())
            report.append(f"{args.output / stem}.npz\t{shapes}\ttiles/case {min(stream.tiles)}-{max(stream.tiles)}")
    print("\n".join(report))
    return 0


def _plugin_trainer(name: str) -> type | None:
    from nnunet_se.trainers import ALL_TRAINERS

    return ALL_TRAINERS.get(name)
