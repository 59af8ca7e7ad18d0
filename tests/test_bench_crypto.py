"""The crypto benchmark command runs every part and collects its figures (no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import crypto


def test_small_run_collects_every_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    assert (
        crypto.main(["--leaves", "2000", "--inputs", "20", "--mib", "2", "--json", str(out)]) == 0
    )
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert sorted(figures) == ["merkle", "oprf", "sealing"]
    printed = capsys.readouterr().out
    for name in crypto.PARTS:
        assert f"== {name}" in printed


def test_unknown_part_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        crypto.parse_args(["--only", "merkle,fft"])
    assert e.value.code == 2
