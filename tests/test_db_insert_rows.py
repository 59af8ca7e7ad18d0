"""node.db.insert_rows: the driver's executemany for plain columns, on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from node import migrate
from node import models as m
from node.db import Database, insert_rows

TABLE = m.Base.metadata.tables["replica_pseudonyms"]
COLUMNS = ("state", "log_index", "position", "kind", "global_id", "pseudonym", "prefix")


def test_rows_arrive_exactly_and_values_stay_parameters(database_url: str) -> None:
    db = Database.from_url(database_url)
    migrate.upgrade(db.engine)
    tricky = "IL-'); DROP TABLE replica_entries; --"
    rows = [("IL", 2**40 + i, i, "badge", tricky, "ab" * 64, -(2**63) + i) for i in range(3)]
    with db.write() as s:
        insert_rows(s, TABLE, COLUMNS, rows)
        insert_rows(s, TABLE, COLUMNS, [])  # nothing to do
    with db.read() as s:
        got = sorted(tuple(r) for r in s.execute(select(*(TABLE.c[c] for c in COLUMNS))))
        assert got == rows
        assert s.scalar(select(m.ReplicaEntry.state).limit(1)) is None  # the table is still there
    db.dispose()


def test_columns_that_need_bind_processing_are_refused(database_url: str) -> None:
    db = Database.from_url(database_url)
    migrate.upgrade(db.engine)
    entries = m.Base.metadata.tables["replica_entries"]
    with db.write() as s, pytest.raises(TypeError, match="received_at"):
        insert_rows(s, entries, ("state", "received_at"), [("IL", "2026-11-21")])
    db.dispose()


def test_a_failed_insert_leaves_nothing(database_url: str) -> None:
    db = Database.from_url(database_url)
    migrate.upgrade(db.engine)
    row = ("IL", 1, 0, "badge", "IL-x", "ab" * 64, 1)
    with pytest.raises(Exception), db.write() as s:  # noqa: B017,PT011 - the driver's IntegrityError
        insert_rows(s, TABLE, COLUMNS, [row, row])  # the same key twice
    with db.read() as s:
        assert s.scalar(select(TABLE.c.state)) is None
    db.dispose()
