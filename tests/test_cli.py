"""Console scripts exist, answer --help, and report unknown input in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
