"""Every checkpoint of a peer's log accepted is kept, with the cosignatures known for it.

MN keeps IL's log. IL's checkpoints are signed here over a log of made-up leaves;
CA, NY and MN cosign them as witnesses. What `replica_checkpoints` must hold: each
checkpoint accepted (newest or not), its log line and each witness line that
verifies, one per key, MN's own cosignature; nothing from a refused checkpoint.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import select

from crypto.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    add_cosignature,
    sign_checkpoint,
    verify_checkpoint,
)
from crypto.errors import ThresholdError
from crypto.merkle import consistency_proof, leaf_hash, root_hash
from crypto.note import add_signature_lines, parse_note
from federation.errors import FederationError
from federation.naming import (
    log_origin,
    log_signer,
    log_verifier,
    witness_signer,
    witness_verifier,
)
from node import models as m
from node.fedclient import WireEntry
from node.replica import KeptCheckpoint, ReplicaError, Replicas
from tests.helpers import make_storage
from tests.test_federation_roster import CA, IL, MN, NY, Node, roster

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LEAVES = [leaf_hash(f"IL entry {i}".encode()) for i in range(8)]
PEER = IL.member()
#: The witness keys MN checks lines against: every member but IL (MN itself included).
WITNESSES = [witness_verifier(n.state, n.key.public_key) for n in (CA, NY, MN)]


def checkpoint(size: int, extensions: tuple[str, ...] = ()) -> Checkpoint:
    return Checkpoint(log_origin("IL"), size, root_hash(LEAVES[:size]), extensions)


def signed(cp: Checkpoint, *cosigners: Node, at: int = 1_795_000_000) -> str:
    """IL's note of `cp`, cosigned by `cosigners` in that order at time `at`."""
    note = sign_checkpoint(cp, log_signer("IL", IL.key))
    for n in cosigners:
        note = add_cosignature(note, cosign(n, cp, at))
    return note


def cosign(n: Node, cp: Checkpoint, at: int = 1_795_000_000) -> str:
    return witness(n).cosign(cp, timestamp=at)


def witness(n: Node) -> CosignatureSigner:
    return witness_signer(n.state, n.key)


def lines(note: str) -> list[str]:
    return [s.line for s in parse_note(note).signatures]


def names(note: str) -> list[str]:
    return [s.name for s in parse_note(note).signatures]


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Replicas:
    return Replicas(make_storage(database_url, tmp_path).db)


def accept(replicas: Replicas, note: str, old: int = 0, *, now: datetime = NOW) -> Checkpoint:
    size = int(parse_note(note).text.split("\n")[1])
    proof = consistency_proof(LEAVES[:size], old) if 0 < old < size else []
    return replicas.accept_checkpoint(PEER, note, proof, now=now, witnesses=WITNESSES)


def updated_at(replicas: Replicas, size: int) -> datetime:
    with replicas.db.read() as s:
        row = s.get(m.ReplicaCheckpoint, ("IL", size))
        assert row is not None
        return row.updated_at


def test_every_accepted_checkpoint_is_kept_in_size_order(replicas: Replicas) -> None:
    notes = {size: signed(checkpoint(size), CA) for size in (1, 3, 6)}
    old = 0
    for size in (1, 3, 6):
        accept(replicas, notes[size], old)
        old = size
    assert replicas.checkpoints("IL") == [
        KeptCheckpoint(size, root_hash(LEAVES[:size]), notes[size]) for size in (1, 3, 6)
    ]
    assert [k.size for k in replicas.checkpoints("IL", min_size=3)] == [3, 6]
    assert [k.size for k in replicas.checkpoints("IL", min_size=4)] == [6]
    assert replicas.checkpoints("IL", min_size=7) == []
    assert replicas.checkpoints("MN") == []
    # replica_logs still holds the newest only.
    assert replicas.state_of("IL").note == notes[6]


def test_the_empty_log_is_kept_too(replicas: Replicas) -> None:
    note = signed(checkpoint(0))
    accept(replicas, note)
    accept(replicas, signed(checkpoint(2)))  # from the empty log: no proof
    zero, two = replicas.checkpoints("IL")
    assert (zero.size, zero.note, zero.root_hash) == (0, note, root_hash([]))
    assert two.size == 2


