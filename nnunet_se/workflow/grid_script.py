"""The job scripts of ``nnunet-se grid``: a bash script or a SLURM job array running one training per manifest line.

Everything written into a script is either checked here against a strict pattern or quoted by :func:`shell_word` /
``shlex.quote``: no newline, space or shell metacharacter reaches a script unquoted (docs/cluster.md). Each job
skips its fold when it is finished by :mod:`nnunet_se.results`' rule (:data:`~nnunet_se.results.FINISHED_BASH`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from nnunet_se.errors import UserError, shown
from nnunet_se.layout import EXT_VARIABLE, NNUNET_ROOTS, ext_trainer_value
from nnunet_se.results import FINISHED_BASH
from nnunet_se.workflow.matrix import Job

REQUEUE_SIGNAL_SECONDS = 600
# Everything written into a script is either one of these patterns (checked with fullmatch, ASCII only) or
# passed through shell_word / shlex.quote: no newline, space or shell metacharacter reaches a script unquoted.
_TIME_RE = re.compile(r"(\d{1,5}-)?\d{1,5}(:\d{1,2}){0,2}", re.ASCII)
_SBATCH_OPTION_RE = re.compile(r"--?[A-Za-z][A-Za-z0-9\-]*(=[!-~]+)?", re.ASCII)  # value: printable, no space
_SLURM_WORD_RE = re.compile(r"[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*", re.ASCII)  # job name, partition list
# sbatch options the grid writes itself (long and short forms) -> the grid option that sets them. A second
# --array or --output in --slurm-extra would break the index -> job mapping or lose the logs.
_OWN_SBATCH_OPTIONS = {
    "--array": "the manifest", "-a": "the manifest", "--output": "--slurm-logs", "-o": "--slurm-logs",
    "--job-name": "--slurm-job-name", "-J": "--slurm-job-name", "--time": "--slurm-time", "-t": "--slurm-time",
    "--cpus-per-task": "--slurm-cpus", "-c": "--slurm-cpus", "--gpus": "--slurm-gpus", "-G": "--slurm-gpus",
    "--partition": "--slurm-partition", "-p": "--slurm-partition", "--requeue": "the grid",
    "--open-mode": "the grid", "--signal": "the grid",
}

_PRELUDE = """\
set -euo pipefail
{exports}
# One line per job: dataset_id dataset_name trainer fold configuration plans
MANIFEST=(
{manifest}
)

run_job() {{  # run_job INDEX: skip if finished, else train (resuming with --c)
    local id name trainer fold config plans folder
    read -r id name trainer fold config plans <<< "${{MANIFEST[$1]}}"
    folder="${{nnUNet_results}}/${{name}}/${{trainer}}__${{plans}}__${{config}}/fold_${{fold}}"
    if {finished}; then
        echo "[nnunet-se] job $1: $name $trainer fold $fold finished, skipping"
        return 0
    fi
    echo "[nnunet-se] job $1: $name $trainer fold $fold"
    local cmd=(nnUNetv2_train "$id" "$config" "$fold" -tr "$trainer" -p "$plans" -device {device} --c)
    if [ -n "${{NNUNET_SE_DRY_RUN:-}}" ]; then
        echo "${{cmd[*]}}"
    else
        "${{cmd[@]}}"{background}
    fi
}}
"""

_SH_BODY = """\
for index in "${!MANIFEST[@]}"; do
    run_job "$index"
done
"""

_SLURM_BODY = """\
# Near the time limit SLURM sends USR1 (--signal); the job requeues itself and resumes with --c.
# nnU-Net writes checkpoint_latest.pth every 50 epochs, so at most that much training is repeated.
requeue() {{
    echo "[nnunet-se] time limit near: requeueing ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
    scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
    exit 0
}}
trap requeue USR1
# nnU-Net sizes its augmentation workers from the node's cores, not the job's allocation
export nnUNet_n_proc_DA="${{nnUNet_n_proc_DA:-${{SLURM_CPUS_PER_TASK:-{cpus}}}}}"
index="${{SLURM_ARRAY_TASK_ID:?run this file with sbatch (or set SLURM_ARRAY_TASK_ID)}}"
if [ "$index" -ge "${{#MANIFEST[@]}}" ]; then
    echo "[nnunet-se] array index $index is outside the manifest (${{#MANIFEST[@]}} jobs)" >&2
    exit 1
