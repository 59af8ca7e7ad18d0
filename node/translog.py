"""This node's transparency log: an append-only RFC 9162 Merkle log in its database.

Entries (index entries, custody events, ...) are appended with their leaf hash
(SHA-256(0x00 || payload)); the hashes of complete subtrees are stored in
`log_nodes` (key scheme of crypto.merkle_tree), so appends, roots of any
earlier size and inclusion and consistency proofs cost O(log n) database reads.
Signed tree heads are C2SP tlog-checkpoint notes kept in `log_checkpoints`.

Appends are serialised: SQLite's write transactions begin with BEGIN IMMEDIATE
(one writer at a time); on PostgreSQL each append takes a transaction-scoped
advisory lock. Nothing is ever updated or deleted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from crypto.checkpoint import Checkpoint, sign_checkpoint
from crypto.merkle import leaf_hash
from crypto.merkle_tree import MerkleTree
from crypto.note import Signer
from node import models as m
from node.db import Database

_LOCK_KEY: Final = 0x636F6D70  # "comp": the PostgreSQL advisory lock of log appends
MAX_ENTRY_BYTES: Final = 1024 * 1024


class SqlNodeStore:
    """crypto.merkle_tree.NodeStore over a table of (level, index, hash) rows, within one session.

    By default the `log_nodes` table of this node's own log; `table` and `scope` (extra
    column values every row carries, e.g. {"state": "MN"} in `replica_log_nodes`) let the
    same write-once store hold the rebuilt logs of peers (node.replica).
    """

    def __init__(
        self, session: Session, table: Table | None = None, scope: Mapping[str, Any] | None = None
    ) -> None:
        self._s = session
        self._t = table if table is not None else m.Base.metadata.tables["log_nodes"]
        self._scope = dict(scope or {})
        self._where = [self._t.c[k] == v for k, v in self._scope.items()]

    def get(self, level: int, index: int) -> bytes:
        c = self._t.c
        value = self._s.scalar(
            select(c.hash).where(*self._where, c.level == level, c.index == index)
        )
        if value is None:
            raise KeyError((level, index))
        return bytes(value)

    def put(self, level: int, index: int, node_hash: bytes) -> None:
        self.put_many(level, index, [node_hash])

    def put_many(self, level: int, first_index: int, node_hashes: Sequence[bytes]) -> None:
        if not node_hashes:
            return
        c = self._t.c
        existing = {
            int(i): bytes(h)
            for i, h in self._s.execute(
                select(c.index, c.hash).where(
                    *self._where,
                    c.level == level,
                    c.index >= first_index,
                    c.index < first_index + len(node_hashes),
                )
            )
        }
        rows = []
        for offset, node_hash in enumerate(node_hashes):
            index = first_index + offset
            if index in existing:
                if existing[index] != node_hash:
                    raise ValueError("a stored log node cannot change")
                continue
            rows.append({**self._scope, "level": level, "index": index, "hash": node_hash})
        if rows:
            self._s.execute(insert(self._t), rows)


class TransparencyLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(
        self, kind: str, payloads: Sequence[bytes], *, now: datetime | None = None
    ) -> list[int]:
        """Append entries in one transaction; returns their indexes."""
        with self.db.write() as s:
            return self.append_in(s, kind, payloads, now=now)

    def append_in(
        self, s: Session, kind: str, payloads: Sequence[bytes], *, now: datetime | None = None
    ) -> list[int]:
        """Append within the caller's write transaction (so a record and its log entry
        commit together)."""
        if any(len(p) > MAX_ENTRY_BYTES for p in payloads):
            raise ValueError(f"a log entry is larger than {MAX_ENTRY_BYTES} bytes")
        if not payloads:
            return []
        lock_appends(s)
        size = log_size(s)
        tree = MerkleTree(SqlNodeStore(s), size)
        leaves = [leaf_hash(p) for p in payloads]
        indexes = list(tree.append_many(leaves))
        at = now or datetime.now(UTC)
        s.execute(
            insert(m.Base.metadata.tables["log_entries"]),
            [
                {"index": i, "kind": kind, "payload": p, "leaf_hash": h, "appended_at": at}
                for i, p, h in zip(indexes, payloads, leaves, strict=True)
            ],
        )
        return indexes

    def size(self) -> int:
        with self.db.read() as s:
            return log_size(s)

    def root(self, size: int | None = None) -> bytes:
        with self.db.read() as s:
            current = log_size(s)
            return MerkleTree(SqlNodeStore(s), current).root_at(current if size is None else size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        with self.db.read() as s:
            return MerkleTree(SqlNodeStore(s), log_size(s)).inclusion_proof(index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self.db.read() as s:
            return MerkleTree(SqlNodeStore(s), log_size(s)).consistency_proof(old_size, new_size)

    def entries(self, start: int, limit: int) -> list[tuple[int, str, bytes]]:
        """Entries from index `start` on, at most `limit` of them."""
        with self.db.read() as s:
            rows = s.execute(
                select(m.LogEntry.index, m.LogEntry.kind, m.LogEntry.payload)
                .where(m.LogEntry.index >= start)
                .order_by(m.LogEntry.index)
                .limit(limit)
            )
            return [(r[0], r[1], bytes(r[2])) for r in rows]

    def sign_checkpoint(self, signer: Signer, *, origin: str, now: datetime | None = None) -> str:
        """A signed tree head of the current log, stored (one per size)."""
        with self.db.write() as s:
            size = log_size(s)
            stored = s.get(m.LogCheckpoint, size)
            if stored is not None:
                return stored.note
            root = MerkleTree(SqlNodeStore(s), size).root()
            note = sign_checkpoint(Checkpoint(origin, size, root), signer)
            s.add(
                m.LogCheckpoint(
                    size=size, root_hash=root, note=note, created_at=now or datetime.now(UTC)
                )
            )
            return note

    def latest_checkpoint(self) -> str | None:
        with self.db.read() as s:
            return s.scalar(
                select(m.LogCheckpoint.note).order_by(m.LogCheckpoint.size.desc()).limit(1)
            )


def lock_appends(s: Session) -> None:
    """Serialise log appends for the rest of `s`'s transaction. SQLite's write transactions
    are serialised already (BEGIN IMMEDIATE); PostgreSQL takes a transaction-scoped advisory
    lock (taken again by the same transaction, it is held once more, never waited for).
    A caller that selects what to append must take it before selecting, so that two
    writers never both see the same rows as not yet logged."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


#: Cosignature lines served or carried with one checkpoint.
MAX_COSIGNATURES: Final = 64


def cosignature_lines(
    s: Session, size: int, *, witnesses: Sequence[str] | None = None
) -> list[str]:
    """The stored cosignature lines of this log's checkpoint of `size` (of `witnesses`
    only, if given), in witness order, at most MAX_COSIGNATURES."""
    query = select(m.LogCosignature.signature_line).where(m.LogCosignature.size == size)
    if witnesses is not None:
        query = query.where(m.LogCosignature.witness.in_(witnesses))
    return list(s.scalars(query.order_by(m.LogCosignature.witness).limit(MAX_COSIGNATURES)))


def log_size(s: Session) -> int:
    """The number of entries in this node's log, read in `s`."""
    last = s.scalar(select(func.max(m.LogEntry.index)))
    return 0 if last is None else int(last) + 1
