"""Recompute the expected keys of tests/golden/identifier_keys.json from node.normalize.

The golden file pins the identifier-key protocol (NORMALIZATION_VERSION). Its
cases (the input fields) are written by hand; this script only rewrites each
case's "expected" list from the current implementation, so that a rule change
shows up as a reviewable diff of the file. The tests never run it: they
compare the implementation with the committed file.

    python scripts/gen_golden_identifiers.py          # rewrite the expected values
    python scripts/gen_golden_identifiers.py --check  # list the cases that differ; exit 1 if any
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from node.normalize import identifier_keys

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "identifier_keys.json"
FIELDS = ("case", "agency", "name", "badge", "unit", "plate", "incident_state", "expected")


def expected_keys(case: dict[str, Any]) -> list[str]:
    """The "kind:value" strings the implementation derives for one case."""
    keys = identifier_keys(
        agency=case["agency"],
        name=case["name"],
        badge=case["badge"],
        unit=case["unit"],
        plate=case["plate"],
        incident_state=case["incident_state"],
    )
    return [str(k) for k in keys]


def regenerate(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cases with their fields in the standard order and "expected" recomputed."""
    out = []
    for case in cases:
        fields = {f: case.get(f) for f in FIELDS}
        fields["expected"] = expected_keys(fields)
        out.append(fields)
    return out


def render(cases: list[dict[str, Any]]) -> str:
    return json.dumps(cases, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    cases: list[dict[str, Any]] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    new = regenerate(cases)
    if "--check" in argv:
        changed = [
            n["case"]
            for old, n in zip(cases, new, strict=True)
            if old.get("expected") != n["expected"]
        ]
        for name in changed:
            print(f"differs: {name}", file=sys.stderr)
        if not changed and GOLDEN.read_text(encoding="utf-8") != render(new):
            print("differs: the file's layout (field order or formatting)", file=sys.stderr)
            return 1
        return 1 if changed else 0
    GOLDEN.write_text(render(new), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
