"""replica_pseudonyms: index (prefix, state) instead of (prefix)

Hits (node.hits) look up the other side of each new entry's pseudonyms: a peer's rows
for this node's own entries, this node's for a peer's. With `prefix` alone indexed, each
lookup read every row of that pseudonym, the entry's own state's included, so an agent
seen in many entries of one state made publishing (and storing a peer's batch) grow with
the square of its entries. With `state` in the index the lookup reads the other side
only. `prefix` stays the leading column, so every lookup by pseudonym still uses it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_replica_pseudonyms_prefix_state", "replica_pseudonyms", ["prefix", "state"])
    op.drop_index("ix_replica_pseudonyms_prefix", table_name="replica_pseudonyms")


def downgrade() -> None:
    op.create_index("ix_replica_pseudonyms_prefix", "replica_pseudonyms", ["prefix"])
    op.drop_index("ix_replica_pseudonyms_prefix_state", table_name="replica_pseudonyms")
