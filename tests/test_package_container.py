"""The exhibit package container: folders and the canonical zip (docs/design/exhibits.md §7).

The reader is federation/verify_package.py (standard library only), the writer
node/package_zip.py. Malicious zips are built with the standard library's ``zipfile`` or
byte by byte (``raw_zip``, an independent builder of the canonical form that tests can bend
field by field); every refusal names the entry and the rule.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import os
import stat
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from federation import verify_package
from federation.verify_package import (
    FolderSource,
    PackageError,
    Source,
    ZipSource,
    open_source,
    show,
)
from node.package_zip import write_canonical_zip

MAX32 = 0xFFFFFFFF
SCRIPT = Path(verify_package.__file__)


# --- helpers -------------------------------------------------------------------------------


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@dataclass
class Raw:
    """One entry of ``raw_zip``: canonical unless told otherwise.

    ``both``, ``local`` and ``central`` override header fields (needed, flags, method, time,
    date, crc, csize, usize, made_by, external, internal) in both headers or one;
    ``shares`` makes a central record with no local record of its own, pointing at the
    local record of the entry with that index.
    """

    name: str | bytes
    data: bytes = b""
    method: int = 0
    both: dict[str, int] = field(default_factory=dict)
    local: dict[str, int] = field(default_factory=dict)
    central: dict[str, int] = field(default_factory=dict)
    payload: bytes | None = None
    shares: int | None = None


def raw_zip(
    entries: list[Raw], *, prefix: bytes = b"", comment: bytes = b"", eocd_disk: int = 0
) -> bytes:
    """The canonical package zip of ``entries``, byte by byte, in the order given."""
    out = bytearray(prefix)
    offsets: list[int] = []
    central = bytearray()
    for e in entries:
        name = e.name.encode("utf-8") if isinstance(e.name, str) else e.name
        payload = e.payload
        if payload is None:
            payload = deflate(e.data) if e.method == 8 else e.data
        base = {
            "needed": 45,
            "flags": 0x0800,
            "method": e.method,
            "time": 0,
            "date": 0x0021,
            "crc": zlib.crc32(e.data),
            "csize": len(payload),
            "usize": len(e.data),
            "made_by": 0x033F,
            "external": 0o100644 << 16,
            "internal": 0,
        }
        base.update(e.both)
        lo = {**base, **e.local}
        ce = {**base, **e.central}
        if e.shares is None:
            offset = len(out)
            out += struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                lo["needed"],
                lo["flags"],
                lo["method"],
                lo["time"],
                lo["date"],
                lo["crc"],
                MAX32,
                MAX32,
                len(name),
                20,
            )
            out += name + struct.pack("<HHQQ", 1, 16, lo["usize"], lo["csize"]) + payload
            offsets.append(offset)
        else:
            offset = offsets[e.shares]
            offsets.append(offset)
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            ce["made_by"],
            ce["needed"],
            ce["flags"],
            ce["method"],
            ce["time"],
            ce["date"],
            ce["crc"],
            MAX32,
            MAX32,
            len(name),
            28,
            0,
            0,
            ce["internal"],
            ce["external"],
            MAX32,
        )
        central += name + struct.pack("<HHQQQ", 1, 24, ce["usize"], ce["csize"], offset)
    cd_offset = len(out)
    out += central
    z64 = len(out)
    n = len(entries)
    out += struct.pack(
        "<IQHHIIQQQQ", 0x06064B50, 44, 0x033F, 45, 0, 0, n, n, len(central), cd_offset
    )
    out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
    out += struct.pack(
        "<IHHHHIIH", 0x06054B50, eocd_disk, 0, 0xFFFF, 0xFFFF, MAX32, MAX32, len(comment)
    )
    return bytes(out + comment)


def std_zip(
    path: Path,
    items: list[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    compression: int = zipfile.ZIP_STORED,
    comment: bytes = b"",
) -> Path:
    """A zip written by the standard library's zipfile."""
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in items:
            z.writestr(name, data)
        z.comment = comment
    return path