def test_same_size_again_merges_new_lines_without_duplicates(replicas: Replicas) -> None:
    cp = checkpoint(4)
    first = signed(cp, CA)
    accept(replicas, first)
    later = NOW + timedelta(minutes=5)
    # The same checkpoint again: CA's line as before, NY's new, in another order.
    again = add_signature_lines(sign_checkpoint(cp, log_signer("IL", IL.key)), [cosign(NY, cp)])
    again = add_cosignature(again, cosign(CA, cp))
    accept(replicas, again, 4, now=later)
    (kept,) = replicas.checkpoints("IL")
    assert lines(kept.note) == [*lines(first), cosign(NY, cp)]
    assert len(set(lines(kept.note))) == len(lines(kept.note))
    assert updated_at(replicas, 4) == later
    verified = verify_checkpoint(
        kept.note,
        log=log_verifier("IL", IL.key.public_key),
        witnesses=WITNESSES,
        threshold=2,
        origin=log_origin("IL"),
    )
    assert sorted(c.name for c in verified.cosignatures) == [
        "compact-witness/CA",
        "compact-witness/NY",
    ]
    # Nothing new: the note and its time stay as they are. A witness's later
    # cosignature of the same checkpoint does not replace the one kept.
    accept(replicas, signed(cp, NY, CA, at=1_796_000_000), 4, now=later + timedelta(hours=1))
    assert replicas.checkpoints("IL") == [kept]
    assert updated_at(replicas, 4) == later


def test_lines_that_do_not_verify_or_are_of_unknown_keys_are_not_kept(
    replicas: Replicas,
) -> None:
    cp = checkpoint(3)
    log_only = signed(cp)
    forged = cosign(CA, checkpoint(2))  # CA's key, another checkpoint: does not verify
    stranger = witness_signer("ZZ", NY.key)  # NY's key under another name: unknown
    itself = witness_signer("IL", IL.key)  # the log cosigning its own checkpoint
    note = add_signature_lines(
        log_only, [forged, stranger.cosign(cp, timestamp=5), itself.cosign(cp, timestamp=5)]
    )
    # Even if the caller lists the log's own witness key, a log does not witness itself.
    own = witness_verifier("IL", IL.key.public_key)
    replicas.accept_checkpoint(PEER, note, [], now=NOW, witnesses=[*WITNESSES, own])
    assert replicas.checkpoints("IL")[0].note == log_only
    # CA's real line is taken later: the bad one never held its place.
    accept(replicas, signed(cp, CA), 3)
    assert names(replicas.checkpoints("IL")[0].note) == ["compact-log/IL", "compact-witness/CA"]


def test_without_witness_keys_only_the_log_line_is_kept(replicas: Replicas) -> None:
    cp = checkpoint(2)
    replicas.accept_checkpoint(PEER, signed(cp, CA, NY), [], now=NOW)
    assert replicas.checkpoints("IL")[0].note == signed(cp)


def test_own_cosignature_is_kept_once(replicas: Replicas) -> None:
    cp = checkpoint(5)
    accept(replicas, signed(cp, CA))
    own = cosign(MN, cp)
    later = NOW + timedelta(minutes=1)
    replicas.add_own_cosignature("IL", 5, own, now=later, text=cp.to_text())
    (kept,) = replicas.checkpoints("IL")
    assert lines(kept.note) == [*lines(signed(cp, CA)), own]
    assert updated_at(replicas, 5) == later
    verify_checkpoint(
        kept.note, log=log_verifier("IL", IL.key.public_key), witnesses=WITNESSES, threshold=2
    )
    # The same line again, or a later cosignature of the same checkpoint: nothing changes.
    replicas.add_own_cosignature("IL", 5, own, now=later + timedelta(hours=1))
    replicas.add_own_cosignature(
        "IL", 5, cosign(MN, cp, 1_796_000_000), now=later + timedelta(hours=2)
    )
    assert replicas.checkpoints("IL") == [kept]
    assert updated_at(replicas, 5) == later
    # The peer serving MN's line back with its checkpoint adds nothing either.
    accept(replicas, signed(cp, MN, CA), 5)
    assert replicas.checkpoints("IL") == [kept]


