"""node.exhibit_docs: the exhibit package's CSV, DAT and OPT read back to the values given
(with the documented defusing and replacements), the certification lists every document and
has blanks to sign, and the PDFs are valid, reproducible and show what they are given."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
import subprocess
import sys
import warnings
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from node import exhibit_docs as docs
from node.exhibit_docs import DocumentRow, PackageInfo

ROOT = Path(__file__).resolve().parent.parent

INFO = PackageInfo(
    package_name="DOE-2026-exhibits",
    package_id="ab" * 32,
    matter_id="IL:DOE-2026",
    matter_title="People v. Doe",
    matter_revision=7,
    exporter="IL",
    exporter_name="Illinois",
    exported_at="2026-05-01T12:00:00Z",
    exported_by="alice",
    roster_v1_sha256="cd" * 32,
)


def _row(n: int, position: int = 1, **changes: object) -> DocumentRow:
    exhibit = f"IL-MN-{n:06d}"
    doc_id = f"{exhibit}.{position:03d}"
    row = DocumentRow(
        exhibit=exhibit,
        doc_id=doc_id,
        description=f"Body camera video {n}",
        origin="MN",
        global_id=f"MN:2026-{n:06d}",
        file_name=f"clip {n}.MP4",
        media_type="video/mp4",
        sha256=hashlib.sha256(doc_id.encode()).hexdigest(),
        size=1_000 + n,
        native_path=f"exhibits/{exhibit}/{doc_id}.mp4",
        collected_at="2026-01-02T03:04:05.123-05:00",
        received_at="2026-04-01T00:00:00Z",
    )
    return replace(row, **changes)  # type: ignore[arg-type]


TRICKY = [
    _row(1, description='Commas, "quotes" and\r\nCRLF, then\nLF and\rCR'),
    _row(1, 2, description="Ünïcödé: 中文 😀 \u202eevil", file_name="naïve ® file.JPG"),
    _row(2, description='=HYPERLINK("http://x")', file_name="+1.png", media_type="image/png"),
    _row(3, description="-2+3", file_name="@SUM(A1).mp4", collected_at=None),
    _row(4, description="\tTabbed", file_name="\rreturn.bin"),
    _row(5, description="þorn and \x14 delimiter", global_id="MN:2026-x"),
    _row(6, description="lone \ud800 surrogate"),
]


def _defused(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# --- CSV, DAT, OPT ------------------------------------------------------------------------


def test_csv_reads_back_to_the_values_defused() -> None:
    data = docs.exhibits_csv(INFO, TRICKY)
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.endswith(b"\r\n")
    table = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert table[0] == list(docs.CSV_COLUMNS)
    assert len(table) == len(TRICKY) + 1
    for row, got in zip(TRICKY, table[1:], strict=True):
        expected = [
            row.exhibit,
            row.doc_id,
            row.description.replace("\ud800", "\ufffd"),
            row.origin,
            row.global_id,
            row.file_name,
            row.media_type,
            row.sha256,
            str(row.size),
            row.collected_at or "",
            row.received_at,
            row.native_path,
        ]
        assert got == [_defused(v) for v in expected]
    by_id = {r[1]: r for r in table[1:]}
    assert by_id["IL-MN-000002.001"][2] == '\'=HYPERLINK("http://x")'
    assert by_id["IL-MN-000002.001"][5] == "'+1.png"
    assert by_id["IL-MN-000003.001"][2:6:3] == ["'-2+3", "'@SUM(A1).mp4"]
    assert by_id["IL-MN-000004.001"][2] == "'\tTabbed"
    assert by_id["IL-MN-000004.001"][5] == "'\rreturn.bin"
    assert by_id["IL-MN-000001.001"][2] == 'Commas, "quotes" and\r\nCRLF, then\nLF and\rCR'
    assert "中文 😀" in by_id["IL-MN-000001.002"][2]
    # outside quoted cells, every line ends CRLF
    unquoted = re.sub(rb'"(?:[^"]|"")*"', b"", data)
    assert unquoted.count(b"\n") == unquoted.count(b"\r\n") == len(TRICKY) + 1


def _read_dat(data: bytes) -> list[list[str]]:
    text = data.decode("utf-8")
    assert text.endswith("\r\n")
    records = text[:-2].split("\r\n")
    out = []
    for record in records:
        assert "\n" not in record and "\r" not in record
        fields = record.split(docs.DAT_DELIMITER)
        for f in fields:
            assert f.startswith("\u00fe") and f.endswith("\u00fe") and len(f) >= 2
            assert "\u00fe" not in f[1:-1]
        out.append([f[1:-1].replace("\u00ae", "\n") for f in fields])
    return out


def test_dat_reads_back_with_newlines_restored_and_delimiters_replaced() -> None:
    data = docs.concordance_dat(INFO, TRICKY)
    assert not data.startswith(b"\xef\xbb\xbf")
    table = _read_dat(data)
    assert table[0] == list(docs.DAT_FIELDS)
    assert len(table) == len(TRICKY) + 1
    for row, got in zip(TRICKY, table[1:], strict=True):
        fields = dict(zip(docs.DAT_FIELDS, got, strict=True))
        assert fields["BEGDOC"] == fields["ENDDOC"] == row.doc_id
        assert fields["EXHIBIT"] == row.exhibit
        assert fields["ORIGINSTATE"] == row.origin
        assert fields["GLOBALID"] == row.global_id
        assert fields["MEDIATYPE"] == row.media_type
        assert fields["SHA256"] == row.sha256
        assert fields["SIZE"] == str(row.size)
        assert fields["NATIVEPATH"] == row.native_path.replace("/", "\\")
        assert fields["NATIVEPATH"].startswith("exhibits\\IL-MN-")
        assert "/" not in fields["NATIVEPATH"]
    by_id = {r[0]: dict(zip(docs.DAT_FIELDS, r, strict=True)) for r in table[1:]}
    # every kind of line break reads back as one newline
    assert (
        by_id["IL-MN-000001.001"]["DESCRIPTION"] == 'Commas, "quotes" and\nCRLF, then\nLF and\nCR'
    )
    # Concordance has no escape: the delimiter and the qualifier become U+FFFD
    assert by_id["IL-MN-000005.001"]["DESCRIPTION"] == "\ufffdorn and \ufffd delimiter"
    # and a ® in a value reads back as a line break (documented)
    assert by_id["IL-MN-000001.002"]["FILENAME"] == "naïve \n file.JPG"
    assert by_id["IL-MN-000001.002"]["DESCRIPTION"] == "Ünïcödé: 中文 😀 \u202eevil"
    assert by_id["IL-MN-000002.001"]["DESCRIPTION"] == '\'=HYPERLINK("http://x")'
    assert by_id["IL-MN-000003.001"]["FILENAME"] == "'@SUM(A1).mp4"
    assert by_id["IL-MN-000004.001"]["FILENAME"] == "'\nreturn.bin"  # CR → ®, defused first
    assert by_id["IL-MN-000006.001"]["DESCRIPTION"] == "lone \ufffd surrogate"


def test_opt_lists_only_images_with_backslash_paths() -> None:
    rows = [
        _row(1, media_type="image/jpeg", native_path="exhibits/IL-MN-000001/IL-MN-000001.001.jpg"),
        _row(1, 2, media_type="video/mp4"),
        _row(2, media_type="application/pdf"),
        _row(3, media_type="IMAGE/PNG", native_path="exhibits/IL-MN-000003/IL-MN-000003.001.png"),
    ]
    data = docs.opticon_opt(INFO, rows)
    assert data.decode("utf-8").split("\r\n") == [
        "IL-MN-000001.001,DOE-2026-exhibits,exhibits\\IL-MN-000001\\IL-MN-000001.001.jpg,Y,,,1",
        "IL-MN-000003.001,DOE-2026-exhibits,exhibits\\IL-MN-000003\\IL-MN-000003.001.png,Y,,,1",
        "",
    ]
    assert docs.opticon_opt(INFO, rows[1:3]) == b""
    named = docs.opticon_opt(replace(INFO, package_name="Doe, John\nexhibits"), rows[:1])
    assert named.split(b",")[1] == b"Doe_ John_exhibits"
    with pytest.raises(ValueError, match="comma"):
        docs.opticon_opt(INFO, [replace(rows[0], native_path="exhibits/a,b/c.jpg")])


# --- text documents ---------------------------------------------------------------------------


def test_certification_lists_every_document_and_has_blanks_to_sign() -> None:
    rows = [_row(n, p) for n in range(1, 6) for p in (1, 2)]
    text = docs.certification_text(INFO, rows)
    assert "\r" not in text
    assert text.endswith("\n")
    for r in rows:
        line = next(line for line in text.splitlines() if line.startswith(r.doc_id))
        assert r.sha256 in line
        assert f"{r.size:,}" in line
    for label in docs.SIGNATURE_BLANKS:
        assert re.search(rf"^{label}: +_{{20,}}$", text, re.M), label
    for words in (
        "902(13)",
        "902(14)",
        "UNSIGNED",
        "reviewed by counsel",
        "qualified person",
        "process of digital identification",
        "SHA-256 hash value",
        "accurate result",
        "regularly conducted activity",
        "verify_package.py",
        "transparency logs",
        "witness cosignatures",
        "People v. Doe",
        "IL:DOE-2026 (revision 7)",
        INFO.package_id,
        "Illinois (IL)",
        "Electronic files certified (10):",
    ):
        assert words in " ".join(text.split()), words


def test_certification_text_shows_hidden_characters_and_keeps_one_line_values() -> None:
    info = replace(INFO, matter_title="People v. Doe\nsecond line \u202e\x07", exporter_name="IL")
    text = docs.certification_text(info, [_row(1)])
    assert "Matter:          People v. Doe second line <U+202E><U+0007>" in text
    assert "Exporting state: IL\n" in text  # the code alone when the name is unknown


def test_verify_text_says_how_to_verify() -> None:
    text = docs.verify_text(INFO)
    assert "\r" not in text
    flat = " ".join(text.split())
    for words in (
        "python3 verify_package.py .",
        "compact verify PACKAGE",
        "--roster-pin SHA256",
        "0 every exhibit verified, and the package is anchored",
        "1 an exhibit failed",
        "2 the package failed",
        "3 every exhibit verified, but not anchored",
        "OUT OF BAND from the compact's founders",
        INFO.roster_v1_sha256,
        "Python 3.9 or newer",
        "`cryptography` package or PyNaCl",
        "pure-Python Ed25519",
        "sha256sum exhibits/",
        "index/exhibits.csv",
        "origin-manifest.dsse.json",
        "personal data",
        "under seal",
        "docs/exhibit-package.md in the Compact repository",
        "leading '",
    ):
        assert words in flat, words


def test_render_all_gives_every_file_with_its_line_ends() -> None:
    files = docs.render_all(INFO, TRICKY)
    assert tuple(files) == docs.PATHS
    for path in ("certification.txt", "VERIFY.txt"):
        assert b"\r" not in files[path]
        files[path].decode("utf-8")
    assert files["certification.txt"].decode() == docs.certification_text(INFO, TRICKY)
    for path in ("loadfiles/exhibits.dat", "loadfiles/exhibits.opt"):
        assert files[path].count(b"\n") == files[path].count(b"\r\n")
    for path in ("index/exhibits.pdf", "certification.pdf"):
        assert files[path].startswith(b"%PDF-")


def test_no_documents() -> None:
    files = docs.render_all(INFO, [])
    assert files["index/exhibits.csv"] == ",".join(docs.CSV_COLUMNS).encode() + b"\r\n"
    assert files["loadfiles/exhibits.opt"] == b""
    assert _read_dat(files["loadfiles/exhibits.dat"]) == [list(docs.DAT_FIELDS)]
    assert "This package has no documents." in _pdf_text(files["index/exhibits.pdf"])


def test_bad_exported_at_is_refused() -> None:
    with pytest.raises(ValueError, match="exported_at"):
        docs.certification_pdf(replace(INFO, exported_at="2026-05-01 12:00"), [_row(1)])


# --- PDFs -------------------------------------------------------------------------------------


def _pdf_objects(pdf: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """Each object by number (from the xref table): its dictionary text and, for a stream,
    its data (inflated)."""
    start = int(pdf.rsplit(b"startxref", 1)[1].split()[0])
    lines = pdf[start:].split(b"\n")
    assert lines[0].strip() == b"xref"
    first, count = map(int, lines[1].split())
    objects: dict[int, tuple[bytes, bytes | None]] = {}
    for i in range(count):
        offset, _, kind = lines[2 + i].split()
        if kind != b"n":
            continue
        head = re.match(rb"(\d+) 0 obj\s*", pdf[int(offset) :])
        assert head is not None and int(head.group(1)) == first + i
        body = pdf[int(offset) + head.end() :]
        stream = re.match(rb"(<<(?:(?!endobj).)*?>>)\s*stream\r?\n", body, re.S)
        if stream is None:
            objects[first + i] = (body[: body.index(b"endobj")], None)
            continue
        length = re.search(rb"/Length (\d+)", stream.group(1))
        assert length is not None
        data = body[stream.end() : stream.end() + int(length.group(1))]
        if b"/FlateDecode" in stream.group(1):
            data = zlib.decompress(data)
        objects[first + i] = (stream.group(1), data)
    return objects


def _unescape(literal: bytes) -> bytes:
    simple = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}

    def one(m: re.Match[bytes]) -> bytes:
        s = m.group(1)
        if s[:1].isdigit():
            return bytes([int(s, 8) & 0xFF])
        return simple.get(s, s)

    return re.sub(rb"\\([0-7]{1,3}|.)", one, literal, flags=re.S)


def _pdf_runs(pdf: bytes) -> list[list[str]]:
    """The text each page shows, one string per text-showing operator, in drawing order:
    a small reader for what fpdf2 writes (Type0 fonts, 2-byte codes, ToUnicode maps)."""
    objects = _pdf_objects(pdf)
    cmaps: dict[int, dict[bytes, str]] = {}
    for number, (head, _) in objects.items():
        ref = re.search(rb"/ToUnicode (\d+) 0 R", head)
        if ref and b"/Type0" in head:
            source = objects[int(ref.group(1))][1] or b""
            cmap: dict[bytes, str] = {}
            for block in re.findall(rb"beginbfchar(.*?)endbfchar", source, re.S):
                for code, uni in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                    cmap[bytes.fromhex(code.decode())] = bytes.fromhex(uni.decode()).decode(
                        "utf-16-be"
                    )
            for block in re.findall(rb"beginbfrange(.*?)endbfrange", source, re.S):
                for lo, hi, uni in re.findall(
                    rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
                ):
                    base = int(uni, 16)
                    for k, code in enumerate(range(int(lo, 16), int(hi, 16) + 1)):
                        cmap[code.to_bytes(2, "big")] = chr(base + k)
            cmaps[number] = cmap
    root = next(h for h, _ in objects.values() if b"/Type /Pages" in h)
    pages = [int(n) for n in re.findall(rb"(\d+) 0 R", root.split(b"/Kids", 1)[1])]
    out: list[list[str]] = []
    for page in pages:
        head = objects[page][0]
        resources_ref = re.search(rb"/Resources (\d+) 0 R", head)
        contents_ref = re.search(rb"/Contents (\d+) 0 R", head)
        assert resources_ref and contents_ref
        resources = objects[int(resources_ref.group(1))][0]
        fonts = {name: cmaps[int(n)] for name, n in re.findall(rb"/(F\d+) (\d+) 0 R", resources)}
        content = objects[int(contents_ref.group(1))][1] or b""
        font: dict[bytes, str] = {}
        runs: list[str] = []
        token = rb"/(F\d+)\s+[\d.]+\s+Tf|\(((?:\\.|[^\\()])*)\)\s*Tj|\[((?:\\.|[^\]\\])*)\]\s*TJ"
        for m in re.finditer(token, content, re.S):
            if m.group(1):
                font = fonts[m.group(1)]
                continue
            parts = (
                [m.group(2)]
                if m.group(2) is not None
                else re.findall(rb"\(((?:\\.|[^\\()])*)\)", m.group(3), re.S)
            )
            codes = b"".join(_unescape(p) for p in parts)
            runs.append(
                "".join(font.get(codes[i : i + 2], "\ufffd") for i in range(0, len(codes), 2))
            )
        out.append(runs)
    return out


def _pdf_text(pdf: bytes) -> str:
    return "\n".join("\n".join(runs) for runs in _pdf_runs(pdf))


def test_pdfs_are_reproducible_and_follow_their_input() -> None:
    rows = [_row(n, p) for n in range(1, 4) for p in (1, 2)]
    for render in (docs.certification_pdf, docs.index_pdf):
        first = render(INFO, rows)
        assert first.startswith(b"%PDF-")
        assert first.rstrip().endswith(b"%%EOF")
        assert render(INFO, rows) == first
        assert b"/CreationDate (D:20260501120000Z)" in first
        assert b"/Producer (Compact)" in first and b"/Creator (Compact)" in first
        assert b"fpdf" not in first.lower()
        changed = [rows[0], replace(rows[1], sha256="0" * 64), *rows[2:]]
        assert render(INFO, changed) != first
        assert render(replace(INFO, exported_at="2026-05-01T12:00:01Z"), rows) != first


def test_pdfs_are_the_same_in_another_process() -> None:
    """No dependence on hash seeds, the clock or the process: the same bytes elsewhere."""
    code = (
        "import hashlib, sys\n"
        "from tests.test_exhibit_docs import INFO, TRICKY\n"
        "from node.exhibit_docs import certification_pdf, index_pdf\n"
        "for f in (certification_pdf, index_pdf):\n"
        "    print(hashlib.sha256(f(INFO, TRICKY)).hexdigest())\n"
    )
    here = "\n".join(
        hashlib.sha256(f(INFO, TRICKY)).hexdigest()
        for f in (docs.certification_pdf, docs.index_pdf)
    )
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == here
        assert done.stderr == ""


def test_pdf_rendering_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing the font lacks reaches fpdf2 (no missing-glyph warnings): it is shown as
    <U+XXXX>; no warning either."""
    info = replace(INFO, matter_title="中文 \u202e {nb}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.DEBUG, logger="fpdf"):
            index = docs.index_pdf(info, TRICKY)
            cert = docs.certification_pdf(info, TRICKY)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    for pdf in (index, cert):
        text = _pdf_text(pdf)
        assert "<U+4E2D><U+6587> <U+202E> {nb}" in text  # {nb} is not fpdf2's page total
    assert "Ünïcödé: <U+4E2D><U+6587> 😀 <U+202E>evil" in _pdf_text(index)


def test_index_pdf_shows_every_document() -> None:
    pdf = docs.index_pdf(INFO, TRICKY)
    text = _pdf_text(pdf)
    for r in TRICKY:
        assert r.doc_id in text
        assert r.sha256[:32] in text and r.sha256[32:] in text
        assert r.global_id in text
    for words in (
        "Exhibit index",
        "People v. Doe",
        INFO.package_id,
        "Illinois (IL)",
        "2026-05-01T12:00:00Z",
        "6 exhibits, 7 documents (files)",
        "Page 1 of 1",
        "File: naïve ® file.JPG",
        "File: <U+000D>return.bin",
        " Tabbed",
        "Collected: not recorded",
        "1,001",
    ):
        assert words in text, words


def test_certification_pdf_has_the_words_of_the_text() -> None:
    rows = [_row(n, p) for n in range(1, 40) for p in (1, 2)]
    pdf = docs.certification_pdf(INFO, rows)
    pages = _pdf_runs(pdf)
    assert len(pages) > 1
    footer = f"Certification, exhibit package {INFO.package_id}"
    words: list[str] = []
    for number, runs in enumerate(pages, 1):
        assert footer in runs and f"Page {number} of {len(pages)}" in runs
        words += " ".join(r for r in runs if r != footer and not r.startswith("Page ")).split()
    assert words == docs.certification_text(INFO, rows).split()


def test_a_500_document_index_has_many_pages_and_long_rows_split() -> None:
    rows = [_row(n // 2 + 1, n % 2 + 1) for n in range(500)]
    long_lines = "\n".join(f"line {k}" for k in range(150))
    rows[3] = replace(rows[3], description=long_lines)
    pdf = docs.index_pdf(INFO, rows)
    pages = _pdf_runs(pdf)
    assert len(pages) > 10
    for number, runs in enumerate(pages, 1):
        assert f"Page {number} of {len(pages)}" in runs
    text = _pdf_text(pdf)
    assert all(r.doc_id in text for r in rows)
    # a row taller than a page goes on over the next pages, its document id repeated
    assert len(re.findall(rf"{re.escape(rows[3].doc_id)}\s+\(continued\)", text)) >= 2
    shown = [run for runs in pages for run in runs]
    assert [run for run in shown if run.startswith("line ")] == long_lines.split("\n")


def test_pdfs_open_with_pypdf() -> None:
    """A second reader, when one is installed (it is not a dependency)."""
    pypdf = pytest.importorskip("pypdf")
    rows = [_row(n) for n in range(1, 60)]
    for pdf in (docs.index_pdf(INFO, rows), docs.certification_pdf(INFO, rows)):
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        text = "".join(page.extract_text() for page in reader.pages)
        assert all(r.doc_id in text for r in rows)
