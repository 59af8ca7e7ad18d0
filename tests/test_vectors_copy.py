"""tests/vectors is a copy of the compact's published vectors (shared/vectors).

The conformance tests read the copy so that they run from any checkout; this
test fails if the copy and the published set ever differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "vectors"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def test_the_copy_matches_the_published_vectors() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not beside this checkout; cannot compare the copy")
    published = sorted(p.name for p in SHARED.iterdir() if p.is_file())
    assert sorted(p.name for p in HERE.iterdir() if p.is_file()) == published
    for name in published:
        assert (HERE / name).read_bytes() == (SHARED / name).read_bytes(), name
