"""Atomic analysis outputs, shared by every ``nnunet-se-analyze`` subcommand.

- **Folders** (``excitations``, ``pca``, ``responses``) are built in a temporary sibling ``.<name>.tmp-*`` and
  swapped in whole when the command succeeds: the old folder is renamed away, the new one renamed into place, the
  old one deleted. Nothing is ever merged, so no stale file of an earlier run survives, and a failed run leaves the
  old folder as it was. Each output folder holds a marker file ``.nnunet-se-analyze`` naming the subcommand; an
  existing folder is only replaced when it is empty or carries the marker of the same subcommand, so a mistyped
  ``-o`` cannot delete unrelated files. A subcommand may also record an identity (``excitations``: the dataset,
  trainer, plans, configuration and folds); a folder holding another identity is refused too, so a second
  trainer's capture cannot wipe the first one's by sharing a folder. The marker also lists every file the command
  wrote; a folder holding anything else (a file the user added later) is refused, so a rerun deletes only what an
  earlier run wrote.
- **Files** (``table -o``, ``table --cases-csv``) are written to a temporary sibling and renamed over the target.
- Both refuse a target that is, or (for folders) contains, one of the command's inputs, and a target that is a
  symbolic link. Missing parent folders are created.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from nnunet_se.errors import UserError

MARKER = ".nnunet-se-analyze"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _clashing_input(target: Path, inputs: Sequence[Path]) -> Path | None:
    """The first input that is ``target`` or lies inside it (paths compared after resolving links)."""
    resolved = _resolved(target)
    for item in inputs:
        if _resolved(item).is_relative_to(resolved):  # includes item == target
            return Path(item)
    return None


def _marker(folder: Path) -> dict:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _describe(identity: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in identity.items())


def check_output_folder(out: Path, command: str, inputs: Sequence[Path] = (), identity: dict | None = None) -> None:
    """Raise :class:`UserError` unless ``out`` may be replaced by the output of ``command``.

    ``out`` may be missing, empty, or an earlier output folder of the same subcommand (and the same ``identity``,
    when given); it must not be a symbolic link or a file, and must not be or contain any of ``inputs``.
    """
    if out.is_symlink():
        raise UserError(f"{out}: -o is a symbolic link; give the real folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: -o exists and is not a folder")
    clash = _clashing_input(out, inputs)
    if clash is not None:
        raise UserError(f"{out}: -o is or contains the input {clash}; choose another output folder")
    if out.is_dir() and any(out.iterdir()):
        marker = _marker(out)
        found = marker.get("command")
        if found != command:
            what = f"the output of `{found}`" if found else "files not written by nnunet-se-analyze"
            raise UserError(f"{out}: -o already holds {what}; remove it or choose another folder for `{command}`")
        if identity is not None and marker.get("identity") != identity:
            old = marker.get("identity")
            raise UserError(f"{out}: -o holds the output of another run ({_describe(old) if old else 'unknown'}); "
                            f"outputs are replaced whole, never merged: give this run ({_describe(identity)}) its "
                            "own folder")
        recorded = marker.get("files")  # None: a marker of an earlier version, without the list
        foreign = [] if not isinstance(recorded, list) else sorted(set(_written(out)) - set(recorded) - {MARKER})
        if foreign:
            raise UserError(f"{out / foreign[0]}: not written by `{command}`, but inside its -o folder, which this "
                            "run replaces whole; move it out or choose another folder")


def _written(folder: Path) -> list[str]:
    """Every file and link below ``folder`` (POSIX paths relative to it; folders are not listed, links not
    followed)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_symlink() or not p.is_dir())


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot create the output's parent folder ({exc.strerror or exc})") from exc


@contextmanager
def staged_output(out: str | Path, command: str, inputs: Sequence[Path] = (),
                  identity: dict | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``out``; when the body succeeds, it replaces ``out`` whole.

    ``out`` is checked with :func:`check_output_folder` before and again just before the swap. When the body
    raises, ``out`` is left untouched and the temporary folder is removed.
    """
    out = Path(out)
    check_output_folder(out, command, inputs, identity)
    _make_parent(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the output gets the usual permissions
    try:
        yield tmp
        marker = {"command": command, "identity": identity, "files": _written(tmp)}
        (tmp / MARKER).write_text(json.dumps(marker) + "\n")
        check_output_folder(out, command, inputs, identity)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, out: Path) -> None:
    """Rename ``new`` to ``out``; an existing ``out`` is renamed away first and deleted after the swap."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old)  # rename(2) replaces the empty placeholder folder
    try:
        os.rename(new, out)
    except OSError as exc:
        if old is not None and not out.exists():
            os.replace(old, out)
            old = None
        raise UserError(f"{out}: could not move the new output into place ({exc.strerror or exc}); another run "
                        "may have written it at the same time") from exc
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def check_output_file(path: Path, inputs: Sequence[Path] = ()) -> None:
    """Raise :class:`UserError` when ``path`` is a folder, a symbolic link or one of ``inputs``."""
    if path.is_symlink():
        raise UserError(f"{path}: output file is a symbolic link; give the real path")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name for the output")
    clash = _clashing_input(path, inputs)
    if clash is not None:
        raise UserError(f"{path}: output file is the input {clash}; choose another name")


def write_text_atomic(path: Path, text: str, inputs: Sequence[Path] = ()) -> None:
    """Write ``text`` to a temporary sibling of ``path`` and rename it over ``path`` (checked first)."""
    check_output_file(path, inputs)
    _make_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the output gets the usual permissions
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the output ({exc.strerror or exc})") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
