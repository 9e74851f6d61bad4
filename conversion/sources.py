"""Read-only access to what the user downloaded: extracted folders and official zip archives, as one file list.

Every file is a :class:`SourceFile` with a POSIX path relative to its root (a folder given on the command line, or
the inside of a zip archive). Zip archives found inside a given folder are opened too, so a folder holding the
official zips works like the zips themselves. Nothing is ever written to a source.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from nnunet_se.errors import UserError


@dataclass(frozen=True, order=True)
class SourceFile:
    """One source file: a plain file (``archive`` is None) or a member of a zip archive.

    ``path`` is the member name (archive) or the absolute file path (plain file); ``rel`` is the POSIX path used for
    layout matching (relative to the folder or archive root).
    """

    rel: str
    path: str
    archive: str | None = None

    @property
    def display(self) -> str:
        """The name shown in messages: ``/abs/file`` or ``/abs/archive.zip:member``."""
        return self.path if self.archive is None else f"{self.archive}:{self.path}"

    @property
    def parts(self) -> tuple[str, ...]:
        return PurePosixPath(self.rel).parts

    @property
    def name(self) -> str:
        return PurePosixPath(self.rel).name

    @property
    def stem(self) -> str:
        return PurePosixPath(self.rel).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.rel).suffix.lower()

    @property
    def parent_name(self) -> str:
        parts = self.parts
        return parts[-2] if len(parts) > 1 else ""

    def read(self) -> bytes:
        """The file's bytes; an unreadable file or archive member raises :class:`UserError` naming it."""
        try:
            if self.archive is None:
                return Path(self.path).read_bytes()
            return _open_zip(self.archive).read(self.path)
        except (OSError, zipfile.BadZipFile, KeyError, EOFError) as exc:
            raise UserError(f"{self.display}: cannot read ({exc})") from exc


@lru_cache(maxsize=16)
def _open_zip(archive: str) -> zipfile.ZipFile:
    """One open handle per archive and process (workers open their own after fork/spawn)."""
    return zipfile.ZipFile(archive)


def _zip_members(archive: Path) -> list[SourceFile]:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [info.filename for info in zf.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserError(f"{archive}: unreadable archive, expected a zip file ({exc})") from exc
    out = []
    for name in names:
        if name.startswith("__MACOSX/") or PurePosixPath(name).name.startswith("._"):
            continue  # macOS resource forks shipped inside some archives
        out.append(SourceFile(rel=name, path=name, archive=str(archive)))
    return out


def collect_sources(paths: Iterable[str | os.PathLike[str]]) -> list[SourceFile]:
    """All files under the given folders and zip archives, sorted by ``rel`` (deterministic order).

    Raises :class:`UserError` for a missing path, an unreadable archive, or a plain file that is not a zip.
    """
    files: list[SourceFile] = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    full = Path(root) / name
                    if name.lower().endswith(".zip"):
                        files.extend(_zip_members(full))
                    elif not name.startswith("."):
                        files.append(SourceFile(rel=full.relative_to(path).as_posix(), path=str(full)))
        elif path.is_file():
            if not zipfile.is_zipfile(path):
                raise UserError(f"{path}: unreadable archive, expected a folder or a zip file")
            files.extend(_zip_members(path))
        else:
            raise UserError(f"{path}: no such file or folder")
    return sorted(files)
