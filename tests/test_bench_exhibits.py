"""The exhibit-package benchmark at a tiny size: three real nodes, every figure reported.

No timing is asserted here; figures come from `python -m bench.exhibits`. These tests
check that it measures what it says: the package was exported with every exhibit and
verified as a folder and as a zip, SHA-256 hashed the same bytes the verifier did, a
package that does not verify stops the benchmark, and each figure is in the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import exhibits as bench
from bench.bundles import BenchError

pytestmark = pytest.mark.timeout(300)


def test_sha256_files_hashes_every_byte(tmp_path: Path) -> None:
    sizes = [0, 1, (1 << 20) + 7]
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i]) * size)
        paths.append(path)
    assert bench.sha256_files(paths)[0] == sum(sizes)


def test_memory_verdict_judges_growth_between_the_smallest_and_largest_size() -> None:
    def result(size: int, peak: float) -> dict[str, object]:
        commands = {k: {"peak_rss_mb": peak} for k in ("folder", "zip", "script")}
        return {"evidence_bytes": size, "export": {"peak_rss_mb": peak}, "commands": commands}

    assert bench.memory_verdict([result(1, 100.0)])["goal_met"] is None
    flat = bench.memory_verdict([result(2, 105.0), result(1, 100.0)])
    assert flat["goal_met"] is True and flat["growth"]["export"] == pytest.approx(0.05)
    grows = bench.memory_verdict([result(1, 100.0), result(2, 111.0)])
    assert grows["goal_met"] is False


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str], Path]:
    tmp = tmp_path_factory.mktemp("bench-exhibits")
    out = tmp / "exhibits.json"
    lines: list[str] = []
    argv = ["--size", "3MiB", "--exhibits", "3", "--rounds", "2"]
    assert bench.main([*argv, "--json", str(out), "--tmpdir", str(tmp)], out=lines.append) == 0
    return json.loads(out.read_text(encoding="utf-8")), lines, tmp


def test_run_smoke_three_nodes(smoke: tuple[dict[str, Any], list[str], Path]) -> None:
    result, lines, tmp = smoke
    [r] = result["sizes"]
    assert (r["evidence_bytes"], r["exhibits"]) == (3 << 20, 3)
    e, v, c = r["export"], r["verify"], r["commands"]
    assert (e["exhibits"], e["files"]) == (3, 3)
    assert e["record_and_log_seconds"] > 0 and e["write_seconds"] > 0
    assert e["peak_rss_mb"] > 0 and e["zip_bytes"] > 0
    # SHA-256 and the verifier hashed the same bytes: the evidence and every other file
    assert v["bytes"] > 3 << 20 and v["package_files"] > 3 and v["rounds"] == 2
    assert set(v["seconds"]) == {"sha256", "folder", "zip"}
    assert v["ratio"]["folder"] == pytest.approx(
        v["mb_per_second"]["folder"] / v["mb_per_second"]["sha256"]
    )
    assert r["goal_met"] == (min(v["ratio"].values()) >= bench.RATIO_GOAL)
    assert c["script"]["ed25519"] == "pure-python"
    for name in ("folder", "zip", "script"):
        assert c[name]["seconds"] > 0 and c[name]["peak_rss_mb"] > 0
    assert result["memory"] == {"judged": False, "goal_met": None, "growth": {}}
    assert "exhibits: 3 exhibits, 3 MiB of evidence" in lines[0]
    assert not list(tmp.glob("compact-bench-exhibits-*"))  # the temporary folder is gone


def test_a_package_that_does_not_verify_stops_the_benchmark(tmp_path: Path) -> None:
    """verify_once refuses a package whose report is not VERIFIED: a folder without its
    manifest here."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "exhibit.bin").write_bytes(b"x")
    with pytest.raises(BenchError, match="did not verify"):
        bench.verify_once(package, "0" * 64, 1)
