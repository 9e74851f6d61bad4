"""Guards for the writer's destructive steps (see docs/datasets.md, "Errors and safety").

- :func:`check_folders`: raw, preprocessed and results folders are distinct and not nested, no source (through
  symbolic links) lies inside the raw or preprocessed folder and neither lies inside a source folder;
  :func:`check_writable_folder`: raw/preprocessed are (or can become) writable folders; :func:`resolve_path`:
  one-line errors for empty, multi-line or looping paths.
- :func:`check_replaceable`: ``--overwrite`` removes a raw ``DatasetNNN_*`` folder only if it holds nothing but a
  raw dataset, and a preprocessed one only if it holds nothing but the converter's split files (never plans,
  preprocessed data or trained results).
- :class:`DatasetLock`: one conversion per dataset id and raw folder at a time (``fcntl.flock``, POSIX).
- :func:`remove_path`: deletes a folder tree, or only the link when the path is a symbolic link.
- :func:`recover_partials`: what an interrupted run left behind (hidden ``.nnunet-se-partial-*`` folders).
- :func:`os_errors_as_user_errors`: any remaining ``OSError`` as a one-line error naming the file.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from nnunet_se.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; conversions then run unlocked (a warning says so)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

PARTIAL_PREFIX = ".nnunet-se-partial-"
LOCK_PREFIX = ".nnunet-se-lock-"
_PARTIAL_RE = re.compile(r"^\.nnunet-se-partial-(?P<id>\d{3})-(?P<pid>\d+)(?:\.old-(?P<orig>Dataset\d{3}_.+))?$")
RAW_FOLDERS = frozenset({"imagesTr", "labelsTr", "imagesTs", "labelsTs"})
SPLIT_FILES = frozenset({"splits_final.json", "nnunet_se_splits.json"})
RAW_FILES = frozenset({"dataset.json", "nnunet_se_cases.csv"}) | SPLIT_FILES
"""Top-level files of a raw dataset: nnU-Net's (dataset.json, splits_final.json) and this converter's."""


def resolve_path(value: str | os.PathLike[str], what: str) -> Path:
    """Absolute ``value`` with ``~`` expanded and symbolic links followed; an empty or multi-line value, or a link
    loop, raises :class:`UserError` (``what`` names the option, e.g. "source" or "folder")."""
    text = os.fspath(value)
    if not text.strip() or "\n" in text:
        raise UserError(f"{text!r}: not a usable {what} path (empty or several lines)")
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: symbolic link loop (Python < 3.13)
        raise UserError(f"{text}: cannot resolve this {what} path ({exc})") from exc


def _inside(child: Path, parent: Path) -> bool:
    """``child`` is ``parent`` or lies below it (both resolved)."""
    return child.is_relative_to(parent)


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_folder(path: Path, label: str) -> None:
    """``path`` is a writable folder, or can be created as one (nearest existing ancestor is a writable folder)."""
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{path}: {label} is a file, not a folder")
        target = path
    else:
        target = _existing_ancestor(path)
        if not target.is_dir():
            raise UserError(f"{path}: {label} cannot be created, {target} is a file")
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"{target}: {label} is not writable")


def name_max(path: Path) -> int:
    """Longest file name (bytes) the file system at ``path`` (or its nearest existing ancestor) allows."""
    try:
        return int(os.pathconf(_existing_ancestor(path), "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def check_folders(roots: dict[str, Path | None], sources: Sequence[Path], written: Sequence[str],
                  source_folders: Sequence[Path] = ()) -> None:
    """Every two of ``roots`` (option label -> resolved folder or None) are distinct and not nested, no source
    (file, archive or folder) lies inside a root the converter writes to (labels in ``written``), and no such root
    lies inside a ``source_folders`` entry (a folder files are read from). Paths must already be resolved
    (symbolic links followed)."""
    named = [(label, path) for label, path in roots.items() if path is not None]
    for i, (label_a, a) in enumerate(named):
        for label_b, b in named[i + 1:]:
            if a == b:
                raise UserError(f"{a}: {label_a} and {label_b} are the same folder; they must be distinct")
            if _inside(a, b) or _inside(b, a):
                (inner_label, inner), (outer_label, outer) = ((label_a, a), (label_b, b)) if _inside(a, b) else (
                    (label_b, b), (label_a, a))
                raise UserError(f"{inner}: {inner_label} lies inside {outer_label} {outer}; they must be separate")
    for source in sources:
        for label, root in named:
            if label in written and _inside(source, root):
                raise UserError(f"{source}: the source lies inside {label} {root}, which the converter writes to; "
                                "move it out first")
    for label, root in named:
        container = next((f for f in source_folders if label in written and _inside(root, f)), None)
        if container is not None:
            raise UserError(f"{root}: {label} lies inside the source folder {container}; the converter never "
                            "writes into a source, choose a folder outside it")


def _raw_entry(entry: Path) -> bool:
    """An entry a raw dataset may hold: a flat image/label folder (a link to one: only the link is removed) or one
    of :data:`RAW_FILES`."""
    if entry.name in RAW_FOLDERS:
        return entry.is_dir() and (entry.is_symlink() or not any(sub.is_dir() for sub in entry.iterdir()))
    return entry.name in RAW_FILES and (entry.is_file() or entry.is_symlink())


def check_replaceable(path: Path, kind: str) -> None:
    """Raise unless ``--overwrite`` may remove ``path``: a symbolic link (only the link goes), an empty folder, a raw
    dataset (``kind="raw"``: ``dataset.json`` plus only the files an nnU-Net raw dataset and this converter write
    at its top and flat imagesTr/labelsTr/imagesTs/labelsTs folders) or, in the preprocessed folder
    (``kind="preprocessed"``), a folder holding only the converter's split files: nnU-Net's plans and
    preprocessed data of an earlier run (which trained models depend on) are never deleted."""
    if path.is_symlink():
        return
    entries = sorted(path.iterdir())
    if not entries:
        return
    if kind == "raw":
        odd = [e.name for e in entries if not _raw_entry(e)]
        if not (path / "dataset.json").is_file():
            odd.insert(0, "no dataset.json")
        if odd:
            raise UserError(f"{path}: does not look like an nnU-Net raw dataset ({', '.join(odd[:3])}); "
                            "--overwrite only replaces raw datasets, so remove or rename it yourself")
        return
    odd = [e.name for e in entries if e.name not in SPLIT_FILES or not (e.is_file() or e.is_symlink())]
    if odd:
        raise UserError(
            f"{path}: holds files nnunet-se-convert did not write ({', '.join(odd[:3])}; nnU-Net's plans and "
            "preprocessed data, which trained models depend on, are never deleted); --overwrite only replaces the "
            "converter's split files, so move or remove this folder yourself"
        )


def remove_path(path: Path) -> None:
    """Delete ``path``: a symbolic link (or file) is unlinked, its target kept; a real folder is removed."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def aside_name(dataset_id: int, folder: Path) -> Path:
    """Where :meth:`RawDatasetWriter` parks a dataset it replaces until the new one is published."""
    return folder.with_name(f"{PARTIAL_PREFIX}{dataset_id:03d}-{os.getpid()}.old-{folder.name}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def recover_partials(root: Path, dataset_id: int, own_staging: Path) -> None:
    """Handle hidden folders that an interrupted run for ``dataset_id`` left in ``root`` (call with the lock held).

    Only names of the converter's exact pattern with this id and a dead process id are touched: a staging folder is
    deleted (partial output), a parked old dataset is renamed back when no dataset with this id exists (the
    replacement was never published), else kept and reported. Anything else with the prefix is reported, never
    touched.
    """
    if not root.is_dir():
        return
    for path in sorted(root.glob(f"{PARTIAL_PREFIX}*")):
        match = _PARTIAL_RE.match(path.name)
        if path == own_staging and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # our pid, so its process is gone: a stale folder of an earlier process
            continue
        if match is None or int(match["id"]) != dataset_id:
            if match is None:
                log.warning("%s: not made by nnunet-se-convert (unexpected name); left alone", path)
            continue
        parked = match["orig"] is not None  # a replaced dataset (a folder, or a link to one)
        real_folder = path.is_dir() and not path.is_symlink()
        if _pid_alive(int(match["pid"])) or not (real_folder or parked and path.is_symlink()):
            log.warning("%s: left alone (not a folder, or its process %s is still running)", path, match["pid"])
            continue
        if not parked:
            shutil.rmtree(path)
            log.info("removed %s, left by an interrupted conversion", path)
            continue
        same_id = list(root.glob(f"Dataset{dataset_id:03d}_*"))
        if same_id:
            log.warning("%s: the dataset %s replaced by an interrupted --overwrite (the new %s exists); "
                        "delete it yourself once you no longer need it", path, match["orig"], same_id[0].name)
        else:
            path.rename(root / match["orig"])
            log.warning("restored %s from an interrupted --overwrite", root / match["orig"])


class DatasetLock:
    """Exclusive per-id lock file ``<root>/.nnunet-se-lock-NNN`` (``flock``; released when the process ends)."""

    def __init__(self, root: Path, dataset_id: int) -> None:
        self.path = root / f"{LOCK_PREFIX}{dataset_id:03d}"
        self.dataset_id = dataset_id
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`UserError` naming the running conversion's process id."""
        if fcntl is None:
            log.warning("no fcntl on this system: concurrent conversions of id %d are not detected", self.dataset_id)
            return
        for _ in range(5):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise UserError(
                    f"{self.path}: another conversion (pid {holder}) is writing dataset id {self.dataset_id} into "
                    f"{self.path.parent}; wait for it to finish"
                ) from None
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:  # not unlinked by a releasing holder between our open and flock
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)
        raise UserError(f"{self.path}: could not take the lock for dataset id {self.dataset_id}; try again")

    def _open(self) -> int:
        """The lock file, created if missing; never through a symbolic link and only a regular file (anything else
        in its place belongs to someone else and is refused, not truncated)."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if self.path.is_symlink():
                raise UserError(f"{self.path}: the lock file is a symbolic link; remove it (it is not the "
                                "converter's)") from exc
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(f"{self.path}: the lock file is not a regular file; remove it (it is not the converter's)")
        return fd

    def release(self) -> None:
        """Remove the lock file, then unlock (a waiting opener then sees a fresh file, see :meth:`acquire`)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def os_errors_as_user_errors(func: Callable[[Sequence[str]], _T]) -> Callable[[Sequence[str]], _T]:
    """``func`` with any :class:`OSError` (disk full, permissions, names too long, ...) re-raised as a one-line
    :class:`UserError` naming the file(s) involved."""

    def run(argv: Sequence[str]) -> _T:
        try:
            return func(argv)
        except OSError as exc:
            where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None) or "file system"
            raise UserError(f"{where}: {exc.strerror or exc}") from exc

    return run
