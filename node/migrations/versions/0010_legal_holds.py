"""legal_holds: what a matter under legal hold keeps on this node

Rows are written by node.holds whenever a matter's revision, its hold or a received
bundle changes what it covers; the upgrade writes those of matters already under hold,
by the same rules (kept equal to node.holds by tests/test_holds.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matter_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["blob_sha256"],
            ["blobs.sha256"],
            name=op.f("fk_legal_holds_blob_sha256_blobs"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_legal_holds_incident_id_incidents"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["matter_id"],
            ["matters.id"],
            name=op.f("fk_legal_holds_matter_id_matters"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_legal_holds_blob_sha256"), ["blob_sha256"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_legal_holds_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_legal_holds_matter_id"), ["matter_id"], unique=False)
    conn = op.get_bind()
    held = {"yes": True}
    # Each incident held here that a held matter names.
    conn.execute(
        sa.text(
            "INSERT INTO legal_holds (matter_id, incident_id, blob_sha256)"
            " SELECT DISTINCT x.matter_id, i.id, NULL FROM exhibits x"
            " JOIN matters mt ON mt.id = x.matter_id"
            " JOIN incidents i ON i.global_id = x.global_id"
            " WHERE mt.legal_hold = :yes"
        ),
        held,
    )
    # Its files: every one for a whole incident, else the one the exhibit names.
    conn.execute(
        sa.text(
            "INSERT INTO legal_holds (matter_id, incident_id, blob_sha256)"
            " SELECT DISTINCT x.matter_id, i.id, e.sha256 FROM exhibits x"
            " JOIN matters mt ON mt.id = x.matter_id"
            " JOIN incidents i ON i.global_id = x.global_id"
            " JOIN evidence_items e ON e.incident_id = i.id"
            " WHERE mt.legal_hold = :yes AND (x.evidence_position = -1"
            " OR (e.position = x.evidence_position AND e.sha256 = x.evidence_sha256))"
        ),
        held,
    )


def downgrade() -> None:
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_holds_matter_id"))
        batch_op.drop_index(batch_op.f("ix_legal_holds_incident_id"))
        batch_op.drop_index(batch_op.f("ix_legal_holds_blob_sha256"))
    op.drop_table("legal_holds")
