"""The bundle-transfer benchmark at a tiny size: two real nodes, every figure reported.

No timing is asserted here; figures come from `python -m bench.bundles`. These tests
check that it measures what it says: the bundle was delivered and stored with every
file's bytes, the bound streamed the same bytes in the same units, and each figure is
in the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import bundles as bench
from crypto.sealing import ABYTES, header_size

pytestmark = pytest.mark.timeout(300)


def test_sizes_parse_in_binary_and_decimal_units() -> None:
    assert bench.parse_size("2GiB") == 2 << 30
    assert bench.parse_size("256MiB") == 256 << 20
    assert bench.parse_size("4 mib") == 4 << 20
    assert bench.parse_size("10MB") == 10_000_000
    assert bench.parse_size("4096") == 4096
    for bad in ("", "two", "-1MiB", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_size(bad)


def test_unit_sizes_follow_the_sealed_stream() -> None:
    chunk = 1 << 20
    head = header_size(1)
    sealed = head + 3 * (chunk + ABYTES) + 100 + ABYTES  # three full chunks, a short one
    assert bench.unit_sizes(sealed, chunk) == (head, chunk + ABYTES, 100 + ABYTES)
    exact = head + 2 * (chunk + ABYTES)
    assert bench.unit_sizes(exact, chunk) == (head, chunk + ABYTES, chunk + ABYTES)


def test_evidence_files_differ_and_are_hashed_as_written(tmp_path: Path) -> None:
    files = bench.write_evidence(tmp_path, 3 * (1 << 20) + 5, 3, run=0)
    assert [f.size for f in files] == [(1 << 20) + 2, (1 << 20) + 2, (1 << 20) + 1]
    assert len({f.sha256 for f in files}) == 3
    for f in files:
        assert (tmp_path / f.name).stat().st_size == f.size


def test_run_smoke_two_nodes(tmp_path: Path) -> None:
    out = tmp_path / "bundles.json"
    lines: list[str] = []
    argv = ["--size", "4MiB", "--bound-rounds", "1", "--breakdown"]
    argv += ["--json", str(out), "--tmpdir", str(tmp_path)]
    assert bench.main(argv, out=lines.append) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    [r] = result["sizes"]
    assert r["evidence_bytes"] == 4 << 20 and r["files"] == 4 and r["chunk_bytes"] == 1 << 20
    assert r["units"] == 5  # the header, then four chunks of 1 MiB
    assert r["sealed_bytes"] == header_size(1) + 4 * ((1 << 20) + ABYTES)
    assert r["verified"] is True
    ours = r["ours"]
    assert ours["state_at_requester"] == "delivered"
    assert ours["verified"] == {
        "files": 4,
        "bytes_decrypted_and_hashed": 4 << 20,
        "receipt_taken_by_holder": True,
        "spools_removed": True,
    }
    assert len({f["sha256"] for f in ours["files"]}) == 4
    assert ours["transfer_seconds"] > 0 and ours["command_seconds"] > ours["transfer_seconds"]
    assert ours["mb_per_second"] == pytest.approx(
        r["sealed_bytes"] / ours["transfer_seconds"] / 1e6
    )
    assert set(ours["timeline_seconds"]) == set(bench._TIMELINE)
    steps = ours["steps_seconds"]
    assert set(steps) == {
        "transfer_span", "network", "wait_for_unit", "verify_decrypt", "hand_off",
        "spool_thread", "staging_thread", "save_progress", "settle", "store",
    }  # fmt: skip
    # every instrumented thread did its part of the transfer
    for step in ("network", "verify_decrypt", "spool_thread", "staging_thread", "store"):
        assert steps[step] > 0, step
    assert steps["transfer_span"] == ours["transfer_seconds"]
    bound = r["bound"]
    assert bound["bytes"] == r["sealed_bytes"] and bound["messages"] == r["units"]
    assert set(bound["mb_per_second"]) == {"raw", "protobuf"}
    assert r["ratio"] == pytest.approx(ours["mb_per_second"] / bound["mb_per_second"]["raw"])
    assert r["holder_peak_rss_mb"] > 0 and r["requester_peak_rss_mb"] > 0
    assert r["holder_peak_rss_at_start_mb"] <= r["holder_peak_rss_mb"]
    assert r["disk_write_twice_seconds"] > 0
    assert len(lines) == 1 and "bundle: 4 MiB of evidence in 4 files" in lines[0]
    assert not list(tmp_path.glob("compact-bench-bundles-*"))  # the temporary folder is gone
