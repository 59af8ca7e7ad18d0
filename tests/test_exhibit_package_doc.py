"""docs/exhibit-package.md and the verifier name the same fields.

The format document marks its field tables with `<!-- fields:NAME -->` anchors. The
verifier's schemas are closed (a field missing or unknown fails), and every exported
package passes it (tests/test_exhibit_export.py), so a table that matches the verifier's
field list matches what the exporter writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from federation import verify_package as vp

DOC = Path(__file__).resolve().parent.parent / "docs" / "exhibit-package.md"


def table(name: str) -> dict[str, str]:
    """The rows of the anchored table `name`: each field named in the first column (a row
    may name several, `a`, `b`) -> the second column."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(
        rf"<!-- fields:{re.escape(name)} -->\n(.*?)\n<!-- /fields:{re.escape(name)} -->",
        text,
        re.S,
    )
    assert found is not None, f"no <!-- fields:{name} --> table in {DOC.name}"
    rows: dict[str, str] = {}
    for line in found.group(1).splitlines()[2:]:  # past the header and its rule
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 2, line
        names = re.findall(r"`([a-z_0-9]+)`", cells[0])
        assert names, line
        for field in names:
            assert field not in rows, f"{field} twice in {name}"
            rows[field] = cells[1]
    return rows


def quoted(cell: str) -> list[str]:
    """The JSON member names a value cell shows: `{"id", "revision", …}`."""
    return re.findall(r'"([^"]+)"', cell.split("`:", maxsplit=1)[0])


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("package", vp._MANIFEST_FIELDS),
        ("file", vp._FILE_FIELDS),
        ("custody-entry", vp._ENTRY_FIELDS),
        ("custody-record", vp._CUSTODY_FIELDS),
    ],
)
def test_each_table_lists_the_verifiers_fields(name: str, fields: tuple[str, ...]) -> None:
    assert sorted(table(name)) == sorted(fields)


def test_the_manifest_rows_show_the_nested_members() -> None:
    rows = table("package")
    assert quoted(rows["matter"]) == list(vp._MATTER_REF_FIELDS)
    assert quoted(rows["roster"]) == list(vp._ROSTER_REF_FIELDS)
    assert quoted(rows["exhibits"]) == list(vp._EXHIBIT_FIELDS)
    assert quoted(rows["files"]) == list(vp._INVENTORY_FIELDS)
    logs = quoted(rows["logs"])
    assert sorted(logs) == sorted(vp._LOG_FIELDS + vp._CHECKPOINT_REF_FIELDS)
    assert quoted(rows["format"]) == [vp.PACKAGE_FORMAT]


def test_the_constants_the_document_states() -> None:
    text = DOC.read_text(encoding="utf-8")
    for constant in (vp.PACKAGE_TYPE, vp.PACKAGE_FORMAT, vp.MANIFEST_NAME):
        assert f"`{constant}`" in text or f'`"{constant}"`' in text, constant
    custody = table("custody-record")
    assert quoted(custody["format"]) == [vp.CUSTODY_FORMAT]