fi
run_job "$index"
"""


def exports(environ: dict[str, str] | os._Environ[str]) -> str:
    """``export`` lines: the plugin's ``nnUNet_extTrainer`` and nnU-Net's roots (the job's own values win)."""
    lines = [f"export {EXT_VARIABLE}={shell_word(ext_trainer_value(environ.get(EXT_VARIABLE)))}"]
    for name in NNUNET_ROOTS:
        value = environ.get(name)
        if value:
            absolute = shell_word(str(Path(value).resolve()))
            lines.append(f'if [ -z "${{{name}:-}}" ]; then export {name}={absolute}; fi')
        else:
            lines.append(f': "${{{name}:?set {name} (nnU-Net needs it)}}"')
    return "\n".join(lines)


def shell_word(value: str) -> str:
    """``value`` as one bash word on one line: ``shlex.quote`` for printable text, ANSI-C ``$'...'`` quoting (with
    ``\\n``, ``\\xNN`` escapes) when it holds a newline or another control character."""
    if value.isprintable():
        return shlex.quote(value)
    escaped = "".join(
        "\\" + c if c in "\\'" else c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x80
        else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
        for c in value
    )
    return f"$'{escaped}'"


def manifest_lines(jobs: Sequence[Job]) -> str:
    """One quoted line per job for the script's ``MANIFEST`` array, read back with ``read -r`` (split on spaces:
    every field was validated to be one word)."""
    fields = ([str(j.dataset.id), j.dataset.name, j.trainer, str(j.fold), j.configuration, j.plans] for j in jobs)
    return "\n".join(f"    {shlex.quote(' '.join(f))}  # {i}" for i, f in enumerate(fields))


def render_script(jobs: Sequence[Job], args: argparse.Namespace, environ: dict[str, str] | os._Environ[str]) -> str:
    """The sh script or SLURM batch file for ``jobs``."""
    slurm = args.format == "slurm"
    prelude = _PRELUDE.format(exports=exports(environ), manifest=manifest_lines(jobs),
                              finished=FINISHED_BASH.format(folder="$folder"),
                              device=shlex.quote(args.device), background=" &\n        wait $!" if slurm else "")
    header = [
        "#!/bin/bash",
        f"# nnunet-se grid: {len(jobs)} jobs; re-generate with: nnunet-se grid {' '.join(map(shell_word, args.argv))}",
    ]
    if not slurm:
        return "\n".join(header) + "\n" + prelude + "\n" + _SH_BODY
    log_dir = Path(args.slurm_logs).resolve()
    directives = [
        f"--job-name={args.slurm_job_name}",
        f"--array=0-{len(jobs) - 1}%{args.slurm_max_parallel}",
        f"--output={slurm_filename(str(log_dir))}/%x_%A_%a.log",
        f"--time={args.slurm_time}",
        f"--cpus-per-task={args.slurm_cpus}",
        "--requeue",
        "--open-mode=append",
        f"--signal=B:USR1@{REQUEUE_SIGNAL_SECONDS}",
    ]
    if args.slurm_gpus:
        directives.append(f"--gpus={args.slurm_gpus}")
    if args.slurm_partition:
        directives.append(f"--partition={args.slurm_partition}")
    directives += args.slurm_extra
    header += [f"#SBATCH {d}" for d in directives]
    return "\n".join(header) + "\n" + prelude + "\n" + _SLURM_BODY.format(cpus=args.slurm_cpus)


def slurm_filename(path: str) -> str:
    """``path`` for an sbatch filename pattern: every ``%`` doubled, so SLURM's expansion (``%%`` -> ``%``, ``%j``
    -> the job id, ...) gives back exactly ``path``, the folder the grid created. A backslash would switch the
    expansion off altogether (and with it the grid's own ``%x_%A_%a``), so :func:`check_slurm_args` refuses it."""
    return path.replace("%", "%%")


def check_slurm_args(args: argparse.Namespace) -> None:
    """Every SLURM value that becomes an ``#SBATCH`` directive: one word of the expected form."""
    if not _TIME_RE.fullmatch(args.slurm_time):
        raise UserError(f"--slurm-time {shown(args.slurm_time)}: expected [days-]hours:minutes:seconds, e.g. 24:00:00")
    if args.slurm_max_parallel < 1 or args.slurm_gpus < 0 or args.slurm_cpus < 1:
        raise UserError("--slurm-max-parallel and --slurm-cpus must be >= 1, --slurm-gpus >= 0")
    try:
        args.slurm_extra = [option for value in args.slurm_extra for option in shlex.split(value)]
    except ValueError as exc:  # an unclosed quote
        raise UserError(f"--slurm-extra {' '.join(map(shown, args.slurm_extra))}: {exc}") from exc
    for option in args.slurm_extra:
        if not _SBATCH_OPTION_RE.fullmatch(option):
            raise UserError(f"--slurm-extra {shown(option)}: expected one sbatch option such as --mem=64G")
        if (owner := _OWN_SBATCH_OPTIONS.get(option.split("=", 1)[0])) is not None:
            raise UserError(f"--slurm-extra {option}: set by {owner}, not here")
    for option, value in (("--slurm-partition", args.slurm_partition), ("--slurm-job-name", args.slurm_job_name)):
        if value is not None and not _SLURM_WORD_RE.fullmatch(value):
            raise UserError(f"{option} {shown(value)}: use letters, digits, '.', '_' or '-' (a list with ',')")
    logs = Path(args.slurm_logs)
    if not str(logs.resolve()).isprintable() or re.search(r"\s", str(logs.resolve())):
        raise UserError(f"--slurm-logs {shown(args.slurm_logs)}: sbatch directives cannot contain spaces or line "
                        "breaks")
    if "\\" in str(logs.resolve()):
        raise UserError(f"--slurm-logs {shown(args.slurm_logs)}: a backslash turns off sbatch's %-patterns in the "
                        "log file names; choose a folder without one")
    if logs.exists() and not logs.is_dir():
        raise UserError(f"--slurm-logs {logs}: exists and is not a folder")
    if args.output is not None and args.output.resolve() == logs.resolve():
        raise UserError(f"-o {args.output}: the same path as --slurm-logs")


def make_log_folder(folder: Path) -> None:
    """Create the ``--slurm-logs`` folder (SLURM does not, and loses the logs), or say in one line why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--slurm-logs {folder}: cannot create the folder ({exc.strerror})") from exc
