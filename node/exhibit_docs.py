"""The human-facing documents of an exhibit package (docs/design/exhibits.md, sections 4, 5).

Pure functions: each renders one file of the package from a `PackageInfo` and the package's
`DocumentRow`s (one per file of an exhibit, sorted by document id; that order is kept). The
only I/O is reading matplotlib's DejaVu fonts for the PDFs. `render_all` gives every file by
its package-relative path:

- `index/exhibits.csv`: RFC 4180 (CRLF rows, `"` doubled inside quoted cells), UTF-8 without
  BOM, a header row; values exact (newlines kept inside quoted cells).
- `loadfiles/exhibits.dat`: Concordance DAT, UTF-8 without BOM, CRLF rows, a header row, every
  field between þ (U+00FE) qualifiers, fields separated by U+0014. A line break inside a value
  (CRLF, CR, LF, NEL, U+2028, U+2029) is written as ® (U+00AE), as Concordance expects; a ® that
  was in the value reads back as a line break too (Concordance has no escape). Concordance has
  no escape for its delimiters either: a U+0014 or þ in a value is replaced by U+FFFD, so no
  value can end a field early or shift the columns.
- `loadfiles/exhibits.opt`: Opticon, CRLF: `DOCID,VOLUME,IMAGEPATH,Y,,,1` for each document
  whose media type starts with `image/` (one page each); other documents are natives, listed in
  the DAT only. Opticon has no quoting: in the volume (the package name, which the exporter
  chooses) each comma, control or line-breaking character is written as `_`; a document id or
  path with one (never made by the exporter) is refused with `ValueError`.
- `certification.txt` / `.pdf`: an unsigned certification of authenticity by hash, of the kind
  FRE 902(11), 902(13) and 902(14) contemplate, with blanks for the custodian; the .txt is the
  exact text, the PDF the same words wrapped. Its wording must be reviewed by counsel.
- `index/exhibits.pdf`: the exhibit index for people, "Page N of M".
- `VERIFY.txt`: how to verify the package, with and without the enclosed verifier.

Spreadsheet formula injection: a CSV or DAT cell whose value starts with `=`, `+`, `-`, `@`,
TAB or CR gets a leading `'`, so a spreadsheet or review tool that opens the file shows the
text instead of evaluating it (hashes, sizes, ids and paths never start so; the manifest
`package.dsse.json` keeps every value exact). A lone surrogate (not text; only a broken
decoder makes one) is written as U+FFFD in CSV and DAT.

The text files and PDFs show each single-line value on one line (a run of line breaks and tabs
becomes one space) and show characters a reader could not see or that would mislead (control
characters, bidirectional overrides, unassigned and private-use code points, and in a PDF
anything the font cannot draw) as `<U+XXXX>`; in the index PDF an original file name shows
its line breaks and tabs that way too.

PDFs are reproducible: the same input gives the same bytes (creation date = the package's
`exported_at`, producer and creator "Compact", the file /ID derived by fpdf2 from the content
and that date, no XMP). Page totals come from a first layout pass, not fpdf2's `{nb}` alias,
which would also rewrite a `{nb}` inside a description.
"""

from __future__ import annotations

import csv
import io
import re
import textwrap
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Final

from fpdf import FPDF
from fpdf.enums import Align, MethodReturnValue, XPos, YPos
from fpdf.fonts import TTFFont

CSV_COLUMNS: Final = (
    "Exhibit",
    "Document ID",
    "Description",
    "Origin State",
    "Global ID",
    "Original File Name",
    "Media Type",
    "SHA-256",
    "Size (bytes)",
    "Collected At",
    "Received At",
    "Native Path",
)
DAT_FIELDS: Final = (
    "BEGDOC",
    "ENDDOC",
    "EXHIBIT",
    "DESCRIPTION",
    "ORIGINSTATE",
    "GLOBALID",
    "FILENAME",
    "MEDIATYPE",
    "SHA256",
    "SIZE",
    "NATIVEPATH",
)
DAT_DELIMITER: Final = "\x14"
DAT_QUALIFIER: Final = "\u00fe"  # þ
DAT_NEWLINE: Final = "\u00ae"  # ®
REPLACEMENT: Final = "\ufffd"
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
PRODUCER: Final = "Compact"
TEXT_WIDTH: Final = 78  # columns of the .txt files
FORMAT_DOC: Final = "docs/exhibit-package.md in the Compact repository"

PATHS: Final = (
    "index/exhibits.csv",
    "index/exhibits.pdf",
    "loadfiles/exhibits.dat",
    "loadfiles/exhibits.opt",
    "certification.txt",
    "certification.pdf",
    "VERIFY.txt",
)


