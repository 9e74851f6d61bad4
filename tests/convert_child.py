"""A real ``nnunet-se-convert`` process that stops at a known point, for the interrupt and concurrency tests (and a
deadline for tests of things that must not hang).

``python convert_child.py READY MODE ARGV...`` runs the installed converter on ARGV, except that once its first
case is staged (the staging folder then holds that case's PNGs, under the dataset lock) it creates the file READY
and waits there:

- ``MODE=signal``: until SIGINT or SIGTERM arrives, which is then handed to the converter's own handlers at that
  point (blocked and taken with ``sigwait``, then re-raised unblocked: no window where a signal is lost);
- ``MODE=hold``: until SIGUSR1 arrives, then it goes on and finishes.

Tests wait for READY (a readiness signal) instead of sleeping, so the state at the signal is the same on a loaded
machine as on a quiet one. SIGINT gets Python's default handler first, as in a terminal, even where the test runner
was started with SIGINT ignored (a background job inherits that).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from nnunet_se.conversion import converter
from nnunet_se.conversion.cli import main

WAIT_FOR = {"signal": {signal.SIGINT, signal.SIGTERM}, "hold": {signal.SIGUSR1}}


def run(ready: Path, mode: str, argv: Sequence[str]) -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    waited = WAIT_FOR[mode]
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)  # from now on these stay pending until taken
    stage = converter.convert_case
    calls = []

    def stage_then_wait(task: tuple) -> converter.StagedCase:
        staged = stage(task)
        calls.append(task)
        if len(calls) == 1:
            ready.write_text(f"{os.getpid()}\n")
            received = signal.sigwait(waited)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, waited)
            if mode == "signal":
                signal.raise_signal(received)  # the converter's handler raises KeyboardInterrupt here
        return staged

    converter.convert_case = stage_then_wait
    return main(list(argv))


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in this (main) thread after ``seconds``, interrupting even a blocking ``open`` (a test of
    something that must not hang fails instead of blocking the suite)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def start_paused(ready: Path, mode: str, argv: list[str]) -> subprocess.Popen[str]:
    """This script in its own process: the converter on ``argv``, stopped once its first case is staged."""
    return subprocess.Popen([sys.executable, __file__, str(ready), mode, *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_ready(proc: subprocess.Popen[str], ready: Path, timeout: float = 120) -> None:
    """Poll for the readiness file (the child stays stopped there, so no state is missed while polling)."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"the conversion ended before it was ready: {proc.communicate()}")
        assert time.monotonic() < deadline, "the conversion did not stage its first case in time"
        time.sleep(0.01)


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2], sys.argv[3:]))
