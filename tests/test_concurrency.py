"""Concurrent writers: several processes importing at once lose nothing, duplicate nothing."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crypto.fields import FieldCipher
from node import models as m
from node.blobstore import BlobStore
from node.config import LimitSettings
from node.db import Database
from node.errors import StorageError
from node.ingest import NodeStorage, ingest_file
from tests.helpers import DATA_KEY, make_storage, record, write_jsonl

WORKERS = 4
PER_WORKER = 40


def _import(url: str, root: str, path: str) -> str:
    storage = NodeStorage(
        db=Database.from_url(url),
        blobs=BlobStore(Path(root) / "blobs", DATA_KEY),
        fields=FieldCipher(DATA_KEY),
        state="IL",
        limits=LimitSettings(),
    )
    try:
        report = ingest_file(
            storage,
            Path(path),
            actor="worker",
        )
        return f"imported {report.imported} unchanged {report.unchanged}"
    except StorageError as e:
        return f"conflict {e}"
    finally:
        storage.db.dispose()


def test_concurrent_imports_of_different_files_all_land(database_url: str, tmp_path: Path) -> None:
    make_storage(database_url, tmp_path / "node").db.dispose()
    files = []
    for w in range(WORKERS):
        (tmp_path / f"w{w}" / "m").mkdir(parents=True)
        (tmp_path / f"w{w}" / "m" / "e.txt").write_bytes(b"shared evidence")  # same blob in all
        recs = [
            record(f"W{w}-{i}", evidence=[{"path": "m/e.txt", "media_type": "text/plain"}])
            for i in range(PER_WORKER)
        ]
        files.append(str(write_jsonl(tmp_path / f"w{w}", recs)))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(WORKERS) as pool:
        results = pool.starmap(_import, [(database_url, str(tmp_path / "node"), f) for f in files])
    db = Database.from_url(database_url)
    with db.read() as s:
        incidents = s.execute(select(func.count()).select_from(m.Incident)).scalar_one()
        blobs = s.execute(select(func.count()).select_from(m.Blob)).scalar_one()
    db.dispose()
    assert results == [f"imported {PER_WORKER} unchanged 0"] * WORKERS
    assert incidents == PER_WORKER * WORKERS
    assert blobs == 1
    storage = make_storage(database_url, tmp_path / "node")
    assert b"".join(
        storage.blobs.read(hashlib.sha256(b"shared evidence").hexdigest(), chunk_size=64)
    ) == (b"shared evidence")
    storage.db.dispose()


@pytest.mark.parametrize("runs", [3])
def test_concurrent_imports_of_the_same_file_never_duplicate(
    database_url: str, tmp_path: Path, runs: int
) -> None:
    make_storage(database_url, tmp_path / "node").db.dispose()
    path = str(write_jsonl(tmp_path / "in", [record(f"S-{i}") for i in range(PER_WORKER)]))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(runs) as pool:
        results = pool.starmap(_import, [(database_url, str(tmp_path / "node"), path)] * runs)
    db = Database.from_url(database_url)
    with db.read() as s:
        incidents = s.execute(select(func.count()).select_from(m.Incident)).scalar_one()
    db.dispose()
    assert incidents == PER_WORKER
    assert sum(r == f"imported {PER_WORKER} unchanged 0" for r in results) == 1, results
    for r in results:
        assert r in (
            f"imported {PER_WORKER} unchanged 0",
            f"imported 0 unchanged {PER_WORKER}",
        ) or (r.startswith("conflict") and "run it again" in r), r
