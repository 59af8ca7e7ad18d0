"""bundles: when the receipt was acknowledged

At the holder, when the requester's signed receipt arrived; at the requester, when the
holder confirmed it (AckBundle answered). A delivered bundle without it is acknowledged
again by `compact serve` until the holder confirms.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import node.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bundles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("acknowledged_at", node.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("bundles", schema=None) as batch_op:
        batch_op.drop_column("acknowledged_at")