def put(tmp_path: Path, data: bytes, name: str = "p.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused_at_open(path: Path, *needles: str) -> str:
    """open_source refuses ``path`` (before reading any content); the message holds needles."""
    with pytest.raises(PackageError) as info:
        open_source(path)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


def refused_reading(path: Path, *needles: str) -> str:
    """open_source accepts ``path``; reading some entry is refused."""

    def read_all(src: Source) -> None:
        for p in src.paths():
            src.read(p, 1 << 30)

    with open_source(path) as src, pytest.raises(PackageError) as info:
        read_all(src)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


def contents(src: Source) -> dict[str, tuple[int, str, int, bytes]]:
    return {
        p: (src.size(p), *src.sha256(p, src.size(p)), src.read(p, 1 << 30)) for p in src.paths()
    }


def is_evidence(rel: str) -> bool:
    return rel.startswith("exhibits/") and not rel.endswith(".json")


THREE_MIB = bytes(os.urandom(3 * 1024 * 1024))
TEXT = ("".join(f'{{"n": {i}, "é": "ünïcødé"}}\n' for i in range(400))).encode("utf-8")


def make_package(root: Path, name: str = "DOE-2026-exhibits") -> Path:
    folder = root / name
    (folder / "exhibits" / "IL-MN-000001").mkdir(parents=True)
    (folder / "exhibits" / "Ünïcødé répertoire").mkdir()
    (folder / "index").mkdir()
    (folder / "package.dsse.json").write_bytes(b'{"payload": "x"}\n')
    (folder / "index" / "exhibits.csv").write_bytes(TEXT)
    (folder / "exhibits" / "IL-MN-000001" / "IL-MN-000001.001.mp4").write_bytes(THREE_MIB)
    (folder / "exhibits" / "IL-MN-000001" / "custody.json").write_bytes(TEXT[:999])
    (folder / "exhibits" / "IL-MN-000001" / "empty.bin").write_bytes(b"")
    (folder / "exhibits" / "Ünïcødé répertoire" / "résumé.txt").write_bytes("née\n".encode())
    return folder


# --- round trip ----------------------------------------------------------------------------


def test_round_trip_folder_to_canonical_zip(tmp_path: Path) -> None:
    folder = make_package(tmp_path)
    out = tmp_path / "p.zip"
    write_canonical_zip(folder, out, store=is_evidence)

    with open_source(folder) as f, open_source(out) as z:
        assert isinstance(f, FolderSource)
        assert isinstance(z, ZipSource)
        assert (f.kind, z.kind) == ("folder", "zip")
        assert f.name == z.name == "DOE-2026-exhibits"
        assert z.paths() == f.paths() == sorted(f.paths(), key=lambda p: p.encode())
        assert "exhibits/Ünïcødé répertoire/résumé.txt" in z.paths()
        assert contents(z) == contents(f)
        mp4 = "exhibits/IL-MN-000001/IL-MN-000001.001.mp4"
        assert z.sha256(mp4, 3 * 1024 * 1024) == (
            hashlib.sha256(THREE_MIB).hexdigest(),
            3 * 1024 * 1024,
        )

    # The standard library reads it too (interoperability); evidence stored, text deflated.
    with zipfile.ZipFile(out) as std:
        assert std.testzip() is None
        methods = {i.filename: i.compress_type for i in std.infolist()}
        assert methods[f"DOE-2026-exhibits/{mp4}"] == zipfile.ZIP_STORED
        assert methods["DOE-2026-exhibits/index/exhibits.csv"] == zipfile.ZIP_DEFLATED
        assert std.read(f"DOE-2026-exhibits/{mp4}") == THREE_MIB

    # Deterministic, and exactly the form the independent builder writes.
    again = tmp_path / "again.zip"
    write_canonical_zip(folder, again, store=is_evidence)
    assert again.read_bytes() == out.read_bytes()
    with open_source(folder) as f:
        expected = raw_zip(
            [
                Raw(
                    f"{f.name}/{p}",
                    f.read(p, 1 << 30),
                    method=0 if is_evidence(p) else 8,
                )
                for p in f.paths()
            ]
        )
    assert out.read_bytes() == expected
    assert not (tmp_path / "p.zip.partial").exists()


def test_writer_refuses_an_existing_output_and_an_output_inside_the_folder(
    tmp_path: Path,
) -> None:
    folder = make_package(tmp_path)
    out = tmp_path / "p.zip"
    out.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        write_canonical_zip(folder, out, store=is_evidence)
    assert out.read_bytes() == b"keep"
    with pytest.raises(ValueError, match="inside the folder"):
        write_canonical_zip(folder, folder / "p.zip", store=is_evidence)
    assert not (folder / "p.zip.partial").exists()


def test_writer_refuses_what_the_folder_rules_refuse(tmp_path: Path) -> None:
    folder = make_package(tmp_path)
    (folder / "index" / "link.csv").symlink_to(folder / "index" / "exhibits.csv")
    out = tmp_path / "p.zip"
    with pytest.raises(PackageError, match=r"index/link\.csv: a symbolic link"):
        write_canonical_zip(folder, out, store=is_evidence)
    assert not out.exists()
    assert not (tmp_path / "p.zip.partial").exists()


def test_writer_stores_a_text_that_would_deflate_past_the_ratio(tmp_path: Path) -> None:
    folder = tmp_path / "top"
    folder.mkdir()
    (folder / "zeros.txt").write_bytes(bytes(2 * 1024 * 1024))
    out = tmp_path / "p.zip"
    write_canonical_zip(folder, out, store=lambda rel: False)
    with zipfile.ZipFile(out) as std:
        assert std.getinfo("top/zeros.txt").compress_type == zipfile.ZIP_STORED
    with open_source(out) as z:
        assert z.read("zeros.txt", 1 << 30) == bytes(2 * 1024 * 1024)


def test_reads_are_bounded(tmp_path: Path) -> None:
    folder = make_package(tmp_path)
    out = tmp_path / "p.zip"
    write_canonical_zip(folder, out, store=is_evidence)
    mp4 = "exhibits/IL-MN-000001/IL-MN-000001.001.mp4"
    for path in (folder, out):
        with open_source(path) as src:
            # A manifest stating fewer bytes: at most size + 1 are read.
            assert src.sha256(mp4, 10) == (hashlib.sha256(THREE_MIB[:11]).hexdigest(), 11)
            assert src.sha256("index/exhibits.csv", 5)[1] == 6
            # ... more bytes: all of them, and no more.
            assert src.sha256("index/exhibits.csv", len(TEXT) + 100)[1] == len(TEXT)
            with pytest.raises(PackageError, match="over the limit of 1000"):
                src.read("index/exhibits.csv", 1000)
            with pytest.raises(PackageError, match="no such file"):
                src.size("index/missing.csv")


# --- zip refusals: names ----------------------------------------------------------------------


def test_refuses_path_traversal(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/a.txt", b"a"), ("top/../x", b"x")])
    refused_at_open(path, "top/../x", "'..' segment")


def test_refuses_an_absolute_name(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("/top/x", b"x")])
    refused_at_open(path, "/top/x: ", "absolute")


def test_refuses_a_drive_letter(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("C:/top/x", b"x")])
    refused_at_open(path, "C:/top/x: ", "drive letter")


