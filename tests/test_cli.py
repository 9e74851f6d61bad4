"""Console scripts exist, answer --help, and report every failure in one line with its exit code."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_se.errors import UserError, run_cli

SCRIPTS = ["nnunet-se", "nnunet-se-convert", "nnunet-se-analyze"]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works(script: str) -> None:
    exe = BIN / script
    assert exe.exists(), f"{script} is not installed in {BIN}"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "usage:" in result.stdout


@pytest.mark.parametrize("script", ["nnunet-se", "nnunet-se-analyze"])
def test_unknown_subcommand_is_one_line_error(script: str) -> None:
    result = subprocess.run([BIN / script, "frobnicate"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


# --- run_cli: the one-line convention shared by all three console scripts ------------------------------------------


def _raise(exc: BaseException):
    def func(argv: list[str]) -> int:
        raise exc

    return func


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (UserError("data.json: not a summary"), 1, "prog: error: data.json: not a summary"),
        (UserError("-c '2d\ntouch X'"), 1, "prog: error: -c '2d\\ntouch X'"),  # a value's newline stays escaped
        (FileNotFoundError(2, "No such file or directory", "/in/a.png"), 1,
         "prog: error: /in/a.png: No such file or directory"),
        (PermissionError(13, "Permission denied", "/a", None, "/b"), 1, "prog: error: /a -> /b: Permission denied"),
        (OSError(28, "No space left on device"), 1, "prog: error: No space left on device"),
        (KeyboardInterrupt(), 130, "prog: error: interrupted"),
        (BrokenPipeError(32, "Broken pipe"), 141, "prog: error: output closed early (broken pipe)"),
        (ValueError("bad shape\nsecond line"), 70,
         "prog: error: internal error ValueError: bad shape (a bug; rerun with --debug for the traceback and report "
         "it)"),
    ],
    ids=["user", "user-multiline", "os-file", "os-two-files", "os-no-file", "interrupt", "broken-pipe", "internal"],
)
def test_run_cli_one_line_per_failure(exc: BaseException, code: int, line: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("prog", _raise(exc), ["x"]) == code
    out = capsys.readouterr()
    assert out.out == "" and out.err == line + "\n"
    with pytest.raises(type(exc)):  # --debug: the traceback
        run_cli("prog", _raise(exc), ["x", "--debug"])


def test_run_cli_passes_argv_without_debug_and_lets_argparse_exit() -> None:
    seen: list[list[str]] = []
    assert run_cli("prog", lambda argv: seen.append(list(argv)) or 3, ["a", "--debug", "b"]) == 3
    assert seen == [["a", "b"]]
    with pytest.raises(SystemExit):
        run_cli("prog", _raise(SystemExit(2)), [])


def test_broken_pipe_of_a_real_process_is_one_line() -> None:
    """A reader that stops early (``| head -c 1``): one line, exit 141, no 'Exception ignored' at shutdown."""
    code = ("import sys\nfrom nnunet_se.errors import run_cli\n"
            "def spam(argv):\n    for _ in range(100000):\n        print('x' * 100)\n"
            "sys.exit(run_cli('prog', spam, []))\n")
    result = subprocess.run(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} | head -c 1 >/dev/null; "
                            "echo \"rc=${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash", capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "rc=141"
    assert result.stderr == "prog: error: output closed early (broken pipe)\n"
