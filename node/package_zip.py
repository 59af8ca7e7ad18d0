"""The canonical package zip: the one form of an exhibit package as a zip (docs/design/exhibits.md
section 7; read and checked by ``federation.verify_package.ZipSource``).

One top-level folder (the package folder's base name), every regular file under it as one
entry sorted by UTF-8 name bytes, no directory entries; evidence STORED, text DEFLATED (raw
deflate, level 9); general purpose flags 0x0800, time and date 1980-01-01 00:00:00, version
made by 0x033F (Unix, 6.3), version needed 45, external attributes ``0o100644 << 16``;
every size and offset in the Zip64 extra field (the only extra field) and a Zip64 end of
central directory record and locator before a classic end record with maxed fields; no
comment, no data descriptor, no byte before the first local header, between records or
after the end record.

Contents are streamed in 1 MiB pieces: memory does not depend on file sizes. A local header
needs the CRC-32 and the sizes before the data, so each file is read twice: a stored file
once for its CRC-32 and once to copy it (its CRC-32 and size must come out the same); a
deflated file is compressed once into a temporary spool (memory up to 8 MiB, then a
temporary file), checked by the reader's own inflate, then copied. A file whose deflated
form the reader would refuse (over the ratio limit: a very repetitive text) is stored.

The same folder gives byte-identical zips (with the same zlib).
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from federation.verify_package import (
    CANONICAL_DATE,
    CANONICAL_EXTERNAL,
    CANONICAL_FLAGS,
    CANONICAL_MADE_BY,
    CANONICAL_NEEDED,
    CANONICAL_TIME,
    CENTRAL_SIG,
    CHUNK,
    EOCD_SIG,
    LOCAL_SIG,
    MAX_RATIO,
    RATIO_SLACK,
    ZIP64_EOCD_SIG,
    ZIP64_EXTRA,
    ZIP64_LOCATOR_SIG,
    ZIP_DEFLATED,
    ZIP_STORED,
    FolderSource,
    PackageError,
    inflate,
    show,
)

SPOOL_MEMORY = 8 * 1024 * 1024  # a deflated file's spool stays in memory up to this size
_MAX16 = 0xFFFF
_MAX32 = 0xFFFFFFFF


def _local_header(name: bytes, method: int, crc: int, usize: int, csize: int) -> bytes:
    extra = struct.pack("<HHQQ", ZIP64_EXTRA, 16, usize, csize)
    head = struct.pack(
        "<IHHHHHIIIHH",
        LOCAL_SIG,
        CANONICAL_NEEDED,
        CANONICAL_FLAGS,
        method,
        CANONICAL_TIME,
        CANONICAL_DATE,
        crc,
        _MAX32,
        _MAX32,
        len(name),
        len(extra),
    )
    return head + name + extra


def _central_header(
    name: bytes, method: int, crc: int, usize: int, csize: int, offset: int
) -> bytes:
    extra = struct.pack("<HHQQQ", ZIP64_EXTRA, 24, usize, csize, offset)
    head = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        CENTRAL_SIG,
        CANONICAL_MADE_BY,
        CANONICAL_NEEDED,
        CANONICAL_FLAGS,
        method,
        CANONICAL_TIME,
        CANONICAL_DATE,
        crc,
        _MAX32,
        _MAX32,
        len(name),
        len(extra),
        0,  # comment length
        0,  # disk number start
        0,  # internal attributes
        CANONICAL_EXTERNAL,
        _MAX32,
    )
    return head + name + extra


def _end_records(count: int, cd_offset: int, cd_size: int) -> bytes:
    zip64_offset = cd_offset + cd_size
    zip64_eocd = struct.pack(
        "<IQHHIIQQQQ",
        ZIP64_EOCD_SIG,
        44,  # size of the record after this field: no extensible data
        CANONICAL_MADE_BY,
        CANONICAL_NEEDED,
        0,
        0,
        count,
        count,
        cd_size,
        cd_offset,
    )
    locator = struct.pack("<IIQI", ZIP64_LOCATOR_SIG, 0, zip64_offset, 1)
    eocd = struct.pack("<IHHHHIIH", EOCD_SIG, 0, 0, _MAX16, _MAX16, _MAX32, _MAX32, 0)
    return zip64_eocd + locator + eocd


class _Counted:
    """A pass over one file's content: its CRC-32 and size, piece by piece."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = pieces
        self.crc = 0
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces:
            self.crc = zlib.crc32(piece, self.crc)
            self.size += len(piece)
            yield piece


