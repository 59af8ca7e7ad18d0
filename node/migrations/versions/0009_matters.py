"""matters: signed matter documents, their revisions, members and exhibits

Replaces the `matters` and `exhibits` tables of 0001, which no code ever wrote: an
exhibit is now named by global id (it may be another state's incident, held here or
not), and a matter keeps every revision its owner signed. The upgrade refuses to run
if either old table holds a row, rather than drop it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import node.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _refuse_rows(*tables: str) -> None:
    conn = op.get_bind()
    for table in tables:
        rows = sa.select(sa.literal(1)).select_from(sa.table(table)).limit(1)
        if conn.execute(rows).first() is not None:
            raise RuntimeError(
                f"migration 0009: table {table} holds rows; no code of this version writes"
                " them, so they were put there by hand: move them aside and migrate again"
            )


def upgrade() -> None:
    _refuse_rows("exhibits", "matters")
    op.drop_table("exhibits")
    op.drop_table("matters")
    op.create_table(
        "matters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=2), nullable=False),
        sa.Column("title", sa.String(length=1000), nullable=False),
        sa.Column("bates_prefix", sa.String(length=40), nullable=False),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matters")),
        sa.UniqueConstraint("global_id", name=op.f("uq_matters_global_id")),
    )
    with op.batch_alter_table("matters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_matters_owner"), ["owner"], unique=False)
    op.create_table(
        "matter_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matter_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("envelope_sha256", sa.String(length=64), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["matter_id"],
            ["matters.id"],
            name=op.f("fk_matter_revisions_matter_id_matters"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matter_revisions")),
        sa.UniqueConstraint(
            "matter_id", "revision", name=op.f("uq_matter_revisions_matter_id_revision")
        ),
    )
    op.create_table(
        "matter_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matter_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=2), nullable=False),
        sa.Column("shared_revision", sa.Integer(), nullable=True),
        sa.Column("shared_at", node.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["matter_id"],
            ["matters.id"],
            name=op.f("fk_matter_members_matter_id_matters"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matter_members")),
        sa.UniqueConstraint("matter_id", "state", name=op.f("uq_matter_members_matter_id_state")),
    )
    with op.batch_alter_table("matter_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_matter_members_state"), ["state"], unique=False)
    op.create_table(
        "exhibits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matter_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("evidence_position", sa.Integer(), nullable=False),
        sa.Column("evidence_sha256", sa.String(length=64), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("added_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["matter_id"],
            ["matters.id"],
            name=op.f("fk_exhibits_matter_id_matters"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exhibits")),
        sa.UniqueConstraint(
            "matter_id",
            "global_id",
            "evidence_position",
            name=op.f("uq_exhibits_matter_id_global_id_evidence_position"),
        ),
        sa.UniqueConstraint("matter_id", "number", name=op.f("uq_exhibits_matter_id_number")),
        sa.UniqueConstraint("matter_id", "seq", name=op.f("uq_exhibits_matter_id_seq")),
    )
    with op.batch_alter_table("exhibits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exhibits_global_id"), ["global_id"], unique=False)


def downgrade() -> None:
    _refuse_rows("exhibits", "matter_members", "matter_revisions", "matters")
    with op.batch_alter_table("exhibits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exhibits_global_id"))
    op.drop_table("exhibits")
    with op.batch_alter_table("matter_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_matter_members_state"))
    op.drop_table("matter_members")
    op.drop_table("matter_revisions")
    with op.batch_alter_table("matters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_matters_owner"))
    op.drop_table("matters")
    # As 0001 made them.
    op.create_table(
        "matters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("global_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=1000), nullable=False),
        sa.Column("states", sa.JSON(), nullable=False),
        sa.Column("bates_prefix", sa.String(length=40), nullable=False),
        sa.Column("legal_hold", sa.Boolean(), nullable=False),
        sa.Column("created_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matters")),
        sa.UniqueConstraint("global_id", name=op.f("uq_matters_global_id")),
    )
    op.create_table(
        "exhibits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("matter_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", node.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["evidence_items.id"],
            name=op.f("fk_exhibits_evidence_id_evidence_items"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_exhibits_incident_id_incidents"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["matter_id"],
            ["matters.id"],
            name=op.f("fk_exhibits_matter_id_matters"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exhibits")),
        sa.UniqueConstraint("matter_id", "number", name=op.f("uq_exhibits_matter_id_number")),
    )
