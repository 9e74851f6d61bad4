"""``nnunet-se demo``: a small study end to end: data, nnU-Net planning, K-fold training, prediction, analysis, report.

Everything runs with nnU-Net's and the plugin's own commands (subprocesses, logged per stage under
``<out>/logs/``) in private nnU-Net folders inside ``<out>``, so the user's own nnU-Net folders are never touched.
Data: a seeded synthetic lesion dataset (:mod:`nnunet_se.synthetic`), or real data converted with
``nnunet-se-convert`` (``--source DIR --source-kind kvasir|busi|isic2018``). Profiles (``--profile``): ``cpu`` (default,
a few minutes on 2 cores), ``gpu`` (the same study larger, all six modules, 5 folds), ``quick`` (test suite).
Helpers: :mod:`nnunet_se.workflow.demo_profiles` (sizes), :mod:`nnunet_se.workflow.demo_runs` (commands),
:mod:`nnunet_se.workflow.demo_scoring` (Dice, learning curves), :mod:`nnunet_se.workflow.demo_figures` (figures),
:mod:`nnunet_se.workflow.demo_report` (``report.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
from pathlib import Path

from nnunet_se.cli_options import add_deprecated, add_device, add_output, add_seed
from nnunet_se.errors import UserError
from nnunet_se.layout import DEFAULT_CONFIGURATION as CONFIGURATION
from nnunet_se.layout import DEFAULT_PLANS as PLANS
from nnunet_se.workflow.demo_profiles import PROFILES, Profile
from nnunet_se.workflow.demo_report import ReportInputs, module_parameters, write_report
from nnunet_se.workflow.demo_runs import Pipeline, Unit
from nnunet_se.workflow.demo_scoring import ModelScores, score_test_set, validation_dice

DATASET_ID = 999
DATASET_NAME = "NnunetSeDemo"
MARKER = ".nnunet-se-demo"
SOURCES = ("kvasir", "busi", "isic2018")
OUTPUT_ENTRIES = frozenset({MARKER, "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "trainers", "logs",
                            "predictions", "analysis", "figures", "report.md"})
"""Everything the demo writes at the top of ``-o``: a rerun deletes the old output, so it must hold nothing else."""


def check_output(out: Path, source: Path | None = None) -> None:
    """``out`` may be new, empty or a previous demo output (marker file) holding only :data:`OUTPUT_ENTRIES`; it
    must not contain ``source`` nor lie inside it (the rerun deletes ``out``, the conversion reads ``source``)."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out}: exists and is not a folder")
        entries = sorted(p.name for p in out.iterdir())
        if entries and not (out / MARKER).is_file():
            raise UserError(f"{out}: exists and is not a demo output; choose another -o/--output or remove it")
        foreign = [name for name in entries if name not in OUTPUT_ENTRIES]
        if foreign:
            raise UserError(f"{out / foreign[0]}: not written by the demo, but inside its output, which a rerun "
                            "replaces whole; move it out or choose another -o/--output")
    if source is not None:
        src, target = source.resolve(), out.resolve()
        if src.is_relative_to(target) or target.is_relative_to(src):
            what = (f"lies inside the demo output {out}, which the demo deletes and rewrites" if
                    src.is_relative_to(target) else f"contains the demo output {out}: the demo would write into it")
            raise UserError(f"--source {source}: {what}; give the demo another -o/--output")