def _spool_pieces(spool: IO[bytes]) -> Iterator[bytes]:
    spool.seek(0)
    while piece := spool.read(CHUNK):
        yield piece


def _deflate(src: FolderSource, rel: str, name: str, size: int, spool: IO[bytes]) -> int | None:
    """Deflate ``rel`` into ``spool``: its CRC-32, or None when it must be stored instead."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    content = _Counted(src.chunks(rel, size + 1))
    for piece in content:
        spool.write(comp.compress(piece))
    spool.write(comp.flush())
    if content.size != size:
        raise PackageError(f"{show(rel)}: changed while being written ({content.size} bytes)")
    csize = spool.tell()
    if size > MAX_RATIO * csize + RATIO_SLACK:
        return None
    try:
        for _ in inflate(_spool_pieces(spool), size, size + 1, content.crc, name):
            pass
    except PackageError:
        return None  # a deflate stream the reader would refuse (never seen): store the file
    return content.crc


def _write_entries(src: FolderSource, f: IO[bytes], store: Callable[[str], bool]) -> bytes:
    """Every local record, in order; the central directory they need."""
    central = bytearray()
    count = 0
    for rel in src.paths():
        name = f"{src.name}/{rel}"
        raw_name = name.encode("utf-8")
        size = src.size(rel)
        offset = f.tell()
        crc: int | None = None
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
            if not store(rel):
                crc = _deflate(src, rel, name, size, spool)
            if crc is not None:
                csize = spool.tell()
                f.write(_local_header(raw_name, ZIP_DEFLATED, crc, size, csize))
                for piece in _spool_pieces(spool):
                    f.write(piece)
                method = ZIP_DEFLATED
            else:
                first = _Counted(src.chunks(rel, size + 1))
                for _ in first:
                    pass
                crc, csize = first.crc, size
                f.write(_local_header(raw_name, ZIP_STORED, crc, size, size))
                second = _Counted(src.chunks(rel, size + 1))
                for piece in second:
                    f.write(piece)
                if (first.size, second.size, second.crc) != (size, size, crc):
                    raise PackageError(f"{show(rel)}: changed while being written")
                method = ZIP_STORED
        central += _central_header(raw_name, method, crc, size, csize, offset)
        count += 1
    if count == 0:
        raise PackageError(f"{show(src.name)}: no files (a package holds at least one)")
    return bytes(central)


def write_canonical_zip(folder: Path, out: Path, *, store: Callable[[str], bool]) -> None:
    """Write the canonical zip of ``folder`` to ``out`` (which must not exist).

    ``store(relative_path)`` says which files are STORED (evidence, read back as raw byte
    ranges) rather than DEFLATED (text). The folder is read by the verifier's own
    ``FolderSource``: links, special files and bad names are refused with its
    ``PackageError``. Written to ``out`` + ".partial", flushed, fsynced, then renamed.
    """
    if os.path.lexists(out):
        raise FileExistsError(f"{out}: already exists")
    partial = out.with_name(out.name + ".partial")
    with FolderSource(str(folder)) as src:
        root = Path(folder).resolve()
        if root == partial.parent.resolve() or root in partial.parent.resolve().parents:
            raise ValueError(f"{out}: inside the folder it packs")
        if os.path.lexists(partial):
            os.unlink(partial)  # left by an interrupted write
        try:
            with open(partial, "xb") as f:
                central = _write_entries(src, f, store)
                cd_offset = f.tell()
                f.write(central)
                f.write(_end_records(len(src.paths()), cd_offset, len(central)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, out)
        except BaseException:
            if os.path.lexists(partial):
                os.unlink(partial)
            raise
    _fsync_folder(out.parent)


def _fsync_folder(path: Path) -> None:
    """Make the rename durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
