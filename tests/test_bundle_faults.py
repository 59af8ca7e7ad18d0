"""Bundle transfer faults, in process: IL seals a real bundle (published, witnessed, sealed
by node.bundle_seal); MN receives it through node.bundle_receive with the units of IL's
spool handed over by the test, so that each fault of the issue can be made exactly:
altered, dropped, duplicated, reordered units; a manifest signed by the wrong key; a file
that does not match its hash; a restart of the requester; ten interruptions in a row; a
full disk. FetchBundle's refusals are checked over gRPC."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from crypto.checkpoint import parse_checkpoint
from crypto.dsse import Envelope
from crypto.note import parse_note
from crypto.sealing import ABYTES, SealedStreamWriter, header_size
from federation.bundle import BundleManifest, BundleRequest, sign_manifest, sign_request
from federation.ceremony import open_share
from federation.naming import witness_signer
from node import models as m
from node.blobstore import BlobWriter
from node.bundle_receive import BadBundle, BundleReceiver, Receiving, TransferFault
from node.bundle_seal import BundleSealer, iter_units
from node.bundles import OUTGOING, BundleRefused, _new_row
from node.config import BundleSettings, FederationSettings
from node.errors import Refusal
from node.fedclient import PeerRefusedByError
from node.fedservice import FederationServicer, start_federation_server
from node.ingest import ingest_file
from node.pseudonymise import Pseudonymiser, local_holder
from node.publish import Publisher
from tests.helpers import record, write_jsonl
from tests.test_bundles import BundleNode, make_bundle_node, new_request, peer
from tests.test_fedservice import CA, IL, MN, NOW, Compact, make_compact

CHUNK = 1024
FILES = {
    "clip.mp4": os.urandom(7 * CHUNK + 100),
    "note.txt": b"a statement\n",
    "photo.jpg": os.urandom(3 * CHUNK),
}


@pytest.fixture(scope="module")
def compact() -> Compact:
    return make_compact()


@dataclass
class Sealed:
    il: BundleNode
    mn: BundleNode
    sealer: BundleSealer
    receiver: BundleReceiver
    row_id: int  # MN's outgoing request row
    holder_row: int  # IL's incoming request row
    gid: str
    alerts: list[tuple[str, str, str]]

    def units(self) -> list[tuple[int, bytes]]:
        """IL's sealed stream as (offset, unit)."""
        with self.il.storage.db.read() as s:
            bundle = s.scalars(
                select(m.Bundle).where(m.Bundle.request_row_id == self.holder_row)
            ).one()
            size = bundle.sealed_size
            path = self.sealer.spool_dir / bundle.spool_name
        out, offset = [], 0
        for unit in iter_units(path, 0, size, CHUNK):
            out.append((offset, unit))
            offset += len(unit)
        return out

    def state(self) -> tuple[str, str | None]:
        with self.mn.storage.db.read() as s:
            row = s.get(m.BundleRequestRow, self.row_id)
            assert row is not None
            return row.state, row.reason

    def visible(self) -> bool:
        with self.mn.storage.db.read() as s:
            return (
                s.scalar(select(m.Incident.id).where(m.Incident.global_id == self.gid)) is not None
            )

    def blobs_at_mn(self) -> set[str]:
        return {
            p.name
            for p in self.mn.storage.blobs.root.rglob("*")
            if p.is_file() and len(p.name) == 64
        }

    def staged_at_mn(self) -> list[Path]:
        staging = self.mn.storage.blobs.root / ".staging"
        return list(staging.iterdir()) if staging.exists() else []


def _publish(node: BundleNode, compact: Compact, helper: BundleNode) -> None:
    roster = compact.roster
    shares = {}
    for n in (node, helper):
        shares[n.who.state] = open_share(
            compact.sealed[n.who.state],
            state=n.who.state,
            private_key=n.who.encryption_key,
            roster=roster,
        )
    pseudonymiser = Pseudonymiser(
        store=node.store,
        roster=roster,
        holders=[local_holder(s, share) for s, share in shares.items()],
    )
    asyncio.run(Publisher(node.storage, node.log, node.who.signing_key).publish(pseudonymiser))


def _cosign(il: BundleNode) -> None:
    """MN witnesses IL's newest checkpoint (as `compact sync` does)."""
    note = il.log.latest_checkpoint()
    assert note is not None
    checkpoint = parse_checkpoint(parse_note(note).text)
    line = witness_signer("MN", MN.signing_key).cosign(checkpoint, timestamp=int(NOW.timestamp()))
    with il.storage.db.write() as s:
        s.add(
            m.LogCosignature(
                size=checkpoint.size, witness="MN", signature_line=line, received_at=NOW
            )
        )


