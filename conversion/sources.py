"""Read-only access to what the user downloaded: extracted folders and official zip archives, as one file list.

Every file is a :class:`SourceFile` with a POSIX path relative to its root (a folder given on the command line, or
the inside of a zip archive). Zip archives found inside a given folder are opened too, so a folder holding the
official zips works like the zips themselves. Nothing is ever written to a source. Files are read through
:mod:`~nnunet_se.reading` (regular files only, size-bounded; zip members streamed with bounds).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from nnunet_se.conversion.safety import resolve_path
from nnunet_se.errors import UserError
from nnunet_se.reading import open_zip, read_file, read_member


@dataclass(frozen=True, order=True)
class SourceFile:
    """One source file: a plain file (``archive`` is None) or a member of a zip archive.

    ``path`` is the member name (archive) or the absolute file path (plain file); ``rel`` is the POSIX path used for
    layout matching (relative to the folder or archive root); ``folder`` the name of the folder given as source
    (the parent of its top-level files, so the official folders can be given themselves); ``source`` the resolved
    source it was found in.
    """

    rel: str
    path: str
    archive: str | None = None
    folder: str = ""
    source: str = ""

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
        return parts[-2] if len(parts) > 1 else self.folder

    def sibling_folder(self, name: str) -> str:
        """How to show the folder ``name`` beside this file's folder (``/abs/root/name`` or ``archive.zip:name``)."""
        if self.archive is None:
            return str(Path(self.path).parent.parent / name)
        return f"{self.archive}:{PurePosixPath(self.path).parent.parent / name}"

    def nbytes(self) -> int:
        """Stored size in bytes (compressed size for archive members; 0 if unreadable): a cost estimate."""
        try:
            if self.archive is None:
                return os.stat(self.path).st_size
            return _open_zip(self.archive, os.getpid()).getinfo(self.path).compress_size
        except (OSError, KeyError, zipfile.BadZipFile):
            return 0

    def read(self) -> bytes:
        """The file's bytes (a regular file or zip member within the size bounds of
        :mod:`~nnunet_se.reading`); an unreadable one raises :class:`UserError` naming it."""
        try:
            if self.archive is None:
                return read_file(self.path, self.display)
            archive = _open_zip(self.archive, os.getpid())
            info = archive.getinfo(self.path)
            _check_member(info, self.display)
            return read_member(archive, info, self.display)
        except (OSError, zipfile.BadZipFile, KeyError, EOFError, zlib.error) as exc:
            raise UserError(f"{self.display}: cannot read ({exc})") from exc


_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_ZIP_METHOD_NAMES = {9: "Deflate64", 93: "Zstandard", 95: "XZ", 98: "PPMd", 99: "AES"}


def _check_member(info: zipfile.ZipInfo, display: str) -> None:
    """Encrypted members and compression methods Python's zipfile cannot read raise :class:`UserError`."""
    if info.flag_bits & 0x1:
        raise UserError(f"{display}: encrypted zip member (password-protected archives are not supported; "
                        "extract it with a password-aware tool and pass the folder)")
    if info.compress_type not in _ZIP_METHODS:
        method = _ZIP_METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise UserError(f"{display}: unsupported zip compression ({method}); extract the archive with a tool that "
                        "supports it (e.g. 7z or unzip) and pass the folder")


@lru_cache(maxsize=16)
def _open_zip(archive: str, pid: int) -> zipfile.ZipFile:
    """One open handle per archive and process ``pid``: a forked worker opens its own instead of sharing the
    parent's file offset (zipfile seeks, then reads, under a lock that only guards threads)."""
    return open_zip(archive)


def _zip_members(archive: Path, source: Path) -> list[SourceFile]:
    try:
        with open_zip(archive) as zf:
            names = [info.filename for info in zf.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserError(f"{archive}: unreadable archive, expected a zip file ({exc})") from exc
    out = []
    for name in names:
        if name.startswith("__MACOSX/") or PurePosixPath(name).name.startswith("._"):
            continue  # macOS resource forks shipped inside some archives
        out.append(SourceFile(rel=name, path=name, archive=str(archive), source=str(source)))
    return out


def _raise(exc: OSError) -> None:
    raise exc


def _walk(root: Path) -> Iterable[Path]:
    """Files under ``root`` in sorted order, following symbolic links to folders (each real folder once). A folder
    that cannot be listed (permissions) raises its ``OSError`` instead of being skipped, which would drop its cases
    silently."""
    seen: set[Path] = set()
    for folder, dirs, names in os.walk(root, followlinks=True, onerror=_raise):
        real = Path(folder).resolve()
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            yield Path(folder) / name


def collect_sources(paths: Iterable[str | os.PathLike[str]]) -> list[SourceFile]:
    """All files under the given folders and zip archives, sorted by ``rel`` (deterministic order).

    Symbolic links (to folders or files) are followed. Raises :class:`UserError` for a missing path, a source given
    twice or inside another, an unreadable archive, or a plain file that is not a zip. Entries of a folder that are
    not regular files (named pipes, broken links) are listed and refused only if they are read as data.
    """
    given: dict[Path, str] = {}
    for raw in paths:
        text = os.fspath(raw)
        path = resolve_path(text, "source")
        if path in given:
            raise UserError(f"{text}: the same source is given twice ({given[path]} is {path})")
        outer = next((g for g in given if g in path.parents or path in g.parents), None)
        if outer is not None:
            inner, container = (path, outer) if outer in path.parents else (outer, path)
            raise UserError(f"{inner}: this source lies inside the other source {container}; give only one of them")
        given[path] = text
    files: list[SourceFile] = []
    for path, text in given.items():
        if path.is_dir():
            folder = Path(os.path.abspath(os.path.expanduser(text))).name or path.name  # the name as given
            for full in _walk(path):
                name = full.name
                if name.lower().endswith(".zip"):
                    files.extend(_zip_members(full, path))
                elif not name.startswith("."):
                    files.append(SourceFile(rel=full.relative_to(path).as_posix(), path=str(full), folder=folder,
                                            source=str(path)))
        elif path.exists():
            files.extend(_zip_members(path, path))
        else:
            raise UserError(f"{path}: no such file or folder")
    return sorted(files)


def source_locations(files: Iterable[SourceFile], sources: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """``(read, folders)``: the real location of every file (its archive for members) and every real folder a
    plain file was found in, plus the given ``sources``; symbolic links followed. The converter's output must lie
    outside all of them, and none of ``read`` inside what it writes or removes."""
    read: set[Path] = set(sources)
    folders: set[Path] = {s for s in sources if s.is_dir()}
    for f in files:
        if f.archive is None:
            read.add(Path(f.path).resolve())
            folders.add(Path(f.path).parent.resolve())
        else:
            read.add(Path(f.archive).resolve())
    return sorted(read), sorted(folders)
