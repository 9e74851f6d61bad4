"""``nnunet-se-analyze excitations``: capture the gate excitations of trained folds (one .npz + JSON per fold)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_se.analysis.excitation_io import save_excitations
from nnunet_se.analysis.outputs import check_output_folder, staged_output
from nnunet_se.errors import UserError

COMMAND = "nnunet-se-analyze excitations"


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split(":", 1)[1].strip())
    p.add_argument("dataset", help="dataset id or name (e.g. 601 or Dataset601_KvasirSEG)")
    p.add_argument("-tr", "--trainer", required=True, help="plugin trainer name, e.g. nnUNetTrainerPaperMono")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("-c", "--configuration", default="2d", help="configuration (default 2d)")
    p.add_argument("-f", "--folds", nargs="+", type=int, required=True, help="folds to capture")
    p.add_argument("--checkpoint", choices=("best", "final"), default="best",
                   help="checkpoint_best.pth (default) or checkpoint_final.pth")
    p.add_argument("--cases", default="val",
                   help="val (the fold's held-out cases, default), train, all, or a folder of raw images "
                        "(<case>_0000.<ending>)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    p.add_argument("-o", "--output", type=Path, default=Path("excitations"), help="output folder")
    return p


def output_stem(dataset: str, trainer: str, plans: str, configuration: str, fold: int) -> str:
    return f"{dataset}__{trainer}__{plans}__{configuration}__fold_{fold}"


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    if min(args.folds) < 0:
        raise UserError(f"-f: folds must be >= 0, got {min(args.folds)}")
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
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunet_se.injection import recalibration_paths

    if not nnUNet_results:
        raise UserError("nnUNet_results is not set: it must point to the folder with the trained models")
    try:
        dataset = maybe_convert_to_dataset_name(args.dataset)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"dataset {args.dataset!r}: {str(exc).splitlines()[0]}") from exc
    model_dir = Path(get_output_folder(dataset, args.trainer, args.plans, args.configuration))
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: no trained model folder for {args.trainer} / {args.plans} / "
                        f"{args.configuration}")
    for fold in args.folds:  # fail before any work when a fold is not there
        ckpt = model_dir / f"fold_{fold}" / f"checkpoint_{args.checkpoint}.pth"
        if not ckpt.is_file():
            raise UserError(f"{ckpt}: checkpoint not found (is fold {fold} trained? try --checkpoint final|best)")
    inputs = [Path(str(nnUNet_results))]  # the output must never contain what is read
    if args.cases in CASE_SETS:
        inputs.append(preprocessed_root())
    elif Path(args.cases).is_dir():
        inputs.append(Path(args.cases))
    else:
        raise UserError(f"--cases {args.cases!r}: must be val, train, all or a folder of images")
    identity = {"dataset": dataset, "trainer": args.trainer, "plans": args.plans,
                "configuration": args.configuration, "folds": sorted(set(args.folds))}
    check_output_folder(args.output, COMMAND, inputs, identity)
    trainer_cls = _plugin_trainer(args.trainer)
    report = []
    with staged_output(args.output, COMMAND, inputs, identity) as tmp:
        for fold in args.folds:
            predictor = load_predictor(model_dir, fold, args.checkpoint, device)
            paths = recalibration_paths(predictor.network)
            if not paths:
                raise UserError(f"{model_dir}: {args.trainer} has no recalibration modules to capture")
            stream, gate_names = capture_fold(predictor, paths, dataset, fold, args.cases)
            meta = {
                "dataset": dataset, "trainer": args.trainer, "plans": args.plans,
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
            stem = output_stem(dataset, args.trainer, args.plans, args.configuration, fold)
            arrays = stream.arrays()
            save_excitations(tmp / f"{stem}.npz", arrays, stream.case_ids, meta)
            shapes = ", ".join(f"l={d}: {a.shape[0]}x{a.shape[1]}" for d, a in arrays.items())
            report.append(f"{args.output / stem}.npz\t{shapes}\ttiles/case {min(stream.tiles)}-{max(stream.tiles)}")
    print("\n".join(report))
    return 0


def _plugin_trainer(name: str) -> type | None:
    from nnunet_se.trainers import ALL_TRAINERS

    return ALL_TRAINERS.get(name)