def make_sealed(tmp_path: Path, compact: Compact, *, held: tuple[str, ...] = ()) -> Sealed:
    """IL with one incident and its files, published and witnessed; MN's request for it
    (listing `held` files as held by MN, which then imports them itself), approved and
    sealed."""
    il = make_bundle_node(tmp_path, IL, compact, BundleSettings(chunk_bytes=CHUNK))
    mn = make_bundle_node(tmp_path, MN, compact)
    media = tmp_path / "import" / "media"
    media.mkdir(parents=True)
    for name, data in FILES.items():
        (media / name).write_bytes(data)
    evidence = [{"path": f"media/{n}", "media_type": "application/octet-stream"} for n in FILES]
    path = write_jsonl(
        tmp_path / "import", [record("IL-F-1", sharing="compact", evidence=evidence)]
    )
    assert ingest_file(il.storage, path, actor="clerk").imported == 1
    with il.storage.db.read() as s:
        gid = s.scalars(select(m.Incident.global_id)).one()
    _publish(il, compact, mn)
    _cosign(il)
    roster = il.store.require_roster()
    if held:
        mine = [{"path": f"media/{n}", "media_type": "application/octet-stream"} for n in held]
        own = record("MN-F-1", evidence=mine)
        own["location"] = {"county": "Hennepin", "state": "MN", "kind": "residence"}
        assert ingest_file(mn.storage, write_jsonl(tmp_path / "import", [own]), actor="c").imported
        request = BundleRequest(
            request_id=str(uuid.uuid4()),
            requester="MN",
            holder="IL",
            incident=gid,
            purpose="the same video in both states",
            matter=None,
            requested_by="analyst.ortiz",
            requested_at=NOW,
            held_evidence=tuple(sorted(hashlib.sha256(FILES[n]).hexdigest() for n in held)),
        )
        envelope = sign_request(request, MN.signing_key).to_json()
        with mn.storage.db.write() as s:
            new_row = _new_row(OUTGOING, request, envelope, now=NOW, sent_at=None)
            s.add(new_row)
            s.flush()
            row_id = new_row.id
    else:
        row_id, envelope = new_request(mn, gid)
    status = il.desk.receive_request("MN", envelope, roster)
    assert status.state == "approved"
    mn.desk.record_status(row_id, status, roster)
    sealer = BundleSealer(
        il.storage,
        il.log,
        IL.signing_key,
        BundleSettings(chunk_bytes=CHUNK),
        tmp_path / "il-spool",
        clock=il.clock,
    )
    [outcome] = sealer.seal_ready(roster)
    assert outcome.state == "sealed", outcome
    with il.storage.db.read() as s:
        holder_row = s.scalars(select(m.BundleRequestRow.id)).one()
    alerts: list[tuple[str, str, str]] = []
    receiver = BundleReceiver(
        mn.storage,
        MN.signing_key,
        MN.encryption_key,
        tmp_path / "mn-spool",
        clock=mn.clock,
        alert=lambda kind, state, message, _e: alerts.append((kind, state, message)),
    )
    return Sealed(il, mn, sealer, receiver, row_id, holder_row, gid, alerts)


@pytest.fixture
def sealed(tmp_path: Path, compact: Compact) -> Iterator[Sealed]:
    made = make_sealed(tmp_path, compact)
    yield made
    made.il.storage.db.dispose()
    made.mn.storage.db.dispose()


def manifest_of(sealed: Sealed) -> bytes:
    status = sealed.il.desk.status_for("MN", _request_id(sealed))
    assert status.manifest is not None
    return status.manifest


def _request_id(sealed: Sealed) -> str:
    with sealed.mn.storage.db.read() as s:
        row = s.get(m.BundleRequestRow, sealed.row_id)
        assert row is not None
        return row.request_id


def accept(sealed: Sealed, manifest: bytes | None = None) -> None:
    sealed.receiver.accept_manifest(
        sealed.row_id, manifest or manifest_of(sealed), sealed.mn.store.require_roster()
    )


def feed_all(receiving: Receiving, units: list[tuple[int, bytes]]) -> None:
    for offset, data in units:
        receiving.feed(offset, data)


def feed_to_end(receiving: Receiving, units: list[tuple[int, bytes]]) -> None:
    """Feed the units, then wait for the spool and staging threads: their errors."""
    feed_all(receiving, units)
    receiving.settle()


