"""Key rotation: what a state signed with its old key keeps verifying, live checks do not.

Roster version 1 has IL, MN and CA; version 2 gives IL and MN new signing keys (CA keeps
its own). What IL and MN signed under version 1 (index entries, custody records,
manifests, checkpoints, cosignatures) must verify against version 2 with the key history
(federation.keyhistory) and fail without it; a live checkpoint signed with an old key is
not an alert but a peer that has not switched yet; a witness that cosigned with both its
keys counts once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crypto import signing
from crypto.checkpoint import Checkpoint, add_cosignature, sign_checkpoint, verify_checkpoint
from crypto.dsse import Envelope
from crypto.errors import PolicyError, ThresholdError, VerificationError
from crypto.merkle import leaf_hash, root_hash
from crypto.note import add_signature_lines, parse_note
from federation.bundle import (
    BundleFormatError,
    check_manifest_proofs,
    sign_custody,
    sign_decision,
    sign_manifest,
    sign_receipt,
    sign_request,
    verify_custody,
    verify_manifest,
)
from federation.errors import FederationError
from federation.index_entry import IndexEntry, IndexEntryError, sign_entry, verify_entry
from federation.keyhistory import (
    KeyHistory,
    KeyUse,
    member_log_verifiers,
    verify_member_checkpoint,
    witness_verifiers,
)
from federation.matter import sign_matter, verify_matter
from federation.naming import log_origin, log_signer, witness_signer
from federation.roster import Roster, verify_update
from node import models as m
from node.audit import log_audit, verify_own_trail
from node.bundle_seal import BundleSealer
from node.bundles import BundleDesk, BundleRefused
from node.config import BundleSettings
from node.errors import Refusal
from node.exhibit_export import ExhibitExporter, LogPlan
from node.fedstore import FederationStore, key_history
from node.ingest import NodeStorage
from node.matters import MatterDesk, MatterRefused
from node.publish import ENTRY_KIND
from node.queries import audit
from node.replica import Entry, NotRotatedError, ReplicaError, Replicas
from node.translog import TransparencyLog
from tests.helpers import make_storage
from tests.test_federation_bundle import (
    APPROVAL,
    CONTENT,
    CUSTODY,
    GID,
    MANIFEST,
    RECEIPT,
    REQUEST,
    TIMESTAMP,
)
from tests.test_federation_matter import MATTER
from tests.test_federation_roster import CA, IL, MN, Node, roster, signed

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
IL_NEW = Node("IL", signing.SigningKey.generate(), IL.enc)
MN_NEW = Node("MN", signing.SigningKey.generate(), MN.enc)
STRANGER = signing.SigningKey.generate()  # IL's key in no roster version

V1 = roster(1, [IL, MN, CA])
V2 = roster(2, [IL_NEW, MN_NEW, CA])
V1_ENVELOPE = signed(V1, IL, MN)
V2_ENVELOPE = signed(V2, IL, MN, CA, IL_NEW, MN_NEW)
HISTORY = KeyHistory.from_rosters([V1, V2])


def test_the_fixture_is_a_valid_rotation() -> None:
    assert verify_update(V1, V2_ENVELOPE, now=NOW) == V2


# --- the history itself ------------------------------------------------------------------


def test_signing_keys_are_every_key_the_state_had_current_first() -> None:
    assert HISTORY.signing_keys("IL") == (IL_NEW.key.public_key, IL.key.public_key)
    assert HISTORY.signing_keys("MN") == (MN_NEW.key.public_key, MN.key.public_key)
    assert HISTORY.signing_keys("CA") == (CA.key.public_key,)  # kept: listed once
    assert HISTORY.signing_keys("NY") == ()
    assert HISTORY.states() == ("CA", "IL", "MN")
    assert HISTORY.version == 2
    assert HISTORY.last_version("IL", IL.key.public_key) == 1
    assert HISTORY.last_version("IL", IL_NEW.key.public_key) == 2
    assert HISTORY.last_version("IL", STRANGER.public_key) is None
    assert HISTORY.uses("CA") == (KeyUse(CA.key.public_key, 1, 2),)


def test_a_key_named_again_is_current_again() -> None:
    back = KeyHistory.from_rosters([V1, V2, roster(3, [IL, MN_NEW, CA])])
    assert back.signing_keys("IL") == (IL.key.public_key, IL_NEW.key.public_key)
    assert back.uses("IL")[0] == KeyUse(IL.key.public_key, 1, 3)


def test_versions_must_be_given_oldest_first() -> None:
    with pytest.raises(ValueError, match="oldest first"):
        KeyHistory.from_rosters([V2, V1])
    with pytest.raises(ValueError, match="oldest first"):
        KeyHistory.from_rosters([V1, V1])


def test_the_history_is_immutable() -> None:
    with pytest.raises(AttributeError):
        HISTORY.version = 3  # type: ignore[misc]
    assert KeyHistory.from_rosters([V1, V2]) == HISTORY
    assert KeyHistory.from_rosters([V1]) != HISTORY


# --- index entries -----------------------------------------------------------------------

OLD_ENTRY = sign_entry(IndexEntry("IL", GID, 1, CONTENT), IL.key)


def test_an_entry_signed_with_the_old_key_verifies_with_the_history() -> None:
    with pytest.raises(IndexEntryError, match="not signed by IL's roster key"):
        verify_entry(OLD_ENTRY, V2, state="IL")
    assert verify_entry(OLD_ENTRY, V2, state="IL", history=HISTORY).global_id == GID


def test_the_history_does_not_accept_a_key_of_no_version_or_of_another_state() -> None:
    stranger = sign_entry(IndexEntry("IL", GID, 1, CONTENT), STRANGER)
    with pytest.raises(IndexEntryError):
        verify_entry(stranger, V2, state="IL", history=HISTORY)
    by_mn_old_key = sign_entry(IndexEntry("IL", GID, 1, CONTENT), MN.key)
    with pytest.raises(IndexEntryError):
        verify_entry(by_mn_old_key, V2, state="IL", history=HISTORY)


# --- custody records, manifests and their proofs ------------------------------------------


def test_a_custody_record_signed_with_the_old_key_verifies_with_the_history() -> None:
    envelope = sign_custody(CUSTODY, IL.key)
    with pytest.raises(BundleFormatError, match="not signed by IL's roster key"):
        verify_custody(envelope, V2, state="IL")
    assert verify_custody(envelope, V2, state="IL", history=HISTORY) == CUSTODY


def test_a_manifest_signed_with_the_old_key_verifies_with_the_history() -> None:
    envelope = sign_manifest(MANIFEST, IL.key)
    with pytest.raises(BundleFormatError, match="not signed by IL's roster key"):
        verify_manifest(envelope, V2, holder="IL", requester="MN")
    manifest = verify_manifest(envelope, V2, holder="IL", requester="MN", history=HISTORY)
    assert manifest == MANIFEST


def test_manifest_proofs_under_old_keys_verify_with_the_history() -> None:
    """MANIFEST's checkpoint is signed with IL's old log key and cosigned with MN's old
    key; its index entry and custody records are signed with IL's old key."""
    with pytest.raises(BundleFormatError, match="does not verify as IL's log"):
        check_manifest_proofs(MANIFEST, V2)
    proofs = check_manifest_proofs(MANIFEST, V2, history=HISTORY)
    assert proofs.witnesses == ("compact-witness/MN",)
    assert proofs.index_entry.global_id == GID