def prepare_output(out: Path) -> None:
    """Create ``out`` afresh (after :func:`check_output`), with the marker file."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("nnunet-se demo output; safe to delete\n")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    add_output(parser, "folder", default="demo_output", help="everything the demo writes, report.md included")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu",
                        help="cpu (default): 3 trainers x 3 folds on 32x32 images, about 4 minutes on 2 cores; "
                             "gpu: 7 trainers x 5 folds on 64x64 images; quick: test-suite smoke size")
    parser.add_argument("--source", type=Path, help="real data to convert instead of the synthetic set")
    parser.add_argument("--source-kind", choices=SOURCES, help="which converter reads --source")
    parser.add_argument("--epochs", type=int, help="training epochs per fold (default: the profile's)")
    parser.add_argument("--iterations", type=int, help="train and dev iterations per epoch (default: the profile's)")
    add_device(parser, help="torch device (default: the profile's)")
    add_seed(parser, help="data, split and training seed")
    add_deprecated(parser, "--out", "--output")
    add_deprecated(parser, "--dataset", "--source-kind")
    return parser


def check_args(args: argparse.Namespace) -> Profile:
    """The profile with the command-line overrides; bad combinations are one-line errors."""
    if (args.source is None) != (args.source_kind is None):
        raise UserError("--source and --source-kind go together (e.g. --source ~/Kvasir-SEG --source-kind kvasir)")
    if args.source is not None and not args.source.exists():
        raise UserError(f"{args.source}: no such file or folder (--source)")
    check_output(args.output, args.source)
    profile = PROFILES[args.profile]
    for name in ("epochs", "iterations"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise UserError(f"--{name} {value}: must be >= 1")
            profile = dataclasses.replace(profile, **{name: value})
    if args.device is not None:
        profile = dataclasses.replace(profile, device=args.device)
    return profile


def make_data(pipeline: Pipeline, profile: Profile, args: argparse.Namespace) -> Path:
    """The raw dataset (synthetic or converted) plus its seeded splits; returns its folder."""
    with pipeline.stage("data: " + (f"convert {args.source_kind} from {args.source}" if args.source else
                                    f"synthetic lesions ({profile.n_train}+{profile.n_test} cases, "
                                    f"{profile.size}x{profile.size} RGB)")) as record:
        if args.source is None:
            from nnunet_se.synthetic import SyntheticSpec, write_synthetic_dataset

            spec = SyntheticSpec(profile.n_train, profile.n_test, profile.size, profile.folds, args.seed,
                                 profile.radius)
            folder = write_synthetic_dataset(pipeline.raw, DATASET_ID, DATASET_NAME, spec, pipeline.preprocessed)
            record.note = f"seed {args.seed}, {profile.folds} class-stratified folds"
            return folder
        pipeline.run(record, ["nnunet-se-convert", args.source_kind, str(args.source.resolve()), "-d", str(DATASET_ID),
                              "--size", str(profile.size), "--n-folds", str(profile.folds), "--seed", str(args.seed),
                              "--workers", "2", "--raw-dir", str(pipeline.raw),
                              "--preprocessed-dir", str(pipeline.preprocessed)], "data")
        return next(pipeline.raw.glob(f"Dataset{DATASET_ID:03d}_*"))


def plan(pipeline: Pipeline) -> None:
    """nnU-Net's planning; on the CPU one worker each (a 60-case 32x32 set: 26 s instead of 31 s with two)."""
    workers = ["-np", "1", "-npfp", "1"] if pipeline.device == "cpu" else []
    with pipeline.stage("plan and preprocess (nnUNetv2_plan_and_preprocess)") as record:
        # nnUNet_n_proc_DA must not be 0 while planning: nnU-Net 2.8's VRAM estimate calls
        # torch.set_num_threads(get_allowed_n_proc_DA()), which refuses 0; set it to 1 here
        pipeline.run(record, ["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", CONFIGURATION, *workers],
                     "plan", nnUNet_n_proc_DA="1")


def unit_commands(pipeline: Pipeline, raw_folder: Path, trainer: str, fold: int, gated: bool) -> list[list[str]]:
    """One fold of one trainer: ``nnUNetv2_train``, ``nnUNetv2_predict`` of the test images with that fold's model,
    and for a gated trainer ``excitations`` of the fold's held-out cases into ``analysis/excitations/<trainer>/
    fold_<fold>``."""
    common = ["-tr", trainer, "-p", PLANS, "-device", pipeline.device]
    commands = [["nnUNetv2_train", str(DATASET_ID), CONFIGURATION, str(fold), *common]]
    if (raw_folder / "imagesTs").is_dir():
        commands.append(["nnUNetv2_predict", "-i", str(raw_folder / "imagesTs"), "-o",
                         str(pipeline.out / "predictions" / trainer / f"fold_{fold}"), "-d", str(DATASET_ID), "-c",
                         CONFIGURATION, "-f", str(fold), *common, "-npp", "0", "-nps", "0", "--disable_progress_bar"])
    if gated:  # a plain U-Net has no gates to capture
        commands.append(["nnunet-se-analyze", "excitations", "-d", str(DATASET_ID), "-tr", trainer, "-p", PLANS, "-c",
                         CONFIGURATION, "-f", str(fold), "--cases", "val", "--device", pipeline.device, "-o",
                         str(pipeline.out / "analysis" / "excitations" / trainer / f"fold_{fold}")])
    return commands