def deliver(sealed: Sealed, receiving: Receiving, units: list[tuple[int, bytes]]) -> None:
    for offset, data in units:
        if offset < receiving.offset:
            continue
        receiving.feed(offset, data)
    sealed.receiver.save_progress(sealed.row_id, receiving)
    sealed.receiver.store(sealed.row_id, receiving)


def assert_delivered(sealed: Sealed) -> None:
    assert sealed.state() == ("delivered", None)
    assert sealed.visible()
    digests = {hashlib.sha256(d).hexdigest() for d in FILES.values()}
    assert digests <= sealed.blobs_at_mn()
    for digest in digests:
        data = b"".join(sealed.mn.storage.blobs.read(digest, chunk_size=1 << 16))
        assert hashlib.sha256(data).hexdigest() == digest
    assert sealed.staged_at_mn() == []


# --- the clean path, and what the holder stores -------------------------------------------------


def test_a_clean_transfer_stores_everything(sealed: Sealed) -> None:
    accept(sealed)
    assert sealed.state()[0] == "transferring"
    receiving = sealed.receiver.resume(sealed.row_id)
    deliver(sealed, receiving, sealed.units())
    assert_delivered(sealed)


# --- faults in transit: the unit is refused, nothing of it is kept, the transfer goes on ---------


@pytest.mark.parametrize("fault", ["altered", "dropped", "duplicated", "reordered", "truncated"])
def test_a_bad_unit_is_refused_and_the_transfer_completes_after(sealed: Sealed, fault: str) -> None:
    accept(sealed)
    units = sealed.units()
    receiving = sealed.receiver.resume(sealed.row_id)
    for offset, data in units[:3]:
        receiving.feed(offset, data)
    offset, data = units[3]
    bad = {
        "altered": (offset, data[:10] + bytes([data[10] ^ 1]) + data[11:]),
        "dropped": units[4],
        "duplicated": units[2],
        "reordered": (offset, units[4][1]),
        "truncated": (offset, data[:-1]),
    }[fault]
    with pytest.raises(TransferFault):
        receiving.feed(*bad)
    # What was verified before the fault is kept; the unit that failed is not.
    sealed.receiver.save_progress(sealed.row_id, receiving)
    receiving.abort()
    assert not sealed.visible() and sealed.state()[0] == "transferring"
    again = sealed.receiver.resume(sealed.row_id)
    assert again.offset == units[3][0]
    deliver(sealed, again, units)
    assert_delivered(sealed)


def test_a_restart_resumes_from_the_spool(sealed: Sealed) -> None:
    """The requester stops (its Receiving is lost) after half the stream: a new one is
    rebuilt from the spool up to the recorded length and the rest is fetched."""
    accept(sealed)
    units = sealed.units()
    receiving = sealed.receiver.resume(sealed.row_id)
    half = len(units) // 2
    for offset, data in units[:half]:
        receiving.feed(offset, data)
    sealed.receiver.save_progress(sealed.row_id, receiving)
    # Units verified after the last recorded progress are lost in a crash: fed, not synced.
    receiving.feed(*units[half])
    crashed = receiving  # the process dies; the spool holds more than the recorded length
    again = sealed.receiver.resume(sealed.row_id)
    assert again.offset == units[half][0]
    deliver(sealed, again, units)
    assert_delivered(sealed)
    crashed.abort()  # only closes what the dead process had open


def test_ten_interruptions_in_a_row(sealed: Sealed) -> None:
    accept(sealed)
    units = sealed.units()
    receiving = sealed.receiver.resume(sealed.row_id)
    for fed in range(10):  # each attempt gets one unit, then the connection breaks
        receiving.feed(*units[fed])
        sealed.receiver.save_progress(sealed.row_id, receiving)
        receiving.abort()  # as node.fednode does when a connection breaks
        receiving = sealed.receiver.resume(sealed.row_id)
        assert receiving.offset == units[fed + 1][0]
    deliver(sealed, receiving, units)
    assert_delivered(sealed)


