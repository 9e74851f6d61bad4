"""``nnunet-se grid``: a job script (sh, SLURM job array) or JSON manifest for a (dataset, trainer, fold) grid.

Every job runs ``nnUNetv2_train <id> <config> <fold> -tr <trainer> -p <plans> -device <device> --c``: finished folds
are skipped (checked again when the job runs), unfinished ones resume from their latest checkpoint. Set
``NNUNET_SE_DRY_RUN=1`` when running a generated script to print the commands instead of running them. The scripts
themselves are written by :mod:`nnunet_se.workflow.grid_script`; trainer names and families come from the trainer
registry (which imports torch, about 4 s).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nnunet_se import cli_options
from nnunet_se.errors import UserError
from nnunet_se.layout import DEFAULT_CONFIGURATION, DEFAULT_PLANS, folds_for, nnunet_roots, resolve_datasets
from nnunet_se.results import FoldState, fold_state
from nnunet_se.workflow.grid_script import check_slurm_args, make_log_folder, render_script
from nnunet_se.workflow.matrix import Job, build_manifest, check_name

FORMATS = ("sh", "slurm", "json")
MANIFEST_VERSION = 1


def render_json(jobs: Sequence[Job], states: Sequence[FoldState], args: argparse.Namespace) -> str:
    """The manifest as JSON: one entry per job with its index, state and command."""
    entries = [
        {"index": i, "dataset_id": j.dataset.id, "dataset": j.dataset.name, "trainer": j.trainer, "fold": j.fold,
         "configuration": j.configuration, "plans": j.plans, "state": s.value, "model_dir": j.model_dir,
         "command": j.train_command(args.device)}
        for i, (j, s) in enumerate(zip(jobs, states, strict=True))
    ]
    return json.dumps({"version": MANIFEST_VERSION, "jobs": entries}, indent=2, allow_nan=False) + "\n"


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    cli_options.add_datasets(parser, required=True,
                             help="dataset ids (601) or folder names (Dataset601_Kvasir) found in the nnU-Net folders")
    cli_options.add_trainers(parser, default=["paper"])
    cli_options.add_folds(parser, help="fold indices: 0-9, 0 1 2 or 0-4,7, each a fold of the dataset's "
                                       "splits_final.json, or all (default: all; 0-4, nnU-Net's default, without one)")
    cli_options.add_configuration(parser, DEFAULT_CONFIGURATION)
    cli_options.add_plans(parser, DEFAULT_PLANS)
    cli_options.add_device(parser, "cuda", ("cuda", "cpu", "mps"), help="device of nnUNetv2_train")
    parser.add_argument("--format", choices=FORMATS, default="sh", help="default: %(default)s")
    parser.add_argument("--all", action="store_true",
                        help="include folds already finished (default: only unfinished ones)")
    cli_options.add_output(parser, "file", help="write the one job script (or JSON manifest) here instead of stdout; "
                                                "a script is made executable")
    slurm = parser.add_argument_group("SLURM (--format slurm)")
    slurm.add_argument("--slurm-partition", help="partition (default: the cluster's default)")
    slurm.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job (default: %(default)s; 0 = none)")
    slurm.add_argument("--slurm-cpus", type=int, default=8, help="CPUs per job (default: %(default)s)")
    slurm.add_argument("--slurm-time", default="24:00:00", help="time limit per job (default: %(default)s)")
    slurm.add_argument("--slurm-max-parallel", type=int, default=10, metavar="MAX",
                       help="jobs of the array running at once (default: %(default)s)")
    slurm.add_argument("--slurm-job-name", default="nnunet-se", help="default: %(default)s")
    slurm.add_argument("--slurm-logs", default="nnunet-se-logs", metavar="DIR",
                       help="folder for per-job logs, created now (default: %(default)s)")
    slurm.add_argument("--slurm-extra", action="append", default=[], metavar="OPTIONS",
                       help="more sbatch options, e.g. --slurm-extra='--mem=64G --account=abc' (repeatable)")
    return parser


def check_output(output: Path | None, roots: dict[str, Path | None]) -> None:
    """``-o`` must name a file in an existing folder, outside nnU-Net's folders (which the grid only reads)."""
    if output is None:
        return
    if output.is_dir():
        raise UserError(f"-o {output}: is a folder; give a file name (grid writes one file)")
    parent = output.resolve().parent
    if not parent.is_dir():
        raise UserError(f"-o {output}: the folder {parent} does not exist")
    for name, root in roots.items():
        if root is not None and parent.is_relative_to(root.resolve()):
            raise UserError(f"-o {output}: inside {name} ({root}); write the script somewhere else")


def write_output(text: str, output: Path | None, executable: bool) -> None:
    """Print ``text`` or write it atomically to ``output``."""
    if output is None:
        sys.stdout.write(text)
        return
    temporary = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(text)
        if executable:
            temporary.chmod(0o755)
        temporary.replace(output)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UserError(f"{output}: cannot write ({exc.strerror})") from exc


def check_environment() -> None:
    """The plugin's environment controls that every job's trainer reads (the jobs inherit this environment):
    checked now, so a bad value is one line here instead of a traceback in every job."""
    from nnunet_se.cli_options import MAX_SEED
    from nnunet_se.trainers.base import ENV_EPOCHS, ENV_ITERATIONS, ENV_SEED, env_int

    try:
        env_int(ENV_SEED, 0, MAX_SEED)
        env_int(ENV_EPOCHS, 1)
        env_int(ENV_ITERATIONS, 1)
    except ValueError as exc:
        raise UserError(f"{exc} (in this environment, which every job inherits)") from exc


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    args.argv = argv
    check_name("-c", args.configuration)
    check_name("-p", args.plans)
    roots = nnunet_roots()
    if roots["nnUNet_results"] is None:
        raise UserError("nnUNet_results is not set: nnU-Net needs it to store trainings (see docs/cluster.md)")
    if args.format == "slurm":
        check_slurm_args(args)
    check_output(args.output, roots)
    datasets = resolve_datasets(args.datasets, roots)
    resolved = {d: folds_for(args.folds, roots, d) for d in datasets}
    from nnunet_se.trainer_registry import expand_trainers  # imports the trainers (about 4 s): after the cheap checks

    trainers = expand_trainers(args.trainers, "-tr/--trainers")
    check_environment()
    jobs = build_manifest(datasets, trainers, {d: folds for d, (folds, _) in resolved.items()}, args.configuration,
                          args.plans)
    states = [fold_state(job.fold_folder(roots["nnUNet_results"])) for job in jobs]
    finished = sum(s is FoldState.FINISHED for s in states)
    if not args.all:
        jobs = [j for j, s in zip(jobs, states, strict=True) if s is not FoldState.FINISHED]
        states = [s for s in states if s is not FoldState.FINISHED]
    if args.format == "json":
        write_output(render_json(jobs, states, args), args.output, executable=False)
    elif not jobs:
        raise UserError("nothing to run: every fold of the grid is finished (--all includes finished folds)")
    else:
        text = render_script(jobs, args, os.environ)
        if args.format == "slurm":
            make_log_folder(Path(args.slurm_logs))
        write_output(text, args.output, executable=True)
    for _, split in resolved.values():
        if split.warning:
            print(f"{prog}: warning: {split.warning}", file=sys.stderr)
    print(f"{prog}: {len(jobs)} jobs ({finished} finished folds {'included' if args.all else 'skipped'})",
          file=sys.stderr)
    return 0
