"""The standalone verifier of exhibit packages (format: docs/exhibit-package.md).

This one file ships inside every exhibit package and runs offline: it uses only the Python
standard library (Python 3.9 or later) and imports nothing else, so a court, an opposing
party or anyone else can check a package with a plain Python installation.

Section 1, the container, reads a package from its folder or from its canonical zip. A zip
is read in place and never extracted: nothing is ever written. Every structure of the zip
is parsed here (the standard library's ``zipfile`` is too lenient to be trusted with a
hostile file), and anything that is not exactly the canonical form the exporter writes is
refused with a ``PackageError`` naming the entry and the rule, before any entry content is
read. Messages name a zip entry by its whole name (top folder first) and a folder's file
by its path under the folder, with control and other unprintable characters escaped.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import stat
import struct
import sys
import unicodedata
import zlib
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, BinaryIO, TypeVar

# --- 1. container ---

MAX_ENTRIES = 100_000  # files in a package (zip entries or regular files in the folder)
MAX_NAME_BYTES = 1024  # UTF-8 bytes of a whole name, the top folder included
MAX_SEGMENT_BYTES = 255  # UTF-8 bytes of one segment of a name
MAX_RATIO = 100  # a deflated entry expands at most this many times its compressed size
RATIO_SLACK = 1024  # ... plus this many bytes (tiny files)
CHUNK = 1024 * 1024  # every read of content is at most this many bytes

# The canonical package zip (what node/package_zip.py writes; docs/exhibit-package.md).
ZIP_STORED = 0
ZIP_DEFLATED = 8
CANONICAL_FLAGS = 0x0800  # bit 11: names are UTF-8
CANONICAL_TIME = 0  # 00:00:00
CANONICAL_DATE = 0x0021  # 1980-01-01
CANONICAL_MADE_BY = 0x033F  # host 3 (Unix), version 6.3
CANONICAL_NEEDED = 45  # version 4.5: Zip64
CANONICAL_EXTERNAL = 0o100644 << 16  # a regular file, rw-r--r--
ZIP64_EXTRA = 0x0001

LOCAL_SIG = 0x04034B50
CENTRAL_SIG = 0x02014B50
EOCD_SIG = 0x06054B50
ZIP64_EOCD_SIG = 0x06064B50
ZIP64_LOCATOR_SIG = 0x07064B50

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_EOCD = struct.Struct("<IHHHHIIH")  # 22 bytes
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes
_ZIP64_EOCD_RECORD_SIZE = _ZIP64_EOCD.size - 12  # "size of record": no extensible data
_MAX16 = 0xFFFF
_MAX32 = 0xFFFFFFFF

_FLAG_ENCRYPTED = 0x0001
_FLAG_DATA_DESCRIPTOR = 0x0008
_FLAG_STRONG_ENCRYPTION = 0x0040
_UNIX_HOST = 3
_DOS_DIRECTORY = 0x10


class PackageError(Exception):
    """The package as a whole cannot be read: the message names the entry and the rule."""


def show(name: str) -> str:
    """``name`` as messages print it: unprintable characters and ``\\`` escaped as repr does.

    Bytes that were not valid UTF-8 (held as lone surrogates, ``surrogateescape``) show as
    ``\\xNN``; control, format (bidirectional overrides), separator and other unprintable
    characters as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``.
    """
    out = []
    for ch in name:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


def _is_control(ch: str) -> bool:
    o = ord(ch)
    return o <= 0x1F or 0x7F <= o <= 0x9F


def name_problem(name: str) -> str | None:
    """The rule a package name breaks, or None: the name rules of zip entries and of files.

    ``name`` is a whole name, the top folder first (``DOE-2026-exhibits/index/a.csv``) or
    one segment. Bytes that were not valid UTF-8 are lone surrogates (``surrogateescape``).
    """
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if name.endswith("/"):
        return "a directory entry (a name ending in '/'), not a file"
    if name.startswith("/"):
        return "an absolute name (starting with '/')"
    if len(name) >= 2 and name[1] == ":" and name[0].isascii() and name[0].isalpha():
        return "a drive letter"
    if "\\" in name:
        return "a backslash in the name"
    if any(_is_control(ch) for ch in name):
        return "a control character in the name"
    for segment in name.split("/"):
        if segment == "":
            return "an empty segment ('//')"
        if segment in (".", ".."):
            return f"a '{segment}' segment"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"a segment over {MAX_SEGMENT_BYTES} bytes"
    if not unicodedata.is_normalized("NFC", name):
        return "not NFC (Unicode normalization form C)"
    if len(encoded) > MAX_NAME_BYTES:
        return f"a name over {MAX_NAME_BYTES} bytes"
    return None


def _fold(name: str) -> str:
    """Canonical caseless form: two names equal here are the same file somewhere."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def _utf8_key(name: str) -> bytes:
    return name.encode("utf-8")