@pytest.mark.parametrize("under", ["staged files", "spool"])
def test_a_full_disk_stores_nothing_and_the_transfer_continues_after(
    sealed: Sealed, monkeypatch: pytest.MonkeyPatch, under: str
) -> None:
    """Staging and the spool run on threads of their own: a full disk under either is
    raised by a later call, the recorded progress never passes what the spool holds on
    disk, nothing is visible, and the transfer completes once there is room."""
    accept(sealed)
    units = sealed.units()
    receiving = sealed.receiver.resume(sealed.row_id)
    feed_all(receiving, units[:4])
    sealed.receiver.save_progress(sealed.row_id, receiving)

    def full(_self: object, _data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if under == "spool":
        monkeypatch.setattr(Receiving, "_append", full)
    else:
        monkeypatch.setattr(BlobWriter, "write", full)
    with pytest.raises(OSError, match="No space left"):
        feed_to_end(receiving, units[4:])
    with pytest.raises(RuntimeError):  # unusable after the failure
        receiving.feed(*units[4])
    if under == "spool":
        with pytest.raises(OSError, match="No space left"):  # nothing more to record
            sealed.receiver.save_progress(sealed.row_id, receiving)
    else:  # the spool did not fail: the units it holds need not be fetched again
        sealed.receiver.save_progress(sealed.row_id, receiving)
    receiving.abort()
    monkeypatch.undo()
    assert not sealed.visible() and sealed.state()[0] == "transferring"
    assert sealed.staged_at_mn() == []
    again = sealed.receiver.resume(sealed.row_id)
    if under == "spool":
        assert again.offset == units[4][0]
    else:
        assert again.offset > units[4][0]
    deliver(sealed, again, units)
    assert_delivered(sealed)


# --- a bundle that is wrong: quarantined with the reason, nothing visible -------------------------


def test_a_manifest_signed_by_the_wrong_key_is_quarantined(sealed: Sealed) -> None:
    envelope = Envelope.from_json(manifest_of(sealed))
    manifest = BundleManifest.from_payload(envelope.payload)
    forged = sign_manifest(manifest, CA.signing_key).to_json()
    with pytest.raises(BadBundle, match="not signed by IL's roster key"):
        accept(sealed, forged)
    state, reason = sealed.state()
    assert state == "quarantined" and reason is not None and "not signed by IL" in reason
    assert [a[0] for a in sealed.alerts] == ["bad-bundle"]
    assert (sealed.receiver.spool_dir / f"{sealed.row_id}.manifest").read_bytes() == forged
    assert not sealed.visible()


def test_a_file_that_does_not_match_its_hash_is_quarantined(sealed: Sealed) -> None:
    """IL signs a manifest whose stream carries other bytes for one file than its SHA-256
    says (a holder at fault): the stream verifies, the file does not."""
    envelope = Envelope.from_json(manifest_of(sealed))
    manifest = BundleManifest.from_payload(envelope.payload)
    writer = SealedStreamWriter(
        [MN.encryption_key.public_key],
        chunk_size=CHUNK,
        bundle_id=bytes.fromhex(manifest.bundle_id),
    )
    plaintext = b"".join(FILES.values())
    tampered = plaintext[:50] + bytes([plaintext[50] ^ 1]) + plaintext[51:]
    sealed_bytes = writer.header() + writer.update(tampered) + writer.finalize()
    forged = dataclasses.replace(manifest, sealed_stream=writer.info)
    accept(sealed, sign_manifest(forged, IL.signing_key).to_json())
    receiving = sealed.receiver.resume(sealed.row_id)
    units = _split(sealed_bytes)
    for offset, data in units[:2]:  # the header and the first chunk verify
        receiving.feed(offset, data)
    with pytest.raises(BadBundle, match=r"evidence\[0\]: the file does not match its SHA-256"):
        feed_to_end(receiving, units[2:])
    receiving.abort()
    sealed.receiver.quarantine(sealed.row_id, "evidence[0]: the file does not match")
    assert sealed.state()[0] == "quarantined" and not sealed.visible()
    assert sealed.staged_at_mn() == []
    assert sealed.blobs_at_mn() == set()


def _split(stream: bytes) -> list[tuple[int, bytes]]:
    head = header_size(1)
    out = [(0, stream[:head])]
    offset = head
    while offset < len(stream):
        unit = stream[offset : offset + CHUNK + ABYTES]
        out.append((offset, unit))
        offset += len(unit)
    return out


# --- FetchBundle and AckBundle refusals over gRPC -------------------------------------------------


def _servicer(sealed: Sealed) -> FederationServicer:
    return FederationServicer(
        state="IL",
        store=sealed.il.store,
        log=sealed.il.log,
        db=sealed.il.storage.db,
        settings=FederationSettings(),
        clock=sealed.il.clock,
        bundles=sealed.il.desk,
        sealer=sealed.sealer,
    )


def _bundle_id(sealed: Sealed) -> str:
    with sealed.il.storage.db.read() as s:
        return s.scalars(select(m.Bundle.bundle_id)).one()


def _fetch(sealed: Sealed, caller: Any, bundle_id: str, offset: int) -> list[tuple[int, bytes]]:
    async def scenario() -> list[tuple[int, bytes]]:
        server, port = await start_federation_server(
            servicer=_servicer(sealed),
            store=sealed.il.store,
            listen="127.0.0.1:0",
            tls_key_pem=IL.tls_key,
            tls_cert_pem=IL.tls_cert,
            max_receive_message_bytes=4 * 1024 * 1024,
        )
        try:
            async with peer(caller, IL, port) as c:
                return [u async for u in c.fetch_bundle(bundle_id, offset)]
        finally:
            await server.stop(None)

    return asyncio.run(scenario())


def test_fetch_serves_whole_units_from_an_offset(sealed: Sealed) -> None:
    units = sealed.units()
    got = _fetch(sealed, MN, _bundle_id(sealed), units[2][0])
    assert got == units[2:]
    with sealed.il.storage.db.read() as s:
        sent = list(s.scalars(select(m.CustodyEvent.kind).where(m.CustodyEvent.kind == "sent")))
    assert sent == ["sent"] * len(FILES)


@pytest.mark.parametrize(
    ("caller", "bundle_id", "offset", "code"),
    [
        (CA, None, 0, grpc.StatusCode.PERMISSION_DENIED),  # approved for MN
        (MN, "ab" * 32, 0, grpc.StatusCode.NOT_FOUND),
        (MN, "xyz", 0, grpc.StatusCode.INVALID_ARGUMENT),
        (MN, None, 5, grpc.StatusCode.OUT_OF_RANGE),  # inside the header
        (MN, None, 10**9, grpc.StatusCode.OUT_OF_RANGE),  # past the end
    ],
)
def test_fetch_refusals(
    sealed: Sealed, caller: Any, bundle_id: str | None, offset: int, code: grpc.StatusCode
) -> None:
    with pytest.raises(PeerRefusedByError) as e:
        _fetch(sealed, caller, bundle_id or _bundle_id(sealed), offset)
    assert e.value.code == code


def test_a_receipt_before_the_end_was_sent_is_refused(sealed: Sealed) -> None:
    accept(sealed)
    receiving = sealed.receiver.resume(sealed.row_id)
    deliver(sealed, receiving, sealed.units())  # handed over by the test, not served by IL
    receipt = sealed.receiver.receipt(sealed.row_id)
    roster = sealed.il.store.require_roster()
    with pytest.raises(BundleRefused) as e:
        sealed.sealer.acknowledge("MN", _bundle_id(sealed), receipt, roster)
    assert e.value.kind is Refusal.FAILED_PRECONDITION
    _fetch(sealed, MN, _bundle_id(sealed), sealed.units()[-1][0])  # the last unit is served
    sealed.sealer.acknowledge("MN", _bundle_id(sealed), receipt, roster)
    sealed.sealer.acknowledge("MN", _bundle_id(sealed), receipt, roster)  # idempotent
    with sealed.il.storage.db.read() as s:
        row = s.get(m.BundleRequestRow, sealed.holder_row)
        assert row is not None and row.state == "delivered"
    with pytest.raises(BundleRefused) as e:
        sealed.sealer.acknowledge("CA", _bundle_id(sealed), receipt, roster)
    assert e.value.kind is Refusal.INVALID  # signed by MN, not by the caller


def test_an_unfetched_spool_expires(sealed: Sealed) -> None:
    assert sealed.sealer.expire() == 0
    sealed.il.clock.now = NOW + timedelta(days=31)  # bundles.spool_days is 30
    assert sealed.sealer.expire() == 1
    with sealed.il.storage.db.read() as s:
        row = s.get(m.BundleRequestRow, sealed.holder_row)
        assert row is not None and row.state == "failed" and "30 days" in (row.reason or "")
    assert list(sealed.sealer.spool_dir.glob("*.sealed")) == []
    with pytest.raises(PeerRefusedByError) as e:
        _fetch(sealed, MN, _bundle_id(sealed), 0)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_evidence_the_requester_holds_is_not_sent_again(tmp_path: Path, compact: Compact) -> None:
    sealed = make_sealed(tmp_path, compact, held=("photo.jpg",))
    try:
        manifest = BundleManifest.from_payload(Envelope.from_json(manifest_of(sealed)).payload)
        assert [e.delivery for e in manifest.evidence] == ["included", "included", "held"]
        sent = len(FILES["clip.mp4"]) + len(FILES["note.txt"])
        assert manifest.sealed_stream.plaintext_size == sent
        accept(sealed)
        receiving = sealed.receiver.resume(sealed.row_id)
        deliver(sealed, receiving, sealed.units())
        assert_delivered(sealed)  # the held file is there: MN's own copy
    finally:
        sealed.il.storage.db.dispose()
        sealed.mn.storage.db.dispose()
