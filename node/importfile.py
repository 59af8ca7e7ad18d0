"""Reading import files: JSON Lines, and a CSV form with the same fields flattened.

Both produce `(line_number, decoded value)` pairs, or a `LineError` for a line
that cannot be decoded, for `node.importformat.parse_record` to validate.

CSV columns are the import format's field paths: `external_id`, `occurred_at`,
`location.county`, `agents.0.badge`, `people.1.role`, `evidence.0.path`, ...;
`conduct` holds values separated by `;`. Empty cells are absent fields; the
boolean columns (`masked`, `identified_self`, `body_camera`) take true/false,
`location.lat` and `location.lon` take numbers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

from node.config import LimitSettings
from node.importformat import decode_line
from node.records import LineError

_BOOLEAN_FIELDS: Final = frozenset({"masked", "identified_self", "body_camera"})
_NUMBER_FIELDS: Final = frozenset({"location.lat", "location.lon"})
_TRUE: Final = frozenset({"true", "yes", "1"})
_FALSE: Final = frozenset({"false", "no", "0"})
_COLUMN: Final = re.compile(
    r"^(external_id|occurred_at|reported_at|status|source|sharing|narrative|conduct"
    r"|location\.(address|city|county|state|kind|lat|lon)"
    r"|agents\.\d{1,4}\.(name|badge|agency|unit|vehicle_plate|masked|identified_self|body_camera|role)"
    r"|people\.\d{1,4}\.(role|name|contact)"
    r"|evidence\.\d{1,4}\.(path|media_type|captured_at|captured_by|description))$"
)


# What a misspelt column name looks like (occured_at, location.conty), unlike a record's
# values (names, phone numbers, free text, dates): only such a name is repeated in an error.
_PATH_LIKE: Final = re.compile(r"[a-z][a-z0-9_.]{0,63}")


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (empty, unreadable, bad CSV header)."""


Decoded = tuple[int, Any] | LineError


def read_import_file(path: Path, limits: LimitSettings) -> Iterator[Decoded]:
    """Decoded records of `path`, by its suffix: .csv is CSV, anything else JSON Lines."""
    with path.open("rb") as f:
        if path.suffix.lower() == ".csv":
            yield from read_csv(f, limits)
        else:
            yield from read_jsonl(f, limits)


def read_jsonl(f: BinaryIO, limits: LimitSettings) -> Iterator[Decoded]:
    """One JSON value per line; blank lines are skipped, a UTF-8 BOM is allowed."""
    count = 0
    line_number = 0
    while True:
        raw = f.readline(limits.max_line_bytes + 2)
        if not raw:
            break
        line_number += 1
        if len(raw) > limits.max_line_bytes + 1 and not raw.endswith(b"\n"):
            # Skip the rest of an overlong line without holding it in memory.
            while (more := f.readline(1 << 20)) and not more.endswith(b"\n"):
                pass
            yield LineError(
                line_number, "", f"longer than the limit of {limits.max_line_bytes} bytes"
            )
            continue
        if line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        count += 1
        if count > limits.max_import_lines:
            raise ImportFileError(f"more than the limit of {limits.max_import_lines} records")
        decoded = decode_line(line_number, raw, limits)
        yield decoded if isinstance(decoded, LineError) else (line_number, decoded)
    if count == 0:
        raise ImportFileError("the file holds no records")


def read_csv(f: BinaryIO, limits: LimitSettings) -> Iterator[Decoded]:
    """CSV with a header row of field paths (see the module documentation)."""
    try:
        text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
        reader = csv.reader(text, strict=True)
        csv.field_size_limit(limits.max_line_bytes)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError("the file holds no records") from None
        except csv.Error as e:  # its message names the rule, never the content
            raise ImportFileError(f"the CSV header is not valid CSV ({e})") from None
        bad = [(i, c) for i, c in enumerate(header, 1) if not _COLUMN.match(c)]
        if bad:
            # A file without its header row has a record there: a name is shown only if it
            # looks like a misspelt field path, any other by its position (#3).
            shown = [c if _PATH_LIKE.fullmatch(c) else f"#{i}" for i, c in bad[:10]]
            hint = "; is the header row missing?" if any(s.startswith("#") for s in shown) else ""
            raise ImportFileError(f"unknown CSV column(s): {', '.join(shown)}{hint}")
        if len(set(header)) != len(header):
            raise ImportFileError("a CSV column appears twice")
        count = 0
        while True:
            line_number = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                yield LineError(line_number, "", f"not valid CSV ({e})")
                continue
            if not any(cell.strip() for cell in row):
                continue
            count += 1
            if count > limits.max_import_lines:
                raise ImportFileError(f"more than the limit of {limits.max_import_lines} records")
            if len(row) != len(header):
                yield LineError(line_number, "", f"expected {len(header)} cells, found {len(row)}")
                continue
            yield line_number, _unflatten(dict(zip(header, row, strict=True)))
    except UnicodeDecodeError:
        raise ImportFileError("the file is not valid UTF-8") from None
    if count == 0:
        raise ImportFileError("the file holds no records")


def _cell(column: str, value: str) -> Any:
    leaf = column.rsplit(".", 1)[-1]
    if leaf in _BOOLEAN_FIELDS:
        low = value.strip().lower()
        return True if low in _TRUE else False if low in _FALSE else value
    if column in _NUMBER_FIELDS:
        try:
            return float(value)
        except ValueError:
            return value
    if column == "conduct":
        return [v.strip() for v in value.split(";") if v.strip()]
    return value


def _unflatten(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    lists: dict[str, dict[int, dict[str, Any]]] = {}
    for column, value in row.items():
        if value == "":
            continue
        parts = column.split(".")
        if parts[0] in ("agents", "people", "evidence"):
            lists.setdefault(parts[0], {}).setdefault(int(parts[1]), {})[parts[2]] = _cell(
                column, value
            )
        elif parts[0] == "location":
            record.setdefault("location", {})[parts[1]] = _cell(column, value)
        else:
            record[column] = _cell(column, value)
    for name, items in lists.items():
        record[name] = [items[i] for i in sorted(items)]
    return record
