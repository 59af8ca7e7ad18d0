"""Fault injection (issue 9): `compact ingest` killed with SIGKILL at many moments.

An import of 120 incidents, each with its own 1 MiB evidence file, is started again and
again and killed after a growing delay: while it reads and hashes, while it encrypts
into the blob store, while it writes the database, after it ended. After each kill:
either no incident of the file is visible or all of them are (the import is one
transaction), every visible incident has all its agents, people and evidence, and every
evidence item's blob is there and decrypts to its SHA-256. Then the same import runs to
the end: every record exactly once, and the blob store holds exactly the blobs the
records name (what a killed import left there is used, not duplicated).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from node import models as m
from node.config import Config
from node.setup import open_storage, read_secret, unlock
from tests.helpers import record, write_jsonl
from tests.nodeproc import REPO, init_test_node, run_compact

pytestmark = pytest.mark.timeout(600)

INCIDENTS = 120
FILE_BYTES = 1024 * 1024


def _import_folder(root: Path) -> Path:
    media = root / "media"
    media.mkdir(parents=True)
    records = []
    for i in range(INCIDENTS):
        (media / f"clip-{i}.bin").write_bytes(os.urandom(FILE_BYTES))
        records.append(
            record(
                f"IL-K-{i}",
                evidence=[{"path": f"media/clip-{i}.bin", "media_type": "video/mp4"}],
            )
        )
    return write_jsonl(root, records)


def _check_consistent(config: Config) -> int:
    """Fail unless the node shows none or all of the import, each incident whole and
    each blob readable with its hash; returns how many incidents it shows."""
    storage = open_storage(config, unlock(config, read_secret(config)))
    try:
        with storage.db.read() as s:
            incidents = s.scalar(select(func.count()).select_from(m.Incident)) or 0
            assert incidents in (0, INCIDENTS), f"{incidents} of {INCIDENTS} incidents visible"
            items = list(s.execute(select(m.EvidenceItem.incident_id, m.EvidenceItem.sha256)))
            agents = s.scalar(select(func.count()).select_from(m.AgentObservation)) or 0
            people = s.scalar(select(func.count()).select_from(m.Person)) or 0
        per_record = record("x")
        assert len(items) == incidents
        assert agents == incidents * len(per_record["agents"])
        assert people == incidents * len(per_record["people"])
        for _, sha256 in items:
            h = hashlib.sha256()
            for chunk in storage.blobs.read(sha256, chunk_size=1 << 20):
                h.update(chunk)
            assert h.hexdigest() == sha256
        return int(incidents)
    finally:
        storage.db.dispose()


def _blobs(config: Config) -> set[str]:
    root = config.blob_dir
    return {p.name for p in root.glob("??/??/*") if p.is_file()}


def test_sigkill_during_ingest(tmp_path: Path) -> None:
    config = init_test_node(tmp_path / "node")
    source = _import_folder(tmp_path / "in")
    command = [sys.executable, "-m", "node.cli", "ingest", str(source),
               "--data-dir", str(config.data_dir)]  # fmt: skip

    killed_running = 0
    seen: set[int] = set()
    delay = 0.4  # Python and the node's imports take about half a second
    while delay < 15:
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=30)
        if code == -signal.SIGKILL:
            killed_running += 1
        visible = _check_consistent(config)
        seen.add(visible)
        if visible:
            break  # committed: later kills can only hit a re-import that changes nothing
        delay += 0.05
    assert INCIDENTS in seen, "no import committed before it was killed"
    assert killed_running >= 5, "the import ended before most kills: make it larger"

    # Run to the end: each record once, the blobs exactly those the records name.
    run_compact("ingest", str(source), "--data-dir", str(config.data_dir))
    assert _check_consistent(config) == INCIDENTS
    storage = open_storage(config, unlock(config, read_secret(config)))
    try:
        with storage.db.read() as s:
            ids = list(s.scalars(select(m.Incident.external_id)))
            named = set(s.scalars(select(m.EvidenceItem.sha256)))
    finally:
        storage.db.dispose()
    assert sorted(ids) == sorted(f"IL-K-{i}" for i in range(INCIDENTS))
    assert _blobs(config) == named
    # The kills left partly written blobs in `.staging`; the sweep that every import
    # runs removes them once they are a minute old and no live writer holds them.
    staging = config.blob_dir / ".staging"
    left = [p for p in staging.iterdir() if p.is_file()]
    assert left, "no kill landed while a blob was being written"
    storage = open_storage(config, unlock(config, read_secret(config)))
    try:
        assert storage.blobs.sweep_staging() == 0  # too recent: could be a live writer's
        live = storage.blobs.writer("ab" * 32)  # a live writer's file, locked
        try:
            assert storage.blobs.sweep_staging(older_than_seconds=0) == len(left)
            assert [p.name for p in staging.iterdir() if p.is_file()] == [live._tmp.name]
        finally:
            live.abort()
    finally:
        storage.db.dispose()
    assert not [p for p in staging.iterdir() if p.is_file()]
