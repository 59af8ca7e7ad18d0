"""Verified replicas of the other members' logs, and what this node witnessed.

For each peer the node keeps the peer's log as it rebuilt it (complete-subtree
hashes in `replica_log_nodes`, crypto.merkle_tree key scheme), how far it has
verified it (`replica_logs.size`), and the newest checkpoint it accepted. The
rules (DESIGN.md section 4; docs/federation.md):

- A checkpoint must carry the peer's signature under the roster key, for the
  peer's origin, and be consistent (RFC 9162 proof) with the last one accepted.
  A peer whose checkpoint is signed with a key its state had in an earlier roster
  version only has not switched to its rotated key yet: `NotRotatedError`, no alert
  (the sync backs off and tries again). A key of no version at all is refused.
  A checkpoint of the same size with another root, or one that is not
  consistent, is a fork: both signed notes are kept as proof in an alert and
  the peer is refused. One smaller than the last accepted is a replay and is
  refused.
- Entries are appended to the rebuilt tree batch by batch; each batch is
  accepted only if the rebuilt root at its end is consistent with the accepted
  checkpoint (a proof the peer sends with the batch), and every index entry in
  it verifies against the peer's roster key and parses. A batch is stored in
  one transaction, or not at all. Entries are in the log for good, so any key the
  peer's state had in a roster version verifies them (federation.keyhistory): an
  entry signed before a key rotation still replicates after it.
- A newer revision of an entry supersedes the older one (`current`); an older
  or equal revision arriving later is refused (a rewritten history).
- Every checkpoint accepted is kept (`replica_checkpoints`, for exhibit packages)
  with the signature lines known for it: the log's, each witness's that verified
  (`witnesses` of `accept_checkpoint`) and this node's own (`add_own_cosignature`),
  one line per key, the first one kept, so that a note never grows past one line
  per member and a line once kept never changes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from crypto.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    cosignature_timestamp,
    open_checkpoint,
)
from crypto.dsse import Envelope
from crypto.errors import CryptoError
from crypto.merkle import leaf_hash, root_hash, verify_consistency
from crypto.merkle_tree import MerkleTree
from crypto.note import (
    MAX_SIGNATURES,
    Signature,
    add_signature_lines,
    parse_note,
    parse_signature_line,
)
from federation.errors import FederationError
from federation.index_entry import EntryVerifier, IndexEntry
from federation.keyhistory import KeyHistory
from federation.naming import log_origin, log_verifier
from federation.roster import Member, Roster
from node import models as m
from node.db import Database
from node.fedstore import key_history
from node.hits import record_hits
from node.publish import ENTRY_KIND, index_pseudonyms
from node.translog import SqlNodeStore

_NODES = m.Base.metadata.tables["replica_log_nodes"]
_ENTRIES = m.Base.metadata.tables["replica_entries"]


class ReplicaError(FederationError):
    """A peer's log or entry that must not be accepted; `kind` names the alert it raises."""

    def __init__(self, kind: str, message: str, evidence: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.evidence = evidence or {}


class NotRotatedError(FederationError):
    """A peer's checkpoint signed with a key its state had in an earlier roster version, not
    with its key in the roster in force: it has not switched to its rotated key yet. Not
    an alert (nothing is wrong with its log): the sync fails and backs off."""


@dataclass(frozen=True)
class Entry:
    """One log entry as received: payload for index entries, else only its leaf hash."""

    index: int
    kind: str
    payload: bytes | None
    leaf_hash: bytes


@dataclass(frozen=True)
class VerifiedBatch:
    """A batch of a peer's entries whose signatures and form have been checked (not yet
    its place in the log: `Replicas.store_batch` does that)."""

    state: str
    entries: tuple[Entry, ...]
    parsed: tuple[tuple[Entry, IndexEntry], ...]

    @staticmethod
    def join(batches: Sequence[VerifiedBatch]) -> VerifiedBatch:
        """Consecutive batches of one state as one (stored in one transaction)."""
        if not batches:
            raise ValueError("no batches to join")
        state = batches[0].state
        entries = tuple(e for b in batches for e in b.entries)
        if any(b.state != state for b in batches) or any(
            e.index != entries[0].index + i for i, e in enumerate(entries)
        ):
            raise ReplicaError("protocol", f"{state} sent entries out of order")
        return VerifiedBatch(state, entries, tuple(p for b in batches for p in b.parsed))


@dataclass(frozen=True)
class ReplicaState:
    size: int
    checkpoint: Checkpoint | None
    note: str | None


@dataclass(frozen=True)
class KeptCheckpoint:
    """A checkpoint of a peer's log kept by this node: its signed note carries the log's
    signature line and the cosignature lines known for it."""

    size: int
    root_hash: bytes
    note: str


class Replicas:
    """This node's replicas of its peers' logs. With `own_state`, storing a peer's entries
    also records the hits they create with this state's incidents (node.hits)."""

    def __init__(self, db: Database, *, own_state: str | None = None) -> None:
        self.db = db
        self.own_state = own_state

    def state_of(self, state: str) -> ReplicaState:
        with self.db.read() as s:
            row = s.get(m.ReplicaLog, state)
            if row is None:
                return ReplicaState(0, None, None)
            cp = Checkpoint(log_origin(state), row.checkpoint_size, bytes(row.checkpoint_root))
            return ReplicaState(row.size, cp, row.checkpoint_note)

    def accept_checkpoint(
        self,
        member: Member,
        note: str,
        proof: Sequence[bytes],
        *,
        now: datetime,
        witnesses: Sequence[CosignatureVerifier] = (),
    ) -> Checkpoint:
        """Verify a peer's checkpoint against the last one accepted and keep it (ReplicaError).

        The log's signature must be by `member`'s key (the roster in force): a live
        checkpoint. One that carries no line of that key but verifies under a key the
        state had in an earlier roster version raises `NotRotatedError` instead (no
        alert); under no known key at all, ReplicaError ``bad-checkpoint``.

        It is also kept in `replica_checkpoints` with the log's signature line and the
        note's cosignature lines that verify under `witnesses` (the other members' witness
        keys); lines of other keys, or that do not verify, are dropped, not refused. A
        checkpoint of a size already kept adds the lines of keys it has none of (if its
        text is the kept one's: a log that signs one size twice with other extension lines
        gets its first text kept)."""
        state = member.state
        log_key = log_verifier(state, member.signing_key)
        opened: Checkpoint | None = None
        problem = ""
        try:
            opened = open_checkpoint(note, log=log_key, origin=log_origin(state))
        except CryptoError as e:
            problem = str(e)
        if opened is None:  # raised here: nothing is chained to it
            version = self._earlier_key_version(member, note, log_key.key_hash)
            if version is not None:
                raise NotRotatedError(
                    f"{state} signs with a key of roster version {version}; it has not "
                    "switched to its rotated keys yet"
                )
            raise ReplicaError("bad-checkpoint", f"{state}'s checkpoint does not verify: {problem}")
        new = opened
        # open_checkpoint verified every line of the log's key, so only witnesses' remain.
        text, lines = _known_lines(note, log_key.name, log_key.key_hash, member, witnesses)
        if new.size == 0 and not hmac.compare_digest(new.root_hash, root_hash([])):
            raise ReplicaError(
                "bad-checkpoint",
                f"{state} signed a checkpoint of the empty log with a root "
                "that is not the empty tree's",
            )
        with self.db.write() as s:
            # Locked: two syncs of one peer merge their lines one after the other.
            row = s.get(m.ReplicaLog, state, with_for_update=True)
            if row is not None:
                old_size, old_root = row.checkpoint_size, bytes(row.checkpoint_root)
                evidence = {"accepted": row.checkpoint_note, "presented": note}
                if new.size < old_size:
                    raise ReplicaError(
                        "stale-checkpoint",
                        f"{state} presented a checkpoint of size {new.size}, older than the "
                        f"size {old_size} already accepted (a replay or a rollback)",
                        evidence,
                    )
                if new.size == old_size:
                    if not hmac.compare_digest(new.root_hash, old_root):
                        raise ReplicaError(
                            "forked-log",
                            f"{state} signed two different roots for size {new.size}",
                            evidence,
                        )
                elif old_size > 0:  # the empty log (checked above) is a prefix of every log
                    try:
                        verify_consistency(old_size, new.size, old_root, new.root_hash, list(proof))
                    except CryptoError:
                        raise ReplicaError(
                            "forked-log",
                            f"{state}'s checkpoint of size {new.size} is not consistent with "
                            f"the one of size {old_size} already accepted (a rewritten log)",
                            evidence,
                        ) from None
                row.checkpoint_size = new.size
                row.checkpoint_root = new.root_hash
                row.checkpoint_note = note
                row.updated_at = now
            else:
                s.add(
                    m.ReplicaLog(
                        state=state,
                        size=0,
                        checkpoint_size=new.size,
                        checkpoint_root=new.root_hash,
                        checkpoint_note=note,
                        updated_at=now,
                    )
                )
            kept = s.get(m.ReplicaCheckpoint, (state, new.size), with_for_update=True)
            if kept is None:
                s.add(
                    m.ReplicaCheckpoint(
                        state=state,
                        size=new.size,
                        root_hash=new.root_hash,
                        note=_note_with(text, lines),
                        updated_at=now,
                    )
                )
            else:
                if not hmac.compare_digest(bytes(kept.root_hash), new.root_hash):
                    # replica_logs said otherwise above: the two tables disagree.
                    raise ReplicaError(
                        "forked-log",
                        f"{state} signed two different roots for size {new.size}",
                        {"accepted": kept.note, "presented": note},
                    )
                _merge_into(kept, text, lines, now)
        return new

    def _earlier_key_version(self, member: Member, note: str, log_hash: int) -> int | None:
        """The newest roster version whose key of `member`'s state, other than its key in
        force, signed `note` (a checkpoint of its log, with no line of the key in force);
        None if none did."""
        state = member.state
        try:
            if any(
                (sig.name, sig.key_hash) == (log_origin(state), log_hash)
                for sig in parse_note(note).signatures
            ):
                return None  # the key in force signed it, and that line did not verify
        except CryptoError:
            return None
        for use in key_history(self.db).uses(state):
            if use.key.raw == member.signing_key.raw:
                continue
            try:
                open_checkpoint(note, log=log_verifier(state, use.key), origin=log_origin(state))
            except CryptoError:
                continue
            return use.last_version
        return None

    def add_own_cosignature(
        self, state: str, size: int, line: str, *, now: datetime, text: str | None = None
    ) -> None:
        """Keep this node's cosignature `line` of `state`'s checkpoint of `size` (accepted
        before: ValueError otherwise, or if the line is not a cosignature line). Nothing
        changes if a line of this key is kept already (a later cosignature of the same
        checkpoint, with another timestamp, adds nothing), nor if `text`, the checkpoint
        text cosigned, is given and is not the kept note's."""
        try:
            signature = parse_signature_line(line)
            cosignature_timestamp(signature)
        except CryptoError as e:
            raise ValueError(f"not a cosignature line: {e}") from None
        with self.db.write() as s:
            kept = s.get(m.ReplicaCheckpoint, (state, size), with_for_update=True)
            if kept is None:
                raise ValueError(f"no checkpoint of {state}'s log of size {size} is kept")
            _merge_into(kept, text, [signature], now)

    def checkpoints(self, state: str, *, min_size: int = 0) -> list[KeptCheckpoint]:
        """The checkpoints of `state`'s log kept, of `min_size` entries or more, by size."""
        t = m.ReplicaCheckpoint
        with self.db.read() as s:
            rows = s.execute(
                select(t.size, t.root_hash, t.note)
                .where(t.state == state, t.size >= min_size)
                .order_by(t.size)
            ).all()
        return [KeptCheckpoint(int(size), bytes(root), str(note)) for size, root, note in rows]

    def accept_entries(
        self,
        roster: Roster,
        member: Member,
        entries: Sequence[Entry],
        proof: Sequence[bytes],
        *,
        now: datetime,
    ) -> int:
        """Verify and store a batch that continues the replica; returns the entries stored."""
        return self.store_batch(self.verify_batch(roster, member.state, entries), proof, now=now)

    def verify_batch(self, roster: Roster, state: str, entries: Sequence[Entry]) -> VerifiedBatch:
        """The checks that need no write: entries contiguous, leaf hashes matching the
        payloads, every index entry signed by a key of `state` (its roster key or one it
        had in an earlier roster version: the key history is read once per batch) and
        well formed. Run outside the write transaction (a sync verifies one batch while
        storing another)."""
        if entries:
            first = entries[0].index
            for offset, e in enumerate(entries):
                if e.index != first + offset:
                    raise ReplicaError("protocol", f"{state} sent entries out of order")
                if e.payload is not None and leaf_hash(e.payload) != e.leaf_hash:
                    raise ReplicaError("protocol", f"{state} sent a leaf hash that does not match")
        history = key_history(self.db) if entries else None
        return VerifiedBatch(
            state, tuple(entries), tuple(self.verify_entries(roster, state, entries, history))
        )

    def store_batch(self, batch: VerifiedBatch, proof: Sequence[bytes], *, now: datetime) -> int:
        """Store a verified batch if it continues the replica and its Merkle proof holds
        (ReplicaError otherwise); all of it or nothing. Returns the index entries stored."""
        state, entries = batch.state, batch.entries
        if not entries:
            return 0
        with self.db.write() as s:
            row = s.get(m.ReplicaLog, state)
            if row is None:
                raise ReplicaError("protocol", f"no checkpoint of {state} accepted yet")
            start, target, target_root = row.size, row.checkpoint_size, bytes(row.checkpoint_root)
            if entries[0].index != start:
                raise ReplicaError("protocol", f"{state} sent entries out of order")
            end = start + len(entries)
            if end > target:
                raise ReplicaError("protocol", f"{state} sent entries beyond its checkpoint")
            tree = MerkleTree(SqlNodeStore(s, _NODES, {"state": state}), start)
            tree.append_many([e.leaf_hash for e in entries])
            root = tree.root()
            try:
                if end == target:
                    if not hmac.compare_digest(root, target_root):
                        raise CryptoError("root mismatch")
                else:
                    verify_consistency(end, target, root, target_root, list(proof))
            except CryptoError:
                raise ReplicaError(
                    "forked-log",
                    f"{state}'s entries {start}..{end - 1} are not the ones its checkpoint "
                    f"of size {target} commits to",
                    {"accepted": row.checkpoint_note},
                ) from None
            self._store(s, state, batch.parsed, now)
            row.size = end
            row.updated_at = now
        return len(batch.parsed)

    @staticmethod
    def verify_entries(
        roster: Roster, state: str, entries: Sequence[Entry], history: KeyHistory | None = None
    ) -> list[tuple[Entry, IndexEntry]]:
        """Each index entry of the batch, its signature verified and its payload parsed.

        Signed by `state`'s key in `roster`, or with `history` by any key `state` had in a
        roster version."""
        verifier: EntryVerifier | None = None
        parsed: list[tuple[Entry, IndexEntry]] = []
        for e in entries:
            if e.kind != ENTRY_KIND:
                continue
            if e.payload is None:
                raise ReplicaError("protocol", f"{state} withheld an index entry's payload")
            try:
                verifier = verifier or EntryVerifier(roster, state, history=history)
                entry = verifier.verify(Envelope.from_json(e.payload))
            except (CryptoError, FederationError) as err:
                raise ReplicaError(
                    "bad-entry",
                    f"{state}'s log entry {e.index} is not a valid index entry signed by "
                    f"{state}: {err}",
                    {
                        "log_index": e.index,
                        "payload_sha256": hashlib.sha256(e.payload).hexdigest(),
                    },
                ) from None
            parsed.append((e, entry))
        return parsed

    def _store(
        self, s: Session, state: str, parsed: Sequence[tuple[Entry, IndexEntry]], now: datetime
    ) -> None:
        if not parsed:
            return
        t = m.ReplicaEntry
        gids = sorted({entry.global_id for _, entry in parsed})
        last: dict[str, int] = {}
        replaced: list[int] = []  # log indexes of the current entries these supersede
        for i in range(0, len(gids), 500):
            for g, r, index in s.execute(
                select(t.global_id, t.revision, t.log_index).where(
                    t.state == state, t.global_id.in_(gids[i : i + 500]), t.current.is_(True)
                )
            ):
                last[str(g)] = int(r)
                replaced.append(int(index))
        newest: dict[str, tuple[Entry, IndexEntry]] = {}
        for e, entry in parsed:
            before = last.get(entry.global_id)
            if before is not None and entry.revision <= before:
                raise ReplicaError(
                    "bad-entry",
                    f"{state}'s log entry {e.index} repeats or rolls back revision "
                    f"{entry.revision} of an incident",
                    {"log_index": e.index},
                )
            last[entry.global_id] = entry.revision
            newest[entry.global_id] = (e, entry)
        for i in range(0, len(gids), 500):
            s.execute(
                update(t)
                .where(
                    t.state == state,
                    t.global_id.in_(gids[i : i + 500]),
                    t.current.is_(True),
                )
                .values(current=False)
            )
        current_indexes = {e.index for e, _ in newest.values()}
        s.execute(
            insert(_ENTRIES),  # Core, not the ORM's bulk path: one executemany
            [
                {
                    "state": state,
                    "log_index": e.index,
                    "global_id": entry.global_id,
                    "revision": entry.revision,
                    "withdrawn": entry.withdrawn,
                    "current": e.index in current_indexes,
                    "envelope": e.payload,
                    "received_at": now,
                }
                for e, entry in parsed
            ],
        )
        current = [(e.index, entry) for e, entry in newest.values()]
        index_pseudonyms(s, state, current, replaced)
        if self.own_state is not None:
            record_hits(s, self.own_state, state, [index for index, _ in current], now)


# --- kept checkpoints ----------------------------------------------------------------------


def _known_lines(
    note: str,
    log_name: str,
    log_hash: int,
    member: Member,
    witnesses: Sequence[CosignatureVerifier],
) -> tuple[str, list[Signature]]:
    """The text of a note whose log signature verified, and its lines worth keeping: the
    log's (first), then each witness's that verifies, one per key, in note order."""
    parsed = parse_note(note)
    message = parsed.text.encode("utf-8")
    known = {
        (w.name, w.key_hash): w
        for w in witnesses
        if w.key.raw != member.signing_key.raw  # a log does not witness itself
    }
    logs: list[Signature] = []
    others: list[Signature] = []
    seen: set[tuple[str, int]] = set()
    for sig in parsed.signatures:
        ident = (sig.name, sig.key_hash)
        if ident in seen:
            continue
        if ident == (log_name, log_hash):
            logs.append(sig)
        else:
            verifier = known.get(ident)
            if verifier is None:
                continue
            try:
                cosignature_timestamp(sig)
                verifier.verify(message, sig.signature)
            except CryptoError:
                continue
            others.append(sig)
        seen.add(ident)
    return parsed.text, logs + others


def _note_with(text: str, signatures: Sequence[Signature]) -> str:
    """The signed note of `text` with `signatures` (at least one, at most MAX_SIGNATURES),
    written as crypto.note writes one; checked by parsing it back."""
    note = text + "\n" + "".join(sig.line for sig in signatures)
    parse_note(note)  # EncodingError unless it is one
    return note


def _merged(note: str, signatures: Sequence[Signature]) -> str:
    """`note` with each of `signatures` of a key it has no line of appended, in order (at
    most MAX_SIGNATURES lines in all); its own text and lines stay as they are."""
    held = parse_note(note).signatures
    keys = {(sig.name, sig.key_hash) for sig in held}
    new: list[str] = []
    for sig in signatures:
        ident = (sig.name, sig.key_hash)
        if ident in keys or len(held) + len(new) >= MAX_SIGNATURES:
            continue
        keys.add(ident)
        new.append(sig.line)
    return add_signature_lines(note, new) if new else note


def _merge_into(
    kept: m.ReplicaCheckpoint, text: str | None, signatures: Sequence[Signature], now: datetime
) -> None:
    """Add `signatures` of `text` (None: the kept note's) to a kept checkpoint's note."""
    if text is not None and parse_note(kept.note).text != text:
        return  # they sign another text
    note = _merged(kept.note, signatures)
    if note != kept.note:
        kept.note = note
        kept.updated_at = now