@dataclass(frozen=True)
class DocumentRow:
    """One file of one exhibit, as the package holds it."""

    exhibit: str  # "IL-MN-000001"
    doc_id: str  # "IL-MN-000001.001"
    description: str  # the exhibit's description (any Unicode, may contain newlines)
    origin: str  # origin state code, e.g. "MN"
    global_id: str  # e.g. "MN:2026-000123"
    file_name: str  # the original file name as received (any character but / and \)
    media_type: str  # e.g. "video/mp4"
    sha256: str  # lowercase hex
    size: int
    native_path: str  # package-relative POSIX path: "exhibits/IL-MN-000001/IL-MN-000001.001.mp4"
    collected_at: str | None  # RFC 3339 text or None
    received_at: str  # "YYYY-MM-DDTHH:MM:SSZ"


@dataclass(frozen=True)
class PackageInfo:
    """What the documents say about the package as a whole."""

    package_name: str  # the top folder name
    package_id: str  # 64 hex
    matter_id: str  # "IL:DOE-2026"
    matter_title: str
    matter_revision: int
    exporter: str  # state code
    exporter_name: str  # e.g. "Illinois" (may equal the code if unknown)
    exported_at: str  # "YYYY-MM-DDTHH:MM:SSZ"
    exported_by: str  # the user who exported
    roster_v1_sha256: str  # 64 hex: what a roster pin is compared with


# --- text helpers -------------------------------------------------------------------------