def test_own_cosignature_is_kept_before_the_peers(replicas: Replicas) -> None:
    """MN's line first, then the peer's note with CA's line: both kept, MN's first."""
    cp = checkpoint(5)
    accept(replicas, signed(cp))
    replicas.add_own_cosignature("IL", 5, cosign(MN, cp), now=NOW)
    accept(replicas, signed(cp, CA, MN), 5)
    assert names(replicas.checkpoints("IL")[0].note) == [
        "compact-log/IL",
        "compact-witness/MN",
        "compact-witness/CA",
    ]


def test_own_cosignature_needs_a_kept_checkpoint_and_a_cosignature_line(
    replicas: Replicas,
) -> None:
    cp = checkpoint(5)
    with pytest.raises(ValueError, match="no checkpoint of IL's log of size 5"):
        replicas.add_own_cosignature("IL", 5, cosign(MN, cp), now=NOW)
    accept(replicas, signed(cp))
    with pytest.raises(ValueError, match="no checkpoint of IL's log of size 4"):
        replicas.add_own_cosignature("IL", 4, cosign(MN, cp), now=NOW)
    note_line = lines(signed(cp))[0]  # a log signature, not a cosignature
    for bad in ("not a line\n", cosign(MN, cp).rstrip("\n"), note_line):
        with pytest.raises(ValueError, match="not a cosignature line"):
            replicas.add_own_cosignature("IL", 5, bad, now=NOW)
    assert replicas.checkpoints("IL")[0].note == signed(cp)


def test_lines_of_another_text_for_a_kept_size_are_not_merged(replicas: Replicas) -> None:
    """IL signs size 5 twice, the second time with an extension line: the first text is
    kept, and cosignatures of the second (its witnesses', MN's own) are not added to it."""
    cp, other = checkpoint(5), checkpoint(5, ("extra",))
    accept(replicas, signed(cp))
    accept(replicas, signed(other, CA), 5)
    replicas.add_own_cosignature("IL", 5, cosign(MN, other), now=NOW, text=other.to_text())
    assert replicas.checkpoints("IL")[0].note == signed(cp)


def test_stale_and_forked_checkpoints_keep_nothing(replicas: Replicas) -> None:
    accept(replicas, signed(checkpoint(2), CA))
    accept(replicas, signed(checkpoint(4), CA), 2)
    before = replicas.checkpoints("IL")
    # A replay of size 2 carrying a new cosignature: refused, size 2 kept as it was.
    with pytest.raises(ReplicaError) as e:
        accept(replicas, signed(checkpoint(2), CA, NY), 4)
    assert e.value.kind == "stale-checkpoint"
    # Another root for size 4.
    fork = Checkpoint(log_origin("IL"), 4, b"\x07" * 32)
    with pytest.raises(ReplicaError) as e:
        accept(replicas, signed(fork, NY), 4)
    assert e.value.kind == "forked-log"
    # Size 6 that is not consistent with size 4 (the proof of another log).
    rewritten = Checkpoint(log_origin("IL"), 6, root_hash([leaf_hash(b"x")] * 6))
    with pytest.raises(ReplicaError) as e:
        replicas.accept_checkpoint(
            PEER,
            signed(rewritten, NY),
            consistency_proof(LEAVES[:6], 4),
            now=NOW,
            witnesses=WITNESSES,
        )
    assert e.value.kind == "forked-log"
    assert replicas.checkpoints("IL") == before
    assert replicas.state_of("IL").checkpoint == checkpoint(4)


