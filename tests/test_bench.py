"""The import benchmark at tiny sizes: it measures what it says it measures.

No timing is asserted here (figures belong in docs/BENCHMARKS.md); these tests
check the counts: the raw baseline inserts exactly the rows the import wrote,
every evidence file is stored, the report holds every figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from bench import ingest as bench
from node.config import LimitSettings
from node.importformat import parse_record
from node.records import IncidentInput


def test_generated_records_are_valid_deterministic_and_share_agents() -> None:
    records = list(bench.generate_records(40, seed=7, pool_size=10))
    assert records == list(bench.generate_records(40, seed=7, pool_size=10))
    assert records != list(bench.generate_records(40, seed=8, pool_size=10))
    parsed = [
        parse_record(i + 1, r, node_state=bench.STATE, limits=LimitSettings())
        for i, r in enumerate(records)
    ]
    assert all(isinstance(p, IncidentInput) for p in parsed), parsed
    assert all(len(r["agents"]) == 3 and 1 <= len(r["conduct"]) <= 3 for r in records)
    assert all(r["narrative"] and r["people"] and "evidence" not in r for r in records)
    badges = [a["badge"] for r in records for a in r["agents"]]
    assert len(set(badges)) <= 10 < len(badges)  # identifiers repeat across incidents


def test_raw_baseline_inserts_exactly_the_rows_the_import_wrote(tmp_path: Path) -> None:
    result, import_file = bench.bench_incidents(tmp_path, 200, seed=3, pool_size=50)
    assert import_file.is_file()
    rows = result.rows
    assert rows["incidents"] == 200
    assert rows["agent_observations"] == 600
    assert rows["people"] == 200
    assert rows["audit_events"] == 1
    assert 200 <= rows["incident_conduct"] <= 600
    assert rows["identifier_keys"] >= 600
    assert rows["evidence_items"] == rows["blobs"] == rows["custody_events"] == 0
    # Counted again in the baseline's own database, and row for row the same.
    assert result.raw_rows == rows
    assert bench.read_back(tmp_path / "raw.db") == bench.read_back(tmp_path / "node.db")
    figures = result.to_json()
    assert figures["total_rows"] == sum(rows.values())
    assert set(figures["import_phases_seconds"]) >= {"validating", "writing records"}


def test_evidence_bench_stores_every_file(tmp_path: Path) -> None:
    result = bench.bench_evidence(tmp_path, 4, 1, seed=5)
    assert (result.files, result.evidence_stored, result.bytes) == (4, 4, 4 * bench.MiB)
    root = tmp_path / "evidence-node" / "blobs"
    blobs = [p for p in root.rglob("*") if p.is_file() and p.parent.parent.parent == root]
    assert len(blobs) == 4  # <root>/<aa>/<bb>/<sha256>, one per file


def test_evidence_sizes_add_up() -> None:
    assert bench.evidence_sizes(1024, 64) == [64] * 16
    assert bench.evidence_sizes(10, 4) == [4, 4, 2]
    assert bench.evidence_sizes(0, 64) == []


def test_evidence_files_are_distinct(tmp_path: Path) -> None:
    _import_file, files = bench.write_evidence_import(tmp_path, [2, 2], seed=1)
    first, second = (f.read_bytes() for f in files)
    assert len(first) == len(second) == 2 * bench.MiB
    assert first != second
    assert first[: bench.MiB] != first[bench.MiB :]


def test_memory_probe_runs_in_a_child(tmp_path: Path) -> None:
    probe = bench.run_memory_probe(1, tmp_path)
    assert probe.size_mib == 1
    assert probe.evidence_stored == 1
    assert probe.peak_rss_kib >= probe.peak_rss_kib_before_import > 0
    assert list(tmp_path.iterdir()) == []  # the child cleaned up


def test_main_writes_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    work = tmp_path / "work"
    work.mkdir()
    code = bench.main(
        [
            "--incidents",
            "60",
            "--skip-postgres",
            "--evidence-mib",
            "2",
            "--evidence-file-mib",
            "1",
            "--skip-memory-probe",
            "--json",
            str(out),
            "--tmpdir",
            str(work),
        ]
    )
    assert code == 0
    assert list(work.iterdir()) == []  # temporary folders removed
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["incidents"]["incidents"] == 60
    assert figures["incidents"]["rows_by_table"] == figures["incidents"]["raw_rows_by_table"]
    assert figures["postgres"] is None
    assert figures["postgres_skipped"] == "--skip-postgres"
    assert figures["evidence"]["files"] == figures["evidence"]["evidence_stored"] == 2
    assert set(figures["goals"]) == {"sqlite_vs_raw_executemany", "evidence_vs_hash_encrypt"}
    assert figures["machine"]["nproc"] >= 1
    assert figures["command"].startswith("python -m bench.ingest --incidents 60")
    shown = capsys.readouterr().out
    assert "ratio ours / raw" in shown
    assert "ratio ours / baseline" in shown


@pytest.mark.postgres
def test_postgres_import_writes_the_same_rows(tmp_path: Path) -> None:
    reason = bench.postgres_unavailable(bench.DEFAULT_POSTGRES_URL)
    if reason:
        pytest.skip(f"{reason}: the PostgreSQL benchmark is not checked")
    result, import_file = bench.bench_incidents(tmp_path, 100, seed=2, pool_size=20)

    def bench_databases() -> set[str]:
        with psycopg.connect(bench.DEFAULT_POSTGRES_URL) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'compact_bench_%'"
            ).fetchall()
        return {str(r[0]) for r in rows}

    before = bench_databases()
    pg = bench.bench_postgres(
        tmp_path, import_file, 100, result.import_seconds, bench.DEFAULT_POSTGRES_URL
    )
    assert pg.rows == result.rows
    assert pg.server_version
    assert bench_databases() <= before  # its database was dropped