_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_LINE_BREAKS: Final = re.compile("\r\n|[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_BREAKS_AND_TABS: Final = re.compile("[\t\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


def _hidden(c: str) -> bool:
    """A character a reader would not see, or that would reorder what they see."""
    return c in _BIDI_CONTROLS or unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn")


def _visible(text: str, drawable: Callable[[str], bool] | None = None) -> str:
    """`text` with each hidden (or, given `drawable`, undrawable) character as <U+XXXX>;
    line feeds are kept."""
    return "".join(
        f"<U+{ord(c):04X}>"
        if c != "\n" and (_hidden(c) or (drawable is not None and not drawable(c)))
        else c
        for c in text
    )


def _one_line(text: str, drawable: Callable[[str], bool] | None = None) -> str:
    """A value shown on one line of a document: line breaks and tabs as one space."""
    return _visible(_BREAKS_AND_TABS.sub(" ", text), drawable)


def _lines(text: str, drawable: Callable[[str], bool] | None = None) -> str:
    """A value shown on several lines: every line break as LF, tabs as spaces."""
    return _visible(_LINE_BREAKS.sub("\n", text).replace("\t", " "), drawable)


def _no_surrogates(text: str) -> str:
    return "".join(REPLACEMENT if "\ud800" <= c <= "\udfff" else c for c in text)


def _defuse(value: str) -> str:
    """A cell a spreadsheet would read as a formula, as text (a leading `'`)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _size(n: int) -> str:
    return f"{n:,}"


def _row_cells(r: DocumentRow) -> list[str]:
    return [
        r.exhibit,
        r.doc_id,
        r.description,
        r.origin,
        r.global_id,
        r.file_name,
        r.media_type,
        r.sha256,
        str(r.size),
        r.collected_at or "",
        r.received_at,
        r.native_path,
    ]


def _exported_at(info: PackageInfo) -> datetime:
    try:
        return datetime.strptime(info.exported_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"exported_at must be YYYY-MM-DDTHH:MM:SSZ, not {info.exported_at!r}"
        ) from None


def _windows_path(path: str) -> str:
    return path.replace("/", "\\")


def _exhibit_count(rows: Sequence[DocumentRow]) -> int:
    return len({r.exhibit for r in rows})


# --- CSV, DAT, OPT ------------------------------------------------------------------------


def exhibits_csv(info: PackageInfo, rows: Sequence[DocumentRow]) -> bytes:
    """`index/exhibits.csv`: one row per document, RFC 4180, UTF-8 without BOM."""
    del info  # the same columns for every package
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([_defuse(_no_surrogates(c)) for c in _row_cells(r)])
    return buf.getvalue().encode("utf-8")


def _dat_field(value: str) -> str:
    value = _defuse(_no_surrogates(value))
    value = value.replace(DAT_DELIMITER, REPLACEMENT).replace(DAT_QUALIFIER, REPLACEMENT)
    value = re.sub("\r\n|[\r\n\x85\u2028\u2029]", DAT_NEWLINE, value)
    return DAT_QUALIFIER + value + DAT_QUALIFIER


def concordance_dat(info: PackageInfo, rows: Sequence[DocumentRow]) -> bytes:
    """`loadfiles/exhibits.dat`: Concordance delimiters, UTF-8 without BOM, CRLF."""
    del info
    lines = [DAT_DELIMITER.join(_dat_field(f) for f in DAT_FIELDS)]
    for r in rows:
        values = (
            r.doc_id,
            r.doc_id,
            r.exhibit,
            r.description,
            r.origin,
            r.global_id,
            r.file_name,
            r.media_type,
            r.sha256,
            str(r.size),
            _windows_path(r.native_path),
        )
        lines.append(DAT_DELIMITER.join(_dat_field(v) for v in values))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _opt_unsafe(c: str) -> bool:
    return c == "," or _hidden(c) or (c.isspace() and c != " ")


def _opt_field(what: str, value: str) -> str:
    if not value or any(_opt_unsafe(c) for c in value):
        raise ValueError(f"Opticon load file: {what} {value!r} is empty or has a comma or control")
    return value


def opticon_opt(info: PackageInfo, rows: Sequence[DocumentRow]) -> bytes:
    """`loadfiles/exhibits.opt`: one line per image document (one page each), CRLF."""
    volume = "".join("_" if _opt_unsafe(c) else c for c in info.package_name) or "_"
    lines = [
        ",".join(
            (
                _opt_field("document id", r.doc_id),
                volume,
                _opt_field("path", _windows_path(r.native_path)),
                "Y",
                "",
                "",
                "1",
            )
        )
        for r in rows
        if r.media_type.lower().startswith("image/")
    ]
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


# --- the certification ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """One part of a document, rendered the same way to text and PDF.

    kind: "title" (centered, bold), "para" (wrapped), "fields" (label: value lines), "table"
    (monospaced lines, not wrapped in the text), "signature" (a paragraph, then for each label
    a line to write on; on one page in the PDF)."""

    kind: str
    text: str = ""
    pairs: tuple[tuple[str, str], ...] = ()
    lines: tuple[str, ...] = ()


BLANK: Final = "_" * 44
SIGNATURE_BLANKS: Final = ("Name", "Title", "Agency", "Date", "Signature")


def _certification_blocks(info: PackageInfo, rows: Sequence[DocumentRow]) -> list[_Block]:
    state = _one_line(info.exporter_name)
    code = _one_line(info.exporter)
    who = state if state == code else f"{state} ({code})"
    docs = len(rows)
    id_width = max([len("Document ID"), *(len(_one_line(r.doc_id)) for r in rows)])
    size_width = max([len("Size (bytes)"), *(len(_size(r.size)) for r in rows)])
    table = [
        f"{'Document ID':<{id_width}}  {'Size (bytes)':>{size_width}}  SHA-256",
        *(
            f"{_one_line(r.doc_id):<{id_width}}  {_size(r.size):>{size_width}}  "
            f"{_one_line(r.sha256)}"
            for r in rows
        ),
    ]
    return [
        _Block("title", "CERTIFICATION OF AUTHENTICITY OF ELECTRONIC RECORDS BY HASH VALUE"),
        _Block(
            "para",
            "A certification of the kind US Federal Rules of Evidence 902(13) and 902(14) "
            "contemplate, with the statements of Rule 902(11) they require.",
        ),
        _Block(
            "para",
            "UNSIGNED DRAFT. The wording of this certification must be reviewed by counsel, and "
            "adapted to the court and jurisdiction, before it is signed or used.",
        ),
        _Block(
            "fields",
            pairs=(
                ("Matter", _one_line(info.matter_title)),
                ("Matter ID", f"{_one_line(info.matter_id)} (revision {info.matter_revision})"),
                ("Package", _one_line(info.package_name)),
                ("Package ID", _one_line(info.package_id)),
                ("Exporting state", who),
                ("Exported at", _one_line(info.exported_at)),
                ("Exported by", _one_line(info.exported_by)),
            ),
        ),
        _Block("para", "I, the undersigned, certify as follows:"),
        _Block(
            "para",
            f"1. I am a custodian of the records of {state} described below, or another "
            "qualified person: my duties make me familiar with the manner in which these "
            "records are received, made, kept and copied, and I am qualified to make this "
            "certification.",
        ),
        _Block(
            "para",
            f"2. Each electronic file listed below was copied from the records of {state} by a "
            "process of digital identification: its SHA-256 hash value was computed when it was "
            "received and recorded, and computed again from the copy and compared with the "
            "recorded value; the values listed below are those of the copies, and they are "
            "identical to the recorded values.",
        ),
        _Block(
            "para",
            "3. SHA-256 is a cryptographic hash function standardized by the National Institute "
            "of Standards and Technology (FIPS 180-4). Files with the same SHA-256 hash value "
            "are, with near certainty, identical. The process described above produces an "
            "accurate result: each listed file is a true and exact duplicate of the record.",
        ),
        _Block(
            "para",
            "4. The records were made at or near the time of the acts, events or conditions "
            "they record, by, or from information transmitted by, a person with knowledge of "
            f"those matters; they were made and kept in the course of the regularly conducted "
            f"activity of {state}; and making and keeping them was a regular practice of that "
            "activity. Files received from another state are listed with that state as their "
            "origin in the exhibit index; the package records the chain of custody of each.",
        ),
        _Block(
            "para",
            "5. The package's cryptographic verification, namely the digital signatures on its "
            "manifest, custody records and roster, the inclusion proofs of the custody records "
            "in the states' transparency logs, and the witness cosignatures on those logs, can "
            "be repeated by anyone with the verifier enclosed in the package (verify_package.py; "
            "see VERIFY.txt), without access to any system of the exporting state.",
        ),
        _Block("para", f"Electronic files certified ({docs}):"),
        _Block("table", lines=tuple(table)),
        _Block(
            "signature",
            "I declare under penalty of perjury under the laws of the United States of America "
            "that the foregoing is true and correct.",
            lines=SIGNATURE_BLANKS,
        ),
    ]


def _blocks_text(blocks: Iterable[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if b.kind == "title":
            out.append(b.text.center(TEXT_WIDTH).rstrip())
        elif b.kind == "para":
            out.extend(
                textwrap.wrap(b.text, TEXT_WIDTH, break_long_words=False, break_on_hyphens=False)
            )
        elif b.kind == "fields":
            width = max(len(k) for k, _ in b.pairs) + 2
            for k, v in b.pairs:
                out.extend(
                    textwrap.wrap(
                        v,
                        TEXT_WIDTH,
                        initial_indent=f"{k + ':':<{width}}",
                        subsequent_indent=" " * width,
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                    or [f"{k}:"]
                )
        elif b.kind == "table":
            out.extend(b.lines)
        elif b.kind == "signature":
            out.extend(
                textwrap.wrap(b.text, TEXT_WIDTH, break_long_words=False, break_on_hyphens=False)
            )
            out.append("")
            width = max(len(k) for k in b.lines) + 2
            for i, k in enumerate(b.lines):
                if i:
                    out.append("")
                out.append(f"{k + ':':<{width}}{BLANK}")
        out.append("")
    return "\n".join(out)


def certification_text(info: PackageInfo, rows: Sequence[DocumentRow]) -> str:
    """`certification.txt`: the exact text of the (unsigned) certification."""
    return _blocks_text(_certification_blocks(info, rows))


# --- PDF ---------------------------------------------------------------------------------

SANS: Final = "dejavu"
MONO: Final = "dejavumono"


@cache
def _font_files() -> tuple[Path, Path, Path]:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return (
        folder / "DejaVuSans.ttf",
        folder / "DejaVuSans-Bold.ttf",
        folder / "DejaVuSansMono.ttf",
    )


class _Pdf(FPDF):
    """Letter pages, DejaVu fonts, fixed metadata, a footer "Page N of M" (M from a first
    pass; 0 while counting)."""

    def __init__(
        self, info: PackageInfo, *, landscape: bool, title: str, footer: str, total: int
    ) -> None:
        created = _exported_at(info)  # refused before any font file is open
        super().__init__(orientation="L" if landscape else "P", unit="mm", format="letter")
        self.alias_nb_pages(None)  # type: ignore[arg-type]  # documented: None disables it
        regular, bold, mono = _font_files()
        try:
            self.add_font(SANS, "", str(regular))
            self.add_font(SANS, "B", str(bold))
            self.add_font(MONO, "", str(mono))
        except BaseException:
            _close_fonts(self)
            raise
        self.set_creation_date(created)
        self.set_producer(PRODUCER)
        self.set_creator(PRODUCER)
        self.set_title(title)
        self.set_subject(f"Exhibit package {info.package_id}")
        self.set_lang("en-US")
        self.set_margins(12, 12, 12)
        self.c_margin = 0  # cells are padded where drawn (PAD)
        self.footer_text = footer
        self.total = total
        self.cmaps: dict[str, frozenset[int]] = {}
        for key in (SANS, SANS + "B", MONO):
            font = self.fonts[key]
            assert isinstance(font, TTFFont)
            self.cmaps[key] = frozenset(font.cmap)

    def text_for(self, key: str, text: str, *, multiline: bool = False) -> str:
        """`text` as the font `key` can draw it (module docstring)."""
        cmap = self.cmaps[key]

        def drawable(c: str) -> bool:
            return ord(c) in cmap

        return _lines(text, drawable) if multiline else _one_line(text, drawable)

    def exact_for(self, key: str, text: str) -> str:
        """`text` on one line with every control character shown, line breaks too: for
        values, like file names, where a tab or a line break is part of the name."""
        cmap = self.cmaps[key]
        return "".join(f"<U+{ord(c):04X}>" if _hidden(c) or ord(c) not in cmap else c for c in text)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(SANS, "", 7)
        self.set_text_color(90)
        width = self.w - self.l_margin - self.r_margin
        self.cell(width, 4, self.text_for(SANS, self.footer_text), align=Align.L)
        self.set_x(self.l_margin)
        self.cell(width, 4, f"Page {self.page_no()} of {self.total}", align=Align.R)
        self.set_text_color(0)

    def text_lines(self, width: float, height: float, text: str, align: Align = Align.L) -> None:
        """`text` wrapped to `width` mm from the current position; then at the left margin."""
        self.multi_cell(width, height, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def use_font(self, key: str, size: float) -> None:
        """Font `key` (SANS, SANS + "B" or MONO) at `size` pt."""
        family, style = (key[:-1], "B") if key.endswith("B") else (key, "")
        self.set_font(family, style, size)

    def wrap(self, key: str, size: float, width: float, text: str) -> list[str]:
        """`text` (already drawable) broken into lines of at most `width` mm."""
        self.use_font(key, size)
        lines = self.multi_cell(width, 1, text, dry_run=True, output=MethodReturnValue.LINES)
        assert isinstance(lines, list)
        return [str(line) for line in lines] or [""]


def _two_pass(make: Callable[[int], _Pdf], draw: Callable[[_Pdf], None]) -> bytes:
    """Lay the document out once to count its pages, then for good with the total."""
    total = 0
    for final in (False, True):
        pdf = make(total)
        try:
            draw(pdf)
            if final:
                return bytes(pdf.output())
            total = pdf.pages_count
        finally:
            _close_fonts(pdf)
    raise AssertionError("not reached")


def _close_fonts(pdf: FPDF) -> None:
    """Close the font files fontTools keeps open (it reads them lazily)."""
    for font in pdf.fonts.values():
        if isinstance(font, TTFFont):
            font.ttfont.close()


def _draw_blocks(pdf: _Pdf, blocks: Sequence[_Block]) -> None:
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for b in blocks:
        if b.kind == "title":
            pdf.set_font(SANS, "B", 12)
            pdf.text_lines(width, 6, pdf.text_for(SANS + "B", b.text), align=Align.C)
        elif b.kind == "para":
            pdf.set_font(SANS, "", 10)
            pdf.text_lines(width, 5, pdf.text_for(SANS, b.text), align=Align.L)
        elif b.kind == "fields":
            label_w = 34.0
            for k, v in b.pairs:
                pdf.set_font(SANS, "B", 10)
                pdf.cell(label_w, 5, f"{k}:")
                pdf.set_font(SANS, "", 10)
                pdf.text_lines(width - label_w, 5, pdf.text_for(SANS, v))
        elif b.kind == "table":
            pdf.set_font(MONO, "", 7)
            for line in b.lines:
                pdf.text_lines(width, 3.6, pdf.text_for(MONO, line), align=Align.L)
        elif b.kind == "signature":
            pdf.set_font(SANS, "", 10)
            lines = pdf.wrap(SANS, 10, width, pdf.text_for(SANS, b.text))
            if pdf.will_page_break(len(lines) * 5 + len(b.lines) * 12):
                pdf.add_page()
            pdf.text_lines(width, 5, pdf.text_for(SANS, b.text))
            for k in b.lines:
                pdf.ln(4)
                pdf.cell(24, 8, f"{k}:")
                pdf.cell(0, 8, BLANK, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(3)


def certification_pdf(info: PackageInfo, rows: Sequence[DocumentRow]) -> bytes:
    """`certification.pdf`: the words of `certification_text`, wrapped, ready to print."""
    blocks = _certification_blocks(info, rows)

    def make(total: int) -> _Pdf:
        return _Pdf(
            info,
            landscape=False,
            title=f"Certification: exhibit package {info.package_id}",
            footer=f"Certification, exhibit package {info.package_id}",
            total=total,
        )

    def draw(pdf: _Pdf) -> None:
        pdf.set_auto_page_break(True, margin=16)
        pdf.add_page()
        _draw_blocks(pdf, blocks)

    return _two_pass(make, draw)


# --- the exhibit index PDF ------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    title: str
    width: float  # mm
    font: str  # SANS, SANS + "B" or MONO
    size: float  # pt
    line: float  # line height, mm
    align: Align = Align.L


INDEX_COLUMNS: Final = (
    _Column("Exhibit", 24, SANS + "B", 7, 3.1),
    _Column("Document ID", 28, SANS, 7, 3.1),
    _Column("Description, original file name, media type", 68, SANS, 7, 3.1),
    _Column("Origin, global ID", 26, SANS, 7, 3.1),
    _Column("SHA-256", 43, MONO, 6, 2.7),
    _Column("Size (bytes)", 20, SANS, 7, 3.1, Align.R),
    _Column("Collected, received (UTC or as recorded)", 46, SANS, 6.5, 2.9),
)
PAD: Final = 1.0  # mm, inside each cell
FOOTER_SPACE: Final = 16.0  # mm kept free at the bottom of a page


def _index_cells(pdf: _Pdf, r: DocumentRow) -> list[str]:
    """The text of each column of `r`, drawable in that column's font."""
    sans, mono = SANS, MONO
    description = [pdf.text_for(sans, r.description, multiline=True)] if r.description else []
    return [
        pdf.text_for(SANS + "B", r.exhibit),
        pdf.text_for(sans, r.doc_id),
        "\n".join(
            [
                *description,
                "File: " + pdf.exact_for(sans, r.file_name),
                "Type: " + pdf.text_for(sans, r.media_type),
            ]
        ),
        pdf.text_for(sans, r.origin) + "\n" + pdf.text_for(sans, r.global_id),
        pdf.text_for(mono, r.sha256[:32]) + "\n" + pdf.text_for(mono, r.sha256[32:]),
        _size(r.size),
        "Collected: "
        + (pdf.text_for(sans, r.collected_at) if r.collected_at else "not recorded")
        + "\nReceived: "
        + pdf.text_for(sans, r.received_at),
    ]


def _wrap_row(pdf: _Pdf, r: DocumentRow) -> tuple[list[list[str]], list[str]]:
    """Each column's lines, and the document column's lines on a continuation page."""
    cells = _index_cells(pdf, r)
    lines = [
        pdf.wrap(c.font, c.size, c.width - 2 * PAD, text)
        for c, text in zip(INDEX_COLUMNS, cells, strict=True)
    ]
    doc = INDEX_COLUMNS[1]
    cont = pdf.wrap(doc.font, doc.size, doc.width - 2 * PAD, f"{cells[1]} (continued)")
    return lines, cont


def _index_title(pdf: _Pdf, info: PackageInfo, rows: Sequence[DocumentRow]) -> None:
    width = pdf.w - pdf.l_margin - pdf.r_margin
    pdf.set_auto_page_break(True, margin=FOOTER_SPACE)  # a very long title may need a page
    pdf.set_font(SANS, "B", 14)
    pdf.text_lines(width, 7, "Exhibit index")
    pdf.ln(1)
    state = pdf.text_for(SANS, info.exporter_name)
    code = pdf.text_for(SANS, info.exporter)
    documents = len(rows)
    exhibits = _exhibit_count(rows)
    fields = (
        ("Matter", pdf.text_for(SANS, info.matter_title)),
        ("Matter ID", f"{pdf.text_for(SANS, info.matter_id)} (revision {info.matter_revision})"),
        ("Package", pdf.text_for(SANS, info.package_name)),
        ("Package ID", pdf.text_for(SANS, info.package_id)),
        ("Exporting state", state if state == code else f"{state} ({code})"),
        ("Exported at", pdf.text_for(SANS, info.exported_at)),
        ("Exported by", pdf.text_for(SANS, info.exported_by)),
        (
            "Contents",
            f"{exhibits} exhibit{'s' * (exhibits != 1)}, "
            f"{documents} document{'s' * (documents != 1)} (files)",
        ),
    )
    for k, v in fields:
        pdf.set_font(SANS, "B", 9)
        pdf.cell(30, 4.5, f"{k}:")
        pdf.set_font(SANS, "", 9)
        pdf.text_lines(width - 30, 4.5, v)
    pdf.ln(1.5)
    pdf.set_font(SANS, "", 7.5)
    pdf.multi_cell(
        width,
        3.5,
        "One row per document (one file of an exhibit). The SHA-256 hash value and size are "
        "those of the file in the package (under exhibits/, named by its document ID). "
        "index/exhibits.csv holds the same rows for "
        "machines; certification.pdf certifies them; VERIFY.txt says how to check them. "
        "Characters that cannot be shown are written <U+XXXX>.",
        align=Align.L,
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(2)
    pdf.set_auto_page_break(False)


def _index_header_row(pdf: _Pdf) -> None:
    """The column titles at the current y; moves below them."""
    lines = [pdf.wrap(SANS + "B", 7, c.width - 2 * PAD, c.title) for c in INDEX_COLUMNS]
    height = max(len(x) for x in lines) * 3.1 + 2 * PAD
    x, y = pdf.l_margin, pdf.get_y()
    pdf.set_fill_color(225)
    pdf.rect(x, y, sum(c.width for c in INDEX_COLUMNS), height, style="F")
    pdf.set_font(SANS, "B", 7)
    for c, col_lines in zip(INDEX_COLUMNS, lines, strict=True):
        for i, line in enumerate(col_lines):
            pdf.set_xy(x + PAD, y + PAD + i * 3.1)
            pdf.cell(c.width - 2 * PAD, 3.1, line, align=c.align)
        x += c.width
    pdf.set_y(y + height)


def _draw_segment(pdf: _Pdf, y: float, lines: Sequence[Sequence[str]]) -> float:
    """One row (or the part of one that fits) at `y`, a rule beneath; its height."""
    height = max(len(x) * c.line for c, x in zip(INDEX_COLUMNS, lines, strict=True)) + 2 * PAD
    x = pdf.l_margin
    for c, col_lines in zip(INDEX_COLUMNS, lines, strict=True):
        pdf.use_font(c.font, c.size)
        for i, line in enumerate(col_lines):
            pdf.set_xy(x + PAD, y + PAD + i * c.line)
            pdf.cell(c.width - 2 * PAD, c.line, line, align=c.align)
        x += c.width
    pdf.set_draw_color(170)
    pdf.set_line_width(0.15)
    pdf.line(pdf.l_margin, y + height, x, y + height)
    return height


def index_pdf(info: PackageInfo, rows: Sequence[DocumentRow]) -> bytes:
    """`index/exhibits.pdf`: the exhibit index for people, one row per document."""
    wrapped: list[tuple[list[list[str]], list[str]]] = []

    def make(total: int) -> _Pdf:
        return _Pdf(
            info,
            landscape=True,
            title=f"Exhibit index: exhibit package {info.package_id}",
            footer=f"{info.package_name}: index/exhibits.pdf",
            total=total,
        )

    def draw(pdf: _Pdf) -> None:
        bottom = pdf.h - FOOTER_SPACE
        pdf.set_auto_page_break(False)

        def new_page() -> float:
            pdf.add_page()
            if pdf.page_no() == 1:
                _index_title(pdf, info, rows)
            else:
                pdf.set_font(SANS, "", 7)
                pdf.set_text_color(90)
                pdf.cell(
                    0,
                    4,
                    pdf.text_for(
                        SANS, f"Exhibit index, matter {info.matter_id}, package {info.package_id}"
                    ),
                    new_x=XPos.LMARGIN,
                    new_y=YPos.NEXT,
                )
                pdf.set_text_color(0)
                pdf.ln(1)
            _index_header_row(pdf)
            return pdf.get_y()

        y = top = new_page()
        if not wrapped:  # once: the second pass breaks the lines the same way
            wrapped.extend(_wrap_row(pdf, r) for r in rows)
        if not rows:
            pdf.set_font(SANS, "", 9)
            pdf.set_xy(pdf.l_margin, y + 2)
            pdf.cell(0, 5, "This package has no documents.")
        for lines, cont in wrapped:
            pending = [list(x) for x in lines]
            while True:
                need = (
                    max(len(x) * c.line for c, x in zip(INDEX_COLUMNS, pending, strict=True))
                    + 2 * PAD
                )
                if y + need <= bottom:
                    y += _draw_segment(pdf, y, pending)
                    break
                if y > top and top + need <= bottom:  # fits on a page of its own
                    y = top = new_page()
                    continue
                fits = [int((bottom - y - 2 * PAD) // c.line) for c in INDEX_COLUMNS]
                if min(fits) < 3:  # too little room left for a useful part of the row
                    y = top = new_page()
                    continue
                y += _draw_segment(pdf, y, [x[:n] for x, n in zip(pending, fits, strict=True)])
                pending = [x[n:] for x, n in zip(pending, fits, strict=True)]
                if not pending[1]:
                    pending[1] = list(cont)
                y = top = new_page()

    return _two_pass(make, draw)


# --- VERIFY.txt ---------------------------------------------------------------------------


def verify_text(info: PackageInfo) -> str:
    """`VERIFY.txt`: how to verify the package, with the enclosed verifier or by hand."""
    state = _one_line(info.exporter_name)
    code = _one_line(info.exporter)
    who = state if state == code else f"{state} ({code})"

    def para(text: str, indent: int = 0) -> list[str]:
        return textwrap.wrap(
            text,
            TEXT_WIDTH,
            initial_indent=" " * indent,
            subsequent_indent=" " * indent,
            break_long_words=False,
            break_on_hyphens=False,
        )

    title = "HOW TO VERIFY THIS EXHIBIT PACKAGE"
    out = [
        title,
        "=" * len(title),
        "",
        f"Package:      {_one_line(info.package_name)}",
        f"Package ID:   {_one_line(info.package_id)}",
        f"Matter:       {_one_line(info.matter_title)}",
        f"Matter ID:    {_one_line(info.matter_id)} (revision {info.matter_revision})",
        f"Exported by:  {who}, {_one_line(info.exported_by)}",
        f"Exported at:  {_one_line(info.exported_at)}",
        "",
        *para(
            "This folder is an exhibit package of the interstate accountability compact: each "
            "evidence file exactly as the exporting state holds it, the signed custody records "
            "of each file, the proofs that those records are in the states' append-only "
            "transparency logs, the witnesses' cosignatures on those logs, and the compact's "
            "roster of member states and their keys. Anyone can check all of it, offline, "
            "with no access to any state's systems."
        ),
        "",
        "1. With the enclosed verifier",
        "",
        "   python3 verify_package.py .                 (inside this folder)",
        "   python3 verify_package.py PACKAGE           (the folder or its .zip)",
        "   compact verify PACKAGE                      (where Compact is installed)",
        "",
        *para(
            "verify_package.py is a single file that needs only Python 3.9 or newer. It "
            "checks Ed25519 signatures with the `cryptography` package or PyNaCl if either is "
            "installed, and otherwise with a slower pure-Python Ed25519 built into the script; "
            "all three accept exactly the same signatures. It reports each exhibit as "
            "VERIFIED or FAILED, with the reasons, and exits with:",
            3,
        ),
        "",
        "   0  every exhibit verified, and the package is anchored to your roster pin",
        "   1  an exhibit failed (each exhibit is reported)",
        "   2  the package failed (its container, roster, manifest or inventory)",
        "   3  every exhibit verified, but not anchored: run it again with",
        "      --roster-pin SHA256, the pin obtained out of band (see 2.)",
        "",
        "2. The roster pin",
        "",
        *para(
            "Every signature in the package leads back to the compact's roster: the member "
            "states and their public keys, whose first version (v1) the founding states "
            "signed, each later version signed by the one before. The package carries its own "
            "copy of the roster, so on its own it proves only that the package agrees with "
            "itself. A pin anchors it: the SHA-256 hash value of roster version 1, obtained "
            "OUT OF BAND from the compact's founders (as they publish it, or from a person you "
            "trust there), never from this package. Give it as --roster-pin SHA256.",
            3,
        ),
        "",
        *para("Roster version 1 in this package has the SHA-256 hash value", 3),
        f"   {_one_line(info.roster_v1_sha256)}",
        *para(
            "Compare the pin you obtained with it; do not take it from here as the pin.",
            3,
        ),
        "",
        "3. By hand, without the verifier",
        "",
        *para(
            "index/exhibits.csv (and certification.txt) list each document's SHA-256 hash "
            "value; its file is in the package at the path in the CSV's Native Path column. "
            "Compute the file's hash and compare:",
            3,
        ),
        "",
        "   sha256sum exhibits/IL-MN-000001/IL-MN-000001.001.mp4      (Linux)",
        "   shasum -a 256 exhibits/IL-MN-000001/IL-MN-000001.001.mp4  (macOS)",
        "   certutil -hashfile exhibits\\IL-MN-000001\\IL-MN-000001.001.mp4 SHA256",
        "                                                            (Windows)",
        "",
        *para(
            "Equal values show that the file is the one listed. This does not check the "
            "signatures, the custody records, the logs or the witnesses: only the verifier "
            "does.",
            3,
        ),
        "",
        "4. Personal data: file under seal",
        "",
        *para(
            "The origin manifests (exhibits/*/origin-manifest.dsse.json) contain the whole "
            "incident record as the origin state holds it, not only what the exhibit index "
            "shows: names, addresses and other personal data of the people involved, "
            "including complainants and witnesses. They are signed as a whole and cannot be "
            "redacted without breaking verification. File the package under seal, and share "
            "it only as the court's orders and the law allow.",
            3,
        ),
        "",
        "5. The other files",
        "",
        *para(
            "certification.txt and certification.pdf: a certification of authenticity by "
            "hash value, unsigned, for the custodian's signature after review by counsel. "
            "index/exhibits.pdf and .csv: the exhibit index. loadfiles/exhibits.dat and .opt: "
            "Concordance and Opticon load files for e-discovery tools (UTF-8; natives in the "
            "DAT, images also in the OPT). In the CSV and DAT, a value starting with =, +, -, "
            "@, a tab or a carriage return is written with a leading ' so that spreadsheets "
            "do not run it as a formula; in the DAT, line breaks are written as the character "
            "\u00ae and the characters \u00fe and U+0014 as U+FFFD. package.dsse.json, the "
            "signed manifest, has every value exactly.",
            3,
        ),
        "",
        "6. The format",
        "",
        *para(f"The package format is specified in {FORMAT_DOC}.", 3),
        "",
    ]
    return "\n".join(out)


# --- all of them ----------------------------------------------------------------------------


def render_all(info: PackageInfo, rows: Sequence[DocumentRow]) -> dict[str, bytes]:
    """Every human-facing document of the package, by package-relative path."""
    return {
        "index/exhibits.csv": exhibits_csv(info, rows),
        "index/exhibits.pdf": index_pdf(info, rows),
        "loadfiles/exhibits.dat": concordance_dat(info, rows),
        "loadfiles/exhibits.opt": opticon_opt(info, rows),
        "certification.txt": certification_text(info, rows).encode("utf-8"),
        "certification.pdf": certification_pdf(info, rows),
        "VERIFY.txt": verify_text(info).encode("utf-8"),
    }