def _not_regular(mode: int) -> str | None:
    """What a file mode is when it is not a regular file, else None."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return f"a special file (mode 0o{stat.S_IFMT(mode):o})"


def _check_unique(names: Iterable[str], label: str) -> None:
    """Refuse two names equal after NFC and case folding (duplicates and case-duplicates)."""
    seen: dict[str, str] = {}
    for n in names:
        key = _fold(n)
        other = seen.get(key)
        if other is not None:
            if other == n:
                raise PackageError(f"{show(n)}: a duplicate {label}")
            raise PackageError(
                f"{show(other)} and {show(n)}: the same {label} after NFC and case folding"
            )
        seen[key] = n


_S = TypeVar("_S", bound="Source")


class Source(abc.ABC):
    """A package being read: its top folder's files by relative POSIX path.

    ``paths()`` lists every regular file under the top folder, sorted by UTF-8 bytes;
    ``size`` is a file's size (the stated size for a zip entry); ``read`` returns a whole
    file of at most ``limit`` bytes; ``sha256`` streams one, reading at most ``size + 1``
    bytes, and says how many it read. Every failure is a ``PackageError``.
    """

    name: str
    kind: str

    def __init__(self) -> None:
        self._paths: list[str] = []

    def paths(self) -> list[str]:
        return list(self._paths)

    @abc.abstractmethod
    def size(self, path: str) -> int: ...

    @abc.abstractmethod
    def chunks(self, path: str, cap: int) -> Iterator[bytes]:
        """The content of ``path`` in pieces of at most 1 MiB, at most ``cap`` bytes in all.

        It stops at ``cap`` bytes unchecked (the caller sees a file longer than it expects);
        else the whole content, checked (for a zip entry: exactly the stated size).
        """

    def read(self, path: str, limit: int) -> bytes:
        size = self.size(path)
        if size > limit:
            raise PackageError(f"{show(path)}: {size} bytes, over the limit of {limit}")
        data = bytearray()
        for piece in self.chunks(path, limit + 1):
            data += piece
        if len(data) > limit:
            raise PackageError(f"{show(path)}: over the limit of {limit} bytes")
        return bytes(data)

    def sha256(self, path: str, size: int) -> tuple[str, int]:
        h = hashlib.sha256()
        n = 0
        for piece in self.chunks(path, size + 1):
            h.update(piece)
            n += len(piece)
        return h.hexdigest(), n

    def close(self) -> None:
        return None  # a folder holds nothing open between reads

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# Flags opening a file never follows a last-component link nor blocks (a FIFO swapped in).
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
)
_REPARSE_POINT = 0x400  # FILE_ATTRIBUTE_REPARSE_POINT (Windows links and junctions)


def _scan(path: str, rel: str) -> Iterator[os.DirEntry[str]]:
    """The entries of one folder, one at a time (never all of a huge folder at once)."""
    try:
        with os.scandir(path) as it:
            while True:
                entry = next(it, None)
                if entry is None:
                    return
                yield entry
    except OSError as e:
        raise PackageError(f"{show(rel or '.')}: the folder cannot be read ({e.strerror})") from e


@dataclass
class _FolderFile:
    size: int
    dev: int
    ino: int


class FolderSource(Source):
    """A package as a folder: the folder itself is the top folder (``name`` its base name).

    Walked once with ``os.scandir``, never following links: a symbolic link, device, FIFO
    or socket anywhere under it is refused, and so is a name breaking the zip entries'
    rules. Each file is opened without following a link and must still be the regular
    file the walk found.
    """

    kind = "folder"

    def __init__(self, root: str) -> None:
        super().__init__()
        self._root = os.path.abspath(root)
        self.name = os.path.basename(self._root)
        problem = name_problem(self.name)
        if problem is not None:
            raise PackageError(f"{show(self.name)}: the top folder's name: {problem}")
        self._files: dict[str, _FolderFile] = {}
        self._walk()
        self._paths = sorted(self._files, key=_utf8_key)
        _check_unique(self._paths, "path")

    def _walk(self) -> None:
        folders = 0
        stack: list[tuple[str, str]] = [("", self._root)]
        while stack:
            rel_dir, path = stack.pop()
            for entry in _scan(path, rel_dir):
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as e:
                    raise PackageError(f"{show(rel)}: cannot be read ({e.strerror})") from e
                kind = _not_regular(st.st_mode)
                if getattr(st, "st_file_attributes", 0) & _REPARSE_POINT:
                    kind = "a link (a reparse point)"
                if kind is None:
                    self._files[rel] = _FolderFile(st.st_size, st.st_dev, st.st_ino)
                    if len(self._files) > MAX_ENTRIES:
                        raise PackageError(f"{show(rel)}: more than {MAX_ENTRIES} files")
                elif kind == "a directory":
                    folders += 1
                    if folders > MAX_ENTRIES:
                        raise PackageError(f"{show(rel)}: more than {MAX_ENTRIES} folders")
                    stack.append((rel, entry.path))
                else:
                    raise PackageError(f"{show(rel)}: {kind}, not a regular file")
                problem = name_problem(f"{self.name}/{rel}")
                if problem is not None:
                    raise PackageError(f"{show(rel)}: {problem}")

    def _file(self, path: str) -> _FolderFile:
        info = self._files.get(path)
        if info is None:
            raise PackageError(f"{show(path)}: no such file in the package")
        return info

    def size(self, path: str) -> int:
        return self._file(path).size

    def _open(self, path: str) -> BinaryIO:
        info = self._file(path)
        full = os.path.join(self._root, *path.split("/"))
        try:
            fd = os.open(full, _OPEN_FLAGS)
        except OSError as e:
            raise PackageError(f"{show(path)}: cannot be opened ({e.strerror})") from e
        try:
            st = os.fstat(fd)
            kind = _not_regular(st.st_mode)
            if kind is not None:
                raise PackageError(f"{show(path)}: {kind}, not a regular file")
            if info.ino and st.st_ino and (st.st_dev, st.st_ino) != (info.dev, info.ino):
                raise PackageError(f"{show(path)}: replaced since the folder was walked")
            return os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise

    def chunks(self, path: str, cap: int) -> Iterator[bytes]:
        with self._open(path) as f:
            left = cap
            while left > 0:
                try:
                    piece = f.read(min(CHUNK, left))
                except OSError as e:
                    raise PackageError(f"{show(path)}: cannot be read ({e.strerror})") from e
                if not piece:
                    return
                left -= len(piece)
                yield piece


@dataclass
class _Entry:
    """One zip entry as its central directory record states it."""

    name: str
    raw_name: bytes
    made_by: int
    needed: int
    flags: int
    method: int
    time: int
    date: int
    crc: int
    csize32: int
    usize32: int
    disk16: int
    internal: int
    external: int
    offset32: int
    extra: bytes
    comment: bytes
    usize: int = 0
    csize: int = 0
    offset: int = 0
    local_end: int = 0  # one past the local record (header, name, extra, data)
    data_offset: int = 0


def _extras(data: bytes, name: str, where: str) -> list[tuple[int, bytes]]:
    """The extra fields of a header: (id, data), each id once, the bytes exactly tiled."""
    fields: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise PackageError(f"{show(name)}: a malformed extra field in the {where}")
        tag, n = struct.unpack_from("<HH", data, pos)
        if pos + 4 + n > len(data):
            raise PackageError(f"{show(name)}: a malformed extra field in the {where}")
        if any(t == tag for t, _ in fields):
            raise PackageError(f"{show(name)}: extra field 0x{tag:04x} twice in the {where}")
        fields.append((tag, data[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return fields


def _zip64_values(
    fields: list[tuple[int, bytes]], wanted: list[tuple[int, int, int]], name: str, where: str
) -> list[int]:
    """Resolve header fields set to their maximum from the Zip64 extra field.

    ``wanted`` holds (value, its field's maximum, its width in the extra field) in the
    extra field's order (size, compressed size, local header offset, disk); the extra
    field must hold exactly the maxed ones.
    """
    data = b""
    present = False
    for tag, content in fields:
        if tag == ZIP64_EXTRA:
            data, present = content, True
    need = sum(width for value, mx, width in wanted if value == mx)
    if need and not present:
        raise PackageError(f"{show(name)}: Zip64 values missing from the {where}")
    if len(data) != need:
        raise PackageError(
            f"{show(name)}: a Zip64 extra field of {len(data)} bytes in the {where}, "
            f"{need} expected"
        )
    out: list[int] = []
    pos = 0
    for value, mx, width in wanted:
        if value == mx:
            fmt = "<Q" if width == 8 else "<I"
            out.append(struct.unpack_from(fmt, data, pos)[0])
            pos += width
        else:
            out.append(value)
    return out


def _last_byte_apart(pieces: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The same bytes, the very last one alone in its own piece (flagged True)."""
    held = b""
    for piece in pieces:
        if not piece:
            continue
        if held:
            yield held, False
        held = piece
    if held:
        if len(held) > 1:
            yield held[:-1], False
        yield held[-1:], True


def inflate(
    compressed: Iterable[bytes], size: int, cap: int, crc: int, name: str
) -> Iterator[bytes]:
    """Raw deflate data decompressed incrementally, in pieces of at most 1 MiB.

    Never produces more than ``min(cap, size + 1)`` bytes. When ``cap <= size`` it stops
    after ``cap`` bytes unchecked; else the whole stream is checked: a complete deflate
    stream, nothing after its end, exactly ``size`` bytes, CRC-32 ``crc``, and zero
    padding bits after its last block (so no bit of it can change unnoticed).
    """
    bound = min(cap, size + 1)
    if bound <= 0:
        return
    d = zlib.decompressobj(-15)
    produced = 0
    running = 0
    last_byte = -1
    before_last: zlib._Decompress | None = None
    tail = bytearray()  # what the last byte decompressed to
    for piece, last in _last_byte_apart(compressed):
        if d.eof:
            raise PackageError(f"{show(name)}: compressed bytes after the end of the deflate data")
        if last:
            # Every earlier byte is consumed and its output drained (below): the state
            # copied here is the stream just before its last byte.
            last_byte = piece[0]
            before_last = d.copy()
        data = piece
        while True:
            want = min(CHUNK, bound - produced)
            try:
                out = d.decompress(data, want)
            except zlib.error as e:
                raise PackageError(f"{show(name)}: invalid deflate data ({e})") from e
            if not out and d.unconsumed_tail == data and data and not d.eof:
                raise PackageError(f"{show(name)}: invalid deflate data (no progress)")
            data = d.unconsumed_tail
            if out:
                produced += len(out)
                if produced > size:
                    raise PackageError(
                        f"{show(name)}: decompresses to more than the stated {size} bytes"
                    )
                running = zlib.crc32(out, running)
                if before_last is not None:
                    tail += out
                yield out
                if produced >= bound:
                    return  # cap <= size: stopped at cap, unchecked
            if not data and len(out) < want:
                break
    if not d.eof:
        raise PackageError(f"{show(name)}: not a complete deflate stream")
    if d.unused_data:
        raise PackageError(f"{show(name)}: compressed bytes after the end of the deflate data")
    if produced != size:
        raise PackageError(f"{show(name)}: decompresses to {produced} bytes, {size} stated")
    if running != crc:
        raise PackageError(f"{show(name)}: CRC-32 {running:08x} of the content, {crc:08x} stated")
    if before_last is not None and last_byte > 0:
        # Padding bits follow the last block in the high bits of the last byte; inflate
        # ignores them. Clearing the highest set bit: if the stream still ends there with
        # the same output, that bit was padding, and padding must be zero.
        probe = last_byte & ~(1 << (last_byte.bit_length() - 1))
        try:
            again = before_last.decompress(bytes([probe]), CHUNK)
        except zlib.error:
            return
        if before_last.eof and not before_last.unused_data and again == bytes(tail):
            raise PackageError(f"{show(name)}: non-zero padding bits after the deflate data")


class ZipSource(Source):
    """A package as its canonical zip, read in place: see the module's docstring.

    Opening parses and checks every header (central directory, local headers, end
    records) and refuses anything but the canonical form; no content is read until
    ``read``, ``sha256`` or ``chunks`` asks for it. Stored entries are read as raw byte
    ranges (no CRC-32: the verifier compares SHA-256); deflated entries are decompressed
    incrementally with their CRC-32 checked.
    """

    kind = "zip"

    def __init__(self, path: str) -> None:
        super().__init__()
        self._label = os.path.basename(path) or path
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as e:
            raise PackageError(f"{show(self._label)}: cannot be opened ({e.strerror})") from e
        try:
            st = os.fstat(fd)
            kind = _not_regular(st.st_mode)
            if kind is not None:
                raise PackageError(f"{show(self._label)}: {kind}, not a zip file")
            self._f = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        try:
            self._file_size = st.st_size
            self._entries: dict[str, _Entry] = {}
            self.name = ""
            self._parse()
        except BaseException:
            self._f.close()
            raise

    def close(self) -> None:
        self._f.close()

    # -- reading bytes of the file

    def _pread(self, offset: int, n: int) -> bytes:
        """Exactly ``n`` bytes at ``offset`` (n is small or bounded by the caller)."""
        if offset < 0 or offset + n > self._file_size:
            raise PackageError(f"{show(self._label)}: truncated (a header past the end)")
        self._f.seek(offset)
        data = self._f.read(n)
        if len(data) != n:
            raise PackageError(f"{show(self._label)}: truncated (changed while being read?)")
        return data

    def _range(self, offset: int, n: int) -> Iterator[bytes]:
        while n > 0:
            piece = self._pread(offset, min(CHUNK, n))
            offset += len(piece)
            n -= len(piece)
            yield piece

    # -- parsing

    def _bad(self, what: str) -> PackageError:
        return PackageError(f"{show(self._label)}: {what}")

    def _parse(self) -> None:
        size = self._file_size
        if size < _EOCD.size:
            raise self._bad(f"not a zip file ({size} bytes, too short)")
        tail_len = min(size, _EOCD.size + _MAX16)
        tail = self._pread(size - tail_len, tail_len)
        at = tail.rfind(b"PK\x05\x06", 0, tail_len - _EOCD.size + 4)
        if at < 0:
            raise self._bad("not a zip file (no end of central directory record)")
        eocd_pos = size - tail_len + at
        (_, disk, cd_disk, n_disk, n_total, cd_size32, cd_offset32, comment_len) = (
            _EOCD.unpack_from(tail, at)
        )
        if comment_len:
            raise self._bad(f"a zip comment ({comment_len} bytes)")
        if eocd_pos + _EOCD.size != size:
            raise self._bad(
                f"{size - eocd_pos - _EOCD.size} trailing bytes after the end of "
                "central directory record"
            )
        if disk or cd_disk or n_disk != n_total:
            raise self._bad("several disks (a split or spanned zip)")
        classic = (n_disk, n_total, cd_size32, cd_offset32)

        zip64: tuple[int, ...] | None = None
        locator: tuple[int, ...] | None = None
        loc_pos = eocd_pos - _ZIP64_LOCATOR.size
        if loc_pos >= 0 and self._pread(loc_pos, 4) == b"PK\x06\x07":
            locator = _ZIP64_LOCATOR.unpack(self._pread(loc_pos, _ZIP64_LOCATOR.size))
            _, z_disk, z_offset, disks = locator
            if z_disk or disks != 1:
                raise self._bad("several disks (a split or spanned zip)")
            if z_offset + _ZIP64_EOCD.size > loc_pos:
                raise self._bad("the Zip64 end of central directory record is out of place")
            zip64 = _ZIP64_EOCD.unpack(self._pread(z_offset, _ZIP64_EOCD.size))
            (sig, rec_size, _, _, z_disk, z_cd_disk, z_n_disk, z_n_total, cd_size, cd_offset) = (
                zip64
            )
            if sig != ZIP64_EOCD_SIG:
                raise self._bad("no Zip64 end of central directory record where the locator says")
            if z_disk or z_cd_disk or z_n_disk != z_n_total:
                raise self._bad("several disks (a split or spanned zip)")
            if z_offset + 12 + rec_size != loc_pos:
                raise self._bad(
                    "bytes between the Zip64 end of central directory record and its locator"
                )
            for narrow, wide, mx in (
                (n_total, z_n_total, _MAX16),
                (cd_size32, cd_size, _MAX32),
                (cd_offset32, cd_offset, _MAX32),
            ):
                if narrow not in (mx, wide):
                    raise self._bad("the end of central directory records disagree")
            n_total = z_n_total
            cd_end = z_offset
        else:
            if _MAX16 in (n_disk, n_total) or _MAX32 in (cd_size32, cd_offset32):
                raise self._bad("the Zip64 end of central directory locator is missing")
            cd_size, cd_offset = cd_size32, cd_offset32
            cd_end = eocd_pos
        if n_total > MAX_ENTRIES:
            raise self._bad(f"more than {MAX_ENTRIES} entries ({n_total})")
        if n_total == 0:
            raise self._bad("no entries (an empty zip)")
        if cd_offset + cd_size > cd_end:
            raise self._bad("the central directory runs past its end record")
        if cd_offset + cd_size != cd_end:
            raise self._bad(
                f"{cd_end - cd_offset - cd_size} bytes between the central directory "
                "and its end record"
            )

        entries = self._central(cd_offset, cd_size, n_total)
        self._tree(entries)
        self._locals(entries, cd_offset)
        self._canonical(entries, zip64, locator, classic)
        top = len(self.name) + 1
        for e in entries:
            self._entries[e.name[top:]] = e
        self._paths = [e.name[top:] for e in entries]  # sorted (checked canonical)

    def _central(self, cd_offset: int, cd_size: int, n: int) -> list[_Entry]:
        """Every central directory record, each checked on its own."""
        entries: list[_Entry] = []
        pos = cd_offset
        end = cd_offset + cd_size
        for _ in range(n):
            if pos + _CENTRAL.size > end:
                raise self._bad("the central directory is shorter than its entry count says")
            fields = _CENTRAL.unpack(self._pread(pos, _CENTRAL.size))
            (sig, made_by, needed, flags, method, time, date, crc) = fields[:8]
            (csize32, usize32, name_len, extra_len, comment_len) = fields[8:13]
            (disk16, internal, external, offset32) = fields[13:]
            if sig != CENTRAL_SIG:
                raise self._bad(f"no central directory record at offset {pos}")
            var_end = pos + _CENTRAL.size + name_len + extra_len + comment_len
            if var_end > end:
                raise self._bad("a central directory record runs past the central directory")
            var = self._pread(pos + _CENTRAL.size, name_len + extra_len + comment_len)
            raw_name = var[:name_len]
            name = raw_name.decode("utf-8", "surrogateescape")
            e = _Entry(
                name=name,
                raw_name=raw_name,
                made_by=made_by,
                needed=needed,
                flags=flags,
                method=method,
                time=time,
                date=date,
                crc=crc,
                csize32=csize32,
                usize32=usize32,
                disk16=disk16,
                internal=internal,
                external=external,
                offset32=offset32,
                extra=var[name_len : name_len + extra_len],
                comment=var[name_len + extra_len :],
            )
            self._check_entry(e)
            entries.append(e)
            pos = var_end
        if pos != end:
            raise self._bad(f"{end - pos} bytes in the central directory after its {n} records")
        return entries

    def _check_entry(self, e: _Entry) -> None:
        """One central record's own rules: name, encryption, method, type, sizes."""
        problem = name_problem(e.name)
        if problem is not None:
            raise PackageError(f"{show(e.name)}: {problem}")
        if e.flags & _FLAG_STRONG_ENCRYPTION:
            raise PackageError(f"{show(e.name)}: encrypted (strong encryption)")
        if e.flags & _FLAG_ENCRYPTED:
            raise PackageError(f"{show(e.name)}: encrypted")
        if e.method not in (ZIP_STORED, ZIP_DEFLATED):
            raise PackageError(
                f"{show(e.name)}: compression method {e.method} "
                "(only 0, stored, and 8, deflate, are read)"
            )
        if e.flags & _FLAG_DATA_DESCRIPTOR:
            raise PackageError(f"{show(e.name)}: a data descriptor (general purpose flag bit 3)")
        if e.made_by >> 8 == _UNIX_HOST and stat.S_IFMT(e.external >> 16):
            kind = _not_regular(e.external >> 16)
            if kind is not None:
                raise PackageError(f"{show(e.name)}: {kind}, not a regular file")
        if e.external & _DOS_DIRECTORY:
            raise PackageError(f"{show(e.name)}: a directory, not a regular file")
        if e.comment:
            raise PackageError(f"{show(e.name)}: an entry comment")
        extras = _extras(e.extra, e.name, "central directory")
        if any(tag != ZIP64_EXTRA for tag, _ in extras):
            # Refused here, not with the other canonical rules: memory stays bounded.
            raise PackageError(
                f"{show(e.name)}: not the canonical package zip: extra fields other than "
                "one Zip64 field"
            )
        e.usize, e.csize, e.offset, disk = _zip64_values(
            extras,
            [
                (e.usize32, _MAX32, 8),
                (e.csize32, _MAX32, 8),
                (e.offset32, _MAX32, 8),
                (e.disk16, _MAX16, 4),
            ],
            e.name,
            "central directory",
        )
        if disk:
            raise PackageError(f"{show(e.name)}: on another disk (a split or spanned zip)")
        if e.method == ZIP_STORED and e.csize != e.usize:
            raise PackageError(
                f"{show(e.name)}: stored, but its compressed size {e.csize} is not its "
                f"size {e.usize}"
            )
        if e.method == ZIP_DEFLATED and e.usize > MAX_RATIO * e.csize + RATIO_SLACK:
            raise PackageError(
                f"{show(e.name)}: deflated from {e.usize} to {e.csize} bytes, over the "
                f"{MAX_RATIO}:1 ratio (a ratio bomb)"
            )

    def _tree(self, entries: list[_Entry]) -> None:
        """One top folder holding every entry; no two names the same up to case."""
        top = entries[0].name.split("/", 1)[0]
        for e in entries:
            first, sep, _ = e.name.partition("/")
            if not sep:
                raise PackageError(f"{show(e.name)}: a file at the top level, not in a folder")
            if first != top:
                raise PackageError(
                    f"{show(e.name)}: a second top-level folder ({show(top)} and "
                    f"{show(first)}); a package has one"
                )
        _check_unique((e.name for e in entries), "name")
        self.name = top

    def _locals(self, entries: list[_Entry], cd_offset: int) -> None:
        """Local records: tiling the file up to the central directory, agreeing with it."""
        heads: list[tuple[_Entry, tuple[int, ...]]] = []
        for e in entries:
            if e.offset + _LOCAL.size > cd_offset:
                raise PackageError(
                    f"{show(e.name)}: its local header (offset {e.offset}) is not before "
                    "the central directory"
                )
            head = _LOCAL.unpack(self._pread(e.offset, _LOCAL.size))
            if head[0] != LOCAL_SIG:
                raise PackageError(f"{show(e.name)}: no local header at offset {e.offset}")
            e.data_offset = e.offset + _LOCAL.size + head[9] + head[10]
            e.local_end = e.data_offset + e.csize
            if e.local_end > cd_offset:
                raise PackageError(
                    f"{show(e.name)}: its local record (bytes {e.offset} to {e.local_end}) "
                    f"overlaps the central directory (at {cd_offset})"
                )
            heads.append((e, head))

        by_offset = sorted(entries, key=lambda e: e.offset)
        previous: _Entry | None = None
        for e in by_offset:
            if previous is not None and e.offset < previous.local_end:
                raise PackageError(
                    f"{show(previous.name)} and {show(e.name)}: local records overlap "
                    "(an overlap bomb)"
                )
            if previous is None and e.offset > 0:
                raise PackageError(
                    f"{show(e.name)}: {e.offset} leading bytes before its local record "
                    "(the local records must start the file)"
                )
            if previous is not None and e.offset > previous.local_end:
                raise PackageError(
                    f"{show(previous.name)}: {e.offset - previous.local_end} bytes between "
                    f"its local record and the next ({show(e.name)}): a gap"
                )
            previous = e
        if previous is not None and previous.local_end != cd_offset:
            raise PackageError(
                f"{show(previous.name)}: {cd_offset - previous.local_end} bytes between its "
                "local record and the central directory (a gap)"
            )

        for e, head in heads:
            self._agree(e, head)

    def _agree(self, e: _Entry, head: tuple[int, ...]) -> None:
        """The local header must state what the central record states, field by field."""
        (_, needed, flags, method, time, date, crc, csize32, usize32, name_len, extra_len) = head
        var = self._pread(e.offset + _LOCAL.size, name_len + extra_len)
        local_name, local_extra = var[:name_len], var[name_len:]
        for field, local, central in (
            ("version needed", needed, e.needed),
            ("flags", flags, e.flags),
            ("compression method", method, e.method),
            ("time", time, e.time),
            ("date", date, e.date),
            ("CRC-32", crc, e.crc),
            ("compressed size", csize32, e.csize32),
            ("size", usize32, e.usize32),
            ("name", local_name, e.raw_name),
        ):
            if local != central:
                raise PackageError(
                    f"{show(e.name)}: the local header disagrees with the central "
                    f"directory ({field})"
                )
        local_fields = _extras(local_extra, e.name, "local header")
        central_fields = _extras(e.extra, e.name, "central directory")
        usize, csize = _zip64_values(
            local_fields, [(usize32, _MAX32, 8), (csize32, _MAX32, 8)], e.name, "local header"
        )
        if (usize, csize) != (e.usize, e.csize):
            raise PackageError(
                f"{show(e.name)}: the local header disagrees with the central directory "
                "(Zip64 sizes)"
            )
        others_local = [f for f in local_fields if f[0] != ZIP64_EXTRA]
        others_central = [f for f in central_fields if f[0] != ZIP64_EXTRA]
        has64_local = len(others_local) != len(local_fields)
        has64_central = len(others_central) != len(central_fields)
        if others_local != others_central or has64_local != has64_central:
            raise PackageError(
                f"{show(e.name)}: the local header disagrees with the central directory "
                "(extra fields)"
            )

    def _canonical(
        self,
        entries: list[_Entry],
        zip64: tuple[int, ...] | None,
        locator: tuple[int, ...] | None,
        classic: tuple[int, int, int, int],
    ) -> None:
        """Exactly the form the exporter writes (docs/exhibit-package.md, the zip)."""

        def refuse(name: str, what: str) -> PackageError:
            return PackageError(f"{show(name)}: not the canonical package zip: {what}")

        previous: _Entry | None = None
        for e in entries:
            if previous is not None:
                if _utf8_key(e.name) <= _utf8_key(previous.name):
                    raise refuse(
                        e.name, f"entries not sorted by name (after {show(previous.name)})"
                    )
                if e.offset < previous.offset:
                    raise refuse(e.name, "local records not in the central directory's order")
            previous = e
        for e in entries:
            if e.flags != CANONICAL_FLAGS:
                raise refuse(e.name, f"general purpose flags 0x{e.flags:04x}, not 0x0800")
            if (e.time, e.date) != (CANONICAL_TIME, CANONICAL_DATE):
                raise refuse(
                    e.name,
                    f"time 0x{e.time:04x} and date 0x{e.date:04x}, not 1980-01-01 00:00:00",
                )
            if e.made_by != CANONICAL_MADE_BY:
                raise refuse(e.name, f"version made by 0x{e.made_by:04x}, not 0x033f")
            if e.needed != CANONICAL_NEEDED:
                raise refuse(e.name, f"version needed {e.needed}, not {CANONICAL_NEEDED}")
            if e.external != CANONICAL_EXTERNAL:
                raise refuse(e.name, f"external attributes 0x{e.external:08x}, not 0x81a40000")
            if e.internal:
                raise refuse(e.name, f"internal attributes 0x{e.internal:04x}, not 0")
            if (e.usize32, e.csize32, e.offset32, e.disk16) != (_MAX32, _MAX32, _MAX32, 0):
                raise refuse(e.name, "sizes and offset not in the Zip64 extra field")
            if len(e.extra) != 28 or e.extra[:4] != struct.pack("<HH", ZIP64_EXTRA, 24):
                raise refuse(e.name, "extra fields other than one Zip64 field")
            # The local header agrees (checked): its 32-bit sizes are maxed too, and its
            # only extra field is the Zip64 one (16 bytes, the sizes).
        name = self._label
        if zip64 is None or locator is None:
            raise refuse(name, "no Zip64 end of central directory record")
        if zip64[1] != _ZIP64_EOCD_RECORD_SIZE:
            raise refuse(name, "extensible data in the Zip64 end of central directory record")
        if (zip64[2], zip64[3]) != (CANONICAL_MADE_BY, CANONICAL_NEEDED):
            raise refuse(name, "versions of the Zip64 end of central directory record")
        if classic != (_MAX16, _MAX16, _MAX32, _MAX32):
            raise refuse(name, "counts, size or offset in the end of central directory record")

    # -- the Source interface

    def _entry(self, path: str) -> _Entry:
        e = self._entries.get(path)
        if e is None:
            raise PackageError(f"{show(path)}: no such file in the package")
        return e

    def size(self, path: str) -> int:
        return self._entry(path).usize

    def chunks(self, path: str, cap: int) -> Iterator[bytes]:
        e = self._entry(path)
        if e.method == ZIP_STORED:
            return self._range(e.data_offset, min(e.usize, max(cap, 0)))
        return inflate(self._range(e.data_offset, e.csize), e.usize, cap, e.crc, e.name)


def open_source(path: str | os.PathLike[str]) -> Source:
    """A package from a folder (``FolderSource``) or a zip file (``ZipSource``).

    ``path`` itself may be reached through a link; nothing under it is.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise PackageError(f"{show(path)}: cannot be read ({e.strerror})") from e
    if stat.S_ISDIR(st.st_mode):
        return FolderSource(path)
    if stat.S_ISREG(st.st_mode):
        return ZipSource(path)
    raise PackageError(f"{show(path)}: neither a folder nor a zip file")


# --- 2. Ed25519, SHA-256 and Merkle proofs ---------------------------------------------------
#
# Signatures are Ed25519 (RFC 8032), checked cofactorless and strictly: S below the group
# order L, public key and R canonical encodings, neither of small order, the key in the
# prime-order subgroup. These checks run here in pure Python for every backend, so that
# `cryptography`, PyNaCl and the pure-Python fallback accept exactly the same signatures.

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
_IDENTITY: _Point = (0, 1, 1, 0)


def _add(p: _Point, q: _Point) -> _Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(scalar: int, p: _Point) -> _Point:
    q = _IDENTITY
    while scalar:
        if scalar & 1:
            q = _add(q, p)
        p = _add(p, p)
        scalar >>= 1
    return q


def _same(p: _Point, q: _Point) -> bool:
    x1, y1, z1, _ = p
    x2, y2, z2, _ = q
    return (x1 * z2 - x2 * z1) % _P == 0 and (y1 * z2 - y2 * z1) % _P == 0


def _decode_point(data: bytes) -> _Point | None:
    """The point a canonical 32-byte encoding names, or None (y >= p, x = 0 with the sign
    bit set, or not on the curve)."""
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P != 0:
        x = x * _SQRT_M1 % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _encode_point(p: _Point) -> bytes:
    x, y, z, _ = p
    zi = pow(z, _P - 2, _P)
    x, y = x * zi % _P, y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _base_point() -> _Point:
    point = _decode_point((4 * pow(5, _P - 2, _P) % _P).to_bytes(32, "little"))
    if point is None:  # a constant: never
        raise RuntimeError("the Ed25519 base point does not decode")
    return point


_B = _base_point()


def _small_order(p: _Point) -> bool:
    return _same(_mul(8, p), _IDENTITY)


# The y-coordinates of the eight points of small order: 1 (the identity), p - 1 (order 2),
# 0 (order 4) and two of order 8 (the values libsodium's blocklist holds). An encoding of
# R with one of these is refused without decoding it; checked below, once, at import.
_SMALL_ORDER_Y = frozenset(
    (
        0,
        1,
        _P - 1,
        2707385501144840649318225287225658788936804267575313519463743609750303402022,
        55188659117513257062467267217118295137698188065244968500265048394206261417927,
    )
)


def _check_small_order_y() -> None:
    for y in _SMALL_ORDER_Y:
        for sign in (0, 1 << 255):
            point = _decode_point((y | sign).to_bytes(32, "little"))
            if point is not None and not _small_order(point):  # a constant: never
                raise RuntimeError("a listed small-order y is not of small order")


_check_small_order_y()


_KEY_CHECKED: dict[bytes, bool] = {}


def _usable_key(raw: bytes) -> bool:
    """A canonical encoding of a point of the prime-order subgroup (not of small order)."""
    known = _KEY_CHECKED.get(raw)
    if known is None:
        point = _decode_point(raw)
        known = point is not None and not _small_order(point) and _same(_mul(_L, point), _IDENTITY)
        _KEY_CHECKED[raw] = known
    return known


def _pure_verify(key: bytes, message: bytes, signature: bytes) -> bool:
    a = _decode_point(key)
    r = _decode_point(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    k = int.from_bytes(hashlib.sha512(signature[:32] + key + message).digest(), "little") % _L
    check = _add(_mul(s, _B), _mul(_L - k, a))  # [S]B - [k]A must equal R
    return _encode_point(check) == signature[:32]


def _backend() -> tuple[str, Callable[[bytes, bytes, bytes], bool]]:
    """The fastest Ed25519 implementation available: `cryptography`, PyNaCl, pure Python."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        def with_cryptography(key: bytes, message: bytes, signature: bytes) -> bool:
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
            except InvalidSignature:
                return False
            return True

        return "cryptography", with_cryptography
    except ImportError:
        pass
    try:
        import nacl.exceptions
        import nacl.signing

        def with_nacl(key: bytes, message: bytes, signature: bytes) -> bool:
            try:
                nacl.signing.VerifyKey(key).verify(message, signature)
            except nacl.exceptions.BadSignatureError:
                return False
            return True

        return "pynacl", with_nacl
    except ImportError:
        pass
    return "pure-python", _pure_verify


BACKEND, _verify_raw = _backend()


def ed25519_verify(key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is `key`'s strict Ed25519 signature of `message`."""
    if len(key) != 32 or len(signature) != 64 or not _usable_key(key):
        return False
    if int.from_bytes(signature[32:], "little") >= _L:
        return False
    # R is not decoded here: a backend compares the canonical encoding of [S]B - [k]A with
    # R's 32 bytes, so an R that is not a canonical encoding of a point never matches. R of
    # small order is refused by its y-coordinate (a canonical y is below p).
    y = int.from_bytes(signature[:32], "little") & ((1 << 255) - 1)
    if y >= _P or y in _SMALL_ORDER_Y:
        return False
    return _verify_raw(key, message, signature)


def _leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _hashes_ok(hashes: Sequence[bytes]) -> bool:
    return all(isinstance(h, bytes) and len(h) == 32 for h in hashes)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size or not _hashes_ok([leaf, root, *proof]):
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2 (old_size >= 1)."""
    if old_size < 1 or old_size > new_size:
        return False
    if old_size == new_size:  # no hashing: the roots must be the same bytes
        return not proof and hmac.compare_digest(old_root, new_root)
    if not _hashes_ok([old_root, new_root, *proof]):
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node_hash(c, fr)
            sr = _node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


# --- 3. signed documents -----------------------------------------------------------------

PACKAGE_TYPE = "application/vnd.compact.exhibit-package.v1+json"
PACKAGE_FORMAT = "compact-exhibit-package-v1"
ROSTER_TYPE = "application/vnd.compact.roster.v1+json"
MATTER_TYPE = "application/vnd.compact.matter.v1+json"
CUSTODY_TYPE = "application/vnd.compact.custody-event.v1+json"
BUNDLE_MANIFEST_TYPE = "application/vnd.compact.bundle-manifest.v1+json"
MANIFEST_NAME = "package.dsse.json"
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024
MAX_SMALL_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_MIN_WITNESSES = 2
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_STATE = re.compile(r"[A-Z]{2}\Z")
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")


class Invalid(Exception):
    """One check failed: the message names the file or proof and what did not match."""


def is_hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.match(value) is not None


def _b64(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not _B64.match(value):
        raise Invalid(f"{where}: not canonical base64")
    return base64.b64decode(value)


def _no_float(_text: str) -> Any:
    raise ValueError("numbers must be integers")


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def load_canonical(data: bytes, where: str) -> Any:
    """The JSON value in `data`, which must be in canonical form (docs: "canonical JSON")."""
    try:
        value = json.loads(data.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
        # Re-encoding recurses as deep as decoding: nested to just under the recursion
        # limit, it is the encoder that runs out.
        encoded = canonical_json(value)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Invalid(f"{where}: not valid JSON (integers only)") from None
    if encoded != data:
        raise Invalid(f"{where}: not in canonical JSON form")
    return value


def _obj(value: object, where: str, fields: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{where}: expected a JSON object")
    if set(value) != set(fields):
        missing = sorted(set(fields) - set(value))
        unknown = sorted(set(value) - set(fields))
        raise Invalid(f"{where}: missing fields {missing}, unknown fields {unknown}")
    return value


def _int(value: object, where: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value < 2**63:
        raise Invalid(f"{where}: expected an integer of at least {low}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{where}: expected a string")
    return value


def key_id(key: bytes) -> str:
    """A DSSE key id: the hex of the first 16 bytes of SHA-256 of the raw public key."""
    return hashlib.sha256(key).digest()[:16].hex()


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


class Envelope:
    """A DSSE envelope: {"payload", "payloadType", "signatures": [{"keyid", "sig"}]}."""

    def __init__(self, data: bytes, where: str) -> None:
        doc = _obj(load_canonical(data, where), where, ("payload", "payloadType", "signatures"))
        self.where = where
        self.payload_type = _str(doc["payloadType"], f"{where}: payloadType")
        self.payload = _b64(doc["payload"], f"{where}: payload")
        if not isinstance(doc["signatures"], list) or not doc["signatures"]:
            raise Invalid(f"{where}: expected at least one signature")
        self.signatures: list[tuple[str, bytes]] = []
        for i, s in enumerate(doc["signatures"]):
            sig = _obj(s, f"{where}: signatures[{i}]", ("keyid", "sig"))
            self.signatures.append(
                (_str(sig["keyid"], f"{where}: keyid"), _b64(sig["sig"], f"{where}: sig"))
            )

    def signed_by(self, keys: Iterable[bytes]) -> list[bytes]:
        """The distinct keys among `keys` that signed this envelope."""
        message = pae(self.payload_type, self.payload)
        found: list[bytes] = []
        for key in keys:
            if key in found:
                continue
            kid = key_id(key)
            if any(k == kid and ed25519_verify(key, message, s) for k, s in self.signatures):
                found.append(key)
        return found

    def document(self, payload_type: str, keys: Iterable[bytes], who: str) -> Any:
        """The payload, once one of `keys` (`who`'s) is proven to have signed it."""
        if self.payload_type != payload_type:
            raise Invalid(f"{self.where}: payload type is not {payload_type}")
        if not self.signed_by(keys):
            raise Invalid(f"{self.where}: signature does not verify with {who}'s key")
        return load_canonical(self.payload, f"{self.where}: payload")


# --- 4. the roster -----------------------------------------------------------------------


class Roster:
    def __init__(self, payload: bytes, where: str) -> None:
        doc = load_canonical(payload, where)
        if not isinstance(doc, dict):
            raise Invalid(f"{where}: expected a JSON object")
        fields = ["format", "version", "expires", "threshold", "members"]
        _obj({k: v for k, v in doc.items() if k != "oprf"}, where, fields)
        if doc["format"] != "compact-roster-v1":
            raise Invalid(f"{where}: format is not compact-roster-v1")
        self.version = _int(doc["version"], f"{where}: version", 1)
        members = doc["members"]
        if not isinstance(members, list) or not members:
            raise Invalid(f"{where}: expected members")
        self.keys: dict[str, bytes] = {}
        for i, member in enumerate(members):
            mb = _obj(
                member,
                f"{where}: members[{i}]",
                ("state", "endpoint", "tls_pin", "signing_key", "encryption_key"),
            )
            state = _str(mb["state"], f"{where}: members[{i}].state")
            if not _STATE.match(state) or state in self.keys:
                raise Invalid(f"{where}: members[{i}].state: not a new state code")
            if not is_hex64(mb["signing_key"]):
                raise Invalid(f"{where}: members[{i}].signing_key: expected 64 hex digits")
            self.keys[state] = bytes.fromhex(mb["signing_key"])
        self.threshold = _int(doc["threshold"], f"{where}: threshold", 1)
        if self.threshold > len(self.keys):
            raise Invalid(f"{where}: threshold larger than the number of members")

    def signed(self, envelope: Envelope) -> bool:
        return len(envelope.signed_by(self.keys.values())) >= self.threshold


def verify_roster(source: Files, paths: Sequence[str], v1_sha256: str) -> list[Roster]:
    """Every version, in order: v1 signed by its own threshold, each next one by the
    previous version's threshold and its own. Expiry is not checked: a package proves
    what was signed and logged while the roster was in force."""
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise Invalid(f"{MANIFEST_NAME}: roster.versions: expected a list of paths")
    versions: list[Roster] = []
    for i, path in enumerate(paths):
        envelope = Envelope(source.small(path), path)
        if envelope.payload_type != ROSTER_TYPE:
            raise Invalid(f"{path}: payload type is not {ROSTER_TYPE}")
        if i == 0:
            digest = hashlib.sha256(envelope.payload).hexdigest()
            if not hmac.compare_digest(digest, v1_sha256):
                raise Invalid(f"{path}: SHA-256 of the payload is not the manifest's v1_sha256")
        roster = Roster(envelope.payload, path)
        if roster.version != i + 1:
            raise Invalid(f"{path}: version {roster.version}, expected {i + 1}")
        if i and not versions[-1].signed(envelope):
            raise Invalid(f"{path}: not signed by enough members of version {i}")
        if not roster.signed(envelope):
            raise Invalid(f"{path}: not signed by enough of its own members")
        versions.append(roster)
    if not versions:
        raise Invalid("roster: the package holds no roster version")
    return versions


# --- 5. checkpoints ------------------------------------------------------------------------

_SIG_PREFIX = "\u2014 "
_TREE_SIZE = re.compile(r"(?:0|[1-9][0-9]{0,19})\Z")


def _key_hash(name: str, kind: int, key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([kind]) + key).digest()[:4]


class Checkpoint:
    """A C2SP tlog-checkpoint note of `state`'s log, its log signature verified, and the
    states whose `cosignature/v1` verified (witnesses)."""

    def __init__(self, note: bytes, where: str, state: str, keys: dict[str, list[bytes]]):
        try:
            text = note.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid(f"{where}: not UTF-8") from None
        split = text.rfind("\n\n")
        if split < 0 or not text.endswith("\n"):
            raise Invalid(f"{where}: not a signed note")
        body, lines = text[: split + 1], text[split + 2 : -1].split("\n")
        head = body.split("\n")
        if len(head) < 4 or head[0] != f"compact-log/{state}":
            raise Invalid(f"{where}: not a checkpoint of compact-log/{state}")
        # ASCII digits (isdigit() admits others int() refuses), no leading zero, uint64.
        if not _TREE_SIZE.match(head[1]) or int(head[1]) >= 2**64:
            raise Invalid(f"{where}: malformed tree size")
        self.size = int(head[1])
        self.root = _b64(head[2], f"{where}: root hash")
        if len(self.root) != 32:
            raise Invalid(f"{where}: the root hash is not 32 bytes")
        log_name, signed_by_log = f"compact-log/{state}", False
        self.witnesses: set[str] = set()
        message = body.encode("utf-8")
        for line in lines:
            if not line.startswith(_SIG_PREFIX):
                raise Invalid(f"{where}: malformed signature line")
            name, _, blob64 = line[len(_SIG_PREFIX) :].partition(" ")
            blob = _b64(blob64, f"{where}: signature line")
            if len(blob) < 5:
                raise Invalid(f"{where}: malformed signature line")
            if name == log_name:
                for key in keys.get(state, []):
                    if blob[:4] == _key_hash(name, 0x01, key):
                        if not ed25519_verify(key, message, blob[4:]):
                            raise Invalid(f"{where}: the log's signature does not verify")
                        signed_by_log = True
            elif name.startswith("compact-witness/") and name[16:] in keys and name[16:] != state:
                witness = name[16:]
                for key in keys[witness]:
                    if blob[:4] == _key_hash(name, 0x04, key):
                        if len(blob) != 4 + 8 + 64:
                            raise Invalid(f"{where}: {witness}'s cosignature is malformed")
                        stamp = int.from_bytes(blob[4:12], "big")
                        signed = b"cosignature/v1\ntime %d\n" % stamp + message
                        if not ed25519_verify(key, signed, blob[12:]):
                            raise Invalid(f"{where}: {witness}'s cosignature does not verify")
                        self.witnesses.add(witness)
        if not signed_by_log:
            raise Invalid(f"{where}: not signed with {state}'s log key")


# --- 6. the package ------------------------------------------------------------------------


class Files:
    """The package's files as the signed manifest lists them: small files read once,
    checked against their listed SHA-256 and kept, so what is parsed is what was hashed."""

    def __init__(self, source: Source, listed: dict[str, tuple[str, int]]):
        self.source = source
        self.listed = listed
        self.cache: dict[str, bytes] = {}
        self.bad: dict[str, str] = {}

    def small(self, path: str) -> bytes:
        if path in self.bad:
            raise Invalid(self.bad[path])
        if path not in self.cache:
            raise Invalid(f"{path}: not a file the package manifest lists")
        return self.cache[path]


class Report:
    def __init__(self) -> None:
        self.package: list[str] = []
        self.exhibits: dict[str, list[str]] = {}
        self.anchored = False
        self.pin: str | None = None
        self.package_id: str | None = None
        self.exporter: str | None = None
        self.checked_files = 0
        self.checked_bytes = 0

    def fail(self, exhibit: str | None, message: str) -> None:
        if exhibit is not None and exhibit in self.exhibits:
            self.exhibits[exhibit].append(message)
        else:
            self.package.append(message)

    def exit_code(self) -> int:
        if self.package:
            return 2
        if any(self.exhibits.values()):
            return 1
        return 0 if self.anchored else 3

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": not self.package and not any(self.exhibits.values()),
            "anchored": self.anchored,
            "roster_v1_sha256": self.pin,
            "package_id": self.package_id,
            "exporter": self.exporter,
            "package_failures": self.package,
            "exhibits": [
                {"number": n, "verdict": "FAILED" if r else "VERIFIED", "failures": r}
                for n, r in self.exhibits.items()
            ],
            "files_checked": self.checked_files,
            "bytes_checked": self.checked_bytes,
            "exit_code": self.exit_code(),
            "ed25519_backend": BACKEND,
        }


CUSTODY_FORMAT = "compact-custody-event-v1"
_EXHIBIT_FIELDS = (
    "number", "global_id", "origin", "description", "origin_manifest", "custody", "files",
)  # fmt: skip
_FILE_FIELDS = ("doc_id", "path", "position", "sha256", "size", "media_type", "file_name")
_CUSTODY_FIELDS = (
    "format", "state", "global_id", "evidence_sha256", "evidence_position", "event_id",
    "kind", "at", "actor", "detail",
)  # fmt: skip
_ENTRY_FIELDS = ("state", "checkpoint_size", "log_index", "envelope", "proof")
# The package manifest's payload and its parts (docs/exhibit-package.md section 3).
_MANIFEST_FIELDS = (
    "format", "package_id", "name", "exporter", "exported_at", "exported_by",
    "min_witnesses", "matter", "roster", "logs", "exhibits", "files",
)  # fmt: skip
_MATTER_REF_FIELDS = ("id", "revision", "path")
_ROSTER_REF_FIELDS = ("versions", "in_force", "v1_sha256")
_LOG_FIELDS = ("state", "checkpoints", "consistency")
_CHECKPOINT_REF_FIELDS = ("size", "path")
_INVENTORY_FIELDS = ("path", "sha256", "size")


def verify(
    path: str, *, roster_pin: str | None = None, min_witnesses: int = DEFAULT_MIN_WITNESSES
) -> Report:
    """Verify the package at `path` (a folder or a zip): every step runs, every failure is
    recorded in the report (docs/exhibit-package.md, "Verifying")."""
    report = Report()
    try:
        with open_source(path) as source:
            _verify_source(source, report, roster_pin, min_witnesses)
    except PackageError as e:
        report.fail(None, str(e))
    except Invalid as e:
        report.fail(None, str(e))
    return report


def _verify_source(
    source: Source, report: Report, roster_pin: str | None, min_witnesses: int
) -> None:
    paths = source.paths()
    if MANIFEST_NAME not in paths:
        raise Invalid(f"{MANIFEST_NAME}: missing (not an exhibit package)")
    envelope = Envelope(source.read(MANIFEST_NAME, MAX_ENVELOPE_BYTES), MANIFEST_NAME)
    if envelope.payload_type != PACKAGE_TYPE:
        raise Invalid(f"{MANIFEST_NAME}: payload type is not {PACKAGE_TYPE}")
    # The manifest names the roster that holds the key it is checked with: it is parsed
    # (strictly, canonical form only) before its signature can be checked below.
    manifest = _obj(
        load_canonical(envelope.payload, f"{MANIFEST_NAME}: payload"),
        MANIFEST_NAME,
        _MANIFEST_FIELDS,
    )
    if manifest["format"] != PACKAGE_FORMAT:
        raise Invalid(f"{MANIFEST_NAME}: format is not {PACKAGE_FORMAT}")
    if not is_hex64(manifest["package_id"]):
        raise Invalid(f"{MANIFEST_NAME}: package_id: expected 64 hex digits")
    report.package_id = manifest["package_id"]
    exporter = _str(manifest["exporter"], f"{MANIFEST_NAME}: exporter")
    report.exporter = exporter
    exhibits = manifest["exhibits"]
    if not isinstance(exhibits, list) or not exhibits:
        raise Invalid(f"{MANIFEST_NAME}: exhibits: expected a non-empty list")
    for i, exhibit in enumerate(exhibits):
        _obj(exhibit, f"{MANIFEST_NAME}: exhibits[{i}]", _EXHIBIT_FIELDS)
        number = _str(exhibit["number"], f"{MANIFEST_NAME}: exhibits[{i}].number")
        if number in report.exhibits:
            raise Invalid(f"{MANIFEST_NAME}: exhibit {number} listed twice")
        report.exhibits[number] = []

    files = _inventory(source, manifest, paths, report)
    roster_obj = _obj(manifest["roster"], "manifest roster", _ROSTER_REF_FIELDS)
    if not is_hex64(roster_obj["v1_sha256"]):
        raise Invalid(f"{MANIFEST_NAME}: roster.v1_sha256: expected 64 hex digits")
    report.pin = roster_obj["v1_sha256"]
    versions = verify_roster(files, roster_obj["versions"], roster_obj["v1_sha256"])
    if roster_pin is not None:
        if not hmac.compare_digest(roster_pin, roster_obj["v1_sha256"]):
            raise Invalid(
                "roster: version 1 is not the roster whose SHA-256 was given as --roster-pin"
            )
        report.anchored = True
    in_force = versions[-1]
    if roster_obj["in_force"] != in_force.version:
        raise Invalid(f"{MANIFEST_NAME}: roster.in_force is not the newest version enclosed")
    if exporter not in in_force.keys:
        raise Invalid(f"{MANIFEST_NAME}: exporter {exporter} is not in roster version "
                      f"{in_force.version}")  # fmt: skip
    if not envelope.signed_by([in_force.keys[exporter]]):
        raise Invalid(f"{MANIFEST_NAME}: signature does not verify with {exporter}'s key")
    keys: dict[str, list[bytes]] = {}
    for roster in versions:
        for state, key in roster.keys.items():
            if key not in keys.setdefault(state, []):
                keys[state].append(key)

    matter = _verify_matter(files, manifest, keys, exporter, report)
    listed: dict[str, Any] | None = None  # the matter's exhibits by number (the first of each)
    if matter is not None:
        listed = {}
        for e in matter["exhibits"]:
            if isinstance(e, dict) and isinstance(e.get("number"), str):
                listed.setdefault(e["number"], e)
    logs = _verify_logs(files, manifest, keys, report)
    for exhibit in exhibits:
        number = exhibit["number"]
        try:
            _verify_exhibit(
                files, manifest, exhibit, listed, logs, keys, min_witnesses, report.exhibits[number]
            )
        except Invalid as e:
            report.exhibits[number].append(str(e))


def _owner(path: str, numbers: Container[str]) -> str | None:
    """The exhibit (of those numbered) whose folder holds `path`, if any."""
    parts = path.split("/")
    if len(parts) >= 3 and parts[0] == "exhibits" and parts[1] in numbers:
        return parts[1]
    return None


def _inventory(
    source: Source, manifest: dict[str, Any], paths: Sequence[str], report: Report
) -> Files:
    """Every file present is listed and every listed file present, with its size and SHA-256."""
    listed: dict[str, tuple[str, int]] = {}
    entries = manifest["files"]
    if not isinstance(entries, list):
        raise Invalid(f"{MANIFEST_NAME}: files: expected a list")
    for i, entry in enumerate(entries):
        f = _obj(entry, f"{MANIFEST_NAME}: files[{i}]", _INVENTORY_FIELDS)
        path = _str(f["path"], f"{MANIFEST_NAME}: files[{i}].path")
        if path in listed or path == MANIFEST_NAME:
            raise Invalid(f"{MANIFEST_NAME}: files[{i}]: {path} listed twice")
        if not is_hex64(f["sha256"]):
            raise Invalid(f"{MANIFEST_NAME}: files[{i}].sha256: expected 64 hex digits")
        listed[path] = (f["sha256"], _int(f["size"], f"{MANIFEST_NAME}: files[{i}].size"))
    evidence = {
        f["path"]
        for e in manifest["exhibits"]
        if isinstance(e.get("files"), list)
        for f in e["files"]
        if isinstance(f, dict) and isinstance(f.get("path"), str)
    }
    files = Files(source, listed)
    present = set(paths) - {MANIFEST_NAME}
    for path in sorted(present - set(listed)):
        report.fail(
            _owner(path, report.exhibits), f"{path}: file added (not in the package manifest)"
        )
    for path, (sha256, size) in sorted(listed.items()):
        owner = _owner(path, report.exhibits)
        if path not in present:
            files.bad[path] = f"{path}: file removed (listed in the package manifest)"
            report.fail(owner, files.bad[path])
            continue
        if source.size(path) != size:
            files.bad[path] = f"{path}: size {source.size(path)}, the manifest says {size}"
            report.fail(owner, files.bad[path])
            continue
        if path in evidence or size > MAX_SMALL_FILE_BYTES:
            digest, read = source.sha256(path, size)
        else:
            data = source.read(path, size)
            digest, read = hashlib.sha256(data).hexdigest(), len(data)
            files.cache[path] = data
        report.checked_files += 1
        report.checked_bytes += read
        if read != size or not hmac.compare_digest(digest, sha256):
            files.cache.pop(path, None)
            files.bad[path] = f"{path}: SHA-256 does not match the package manifest"
            report.fail(owner, files.bad[path])
    return files


def _verify_matter(
    files: Files, manifest: dict[str, Any], keys: dict[str, list[bytes]], exporter: str,
    report: Report,
) -> dict[str, Any] | None:  # fmt: skip
    m = _obj(manifest["matter"], f"{MANIFEST_NAME}: matter", _MATTER_REF_FIELDS)
    try:
        matter_id = _str(m["id"], "matter id")
        owner = matter_id.split(":", 1)[0]
        path = _str(m["path"], "matter path")
        doc = Envelope(files.small(path), path).document(MATTER_TYPE, keys.get(owner, []), owner)
        if not isinstance(doc, dict) or doc.get("format") != "compact-matter-v1":
            raise Invalid(f"{path}: not a compact-matter-v1 document")
        if doc.get("matter_id") != matter_id or doc.get("owner") != owner:
            raise Invalid(f"{path}: not the matter {matter_id} the manifest names")
        if doc.get("revision") != m["revision"]:
            raise Invalid(f"{path}: not revision {m['revision']} the manifest names")
        states = doc.get("states")
        if not isinstance(states, list) or exporter not in states:
            raise Invalid(f"{path}: the exporter {exporter} is not a member state of the matter")
        if not isinstance(doc.get("exhibits"), list):
            raise Invalid(f"{path}: exhibits: expected a list")
        return doc
    except Invalid as e:
        report.fail(None, str(e))
        return None


class Log:
    def __init__(self) -> None:
        self.checkpoints: dict[int, Checkpoint] = {}
        # Witnesses of an entry proved under the checkpoint of a size: those of that
        # checkpoint and of every later one consistent with it.
        self.witnesses: dict[int, set[str]] = {}


def _verify_logs(
    files: Files, manifest: dict[str, Any], keys: dict[str, list[bytes]], report: Report
) -> dict[str, Log]:
    logs: dict[str, Log] = {}
    if not isinstance(manifest["logs"], list):
        raise Invalid(f"{MANIFEST_NAME}: logs: expected a list")
    for i, item in enumerate(manifest["logs"]):
        lg = _obj(item, f"{MANIFEST_NAME}: logs[{i}]", _LOG_FIELDS)
        state = _str(lg["state"], f"{MANIFEST_NAME}: logs[{i}].state")
        log = logs.setdefault(state, Log())
        try:
            chain: list[Checkpoint] = []
            if not isinstance(lg["checkpoints"], list) or not lg["checkpoints"]:
                raise Invalid(f"{MANIFEST_NAME}: logs[{i}].checkpoints: expected a list")
            for j, c in enumerate(lg["checkpoints"]):
                cp = _obj(c, f"{MANIFEST_NAME}: logs[{i}].checkpoints[{j}]", _CHECKPOINT_REF_FIELDS)
                path = _str(cp["path"], "checkpoint path")
                checkpoint = Checkpoint(files.small(path), path, state, keys)
                if checkpoint.size != cp["size"]:
                    raise Invalid(f"{path}: size {checkpoint.size}, the manifest says {cp['size']}")
                if chain and checkpoint.size <= chain[-1].size:
                    raise Invalid(f"{path}: checkpoints must be listed by increasing size")
                chain.append(checkpoint)
            proofs: dict[tuple[int, int], list[bytes]] = {}
            if lg["consistency"] is not None:
                where = _str(lg["consistency"], "consistency path")
                items = load_canonical(files.small(where), where)
                if not isinstance(items, list):
                    raise Invalid(f"{where}: expected a list")
                for k, p in enumerate(items):
                    proof = _obj(p, f"{where}: [{k}]", ("from", "to", "proof"))
                    if not isinstance(proof["proof"], list):
                        raise Invalid(f"{where}: [{k}].proof: expected a list")
                    start = _int(proof["from"], f"{where}: [{k}].from")
                    end = _int(proof["to"], f"{where}: [{k}].to")
                    proofs[(start, end)] = [
                        _hash(h, f"{where}: [{k}].proof") for h in proof["proof"]
                    ]
            for old, new in itertools.pairwise(chain):
                proof_ok = old.size == 0 or verify_consistency(
                    old.size, new.size, old.root, new.root, proofs.get((old.size, new.size), [])
                )
                if not proof_ok:
                    raise Invalid(
                        f"logs/{state}: the checkpoint of size {old.size} is not consistent "
                        f"with the one of size {new.size} (consistency proof does not verify)"
                    )
            seen: set[str] = set()
            for checkpoint in reversed(chain):
                seen |= checkpoint.witnesses
                log.checkpoints[checkpoint.size] = checkpoint
                log.witnesses[checkpoint.size] = set(seen)
        except Invalid as e:
            log.checkpoints.clear()
            report.fail(None, str(e))
    return logs


def _hash(value: object, where: str) -> bytes:
    if not isinstance(value, str) or not re.match(r"[0-9a-f]{64}\Z", value):
        raise Invalid(f"{where}: expected 64 hex digits")
    return bytes.fromhex(value)


def _verify_exhibit(
    files: Files,
    manifest: dict[str, Any],
    exhibit: dict[str, Any],
    matter_exhibits: dict[str, Any] | None,
    logs: dict[str, Log],
    keys: dict[str, list[bytes]],
    min_witnesses: int,
    failures: list[str],
) -> None:
    number, gid = exhibit["number"], _str(exhibit["global_id"], "global_id")
    origin = gid[:2]  # a global id begins with its state code
    exporter, package_id = manifest["exporter"], manifest["package_id"]
    if exhibit["origin"] != origin:
        failures.append(f"{number}: origin {exhibit['origin']} is not its incident's state")
    if not isinstance(exhibit["files"], list) or not exhibit["files"]:
        raise Invalid(f"{number}: expected at least one file")
    docs: dict[tuple[str, int], dict[str, Any]] = {}
    for i, f in enumerate(exhibit["files"]):
        doc = _obj(f, f"{number}: files[{i}]", _FILE_FIELDS)
        for field in ("doc_id", "path", "sha256"):
            _str(doc[field], f"{number}: files[{i}].{field}")
        for field in ("position", "size"):
            _int(doc[field], f"{number}: files[{i}].{field}")
        if doc["path"] not in files.listed or files.listed[doc["path"]] != (
            doc["sha256"],
            doc["size"],
        ):
            failures.append(
                f"{doc['path']}: not listed in the inventory with this SHA-256 and size"
            )
        docs[(doc["sha256"], doc["position"])] = doc

    if matter_exhibits is not None:
        m = matter_exhibits.get(number)
        if m is None:
            failures.append(f"{number}: not an exhibit of the matter document")
        else:
            if m.get("global_id") != gid or m.get("description") != exhibit["description"]:
                failures.append(f"{number}: incident or description differs from the matter's")
            evidence = m.get("evidence")
            if isinstance(evidence, dict) and list(docs) != [
                (evidence.get("sha256"), evidence.get("position"))
            ]:
                failures.append(f"{number}: files differ from the evidence the matter names")

    # Custody entries: each signed by its state, in that state's log, witnessed.
    where = _str(exhibit["custody"], "custody path")
    entries = load_canonical(files.small(where), where)
    if not isinstance(entries, list):
        raise Invalid(f"{where}: expected a list")
    records: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(entries):
        e = _obj(item, f"{where}: [{i}]", _ENTRY_FIELDS)
        state, index = _str(e["state"], f"{where}: [{i}].state"), e["log_index"]
        label = f"{where}: {state} log entry {index}"
        try:
            raw = _b64(e["envelope"], label)
            env = Envelope(raw, label)
            record = _obj(
                env.document(CUSTODY_TYPE, keys.get(state, []), state), label, _CUSTODY_FIELDS
            )
            if record["format"] != CUSTODY_FORMAT or record["state"] != state:
                raise Invalid(f"{label}: not a custody event recorded by {state}")
            _str(record["kind"], f"{label}: kind")
            if record["global_id"] != gid:
                raise Invalid(f"{label}: a custody event of another incident")
            of = (record["evidence_sha256"], record["evidence_position"])
            if not any(of == key for key in docs):  # compared, not hashed: may be lists
                raise Invalid(f"{label}: a custody event of a file not in this exhibit")
            log = logs.get(state)
            size = _int(e["checkpoint_size"], f"{label}: checkpoint_size")
            checkpoint = log.checkpoints.get(size) if log else None
            if log is None or checkpoint is None:
                raise Invalid(f"{label}: no valid checkpoint of size {size}")
            if not isinstance(e["proof"], list):
                raise Invalid(f"{label}: proof: expected a list")
            proof = [_hash(h, f"{label}: proof") for h in e["proof"]]
            if not verify_inclusion(
                _leaf_hash(raw), _int(index, label), checkpoint.size, proof, checkpoint.root
            ):
                raise Invalid(f"{label}: inclusion proof does not verify")
            witnesses = sorted(log.witnesses[checkpoint.size])
            if len(witnesses) < min_witnesses:
                raise Invalid(
                    f"{label}: witnessed by {', '.join(witnesses) or 'no member'} only, "
                    f"{min_witnesses} required"
                )
            records.append((state, record))
        except Invalid as err:
            failures.append(str(err))

    manifest_doc = None
    if origin == exporter and exhibit["origin_manifest"] is not None:
        failures.append(f"{number}: an origin manifest for the exporter's own incident")
    if origin != exporter:
        try:
            manifest_doc = _origin_manifest(files, exhibit, origin, exporter, keys)
        except Invalid as err:
            failures.append(str(err))
    for (sha256, position), doc in sorted(docs.items(), key=lambda d: d[1]["doc_id"]):
        mine = [
            r
            for s, r in records
            if (r["evidence_sha256"], r["evidence_position"]) == (sha256, position)
        ]
        kinds = {(s, r["kind"]) for s, r in records if r in mine}
        name = f"{doc['doc_id']} ({doc['path']})"
        if (origin, "received") not in kinds and (origin, "collected") not in kinds:
            failures.append(f"{name}: no custody record of {origin} receiving or collecting it")
        if origin != exporter:
            bundle = [
                r
                for s, r in records
                if s == exporter
                and r in mine
                and r["kind"] == "received"
                and isinstance(r["detail"], dict)
                and manifest_doc is not None
                and r["detail"].get("bundle_id") == manifest_doc["bundle_id"]
            ]
            if manifest_doc is not None and not any(
                isinstance(ev, dict)
                and (ev.get("sha256"), ev.get("position"), ev.get("size"))
                == (sha256, position, doc["size"])
                for ev in manifest_doc.get("evidence", [])
            ):
                failures.append(f"{name}: not in {origin}'s bundle manifest")
            if not bundle:
                failures.append(
                    f"{name}: no record of {exporter} receiving it in {origin}'s bundle"
                )
        exported = [
            r for s, r in records if s == exporter and r in mine and r["kind"] == "exported"
            and r["detail"] == {"matter": manifest["matter"]["id"], "package_id": package_id,
                                "exhibit": number, "doc_id": doc["doc_id"]}
        ]  # fmt: skip
        if not exported:
            failures.append(f"{name}: no custody record of {exporter} exporting it in this package")


def _origin_manifest(
    files: Files, exhibit: dict[str, Any], origin: str, exporter: str,
    keys: dict[str, list[bytes]],
) -> dict[str, Any]:  # fmt: skip
    where = exhibit["origin_manifest"]
    if not isinstance(where, str):
        raise Invalid(f"{exhibit['number']}: the origin's bundle manifest is missing")
    doc = Envelope(files.small(where), where).document(
        BUNDLE_MANIFEST_TYPE, keys.get(origin, []), origin
    )
    if not isinstance(doc, dict) or doc.get("format") != "compact-bundle-manifest-v1":
        raise Invalid(f"{where}: not a compact-bundle-manifest-v1 document")
    if doc.get("holder") != origin or doc.get("requester") != exporter:
        raise Invalid(f"{where}: not a bundle from {origin} to {exporter}")
    if doc.get("global_id") != exhibit["global_id"] or not is_hex64(doc.get("bundle_id")):
        raise Invalid(f"{where}: a bundle of another incident")
    if not isinstance(doc.get("evidence"), list):
        raise Invalid(f"{where}: evidence: expected a list")
    return doc


# --- 7. the command ----------------------------------------------------------------------


def run(
    path: str,
    *,
    roster_pin: str | None = None,
    min_witnesses: int = DEFAULT_MIN_WITNESSES,
    as_json: bool = False,
    out: IO[str] | None = None,
) -> int:
    """Verify and print the verdicts; the exit code."""
    stream = out or sys.stdout
    report = verify(path, roster_pin=roster_pin, min_witnesses=min_witnesses)
    if as_json:
        stream.write(json.dumps(report.to_json(), indent=2) + "\n")
        return report.exit_code()
    for number, failures in report.exhibits.items():
        if failures:
            stream.write(f"{number}: FAILED\n")
            for failure in failures:
                stream.write(f"  - {_safe(failure)}\n")
        else:
            stream.write(f"{number}: VERIFIED\n")
    for failure in report.package:
        stream.write(f"PACKAGE FAILED: {_safe(failure)}\n")
    stream.write(
        f"{report.checked_files} files, {report.checked_bytes} bytes checked (Ed25519: {BACKEND})\n"
    )
    code = report.exit_code()
    if code == 0:
        stream.write("VERIFIED: every exhibit, anchored to the roster pin given\n")
    elif code == 3:
        stream.write(
            "VERIFIED, NOT ANCHORED: compare roster version 1's SHA-256 "
            f"{report.pin} with the compact's published pin, then run again with "
            "--roster-pin\n"
        )
    return code


def _safe(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        description="Verify a Compact exhibit package (folder or zip), offline."
    )
    parser.add_argument("package", help="the package folder or zip")
    parser.add_argument("--roster-pin", help="SHA-256 of roster version 1's payload")
    parser.add_argument("--min-witnesses", type=int, default=DEFAULT_MIN_WITNESSES)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    pin = args.roster_pin.lower() if args.roster_pin else None
    if pin is not None and not is_hex64(pin):
        parser.error("--roster-pin: expected 64 hexadecimal digits")
    if args.min_witnesses < 1:
        parser.error("--min-witnesses: at least 1")
    return run(args.package, roster_pin=pin, min_witnesses=args.min_witnesses, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
