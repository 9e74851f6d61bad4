"""Reading source files as data: only regular files (a named pipe, device or socket could block or never end), each
with a size bound before it is read whole; zip members are streamed with a bound per member and per archive.

Sizes are in bytes. A zip member's bytes read must equal its declared size (Python's zipfile stops at the declared
size and checks the CRC), and the declared sizes of an archive's members are bounded in total, so what is read from
one archive is bounded whatever its headers claim.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO

from nnunet_se.errors import UserError

MAX_FILE_BYTES = 256 * 2**20
"""Largest image or mask file (or uncompressed zip member): 256 MiB, e.g. an uncompressed 8192x8192 RGB TIFF is
192 MiB; the largest official ISIC 2018 JPEG is under 20 MiB."""
MAX_ARCHIVE_BYTES = 64 * 2**30
"""Largest uncompressed total an archive may declare: 64 GiB (the official ISIC 2018 training input is ~11 GiB)."""
CHUNK_BYTES = 2**20

_KINDS = {
    stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder",
}


def mib(n: int) -> str:
    """A bound for messages: ``256 MiB``, or ``1000 bytes`` when not a whole number of MiB."""
    return f"{n // 2**20} MiB" if n and n % 2**20 == 0 else f"{n} bytes"


def kind_of(mode: int) -> str:
    """``a regular file``, ``a named pipe``, ... for an ``st_mode``."""
    return "a regular file" if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "a special file")


def check_regular(st: os.stat_result, display: str, limit: int | None) -> None:
    """Raise :class:`UserError` unless ``st`` is a regular file of at most ``limit`` bytes (None: no bound)."""
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{display}: not a regular file ({kind_of(st.st_mode)}); only regular files are read")
    if limit is not None and st.st_size > limit:
        raise UserError(f"{display}: {st.st_size} bytes, more than the {mib(limit)} a source file may have")


def open_regular(path: str | Path, display: str, limit: int | None) -> BinaryIO:
    """``path`` opened for binary reading, after checking (stat, then fstat of the open descriptor) that it is a
    regular file of at most ``limit`` bytes. Opened with ``O_NONBLOCK``, so a named pipe put in its place between
    the two checks cannot block the open."""
    check_regular(os.stat(path), display, limit)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        check_regular(os.fstat(fd), display, limit)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_stream(stream: BinaryIO, display: str, limit: int, expected: int | None = None) -> bytes:
    """Read ``stream`` to its end in chunks, refusing more than ``limit`` bytes (counted as read, whatever was
    declared) and, with ``expected``, any other length."""
    chunks, total = [], 0
    while chunk := stream.read(min(CHUNK_BYTES, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise UserError(f"{display}: more than the {mib(limit)} a source file may have")
    if expected is not None and total != expected:
        raise UserError(f"{display}: {total} bytes read, {expected} declared (damaged archive)")
    return b"".join(chunks)


def read_file(path: str | Path, display: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default :data:`MAX_FILE_BYTES`, read when called)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    with open_regular(path, display, limit) as fh:
        return read_stream(fh, display, limit)


def open_zip(path: str | Path) -> zipfile.ZipFile:
    """A zip archive from a regular file (no size bound on the archive itself: it is never read whole); its
    members' declared sizes must stay within :data:`MAX_FILE_BYTES` each and :data:`MAX_ARCHIVE_BYTES` in total."""
    fh = open_regular(path, str(path), limit=None)
    try:
        archive = zipfile.ZipFile(fh)
    except BaseException:
        fh.close()
        raise
    total = sum(info.file_size for info in archive.infolist())
    if total > MAX_ARCHIVE_BYTES:
        archive.close()
        raise UserError(f"{path}: the archive declares {total} bytes uncompressed, more than the "
                        f"{mib(MAX_ARCHIVE_BYTES)} allowed")
    return archive


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, display: str) -> bytes:
    """A member's bytes, streamed: refused if it declares more than :data:`MAX_FILE_BYTES`, or if the bytes
    actually read exceed that or differ from its declared size."""
    if info.file_size > MAX_FILE_BYTES:
        raise UserError(f"{display}: declares {info.file_size} bytes uncompressed, more than the "
                        f"{mib(MAX_FILE_BYTES)} a source file may have")
    with archive.open(info) as stream:
        return read_stream(stream, display, MAX_FILE_BYTES, expected=info.file_size)