def test_manifest_proofs_with_a_witness_cosigning_under_both_keys_name_it_once() -> None:
    text = parse_note(MANIFEST.checkpoint).text
    note = add_cosignature(
        MANIFEST.checkpoint, witness_signer("MN", MN_NEW.key).cosign(text, timestamp=TIMESTAMP + 1)
    )
    proofs = check_manifest_proofs(
        dataclasses.replace(MANIFEST, checkpoint=note), V2, history=HISTORY
    )
    assert proofs.witnesses == ("compact-witness/MN",)


# --- checkpoints: one state, one witness ----------------------------------------------------


def _checkpoint(log_key: signing.SigningKey, *witnesses: tuple[str, signing.SigningKey]) -> str:
    checkpoint = Checkpoint(log_origin("IL"), 1, root_hash([leaf_hash(b"an entry")]))
    note = sign_checkpoint(checkpoint, log_signer("IL", log_key))
    for state, key in witnesses:
        note = add_cosignature(note, witness_signer(state, key).cosign(checkpoint, timestamp=7))
    return note


def _verify(note: str, threshold: int) -> list[str]:
    member = V2.member("IL")
    assert member is not None
    verified = verify_member_checkpoint(
        note,
        logs=member_log_verifiers(member, HISTORY),
        witnesses=witness_verifiers(V2.members, HISTORY, exclude="IL"),
        threshold=threshold,
        origin=log_origin("IL"),
    )
    return [c.name for c in verified.cosignatures]


