"""replica_pseudonyms keyed by log position, with a small indexed prefix; no index on
replica_entries.current

The first layout (0003) keyed rows by global id and indexed the full 128-digit
pseudonym: every new row went to a random place in two large indexes, and
replicating a peer's log of 100,000 entries spent most of its time there. Rows
are now keyed by (state, log_index, position, kind), so a replica grows at the
end of the table (WITHOUT ROWID on SQLite), and only the pseudonym's first 8
bytes are indexed. Rows are carried over: each old row finds its entry's log
index through replica_entries (peers) or published_entries (this node).

The index on replica_entries.current alone (two values) is dropped: without
statistics SQLite's planner preferred it to (state, global_id), so each batch
of a sync scanned every current entry, and a sync slowed as the replica grew.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def _prefix(pseudonym: str) -> int:
    return int.from_bytes(bytes.fromhex(pseudonym[:16]), "big", signed=True)


def _old_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("state", sa.String(length=2), nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("pseudonym", sa.String(length=128), nullable=False),
    ]


def _new_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("state", sa.String(length=2), nullable=False),
        sa.Column("log_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("pseudonym", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.BigInteger(), nullable=False),
    ]


def _insert(table: sa.Table, rows: list[dict[str, object]]) -> None:
    for start in range(0, len(rows), _BATCH):
        op.get_bind().execute(table.insert(), rows[start : start + _BATCH])


def upgrade() -> None:
    with op.batch_alter_table("replica_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replica_entries_current"))
    conn = op.get_bind()
    carried = [
        dict(r._mapping)
        for r in conn.execute(
            sa.text(
                "SELECT rp.state, rp.global_id, rp.position, rp.kind, rp.pseudonym,"
                " COALESCE(re.log_index, pe.log_index) AS log_index"
                " FROM replica_pseudonyms rp"
                " LEFT JOIN replica_entries re ON re.state = rp.state"
                "  AND re.global_id = rp.global_id AND re.current = :yes"
                " LEFT JOIN published_entries pe ON pe.global_id = rp.global_id"
            ),
            {"yes": True},
        )
    ]
    with op.batch_alter_table("replica_pseudonyms", schema=None) as batch_op:
        batch_op.drop_index("ix_replica_pseudonyms_pseudonym")
    op.drop_table("replica_pseudonyms")
    table = op.create_table(
        "replica_pseudonyms",
        *_new_columns(),
        sa.PrimaryKeyConstraint(
            "state", "log_index", "position", "kind", name=op.f("pk_replica_pseudonyms")
        ),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("replica_pseudonyms", schema=None) as batch_op:
        batch_op.create_index("ix_replica_pseudonyms_prefix", ["prefix"], unique=False)
    assert table is not None
    _insert(
        table,
        [
            {**r, "prefix": _prefix(str(r["pseudonym"]))}
            for r in carried
            if r["log_index"] is not None  # a row whose entry is gone indexed nothing
        ],
    )


def downgrade() -> None:
    conn = op.get_bind()
    carried = [
        dict(r._mapping)
        for r in conn.execute(
            sa.text("SELECT state, global_id, position, kind, pseudonym FROM replica_pseudonyms")
        )
    ]
    with op.batch_alter_table("replica_pseudonyms", schema=None) as batch_op:
        batch_op.drop_index("ix_replica_pseudonyms_prefix")
    op.drop_table("replica_pseudonyms")
    table = op.create_table(
        "replica_pseudonyms",
        *_old_columns(),
        sa.PrimaryKeyConstraint(
            "state", "global_id", "position", "kind", name=op.f("pk_replica_pseudonyms")
        ),
    )
    with op.batch_alter_table("replica_pseudonyms", schema=None) as batch_op:
        batch_op.create_index("ix_replica_pseudonyms_pseudonym", ["pseudonym"], unique=False)
    assert table is not None
    _insert(table, carried)
    with op.batch_alter_table("replica_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_replica_entries_current"), ["current"], unique=False)
