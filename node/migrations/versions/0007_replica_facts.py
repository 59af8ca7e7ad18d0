"""replica_incidents and replica_agents: what current index entries say, as columns

The analysts' reports (federation.analysis) group and filter a replica by day,
county, conduct and agency; reading those from the signed envelopes would parse
every entry for every report. Both tables are filled from here on as entries are
published or replicated (node.publish.index_pseudonyms), and here from the current
entries already stored: peers' current replica entries, and this node's own
published entries (their envelopes are in its log). Withdrawn entries have no rows.

The envelopes were verified when they were stored; this reads them with the
standard library only (DSSE JSON, base64 payload, canonical JSON content), so
that the migration does not change when the code does.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def _flag(value: object) -> int | None:
    return None if value is None else int(bool(value))


def _current_entries(conn: sa.Connection) -> Iterator[tuple[str, int, bytes]]:
    """(state, log index, envelope) of every current entry, peers' and this node's, read a
    thousand rows at a time (a replica of millions of entries does not fit in memory)."""
    streamed = {"stream_results": True, "max_row_buffer": 1000}
    peers = conn.execute(
        sa.text(
            "SELECT state, log_index, envelope FROM replica_entries"
            " WHERE current = :yes AND withdrawn = :no"
        ).execution_options(**streamed),
        {"yes": True, "no": False},
    )
    for state, index, envelope in peers:
        yield str(state), int(index), bytes(envelope)
    own = conn.execute(
        sa.text(
            "SELECT pe.global_id, pe.log_index, le.payload FROM published_entries pe"
            ' JOIN log_entries le ON le."index" = pe.log_index WHERE pe.withdrawn = :no'
        ).execution_options(**streamed),
        {"no": False},
    )
    for global_id, index, payload in own:
        yield str(global_id)[:2], int(index), bytes(payload)


def upgrade() -> None:
    incidents = op.create_table(
        "replica_incidents",
        sa.Column("state", sa.String(length=2), nullable=False),
        sa.Column("log_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("county", sa.String(length=1000), nullable=False),
        sa.Column("location_kind", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("conduct", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("state", "log_index", name=op.f("pk_replica_incidents")),
        sqlite_with_rowid=False,
    )
    agents = op.create_table(
        "replica_agents",
        sa.Column("state", sa.String(length=2), nullable=False),
        sa.Column("log_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("agency", sa.String(length=40), nullable=True),
        sa.Column("role", sa.String(length=40), nullable=False),
        sa.Column("masked", sa.Integer(), nullable=True),
        sa.Column("identified_self", sa.Integer(), nullable=True),
        sa.Column("body_camera", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("state", "log_index", "position", name=op.f("pk_replica_agents")),
        sqlite_with_rowid=False,
    )
    assert incidents is not None and agents is not None
    conn = op.get_bind()
    rows: list[dict[str, Any]] = []
    agent_rows: list[dict[str, Any]] = []
    for state, index, envelope in _current_entries(conn):
        entry = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
        c = entry["content"]
        if c is None:
            continue
        rows.append(
            {
                "state": state,
                "log_index": index,
                "global_id": entry["global_id"],
                "day": c["day"],
                "county": c["county"],
                "location_kind": c["location_kind"],
                "status": c["status"],
                "conduct": " ".join(sorted(c["conduct"])),
            }
        )
        for position, a in enumerate(c["agents"]):
            agent_rows.append(
                {
                    "state": state,
                    "log_index": index,
                    "position": position,
                    "agency": a["agency"],
                    "role": a["role"],
                    "masked": _flag(a["masked"]),
                    "identified_self": _flag(a["identified_self"]),
                    "body_camera": _flag(a["body_camera"]),
                }
            )
        if len(rows) >= _BATCH:
            conn.execute(incidents.insert(), rows)
            rows = []
        if len(agent_rows) >= _BATCH:
            conn.execute(agents.insert(), agent_rows)
            agent_rows = []
    if rows:
        conn.execute(incidents.insert(), rows)
    if agent_rows:
        conn.execute(agents.insert(), agent_rows)


def downgrade() -> None:
    op.drop_table("replica_agents")
    op.drop_table("replica_incidents")