def test_refuses_a_backslash(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top\\..\\x", b"x")])
    refused_at_open(path, "top\\\\..\\\\x: ", "backslash")


def test_refuses_a_control_character_and_shows_it_escaped(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/a\x1b[2Jb", b"x")])
    message = refused_at_open(path, "top/a\\x1b[2Jb: ", "control character")
    assert "\x1b" not in message


def test_refuses_a_c1_control_character(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/a\x85b", b"x")])
    refused_at_open(path, "top/a\\x85b: ", "control character")


def test_refuses_a_name_not_nfc(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/re\u0301sume\u0301.txt", b"x")])
    refused_at_open(path, "top/re\u0301sume\u0301.txt: ", "not NFC")


def test_refuses_a_too_long_segment(tmp_path: Path) -> None:
    name = "top/" + "é" * 128  # 256 bytes
    path = std_zip(tmp_path / "p.zip", [(name, b"x")])
    refused_at_open(path, name, "a segment over 255 bytes")


def test_refuses_a_too_long_name(tmp_path: Path) -> None:
    name = "top/" + "/".join(["a" * 200] * 5) + "/b"  # 1,011 bytes and more
    name += "c" * (1025 - len(name))
    path = std_zip(tmp_path / "p.zip", [(name, b"x")])
    refused_at_open(path, "a name over 1024 bytes")


def test_refuses_an_empty_segment_and_a_dot_segment(tmp_path: Path) -> None:
    refused_at_open(std_zip(tmp_path / "a.zip", [("top//x", b"x")]), "top//x: ", "empty segment")
    refused_at_open(std_zip(tmp_path / "b.zip", [("top/./x", b"x")]), "top/./x: ", "'.' segment")


def test_refuses_a_name_not_utf8(tmp_path: Path) -> None:
    path = put(tmp_path, raw_zip([Raw(b"top/caf\xe9.txt", b"x")]))
    refused_at_open(path, "top/caf\\xe9.txt: ", "not valid UTF-8")


def test_refuses_duplicate_names(tmp_path: Path) -> None:
    path = put(tmp_path, raw_zip([Raw("top/a.txt", b"1"), Raw("top/a.txt", b"2")]))
    refused_at_open(path, "top/a.txt: ", "duplicate name")


def test_refuses_case_duplicates(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/A.txt", b"1"), ("top/a.txt", b"2")])
    refused_at_open(path, "top/A.txt and top/a.txt", "the same name after NFC and case folding")


def test_refuses_unicode_case_duplicates(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/STRASSE", b"1"), ("top/straße", b"2")])
    refused_at_open(path, "top/STRASSE and top/straße", "case folding")


def test_refuses_several_top_folders(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("a/x", b"1"), ("b/y", b"2")])
    refused_at_open(path, "b/y: ", "a second top-level folder")


def test_refuses_a_file_at_the_top_level(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/x", b"1"), ("y", b"2")])
    refused_at_open(path, "y: ", "a file at the top level")


# --- zip refusals: entries ------------------------------------------------------------------


def test_refuses_a_symlink_entry(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("top/link")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = std_zip(tmp_path / "p.zip", [("top/a", b"a"), (info, b"/etc/passwd")])
    refused_at_open(path, "top/link: ", "a symbolic link, not a regular file")


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        (stat.S_IFCHR, "a character device"),
        (stat.S_IFBLK, "a block device"),
        (stat.S_IFIFO, "a FIFO"),
        (stat.S_IFSOCK, "a socket"),
        (stat.S_IFDIR, "a directory"),
    ],
)
def test_refuses_other_special_entries(tmp_path: Path, kind: int, what: str) -> None:
    path = put(tmp_path, raw_zip([Raw("top/x", b"", both={"external": (kind | 0o644) << 16})]))
    refused_at_open(path, "top/x: ", what)


def test_refuses_a_directory_entry(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/d/", b""), ("top/d/x", b"x")])
    refused_at_open(path, "top/d/: ", "a directory entry")


def test_refuses_an_encrypted_entry(tmp_path: Path) -> None:
    path = put(tmp_path, raw_zip([Raw("top/x", b"secret", both={"flags": 0x0801})]))
    refused_at_open(path, "top/x: ", "encrypted")


def test_refuses_strong_encryption(tmp_path: Path) -> None:
    path = put(tmp_path, raw_zip([Raw("top/x", b"secret", both={"flags": 0x0841})]))
    refused_at_open(path, "top/x: ", "strong encryption")


def test_refuses_bzip2(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/x", b"x" * 100)], compression=zipfile.ZIP_BZIP2)
    refused_at_open(path, "top/x: ", "compression method 12")


def test_refuses_a_data_descriptor(tmp_path: Path) -> None:
    path = put(tmp_path, raw_zip([Raw("top/x", b"data", both={"flags": 0x0808})]))
    refused_at_open(path, "top/x: ", "data descriptor")


def test_refuses_an_entry_on_another_disk(tmp_path: Path) -> None:
    path = put(tmp_path, raw_zip([Raw("top/x", b"data")], eocd_disk=1))
    refused_at_open(path, "p.zip: ", "several disks")


# --- zip refusals: layout and bombs -----------------------------------------------------------


def test_refuses_an_overlap_bomb(tmp_path: Path) -> None:
    """Two central records pointing at one local record."""
    data = raw_zip(
        [Raw("top/a", b"A" * 1000), Raw("top/b", b"B"), Raw("top/c", b"A" * 1000, shares=0)]
    )
    refused_at_open(put(tmp_path, data), "top/a and top/c", "local records overlap", "overlap bomb")


def test_refuses_a_ratio_bomb(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/zeros", bytes(10 * 1024 * 1024))], compression=8)
    refused_at_open(path, "top/zeros: ", "over the 100:1 ratio", "ratio bomb")


def test_refuses_a_stored_entry_shorter_than_stated(tmp_path: Path) -> None:
    data = raw_zip(
        [Raw("top/a", b"A" * 100, both={"csize": 95, "usize": 95}), Raw("top/b", b"B" * 100)]
    )
    refused_at_open(put(tmp_path, data), "top/a: 5 bytes between its local record", "gap")


def test_refuses_a_stored_entry_longer_than_stated(tmp_path: Path) -> None:
    data = raw_zip(
        [Raw("top/a", b"A" * 100, both={"csize": 105, "usize": 105}), Raw("top/b", b"B" * 100)]
    )
    refused_at_open(put(tmp_path, data), "top/a and top/b", "local records overlap")
    last = raw_zip([Raw("top/a", b"A" * 100, both={"csize": 105, "usize": 105})])
    refused_at_open(put(tmp_path, last, "q.zip"), "top/a: ", "overlaps the central directory")


def test_refuses_a_stored_entry_whose_sizes_differ(tmp_path: Path) -> None:
    data = raw_zip([Raw("top/a", b"A" * 100, both={"usize": 99})])
    refused_at_open(put(tmp_path, data), "top/a: ", "stored, but its compressed size 100")


def test_refuses_a_deflated_entry_longer_or_shorter_than_stated(tmp_path: Path) -> None:
    text = b"some text " * 100
    longer = raw_zip([Raw("top/a", text, method=8, both={"usize": len(text) + 1})])
    refused_reading(put(tmp_path, longer), "top/a: ", f"decompresses to {len(text)} bytes")
    shorter = raw_zip([Raw("top/a", text, method=8, both={"usize": len(text) - 1})])
    refused_reading(put(tmp_path, shorter, "q.zip"), "top/a: ", "more than the stated")


def test_refuses_a_broken_deflate_stream(tmp_path: Path) -> None:
    text = b"some text " * 100
    cut = raw_zip([Raw("top/a", text, method=8, payload=deflate(text)[:-3])])
    refused_reading(put(tmp_path, cut), "top/a: ", "not a complete deflate stream")
    more = raw_zip([Raw("top/a", text, method=8, payload=deflate(text) + b"\0")])
    refused_reading(put(tmp_path, more, "q.zip"), "top/a: ", "after the end of the deflate data")


def test_refuses_a_wrong_crc_of_a_deflated_entry(tmp_path: Path) -> None:
    text = b"some text " * 100
    data = raw_zip([Raw("top/a", text, method=8, both={"crc": zlib.crc32(text) ^ 1})])
    refused_reading(put(tmp_path, data), "top/a: ", "CRC-32")


def test_refuses_padding_bits_after_a_deflate_stream(tmp_path: Path) -> None:
    """Inflate ignores the bits after the last block: they must be zero all the same."""
    for n in range(1, 100):
        text = b"some text " * n
        payload = deflate(text)
        bent = payload[:-1] + bytes([payload[-1] | 0x80])
        if bent != payload:
            break
    d = zlib.decompressobj(-15)
    assert d.decompress(bent) == text and d.eof and not d.unused_data  # zlib accepts it
    data = raw_zip([Raw("top/a", text, method=8, payload=bent)])
    refused_reading(put(tmp_path, data), "top/a: ", "non-zero padding bits")


def test_refuses_a_local_header_disagreeing_with_the_central_one(tmp_path: Path) -> None:
    for n, bend in enumerate(
        [
            {"time": 0x1234},
            {"crc": 1},
            {"needed": 20},
            {"flags": 0},
            {"method": 8},
            {"usize": 4},
        ]
    ):
        data = raw_zip([Raw("top/a", b"abc"), Raw("top/b", b"abc", local=bend)])
        refused_at_open(put(tmp_path, data, f"{n}.zip"), "top/b: ", "local header disagrees")


def test_refuses_a_local_name_disagreeing(tmp_path: Path) -> None:
    data = bytearray(raw_zip([Raw("top/a", b"abc")]))
    data[30 + 4] = ord("b")  # the local name: top/b
    refused_at_open(put(tmp_path, bytes(data)), "top/a: ", "disagrees", "(name)")


def test_refuses_trailing_bytes(tmp_path: Path) -> None:
    data = raw_zip([Raw("top/a", b"abc")]) + b"\0"
    refused_at_open(put(tmp_path, data), "p.zip: ", "1 trailing bytes")


def test_refuses_leading_bytes(tmp_path: Path) -> None:
    data = raw_zip([Raw("top/a", b"abc")], prefix=b"MZ\x90\x00stub")
    refused_at_open(put(tmp_path, data), "top/a: 8 leading bytes")


def test_refuses_leading_bytes_from_zipfile(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    with path.open("wb") as f:
        f.write(b"#!/bin/sh\n")
        with zipfile.ZipFile(f, "w") as z:
            z.writestr("top/a", b"abc")
    refused_at_open(path, "top/a: 10 leading bytes")


def test_refuses_a_comment(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/a", b"abc")], comment=b"hello")
    refused_at_open(path, "p.zip: ", "a zip comment")
    raw = put(tmp_path, raw_zip([Raw("top/a", b"abc")], comment=b"hi"), "q.zip")
    refused_at_open(raw, "q.zip: ", "a zip comment")


def test_refuses_names_not_sorted(tmp_path: Path) -> None:
    data = raw_zip([Raw("top/b", b"b"), Raw("top/a", b"a")])
    refused_at_open(put(tmp_path, data), "top/a: ", "not the canonical package zip", "not sorted")


def test_refuses_non_canonical_time(tmp_path: Path) -> None:
    data = raw_zip([Raw("top/a", b"a", both={"time": 0x6000, "date": 0x5A21})])
    refused_at_open(put(tmp_path, data), "top/a: ", "not the canonical package zip", "time")


@pytest.mark.parametrize(
    ("bend", "what"),
    [
        ({"flags": 0}, "flags"),
        ({"made_by": 0x0314}, "version made by"),
        ({"needed": 20}, "version needed"),
        ({"external": 0o100600 << 16}, "external attributes"),
        ({"internal": 1}, "internal attributes"),
    ],
)
def test_refuses_other_non_canonical_fields(
    tmp_path: Path, bend: dict[str, int], what: str
) -> None:
    data = raw_zip([Raw("top/a", b"a", both=bend)])
    refused_at_open(put(tmp_path, data), "top/a: ", "not the canonical package zip", what)


def test_refuses_a_plain_zipfile_zip(tmp_path: Path) -> None:
    path = std_zip(tmp_path / "p.zip", [("top/a", b"a")])
    refused_at_open(path, "top/a: ", "not the canonical package zip")


def test_refuses_more_than_max_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_package, "MAX_ENTRIES", 3)
    path = std_zip(tmp_path / "p.zip", [(f"top/{i}", b"x") for i in range(4)])
    refused_at_open(path, "p.zip: ", "more than 3 entries")
    folder = tmp_path / "top"
    folder.mkdir()
    for i in range(4):
        (folder / str(i)).write_bytes(b"x")
    refused_at_open(folder, "more than 3 files")


def test_refuses_what_is_not_a_zip(tmp_path: Path) -> None:
    refused_at_open(put(tmp_path, b"PK"), "p.zip: ", "not a zip file")
    refused_at_open(put(tmp_path, os.urandom(5000), "q.zip"), "q.zip: ", "not a zip file")
    good = raw_zip([Raw("top/a", b"abc")])
    refused_at_open(put(tmp_path, good[:-1], "r.zip"), "r.zip: ", "not a zip file")
    refused_at_open(put(tmp_path, good[40:], "s.zip"), "s.zip: ")
    refused_at_open(tmp_path / "missing.zip", "cannot be read")


# --- a flipped byte anywhere -------------------------------------------------------------------


def test_a_flipped_byte_is_always_seen(tmp_path: Path) -> None:
    folder = tmp_path / "top"
    (folder / "exhibits" / "X").mkdir(parents=True)
    (folder / "exhibits" / "X" / "v.mp4").write_bytes(os.urandom(64 * 1024))
    (folder / "a.json").write_bytes(TEXT[:1500])
    (folder / "b.txt").write_bytes(b"")
    path = tmp_path / "p.zip"
    write_canonical_zip(folder, path, store=is_evidence)

    def seen() -> dict[str, tuple[int, str, int]] | None:
        try:
            with open_source(path) as src:
                return {p: (src.size(p), *src.sha256(p, sizes.get(p, 0))) for p in src.paths()}
        except PackageError:
            return None

    with open_source(path) as src:
        sizes = {p: src.size(p) for p in src.paths()}
    baseline = seen()
    assert baseline is not None

    with zipfile.ZipFile(path) as std:
        mp4 = std.getinfo("top/exhibits/X/v.mp4")
        start = mp4.header_offset + 30 + len(mp4.filename) + 20
        stored = range(start, start + mp4.file_size)
    total = path.stat().st_size
    offsets = [o for o in range(total) if o not in stored]
    offsets += [*range(stored.start, stored.stop, 997), stored.stop - 1]
    missed = []
    with path.open("r+b") as f:
        for offset in offsets:
            f.seek(offset)
            original = f.read(1)[0]
            for mask in (0x01, 0x80, 0xFF):
                f.seek(offset)
                f.write(bytes([original ^ mask]))
                f.flush()
                if seen() == baseline:
                    missed.append((offset, mask))
            f.seek(offset)
            f.write(bytes([original]))
            f.flush()
    assert missed == []
    assert len(offsets) > 700
    assert seen() == baseline


# --- folders -----------------------------------------------------------------------------------


def test_folder_nested_dirs_are_fine(tmp_path: Path) -> None:
    folder = tmp_path / "top"
    (folder / "a" / "b" / "c").mkdir(parents=True)
    (folder / "a" / "empty").mkdir()
    (folder / "a" / "b" / "c" / "deep.txt").write_bytes(b"deep")
    (folder / "z.txt").write_bytes(b"z")
    (folder / "a" / "b.txt").write_bytes(b"b")
    with open_source(folder) as src:
        assert src.paths() == ["a/b.txt", "a/b/c/deep.txt", "z.txt"]
        assert src.read("a/b/c/deep.txt", 4) == b"deep"
        assert src.name == "top"


def test_folder_refuses_a_symlink(tmp_path: Path) -> None:
    folder = tmp_path / "top"
    (folder / "exhibits" / "X").mkdir(parents=True)
    (tmp_path / "secret").write_bytes(b"secret")
    (folder / "exhibits" / "X" / "a.mp4").symlink_to(tmp_path / "secret")
    message = refused_at_open(folder)
    assert message == "exhibits/X/a.mp4: a symbolic link, not a regular file"


def test_folder_refuses_a_symlinked_folder(tmp_path: Path) -> None:
    folder = tmp_path / "top"
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x").write_bytes(b"x")
    (folder / "exhibits").symlink_to(tmp_path / "elsewhere")
    refused_at_open(folder, "exhibits: a symbolic link, not a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_folder_refuses_a_fifo(tmp_path: Path) -> None:
    folder = tmp_path / "top"
    (folder / "logs").mkdir(parents=True)
    os.mkfifo(folder / "logs" / "pipe")
    refused_at_open(folder, "logs/pipe: a FIFO, not a regular file")


def test_folder_refuses_a_file_replaced_by_a_link_after_the_walk(tmp_path: Path) -> None:
    folder = tmp_path / "top"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"a")
    (tmp_path / "secret").write_bytes(b"secret")
    (tmp_path / "other").write_bytes(b"b")  # a file of its own while a.txt exists
    with open_source(folder) as src:
        (folder / "a.txt").unlink()
        (folder / "a.txt").symlink_to(tmp_path / "secret")
        with pytest.raises(PackageError, match=r"a\.txt: cannot be opened"):
            src.read("a.txt", 100)
        (folder / "a.txt").unlink()
        os.replace(tmp_path / "other", folder / "a.txt")  # another file (inode) now
        with pytest.raises(PackageError, match=r"a\.txt: replaced"):
            src.read("a.txt", 100)


def test_folder_applies_the_name_rules(tmp_path: Path) -> None:
    folder = tmp_path / "top"
    folder.mkdir()
    (folder / "a\\b.txt").write_bytes(b"x")
    refused_at_open(folder, "a\\\\b.txt: ", "backslash")
    (folder / "a\\b.txt").unlink()
    (folder / "re\u0301sume\u0301.txt").write_bytes(b"x")
    refused_at_open(folder, "not NFC")
    (folder / "re\u0301sume\u0301.txt").unlink()
    (folder / "A.txt").write_bytes(b"x")
    (folder / "a.txt").write_bytes(b"x")
    refused_at_open(folder, "A.txt and a.txt", "case folding")


# --- reading writes nothing --------------------------------------------------------------------


def _listing(root: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns, p.lstat().st_mode)
        for p in root.rglob("*")
    }


def test_reading_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_package(tmp_path)
    path = tmp_path / "p.zip"
    write_canonical_zip(folder, path, store=is_evidence)
    before = _listing(tmp_path)
    temp_before = sorted(os.listdir(tempfile.gettempdir()))
    opened: list[str] = []
    real_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def read_only_open(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        assert not flags & writing, (file, flags)
        opened.append(str(file))
        return real_open(file, flags, *args, **kwargs)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the reader wrote or opened something: {args}")

    with monkeypatch.context() as m:
        m.setattr(os, "open", read_only_open)
        m.setattr(builtins, "open", forbidden)
        for name in ("mkstemp", "mkdtemp", "TemporaryFile", "NamedTemporaryFile"):
            m.setattr(tempfile, name, forbidden)
        m.setattr(tempfile, "SpooledTemporaryFile", forbidden)
        for p in (folder, path):
            with open_source(p) as src:
                for rel in src.paths():
                    src.sha256(rel, src.size(rel))
                    src.read(rel, 1 << 30)
    assert opened
    assert _listing(tmp_path) == before
    assert sorted(os.listdir(tempfile.gettempdir())) == temp_before


# --- the standalone script ---------------------------------------------------------------------


#: Ed25519 libraries the script uses when importable, each inside `_backend` under
#: `except ImportError` (it falls back to pure Python without them).
OPTIONAL_IMPORTS = {"cryptography", "nacl"}


def test_the_script_uses_only_the_standard_library_and_python_3_9_syntax() -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    tree = ast.parse(source, feature_version=(3, 9))
    imported: set[str] = set()
    optional: set[str] = set()
    backend = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_backend")
    for handler in backend.body:
        if isinstance(handler, ast.Try):
            assert [ast.unparse(h.type) for h in handler.handlers if h.type] == ["ImportError"]
            for node in ast.walk(handler):
                if isinstance(node, ast.Import):
                    optional.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    optional.add(node.module.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None
            imported.add(node.module.split(".")[0])
    assert optional == OPTIONAL_IMPORTS
    stdlib = set(sys.stdlib_module_names)
    assert imported - OPTIONAL_IMPORTS <= stdlib, imported - OPTIONAL_IMPORTS - stdlib
    assert "# --- 1. container ---" in source
    assert "zipfile" not in imported


def test_the_script_runs_alone(tmp_path: Path) -> None:
    folder = make_package(tmp_path)
    path = tmp_path / "p.zip"
    write_canonical_zip(folder, path, store=is_evidence)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('verify_package', {str(SCRIPT)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['verify_package'] = m\n"
        "spec.loader.exec_module(m)\n"
        f"with m.open_source({str(path)!r}) as s:\n"
        "    print(len(s.paths()), s.sha256(s.paths()[0], 10**9)[1])\n"
        "names = set(sys.stdlib_module_names) | {'__main__'}\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] not in names))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert done.stdout.splitlines() == ["6 3145728", "['verify_package']"]


def test_show_escapes_what_a_terminal_would_interpret() -> None:
    assert show("a/b c.txt") == "a/b c.txt"
    assert show("ünïcødé") == "ünïcødé"
    assert show("a\x00b\x1b\x7f\x85") == "a\\x00b\\x1b\\x7f\\x85"
    assert show("a\\b") == "a\\\\b"
    assert show("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert show(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\xe9"