def train_predict_capture(pipeline: Pipeline, profile: Profile, raw_folder: Path) -> list[ModelScores]:
    """Every (fold, trainer) unit (:func:`unit_commands`) in parallel worker processes: one per CPU core on the CPU
    (one torch thread each: the small paper U-Net gains nothing from a second thread), one on a GPU."""
    from nnunet_se.workflow.demo_trainers import demo_infos  # the trainer registry's facts

    infos = demo_infos(profile.trainers)
    folds = list(range(profile.folds))
    units = [Unit(f"{trainer}_fold_{fold}", unit_commands(pipeline, raw_folder, trainer, fold,
                                                          infos[trainer].recalibration is not None))
             for fold in folds for trainer in profile.trainers]
    workers = (os.cpu_count() or 1) if pipeline.device == "cpu" else 1
    schedule = f"{profile.epochs} epochs x " + (f"{profile.iterations}" if profile.iterations else "1 pass")
    with pipeline.stage(f"{len(profile.trainers)} trainers x {len(folds)} folds ({schedule}): train, predict the "
                        "test images, capture the held-out excitations (nnUNetv2_train, nnUNetv2_predict, "
                        "nnunet-se-analyze excitations)") as record:
        extra = {"NNUNET_SE_NUM_EPOCHS": str(profile.epochs)}
        if profile.iterations:
            extra["NNUNET_SE_NUM_ITERATIONS"] = str(profile.iterations)
        pipeline.run_parallel(record, units, "train", workers, **pipeline.loop_env, **extra)
        scores = []
        for trainer in profile.trainers:
            score = ModelScores(trainer, validation_dice(pipeline.results, raw_folder.name, trainer, folds, PLANS,
                                                         CONFIGURATION))
            labels, predictions = raw_folder / "labelsTs", pipeline.out / "predictions" / trainer
            if (raw_folder / "imagesTs").is_dir() and labels.is_dir():
                score.test = {f: score_test_set(labels, predictions / f"fold_{f}") for f in folds}
            scores.append(score)
        record.note = "; ".join([*(f"{s.trainer}: validation Dice {ModelScores.summary(s.validation)}, test Dice "
                                   f"{ModelScores.summary(s.test)}" for s in scores), record.note])
        return scores


def analyse(pipeline: Pipeline, profile: Profile) -> None:
    """``pca`` of the captured excitations, ``table`` (md + json) and ``responses`` into ``analysis/``, one process."""
    from nnunet_se.workflow.demo_trainers import common_baseline  # the trainer registry's facts

    analysis = pipeline.out / "analysis"
    files = [str(f) for f in sorted((analysis / "excitations").glob("*/fold_*/*.npz"))]
    baseline = common_baseline(profile.trainers)
    table = [["nnunet-se-analyze", "table", "-d", str(DATASET_ID), "--baseline", baseline, "--format", fmt, "-o",
              str(analysis / name)] for fmt, name in (("md", "table.md"), ("json", "table.json"))]
    with pipeline.stage("linear excitation thresholds, Table I, excitation responses (nnunet-se-analyze pca, "
                        "table, responses)") as record:
        pipeline.run_batch(record, [
            ["nnunet-se-analyze", "pca", *files, "--n-boot", str(profile.bootstrap), "--seed", str(pipeline.seed),
             "-o", str(analysis / "pca")],
            *table,
            ["nnunet-se-analyze", "responses", *files, "--dice", str(analysis / "table.json"), "-o",
             str(analysis / "responses")],
        ], "analysis")
        record.note = f"{len(files)} excitation files (each fold's model on its own held-out cases); " + record.note


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    profile = check_args(args)
    out = args.output.resolve()
    prepare_output(out)
    pipeline = Pipeline(out, profile.device, args.seed, total_stages=6)
    start = time.perf_counter()
    raw_folder = make_data(pipeline, profile, args)
    plan(pipeline)
    scores = train_predict_capture(pipeline, profile, raw_folder)
    modules = module_parameters(pipeline)
    analyse(pipeline, profile)
    with pipeline.stage("report: figures and report.md") as record:
        inputs = ReportInputs(args.profile, profile, argv, args.source, args.source_kind, args.seed, raw_folder, scores,
                              modules, time.perf_counter() - start)
        report = write_report(pipeline, inputs)
        record.note = str(report)
    print(f"report: {report}")
    return 0
