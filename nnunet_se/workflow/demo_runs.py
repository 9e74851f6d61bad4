"""How the demo runs commands: private nnU-Net folders, one log per stage, timed stages, and nnU-Net CLI batches.

:class:`Pipeline` runs each external command as a subprocess with the demo's environment, appends its output to
``<out>/logs/<name>.log`` and turns a failure into a one-line :class:`UserError` naming that log.

``python -m nnunet_se.workflow.demo_runs '<JSON list of argv lists>'`` runs several nnU-Net command lines in one
process, one after the other: each through its own console-script entry point (``importlib.metadata``) with
``sys.argv`` set to exactly that command line, so argument parsing, defaults and outputs are those of the stock
command. It only saves the start-up (torch, nnU-Net, trainer search: 5-15 s on 2 cores) of every command after
the first.

``python -m nnunet_se.workflow.demo_runs --claims DIR '<JSON list of units>'`` is one of several parallel workers:
a unit is ``{"log": path, "commands": [argv, ...]}``; each worker takes the next unit no other worker has claimed
(an atomic ``mkdir`` of ``DIR/<index>``), runs its commands as above with its output appended to the unit's log,
and goes on until every unit is claimed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_se.errors import UserError
from nnunet_se.layout import ext_trainer_value

BATCH_MARK = "nnunet-se demo batch:"
SAFE_PATH_ENV = {"PYTHONSAFEPATH": "1"}
"""For :func:`batch_argv`'s ``python -m``, which would put the working directory first on ``sys.path``: run from a
checkout, its bare ``nnunet_se`` folder (without the installed package-dir mapping) would shadow the package."""
DEMO_SHIM = "nnunet_se_demo_trainers_shim"


@dataclass
class StageRecord:
    """One stage: wall-clock ``seconds`` and ``cpu_seconds`` (user + system, this process and its children)."""

    name: str
    seconds: float
    cpu_seconds: float = 0.0
    commands: list[str] = field(default_factory=list)
    note: str = ""

    def add_note(self, text: str) -> None:
        """Append ``text`` to the note, ``; ``-separated."""
        self.note = f"{self.note}; {text}" if self.note else text


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
            **SAFE_PATH_ENV,
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
            raise UserError(failure_message(log, command[0], result.returncode, last))
        return result.stdout

    def run_batch(self, record: StageRecord, commands: Sequence[Sequence[str]], log_name: str,
                  **extra_env: str) -> None:
        """Run nnU-Net command lines in one process (module docstring); the report lists them as typed."""
        self.run(record, batch_argv(commands), log_name, **extra_env)
        record.commands[-1:] = [shlex.join(c) for c in commands]
        record.add_note(f"{len(commands)} commands in one process")

    def run_parallel(self, record: StageRecord, units: Sequence[Unit], name: str, workers: int,
                     **extra_env: str) -> None:
        """Run the units in ``workers`` processes (module docstring), each with ``cores // workers`` torch threads;
        the first failing unit stops the others and raises UserError naming its log."""
        workers = max(1, min(workers, len(units)))
        logs = self.out / "logs"
        claims = logs / f".{name}.claims"
        claims.mkdir(parents=True)
        payload = [{"log": str(logs / f"{u.log_name}.log"), "commands": [list(c) for c in u.commands]} for u in units]
        env = {**self.env, **extra_env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
        procs: list[tuple[subprocess.Popen, Path]] = []
        try:
            for k in range(workers):
                worker_log = logs / f"{name}_worker{k}.log"
                with worker_log.open("w") as handle:
                    procs.append((subprocess.Popen(batch_argv(payload, claims), env=env, stdout=handle,
                                                   stderr=subprocess.STDOUT), worker_log))
            failed = _wait_first_failure([p for p, _ in procs])
        finally:
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            shutil.rmtree(claims, ignore_errors=True)
        record.commands += [shlex.join(c) for u in units for c in u.commands]
        record.add_note(f"{sum(len(u.commands) for u in units)} commands in {workers} parallel processes")
        if failed is not None:
            proc, worker_log = procs[failed]
            raise UserError(_failure_line(worker_log, proc.returncode))


def batch_argv(batch: Sequence, claims: Path | None = None) -> list[str]:
    """``python -m`` this module on a batch of command lines, or (``claims``) as a parallel worker over units; run
    it with :data:`SAFE_PATH_ENV` in the environment."""
    return [sys.executable, "-m", __name__, *(["--claims", str(claims)] if claims else []), json.dumps(batch)]


def failure_message(log: Path, command: str, code: int, last: str) -> str:
    """The one-line error of a failed command: its log, name, exit code and last output line."""
    return f"{log}: '{command}' failed (exit {code}): {last}"


@dataclass(frozen=True)
class Unit:
    """Commands that run one after the other in one worker of :meth:`Pipeline.run_parallel`, logged to
    ``logs/<log_name>.log``."""

    log_name: str
    commands: Sequence[Sequence[str]]


def _wait_first_failure(procs: Sequence[subprocess.Popen]) -> int | None:
    """Wait until every process has exited 0 (None) or one has failed (its index)."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            return failed[0]
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def _failure_line(worker_log: Path, code: int) -> str:
    """The one-line error of a failed worker: the unit log its ``failed`` line names, or the worker's own log."""
    lines = worker_log.read_text(errors="replace").splitlines()
    marked = [line for line in lines if line.startswith(f"{BATCH_MARK} failed: ")]
    if marked:
        return marked[-1].removeprefix(f"{BATCH_MARK} failed: ")
    return f"{worker_log}: a parallel worker failed (exit {code}): {(lines or ['no output'])[-1]}"


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


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so child processes too) to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("a") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_claimed_units(units: Sequence[dict], claims: Path) -> None:
    """Worker loop of :meth:`Pipeline.run_parallel`: claim each unclaimed unit in order and run it into its log."""
    for index, unit in enumerate(units):
        try:
            (claims / str(index)).mkdir()
        except FileExistsError:
            continue
        log = Path(unit["log"])
        stop: BaseException | None = None
        with _output_to(log):
            try:
                run_entry_points(unit["commands"])
            except BaseException as error:  # noqa: BLE001 - reported below with the unit's log
                if not isinstance(error, SystemExit):
                    traceback.print_exc()
                stop = error
        if stop is not None:
            code = stop.code if isinstance(stop, SystemExit) and isinstance(stop.code, int) else 1
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            started = [line for line in lines if line.startswith(f"{BATCH_MARK} $ ")]
            name = shlex.split(started[-1].removeprefix(f"{BATCH_MARK} $ "))[0] if started else "a command"
            print(f"{BATCH_MARK} failed: {failure_message(log, name, code, (lines or ['no output'])[-1])}", flush=True)
            raise SystemExit(code or 1)


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunet_se.workflow.demo_runs")
    parser.add_argument("--claims", type=Path, help="claim folder: run as a parallel worker over units")
    parser.add_argument("batch", help="JSON list of command lines (with --claims: of units)")
    args = parser.parse_args(argv)
    if args.claims is None:
        run_entry_points(json.loads(args.batch))
    else:
        run_claimed_units(json.loads(args.batch), args.claims)


if __name__ == "__main__":
    main(sys.argv[1:])
