"""replica_checkpoints: every checkpoint of a peer's log accepted; exhibit_exports

`replica_checkpoints` keeps each checkpoint of a peer's log this node accepted, with
the cosignature lines known for it (this node's own included), where `replica_logs`
keeps only the newest note (node.replica). The upgrade copies each `replica_logs`
row's checkpoint into it. `exhibit_exports` records exports of a matter's exhibit
package (docs/design/exhibits.md, section 5).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import node.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replica_checkpoints",
        sa.Column("state", sa.String(length=2), nullable=False),
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("updated_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state", "size", name=op.f("pk_replica_checkpoints")),
    )
    op.create_table(
        "exhibit_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.String(length=64), nullable=False),
        sa.Column("matter_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("out_path", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("exported_by", sa.Text(), nullable=False),
        sa.Column("created_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", node.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["matter_id"],
            ["matters.id"],
            name=op.f("fk_exhibit_exports_matter_id_matters"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exhibit_exports")),
        sa.UniqueConstraint("package_id", name=op.f("uq_exhibit_exports_package_id")),
    )
    with op.batch_alter_table("exhibit_exports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exhibit_exports_matter_id"), ["matter_id"], unique=False
        )
    # The newest checkpoint accepted of each peer, as replica_logs holds it.
    op.get_bind().execute(
        sa.text(
            "INSERT INTO replica_checkpoints (state, size, root_hash, note, updated_at)"
            " SELECT state, checkpoint_size, checkpoint_root, checkpoint_note, updated_at"
            " FROM replica_logs"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("exhibit_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exhibit_exports_matter_id"))
    op.drop_table("exhibit_exports")
    op.drop_table("replica_checkpoints")
