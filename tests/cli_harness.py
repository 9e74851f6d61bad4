"""Shared checks for the adversarial CLI tables: run a console script's ``main`` in-process, assert a
one-line error without traceback, and fingerprint folders that must not change."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def call_main(main: Callable[[Sequence[str]], int], argv: Sequence[str], capsys: pytest.CaptureFixture) -> CliResult:
    """``main(argv)`` with captured output. An exception escaping ``main`` is what a user would see as a
    traceback, so it fails the test (``SystemExit`` from argparse is a normal exit and is returned as a code)."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BaseException as exc:  # noqa: BLE001 - any escape is a traceback for the user
        pytest.fail(f"{type(exc).__name__} escaped main({list(argv)!r}): {exc}")
    out = capsys.readouterr()
    return CliResult(int(code or 0), out.out, out.err)


def assert_one_line_error(result: CliResult, *fragments: str) -> str:
    """Non-zero exit, no traceback, and a last stderr line of the form ``<prog>: error: ...`` (argparse's own
    ``usage`` line may precede it) that contains every fragment (case-insensitive). Returns that line."""
    assert result.code != 0, f"exit 0; stderr={result.stderr!r}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, f"expected exactly one error line, got {lines!r}"
    line = errors[0]
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
    return line


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of content (files), link target (symlinks), ``dir`` or ``special`` (pipes and
    sockets, never read) for every entry under ``root`` (``{}`` if it does not exist): equal digests mean nothing
    was added, removed or changed."""
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        return {}
    digest: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                digest[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                digest[rel] = "dir"
            elif not path.is_file():  # a named pipe or socket: reading it could block
                digest[rel] = "special"
            else:
                digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest
