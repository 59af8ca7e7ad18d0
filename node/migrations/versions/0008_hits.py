"""hits: new cross-state links involving this state's incidents

Recorded from here on, as this node publishes its own entries and replicates its
peers' (node.hits); links already in the replica are not turned into hits
(`compact agents matches` shows them).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import node.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("found_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("pseudonym", sa.String(length=128), nullable=False),
        sa.Column("own_global_id", sa.String(length=64), nullable=False),
        sa.Column("peer_state", sa.String(length=2), nullable=False),
        sa.Column("peer_global_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hits")),
        sa.UniqueConstraint(
            "pseudonym",
            "own_global_id",
            "peer_state",
            "peer_global_id",
            name=op.f("uq_hits_pseudonym_own_global_id_peer_state_peer_global_id"),
        ),
    )
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hits_found_at"), ["found_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_hits_own_global_id"), ["own_global_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hits_own_global_id"))
        batch_op.drop_index(batch_op.f("ix_hits_found_at"))
    op.drop_table("hits")
