"""Custody events are signed and logged once each, however many loggers run at once.

`Publisher.log_custody` selects the events not logged yet and appends them; `compact
serve`, `compact sync` and an exhibit export may all call it together. The log's append
lock is taken before the select (on PostgreSQL an advisory lock, on SQLite the write
transaction itself), so no two loggers sign one event.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from sqlalchemy import func, select

from node import models as m
from node.db import Database
from node.ingest import ingest_file
from node.publish import CUSTODY_KIND, Publisher
from node.translog import TransparencyLog
from tests.helpers import make_storage, record, write_jsonl
from tests.test_fedservice import IL

LOGGERS = 4
INCIDENTS = 30


def test_concurrent_loggers_log_each_custody_event_once(database_url: str, tmp_path: Path) -> None:
    storage = make_storage(database_url, tmp_path / "node")
    media = tmp_path / "import" / "media"
    media.mkdir(parents=True)
    records = []
    for i in range(INCIDENTS):
        (media / f"clip{i}.mp4").write_bytes(f"video {i}".encode())
        evidence = [{"path": f"media/clip{i}.mp4", "media_type": "video/mp4"}]
        records.append(record(f"IL-{i}", evidence=evidence))
    path = write_jsonl(tmp_path / "import", records)
    assert ingest_file(storage, path, actor="clerk").imported == INCIDENTS
    with storage.db.read() as s:
        events = s.scalar(select(func.count()).select_from(m.CustodyEvent))
    assert events == INCIDENTS  # one `received` each (no captured_at: no `collected`)

    start = threading.Barrier(LOGGERS)
    logged: list[int] = []
    errors: list[BaseException] = []

    def logger() -> None:
        db = Database.from_url(database_url)
        try:
            publisher = Publisher(
                dataclasses.replace(storage, db=db), TransparencyLog(db), IL.signing_key
            )
            start.wait()
            logged.append(publisher.log_custody())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            db.dispose()

    threads = [threading.Thread(target=logger) for _ in range(LOGGERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(logged) == events
    with storage.db.read() as s:
        entries = s.scalar(
            select(func.count()).select_from(m.LogEntry).where(m.LogEntry.kind == CUSTODY_KIND)
        )
        indexes = list(s.scalars(select(m.CustodyEvent.log_index)))
    assert entries == events
    assert None not in indexes and len(set(indexes)) == events
    storage.db.dispose()
