"""How the demo runs commands: private nnU-Net folders, one log per stage, timed stages, and nnU-Net CLI batches.

:class:`Pipeline` runs each external command as a subprocess with the demo's environment, appends its output to
``<out>/logs/<name>.log`` and turns a failure into a one-line :class:`UserError` naming that log.

``python -m nnunet_se.workflow.demo_runs '<JSON list of argv lists>'`` runs several nnU-Net command lines in one
process, one after the other: each through its own console-script entry point (``importlib.metadata``) with
``sys.argv`` set to exactly that command line, so argument parsing, defaults and outputs are those of the stock
command. It only saves the start-up (torch, nnU-Net, trainer search: 5-15 s on 2 cores) of every command after
the first.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_se.errors import UserError
from nnunet_se.layout import ext_trainer_value

BATCH_MARK = "nnunet-se demo batch:"
DEMO_SHIM = "nnunet_se_demo_trainers_shim"


@dataclass
class StageRecord:
    """One stage: wall-clock ``seconds`` and ``cpu_seconds`` (user + system, this process and its children)."""

    name: str
    seconds: float
    cpu_seconds: float = 0.0
    commands: list[str] = field(default_factory=list)
    note: str = ""


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (s)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Pipeline:
    """Runs the stages in ``out``; each external command's output goes to ``out/logs/<stage>.log``.

    ``cpu``: the 2-core settings (no worker pools for data augmentation and export, OpenMP threads that sleep
    while waiting); on both devices ``nnUNet_compile`` is off (compiling costs more than a demo training) and
    nnU-Net's other defaults apply.
    """

    def __init__(self, out: Path, device: str, seed: int, total_stages: int) -> None:
        self.out = out
        self.device = device
        self.seed = seed
        self.total = total_stages
        self.done = 0
        self.records: list[StageRecord] = []
        self.raw, self.preprocessed, self.results = (out / "nnUNet_raw", out / "nnUNet_preprocessed",
                                                     out / "nnUNet_results")
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "nnUNet_raw": str(self.raw),
            "nnUNet_preprocessed": str(self.preprocessed),
            "nnUNet_results": str(self.results),
            "nnUNet_extTrainer": os.pathsep.join([ext_trainer_value(os.environ.get("nnUNet_extTrainer")),
                                                  str(self._demo_trainer_folder())]),
            "nnUNet_compile": "0",
            "NNUNET_SE_SEED": str(seed),
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
            # ``python -m`` would put the working directory first on sys.path: run from a checkout, its bare
            # ``nnunet_se`` folder (without the installed package-dir mapping) would shadow the installed package
            "PYTHONSAFEPATH": "1",
        }
        if device == "cpu":  # 2-core friendly: no worker pools (docs/demo.md, "CPU settings")
            self.env["nnUNet_def_n_proc"] = "1"
            # OpenMP threads that wait sleep instead of spinning: on a busy machine spinning made torch 3-5x slower
            self.env.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    def _demo_trainer_folder(self) -> Path:
        """``<out>/trainers``: the shim that lets nnU-Net find :mod:`nnunet_se.workflow.demo_trainers` (demo commands
        only)."""
        folder = self.out / "trainers"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{DEMO_SHIM}.py").write_text("from nnunet_se.workflow.demo_trainers import *  # noqa: F403\n")
        return folder

    @property
    def loop_env(self) -> dict[str, str]:
        """Extra variables for training and prediction: no augmentation workers on the CPU (never while planning)."""
        return {"nnUNet_n_proc_DA": "0"} if self.device == "cpu" else {}

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)

    def run(self, record: StageRecord, command: Sequence[str], log_name: str, **extra_env: str) -> str:
        """Run one command, append its output to the stage log; raise UserError naming the log on failure."""
        log = self.out / "logs" / f"{log_name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        record.commands.append(shlex.join(command))
        result = subprocess.run(list(command), env={**self.env, **extra_env}, capture_output=True, text=True)
        with log.open("a") as handle:
            handle.write(f"$ {shlex.join(command)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
            raise UserError(f"{log}: '{command[0]}' failed (exit {result.returncode}): {last}")
        return result.stdout

    def run_batch(self, record: StageRecord, commands: Sequence[Sequence[str]], log_name: str,
                  **extra_env: str) -> None:
        """Run nnU-Net command lines in one process (module docstring); the report lists them as typed."""
        self.run(record, [sys.executable, "-m", __name__, json.dumps([list(c) for c in commands])], log_name,
                 **extra_env)
        record.commands[-1:] = [shlex.join(c) for c in commands]
        record.note = (record.note + "; " if record.note else "") + f"{len(commands)} commands in one process"


class _Stage:
    """Context manager printing one progress line per stage: ``[i/n] name ... done in s``."""

    def __init__(self, pipeline: Pipeline, name: str) -> None:
        self.pipeline = pipeline
        self.record = StageRecord(name, 0.0)

    def __enter__(self) -> StageRecord:
        self.pipeline.done += 1
        self.start, self.cpu_start = time.perf_counter(), cpu_seconds()
        print(f"[{self.pipeline.done}/{self.pipeline.total}] {self.record.name} ...", flush=True)
        return self.record

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.record.seconds = time.perf_counter() - self.start
        self.record.cpu_seconds = cpu_seconds() - self.cpu_start
        if exc_type is None:
            self.pipeline.records.append(self.record)
            note = f" ({self.record.note})" if self.record.note else ""
            print(f"      done in {self.record.seconds:.1f} s{note}", flush=True)


def run_entry_points(commands: Sequence[Sequence[str]]) -> None:
    """Run each command line through its console-script entry point, in order, in this process."""
    from importlib.metadata import entry_points

    for argv in commands:
        found = entry_points(group="console_scripts", name=argv[0])
        if not found:
            raise SystemExit(f"{BATCH_MARK} {argv[0]!r} is not an installed console script")
        entry = next(iter(found)).load()
        print(f"{BATCH_MARK} $ {shlex.join(argv)}", flush=True)
        start = time.perf_counter()
        sys.argv = list(argv)
        code = entry()
        if code not in (None, 0):  # as the console-script wrapper: sys.exit(entry())
            raise SystemExit(code)
        print(f"{BATCH_MARK} done in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    run_entry_points(json.loads(sys.argv[1]))
