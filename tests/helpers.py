"""Test helpers: node storage on any backend, import files, state snapshots."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from crypto.fields import FieldCipher
from node import migrate
from node import models as m
from node.blobstore import BlobStore
from node.config import LimitSettings
from node.db import Database
from node.ingest import NodeStorage

DATA_KEY = bytes(range(32))


def make_storage(url: str, root: Path, *, limits: LimitSettings | None = None) -> NodeStorage:
    db = Database.from_url(url)
    migrate.upgrade(db.engine)
    return NodeStorage(
        db=db,
        blobs=BlobStore(root / "blobs", DATA_KEY),
        fields=FieldCipher(DATA_KEY),
        state="IL",
        limits=limits or LimitSettings(),
    )


def small_limits(**changes: Any) -> LimitSettings:
    return replace(LimitSettings(), **changes)


def record(external_id: str = "IL-T-1", **changes: Any) -> dict[str, Any]:
    """A valid import record; `changes` replace top-level fields."""
    base: dict[str, Any] = {
        "external_id": external_id,
        "occurred_at": "2025-10-04T07:15:00-05:00",
        "location": {"county": "Cook", "state": "IL", "kind": "school", "city": "Chicago"},
        "conduct": ["warrantless_arrest", "masked_agent"],
        "status": "substantiated",
        "source": "hotline",
        "narrative": "secret narrative text",
        "agents": [
            {
                "name": "Smith, John Q.",
                "badge": "04471",
                "agency": "ICE-ERO",
                "unit": "Chicago SRT",
                "vehicle_plate": "IL ABC 1234",
                "masked": True,
                "role": "primary",
            }
        ],
        "people": [{"role": "victim", "name": "Jane Roe", "contact": "+1 312 555 0100"}],
    }
    base.update(changes)
    return base


def write_jsonl(folder: Path, records: list[Any], name: str = "incidents.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def snapshot(storage: NodeStorage) -> dict[str, Any]:
    """Row counts of every table and every file of the blob store with its hash."""
    counts: dict[str, Any] = {}
    with storage.db.read() as s:
        for table in m.Base.metadata.sorted_tables:
            counts[table.name] = s.execute(select(func.count()).select_from(table)).scalar_one()
    files = {}
    root = storage.blobs.root
    if root.exists():
        for dirpath, _dirs, names in os.walk(root):
            for n in names:
                p = Path(dirpath) / n
                files[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    counts["blob_files"] = files
    return counts