def test_a_refused_checkpoint_rolls_back_its_transaction(
    replicas: Replicas, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the row is written leaves neither table changed."""
    import node.replica

    first = signed(checkpoint(2))
    accept(replicas, first)

    def failing(*_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(node.replica, "_merge_into", failing)
    with pytest.raises(RuntimeError, match="boom"):
        accept(replicas, signed(checkpoint(2), CA), 2)
    monkeypatch.undo()
    # Size 5 is new: its row and replica_logs' move are written together, or neither.
    monkeypatch.setattr(node.replica, "_note_with", failing)
    with pytest.raises(RuntimeError, match="boom"):
        accept(replicas, signed(checkpoint(5)), 2)
    monkeypatch.undo()
    assert [(k.size, names(k.note)) for k in replicas.checkpoints("IL")] == [
        (2, ["compact-log/IL"])
    ]
    assert replicas.state_of("IL").checkpoint == checkpoint(2)
    assert replicas.state_of("IL").note == first


def test_kept_notes_prove_two_witnesses_only_when_two_cosigned(replicas: Replicas) -> None:
    cp = checkpoint(7)
    accept(replicas, signed(cp))
    replicas.add_own_cosignature("IL", 7, cosign(MN, cp), now=NOW)
    kept = replicas.checkpoints("IL")[0].note
    log = log_verifier("IL", IL.key.public_key)
    with pytest.raises(ThresholdError):
        verify_checkpoint(kept, log=log, witnesses=WITNESSES, threshold=2)
    accept(replicas, signed(cp, CA), 7)
    kept = replicas.checkpoints("IL")[0].note
    assert len(verify_checkpoint(kept, log=log, witnesses=WITNESSES, threshold=2).cosignatures) == 2
    with replicas.db.read() as s:
        assert s.scalars(select(m.ReplicaCheckpoint.state)).all() == ["IL"]


class _Peer:
    """IL as FederationNode._replicate sees it: its checkpoint, its entries (leaf hashes
    only), and a SubmitCosignature that fails."""

    def __init__(self, note: str) -> None:
        self.note = note
        self.offered: list[str] = []

    async def get_checkpoint(self, old_size: int) -> tuple[str, list[bytes]]:
        size = int(parse_note(self.note).text.split("\n")[1])
        return self.note, consistency_proof(LEAVES[:size], old_size) if old_size else []

    async def get_entries(
        self, start: int, max_entries: int, tree_size: int
    ) -> tuple[list[WireEntry], list[bytes]]:
        end = min(start + max_entries, tree_size)
        entries = [WireEntry(i, "custody", None, LEAVES[i]) for i in range(start, end)]
        return entries, consistency_proof(LEAVES[:tree_size], end) if end < tree_size else []

    async def submit_cosignature(self, checkpoint_text: str, cosignature_line: str) -> None:
        self.offered.append(cosignature_line)
        raise FederationError("IL is unreachable")


def test_replicate_keeps_its_cosignature_though_it_is_not_delivered(replicas: Replicas) -> None:
    """FederationNode._replicate (MN syncing IL) keeps the checkpoint with CA's line, which
    IL served, and MN's own, though sending MN's to IL failed."""
    from node.fednode import FederationNode

    cp = checkpoint(6)
    peer = _Peer(signed(cp, CA))
    node = SimpleNamespace(
        replicas=Replicas(replicas.db, own_state="MN"),
        clock=lambda: NOW,
        config=SimpleNamespace(federation=SimpleNamespace(entries_per_request=4)),
        state="MN",
        signing_key=MN.key,
    )
    compact = roster(1, [IL, MN, CA])
    member = compact.member("IL")
    assert member is not None
    phases = {"fetch": 0.0, "verify": 0.0, "store": 0.0}
    stored, size = asyncio.run(
        FederationNode._replicate(cast(Any, node), cast(Any, peer), compact, member, None, phases)
    )
    assert (stored, size) == (0, 6)  # no index entries among IL's six
    assert replicas.state_of("IL").size == 6
    (kept,) = replicas.checkpoints("IL")
    assert kept.size == 6
    assert lines(kept.note) == [*lines(signed(cp, CA)), *peer.offered]
    assert names(kept.note)[-1] == "compact-witness/MN"
    verify_checkpoint(
        kept.note, log=log_verifier("IL", IL.key.public_key), witnesses=WITNESSES, threshold=2
    )