def test_a_witness_cosigning_with_its_old_and_new_key_counts_once() -> None:
    both = _checkpoint(IL_NEW.key, ("MN", MN.key), ("MN", MN_NEW.key))
    # What the check guards against: by key, the two cosignatures count as two witnesses.
    listed = witness_verifiers(V2.members, HISTORY, exclude="IL")
    member = V2.member("IL")
    assert member is not None
    counted = verify_checkpoint(
        both, log=member_log_verifiers(member, None)[0], witnesses=listed, threshold=2
    )
    assert len(counted.cosignatures) == 2
    with pytest.raises(ThresholdError):
        _verify(both, 2)
    assert _verify(both, 1) == ["compact-witness/MN"]
    with_ca = _checkpoint(IL_NEW.key, ("MN", MN.key), ("MN", MN_NEW.key), ("CA", CA.key))
    assert _verify(with_ca, 2) == ["compact-witness/MN", "compact-witness/CA"]


def test_a_checkpoint_under_the_old_log_key_and_old_witness_keys_verifies() -> None:
    assert _verify(_checkpoint(IL.key, ("MN", MN.key), ("CA", CA.key)), 2) == [
        "compact-witness/MN",
        "compact-witness/CA",
    ]
    with pytest.raises(VerificationError, match="no verifiable signatures"):
        _verify(_checkpoint(STRANGER, ("MN", MN.key), ("CA", CA.key)), 1)


def test_the_threshold_cannot_exceed_the_witness_states() -> None:
    with pytest.raises(PolicyError):  # two states, though four witness keys
        _verify(_checkpoint(IL_NEW.key, ("MN", MN.key), ("CA", CA.key)), 3)


def test_exhibit_export_counts_a_witness_with_two_keys_once() -> None:
    exporter = object.__new__(ExhibitExporter)
    note = _checkpoint(IL.key, ("MN", MN.key), ("MN", MN_NEW.key))
    exporter._candidates = lambda lp: [(1, note)]  # type: ignore[method-assign]
    assert not exporter._witnessed(LogPlan("IL", 1), V2, 2, HISTORY)
    assert exporter._witnessed(LogPlan("IL", 1), V2, 1, HISTORY)
    assert not exporter._witnessed(LogPlan("IL", 1), V2, 1, None)  # the old log key
    with_ca = _checkpoint(IL.key, ("MN", MN.key), ("MN", MN_NEW.key), ("CA", CA.key))
    exporter._candidates = lambda lp: [(1, with_ca)]  # type: ignore[method-assign]
    plan = LogPlan("IL", 1)
    assert exporter._witnessed(plan, V2, 2, HISTORY)
    assert (plan.checkpoint_size, plan.checkpoint_note) == (1, with_ca)


# --- the node: the history from the database -----------------------------------------------


def _storage(tmp_path: Path, *envelopes: Envelope) -> NodeStorage:
    tmp_path.mkdir(parents=True, exist_ok=True)
    storage = make_storage(f"sqlite:///{tmp_path / 'node.db'}", tmp_path)
    _apply(storage, *envelopes)
    return storage


def _apply(storage: NodeStorage, *envelopes: Envelope) -> None:
    with storage.db.write() as s:
        for envelope in envelopes:
            r = Roster.from_payload(envelope.payload)
            s.add(
                m.RosterVersion(
                    version=r.version,
                    envelope=envelope.to_json(),
                    payload_sha256=r.payload_sha256(),
                    applied_at=NOW,
                )
            )


def test_key_history_of_the_database(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    assert key_history(storage.db) == KeyHistory({}, 0)
    _apply(storage, V1_ENVELOPE)
    assert key_history(storage.db).signing_keys("IL") == (IL.key.public_key,)
    assert key_history(storage.db) is key_history(storage.db)  # kept while unchanged
    _apply(storage, V2_ENVELOPE)
    assert key_history(storage.db) == HISTORY  # a new version is seen at once
    store = FederationStore(storage.db, storage.fields, "IL")
    assert store.key_history() == HISTORY


def _entries() -> list[Entry]:
    payload = OLD_ENTRY.to_json()
    return [Entry(0, ENTRY_KIND, payload, leaf_hash(payload))]


def test_an_old_key_entry_replicates_after_the_rotation(tmp_path: Path) -> None:
    storage = _storage(tmp_path, V1_ENVELOPE, V2_ENVELOPE)
    batch = Replicas(storage.db).verify_batch(V2, "IL", _entries())
    assert [entry.global_id for _, entry in batch.parsed] == [GID]


def test_without_the_old_version_an_old_key_entry_is_refused(tmp_path: Path) -> None:
    storage = _storage(tmp_path / "v2", V2_ENVELOPE)
    with pytest.raises(ReplicaError) as info:
        Replicas(storage.db).verify_batch(V2, "IL", _entries())
    assert info.value.kind == "bad-entry"
    with pytest.raises(ReplicaError):
        Replicas.verify_entries(V2, "IL", _entries())  # no history: the roster key only


def _empty_checkpoint(key: signing.SigningKey) -> str:
    return sign_checkpoint(Checkpoint(log_origin("IL"), 0, root_hash([])), log_signer("IL", key))


def test_a_live_checkpoint_under_the_old_key_is_not_an_alert(tmp_path: Path) -> None:
    replicas = Replicas(_storage(tmp_path, V1_ENVELOPE, V2_ENVELOPE).db)
    member = V2.member("IL")
    assert member is not None
    with pytest.raises(NotRotatedError) as info:
        replicas.accept_checkpoint(member, _empty_checkpoint(IL.key), [], now=NOW)
    assert isinstance(info.value, FederationError)
    assert not isinstance(info.value, ReplicaError)  # node.fednode alerts on ReplicaError only
    assert str(info.value) == (
        "IL signs with a key of roster version 1; it has not switched to its rotated keys yet"
    )
    assert replicas.state_of("IL").checkpoint is None  # nothing kept
    assert replicas.accept_checkpoint(member, _empty_checkpoint(IL_NEW.key), [], now=NOW).size == 0


def test_a_live_checkpoint_under_a_key_of_no_version_is_an_alert(tmp_path: Path) -> None:
    replicas = Replicas(_storage(tmp_path, V1_ENVELOPE, V2_ENVELOPE).db)
    member = V2.member("IL")
    assert member is not None
    with pytest.raises(ReplicaError) as info:
        replicas.accept_checkpoint(member, _empty_checkpoint(STRANGER), [], now=NOW)
    assert info.value.kind == "bad-checkpoint"


def test_a_live_checkpoint_keeps_cosignatures_of_a_witness_earlier_key(tmp_path: Path) -> None:
    # MN cosigned IL's checkpoint before it switched to its new key: the line is kept when
    # the witnesses include the history (as a sync passes them), dropped otherwise.
    note = _checkpoint(IL_NEW.key, ("MN", MN.key), ("CA", CA.key))
    member = V2.member("IL")
    assert member is not None
    for history, kept in ((HISTORY, ["CA", "MN"]), (None, ["CA"])):
        replicas = Replicas(_storage(tmp_path / str(bool(history)), V1_ENVELOPE, V2_ENVELOPE).db)
        witnesses = witness_verifiers(V2.members, history, exclude="IL")
        replicas.accept_checkpoint(member, note, [], now=NOW, witnesses=witnesses)
        [held] = [c.note for c in replicas.checkpoints("IL")]
        names = sorted(
            line.split()[1].split("+")[0] for line in held.split("\n\n", 1)[1].splitlines()
        )
        assert names == sorted([log_origin("IL"), *(witness_signer(w, CA.key).name for w in kept)])


def test_a_bad_line_of_the_current_key_is_an_alert_even_beside_an_old_key_line(
    tmp_path: Path,
) -> None:
    replicas = Replicas(_storage(tmp_path, V1_ENVELOPE, V2_ENVELOPE).db)
    member = V2.member("IL")
    assert member is not None
    other = sign_checkpoint(
        Checkpoint(log_origin("IL"), 1, root_hash([leaf_hash(b"x")])),
        log_signer("IL", IL_NEW.key),
    )
    forged_line = other.split("\n\n", 1)[1]  # the current key's line, for another text
    note = add_signature_lines(_empty_checkpoint(IL.key), [forged_line])
    with pytest.raises(ReplicaError) as info:
        replicas.accept_checkpoint(member, note, [], now=NOW)
    assert info.value.kind == "bad-checkpoint"


def _trail(tmp_path: Path, log_key: signing.SigningKey, *envelopes: Envelope) -> NodeStorage:
    storage = _storage(tmp_path, *envelopes)
    with storage.db.write() as s:
        audit(s, actor="ana", action="read_personal", target="IL-1", now=NOW)
    log = TransparencyLog(storage.db)
    assert log_audit(storage.db, log, "IL") == 1
    log.sign_checkpoint(log_signer("IL", log_key), origin=log_origin("IL"))
    return storage


def test_own_trail_with_the_newest_checkpoint_under_the_earlier_key(tmp_path: Path) -> None:
    storage = _trail(tmp_path, IL.key, V1_ENVELOPE, V2_ENVELOPE)
    report = verify_own_trail(storage.db, "IL")
    assert report.signature_checked
    assert report.problems == []


def test_own_trail_without_the_earlier_version_or_under_a_key_of_no_version(
    tmp_path: Path,
) -> None:
    only_v2 = _trail(tmp_path / "a", IL.key, V2_ENVELOPE)
    assert verify_own_trail(only_v2.db, "IL").problems == [
        "the checkpoint of size 1 is not signed by this node's log key"
    ]
    stranger = _trail(tmp_path / "b", STRANGER, V1_ENVELOPE, V2_ENVELOPE)
    assert verify_own_trail(stranger.db, "IL").problems == [
        "the checkpoint of size 1 is not signed by this node's log key"
    ]


# --- documents a peer sends after signing them: requests, decisions, receipts, matters ---
#
# A requester may sign a bundle request before it rotates and send it (a retry) after;
# a holder's decision or a member's receipt may be fetched or resent after a rotation; a
# matter revision is shared again to members that missed it. Each arrives over mTLS
# from the member the roster names, so an earlier key of that member is accepted (its
# signature is what the record keeps), a key of no version is not.


def _node(tmp_path: Path, state: str, *envelopes: Envelope) -> NodeStorage:
    return dataclasses.replace(_storage(tmp_path, *envelopes), state=state)


@pytest.mark.parametrize("document", ["request", "receipt"])
@pytest.mark.parametrize(
    ("key", "kind"), [(MN.key, Refusal.NOT_FOUND), (STRANGER, Refusal.INVALID)]
)
def test_a_bundle_request_or_receipt_signed_with_an_earlier_key(
    tmp_path: Path, document: str, key: signing.SigningKey, kind: Refusal
) -> None:
    """Verified, a request's incident (a receipt's bundle) is looked up, and IL holds
    none; not verified, it is invalid."""
    il = _node(tmp_path, "IL", V1_ENVELOPE, V2_ENVELOPE)
    log = TransparencyLog(il.db)
    desk = BundleDesk(il, log, IL_NEW.key, BundleSettings(), clock=lambda: NOW)
    sealer = BundleSealer(il, log, IL_NEW.key, BundleSettings(), tmp_path / "spool")
    send: Callable[[], object] = (
        (lambda: desk.receive_request("MN", sign_request(REQUEST, key).to_json(), V2))
        if document == "request"
        else (
            lambda: sealer.acknowledge(
                "MN", RECEIPT.bundle_id, sign_receipt(RECEIPT, key).to_json(), V2
            )
        )
    )
    with pytest.raises(BundleRefused) as e:
        send()
    assert e.value.kind is kind


@pytest.mark.parametrize(("key", "verified"), [(IL.key, True), (STRANGER, False)])
def test_a_bundle_decision_signed_with_an_earlier_key(
    tmp_path: Path, key: signing.SigningKey, verified: bool
) -> None:
    mn = _node(tmp_path, "MN", V1_ENVELOPE, V2_ENVELOPE)
    desk = BundleDesk(mn, TransparencyLog(mn.db), MN_NEW.key, BundleSettings(), clock=lambda: NOW)
    row = m.BundleRequestRow(holder="IL", request_id=REQUEST.request_id)
    envelope = sign_decision(APPROVAL, key).to_json()
    if verified:
        assert desk._verified_decision(row, envelope, V2) == APPROVAL
    else:
        with pytest.raises(BundleRefused, match=r"^decision: ") as e:
            desk._verified_decision(row, envelope, V2)
        assert e.value.kind is Refusal.INVALID


@pytest.mark.parametrize(("key", "verified"), [(IL.key, True), (STRANGER, False)])
def test_a_matter_revision_signed_with_an_earlier_key(
    tmp_path: Path, key: signing.SigningKey, verified: bool
) -> None:
    mn = _node(tmp_path, "MN", V1_ENVELOPE, V2_ENVELOPE)
    desk = MatterDesk(mn, TransparencyLog(mn.db), MN_NEW.key, clock=lambda: NOW)
    envelope = sign_matter(MATTER, key).to_json()
    if verified:
        assert desk.receive("IL", envelope, V2) == MATTER.revision
    else:
        with pytest.raises(MatterRefused, match=r"^envelope: ") as e:
            desk.receive("IL", envelope, V2)
        assert e.value.kind is Refusal.INVALID
    assert verify_matter(sign_matter(MATTER, IL.key), V1, owner="IL") == MATTER
    with pytest.raises(FederationError, match="not signed by IL"):
        verify_matter(sign_matter(MATTER, IL.key), V2, owner="IL")  # no history: refused
