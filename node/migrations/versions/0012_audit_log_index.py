"""audit_events.log_index: each audit event's entry in this node's transparency log

node.audit enters every audit event in the log (kind `audit`) and records the entry's
index here; events recorded before this revision are logged, oldest first, by the
first federation cycle after the upgrade. `actor` is indexed for `compact audit --user`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("log_index", sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_log_index"), ["log_index"])
        batch_op.create_index(batch_op.f("ix_audit_events_actor"), ["actor"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_actor"))
        batch_op.drop_constraint(batch_op.f("uq_audit_events_log_index"), type_="unique")
        batch_op.drop_column("log_index")
