"""The holder's side of an approved bundle: seal it, serve its stream, take the receipt.

1. **Seal** (`BundleSealer.seal`): once the incident's current index entry and every
   custody event of its evidence recorded before the decision are in this node's log
   under a checkpoint that another member has cosigned, the included evidence files are
   sealed as one stream (crypto.sealing) to the requester's X25519 key from the roster
   and written to the spool (`<data>/bundles/<row id>.sealed`, fsynced, then renamed
   into place). The signed manifest (federation.bundle) binds the stream, the record
   and the proofs; it is stored with the bundle in one transaction that also moves the
   request to `sealed`. Until the log is ready the request stays `approved`.
2. **Serve** (`open_stream`, `units`): FetchBundle reads the spool in the stream's own
   units (the header, then one sealed chunk per message) from a unit boundary. The first
   time the last unit is served, a custody event `sent` is recorded for each file.
3. **Receipt** (`acknowledge`): AckBundle verifies the requester's signed receipt
   against the manifest; the request becomes `delivered` and the spool is removed.

Design: docs/design/bundles.md. Formats: federation.bundle.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from crypto import signing
from crypto.checkpoint import add_cosignature
from crypto.dsse import Envelope
from crypto.errors import CryptoError
from crypto.sealing import ABYTES, SealedStreamWriter, header_size
from federation.bundle import (
    BundleDecision,
    BundleFormatError,
    BundleManifest,
    BundleRequest,
    LoggedEntry,
    ManifestEvidence,
    sign_manifest,
    verify_receipt,
)
from federation.roster import Roster
from node import models as m
from node.blobstore import fsync_dir
from node.bundle_record import incident_record
from node.bundles import INCOMING, BundleRefused
from node.config import BundleSettings
from node.errors import Refusal, StorageError
from node.fedstore import key_history
from node.ingest import NodeStorage
from node.queries import audit, incident_view
from node.records import Timestamp
from node.translog import TransparencyLog, cosignature_lines

log = structlog.get_logger("compact.bundles")

SPOOL_SUFFIX: Final = ".sealed"
_READ: Final = 1 << 20


def spool_path(spool_dir: Path, row_id: int) -> Path:
    """The spool file of the bundle of request row `row_id` (either side)."""
    return spool_dir / f"{row_id}{SPOOL_SUFFIX}"


def unit_count(plaintext_size: int, chunk_size: int) -> int:
    """Units of a sealed stream: the header, then one per chunk (at least one chunk)."""
    return 1 + max(1, -(-plaintext_size // chunk_size))


def unit_boundary(offset: int, sealed_size: int, chunk_size: int) -> bool:
    """Whether `offset` is where a unit of the stream starts, or its end."""
    head = header_size(1)
    if offset in (0, sealed_size):
        return True
    return head <= offset < sealed_size and (offset - head) % (chunk_size + ABYTES) == 0


def iter_units(path: Path, offset: int, sealed_size: int, chunk_size: int) -> Generator[bytes]:
    """The units of the spool file from `offset` (a unit boundary) to the end."""
    head = header_size(1)
    with path.open("rb") as f:
        f.seek(offset)
        while offset < sealed_size:
            size = head if offset == 0 else min(chunk_size + ABYTES, sealed_size - offset)
            data = f.read(size)
            if len(data) != size:
                raise StorageError("a bundle spool file is shorter than its bundle")
            yield data
            offset += size


@dataclass(frozen=True)
class SealOutcome:
    """What one attempt to seal did: `sealed`, `waiting` (the log is not ready; `detail`
    says for what) or `failed` (the request cannot be served; `detail` says why)."""

    request_id: str
    requester: str
    state: str
    detail: str | None = None


@dataclass(frozen=True)
class StreamSlice:
    """A checked FetchBundle: the units of `path` from `offset`."""

    row_id: int
    path: Path
    offset: int
    sealed_size: int
    chunk_size: int


class _Wait(Exception):
    """The log is not ready for this bundle yet."""


class _Fail(Exception):
    """This bundle cannot be sealed; the message is safe to show and to store."""


@dataclass(frozen=True)
class _Plan:
    """Everything read from the database to seal one bundle."""

    row_id: int
    request: BundleRequest
    decision: BundleDecision
    record: dict[str, Any]
    items: list[tuple[m.EvidenceItem, list[tuple[int, bytes]]]]  # item, [(log index, envelope)]
    index_entry: tuple[int, bytes]
    checkpoint: str
    checkpoint_size: int


class BundleSealer:
    def __init__(
        self,
        storage: NodeStorage,
        log: TransparencyLog,
        signing_key: signing.SigningKey,
        settings: BundleSettings,
        spool_dir: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = storage
        self._log = log
        self._key = signing_key
        self._settings = settings
        self.spool_dir = spool_dir
        self._clock = clock
        self.state = storage.state

    # --- sealing ------------------------------------------------------------------------

    def approved(self) -> list[int]:
        """Incoming approved requests whose bundle is not sealed yet (row ids)."""
        with self._storage.db.read() as s:
            return list(
                s.scalars(
                    select(m.BundleRequestRow.id)
                    .where(
                        m.BundleRequestRow.direction == INCOMING,
                        m.BundleRequestRow.state == "approved",
                    )
                    .order_by(m.BundleRequestRow.id)
                )
            )

    def seal_ready(self, roster: Roster) -> list[SealOutcome]:
        """Try to seal every approved bundle; one outcome per request."""
        return [self.seal(row_id, roster) for row_id in self.approved()]

    def seal(self, row_id: int, roster: Roster) -> SealOutcome:
        with self._storage.db.read() as s:
            row = s.get(m.BundleRequestRow, row_id)
            if row is None or row.direction != INCOMING or row.state != "approved":
                raise BundleRefused(Refusal.NOT_FOUND, "no approved incoming request")
            request_id, requester = row.request_id, row.requester
        try:
            plan = self._plan(row_id, roster)
            return self._seal(plan, roster)
        except _Wait as e:
            return SealOutcome(request_id, requester, "waiting", str(e))
        except _Fail as e:
            self._fail(row_id, str(e))
            return SealOutcome(request_id, requester, "failed", str(e))

    def _plan(self, row_id: int, roster: Roster) -> _Plan:
        with self._storage.db.read() as s:
            row = s.get(m.BundleRequestRow, row_id)
            assert row is not None and row.decision_envelope is not None
            # Both envelopes were verified (or signed) by this node before they were stored.
            request = BundleRequest.from_payload(Envelope.from_json(row.request_envelope).payload)
            decision = BundleDecision.from_payload(
                Envelope.from_json(row.decision_envelope).payload
            )
            if roster.member(row.requester) is None:
                raise _Fail(f"{row.requester} is no longer a member of the compact")
            incident = s.scalars(
                select(m.Incident)
                .where(m.Incident.global_id == row.global_id, m.Incident.state == self.state)
                .options(
                    selectinload(m.Incident.conduct),
                    selectinload(m.Incident.agents).selectinload(m.AgentObservation.keys),
                    selectinload(m.Incident.people),
                    selectinload(m.Incident.evidence).selectinload(m.EvidenceItem.custody),
                )
            ).first()
            if incident is None or incident.sharing == "sealed":
                raise _Fail("the incident is no longer available")
            published = s.get(m.PublishedEntry, row.global_id)
            if published is not None and published.withdrawn:
                raise _Fail("the incident was withdrawn")
            if published is None or published.content_hash != incident.content_hash:
                raise _Wait("the incident's current version is not in the log yet")
            decided_at = decision.decided_at
            items: list[tuple[m.EvidenceItem, list[tuple[int, bytes]]]] = []
            needed = published.log_index
            for item in incident.evidence:
                events: list[tuple[int, bytes]] = []
                for c in item.custody:
                    if c.origin is not None:
                        continue
                    if c.log_index is None or c.envelope is None:
                        if c.at <= decided_at:
                            raise _Wait("custody events of the evidence are not in the log yet")
                        continue
                    events.append((c.log_index, c.envelope))
                    if c.at <= decided_at:
                        needed = max(needed, c.log_index)
                items.append((item, events))
            found = self._checkpoint(s, roster, needed + 1)
            if found is None:
                raise _Wait("no checkpoint covering the bundle's log entries is cosigned yet")
            note, size = found
            view = incident_view(incident, self._storage.fields, personal=True)
            try:
                record = incident_record(view, redactions=decision.redactions)
            except ValueError:
                raise _Fail("the incident cannot be read in full") from None
            entry = s.get(m.LogEntry, published.log_index)
            assert entry is not None
            s.expunge_all()
        items = [(item, [e for e in events if e[0] < size]) for item, events in items]
        return _Plan(
            row_id=row_id,
            request=request,
            decision=decision,
            record=record,
            items=items,
            index_entry=(published.log_index, bytes(entry.payload)),
            checkpoint=note,
            checkpoint_size=size,
        )

    def _checkpoint(self, s: Session, roster: Roster, at_least: int) -> tuple[str, int] | None:
        """The newest checkpoint of at least `at_least` entries cosigned by another current
        member, with those members' cosignature lines added."""
        others = [mb.state for mb in roster.members if mb.state != self.state]
        size = s.scalar(
            select(func.max(m.LogCosignature.size)).where(
                m.LogCosignature.size >= at_least, m.LogCosignature.witness.in_(others)
            )
        )
        if size is None:
            return None
        stored = s.get(m.LogCheckpoint, size)
        if stored is None:
            return None
        note = stored.note
        for line in cosignature_lines(s, size, witnesses=others):
            note = add_cosignature(note, line)
        return note, int(size)

    def _seal(self, plan: _Plan, roster: Roster) -> SealOutcome:
        request = plan.request
        member = roster.member(request.requester)
        assert member is not None
        held = set(request.held_evidence)
        included = [item for item, _ in plan.items if item.sha256 not in held]
        chunk_size = self._settings.chunk_bytes
        bundle_id = plan.decision.bundle_id
        assert bundle_id is not None
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = spool_path(self.spool_dir, plan.row_id)
        tmp = path.with_suffix(".tmp")
        writer = SealedStreamWriter(
            [member.encryption_key], chunk_size=chunk_size, bundle_id=bytes.fromhex(bundle_id)
        )
        try:
            with tmp.open("wb") as out:
                out.write(writer.header())
                for item in included:
                    for piece in self._storage.blobs.read(item.sha256, chunk_size=_READ):
                        out.write(writer.update(piece))
                out.write(writer.finalize())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            fsync_dir(self.spool_dir)
        except CryptoError:
            tmp.unlink(missing_ok=True)
            raise _Fail("an evidence file failed its integrity check in the blob store") from None
        except StorageError as e:
            tmp.unlink(missing_ok=True)
            raise _Fail(str(e)) from None
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise _Wait(f"the spool could not be written ({e.strerror or type(e).__name__})") from e
        info = writer.info
        now = self._clock()
        offsets: dict[int, int] = {}
        offset = 0
        for item in included:
            offsets[item.id] = offset
            offset += item.size
        try:
            evidence = tuple(
                ManifestEvidence(
                    position=item.position,
                    sha256=item.sha256,
                    size=item.size,
                    media_type=item.media_type,
                    file_name=item.file_name,
                    captured_at=(
                        _local_time(item.captured_at, item.captured_offset_min)
                        if item.captured_at
                        else None
                    ),
                    captured_by=item.captured_by,
                    description=item.description,
                    delivery="included" if item.id in offsets else "held",
                    offset=offsets.get(item.id),
                    custody=tuple(
                        LoggedEntry(index, envelope, tuple(self._proof(index, plan)))
                        for index, envelope in events
                    ),
                )
                for item, events in plan.items
            )
            index, payload = plan.index_entry
            manifest = BundleManifest(
                bundle_id=bundle_id,
                request_id=request.request_id,
                requester=request.requester,
                holder=self.state,
                global_id=request.incident,
                incident=plan.record,
                redactions=plan.decision.redactions,
                evidence=evidence,
                index_entry=LoggedEntry(index, payload, tuple(self._proof(index, plan))),
                checkpoint=plan.checkpoint,
                sealed_stream=info,
                created_at=now.replace(microsecond=0),
            )
            envelope = sign_manifest(manifest, self._key).to_json()
        except (BundleFormatError, ValueError, TypeError) as e:
            path.unlink(missing_ok=True)
            raise _Fail(f"the bundle cannot be described: {e}") from None
        with self._storage.db.write() as s:
            row = s.get(m.BundleRequestRow, plan.row_id)
            if row is None or row.state != "approved":  # decided otherwise meanwhile
                path.unlink(missing_ok=True)
                return SealOutcome(request.request_id, request.requester, "waiting", "changed")
            s.add(
                m.Bundle(
                    bundle_id=bundle_id,
                    request_row_id=row.id,
                    manifest_envelope=envelope,
                    manifest_sha256=hashlib.sha256(envelope).hexdigest(),
                    spool_name=path.name,
                    sealed_size=info.ciphertext_size,
                    verified_offset=0,
                    units=unit_count(info.plaintext_size, chunk_size),
                    created_at=now,
                    completed_at=None,
                    receipt_envelope=None,
                )
            )
            row.state, row.updated_at = "sealed", now
            audit(
                s,
                actor="node",
                action="bundle.seal",
                target=row.global_id,
                outcome="sealed",
                detail={
                    "request_id": row.request_id,
                    "requester": row.requester,
                    "bundle_id": bundle_id,
                    "included": len(included),
                    "held": len(plan.items) - len(included),
                    "sealed_size": info.ciphertext_size,
                    "checkpoint_size": plan.checkpoint_size,
                },
                now=now,
            )
        log.info("bundle.sealed", requester=request.requester, size=info.ciphertext_size)
        return SealOutcome(request.request_id, request.requester, "sealed")

    def _proof(self, index: int, plan: _Plan) -> list[bytes]:
        return self._log.inclusion_proof(index, plan.checkpoint_size)

    def _fail(self, row_id: int, reason: str) -> None:
        now = self._clock()
        with self._storage.db.write() as s:
            row = s.get(m.BundleRequestRow, row_id)
            if row is None or row.state != "approved":
                return
            row.state, row.reason, row.updated_at = "failed", reason, now
            audit(
                s,
                actor="node",
                action="bundle.seal",
                target=row.global_id,
                outcome="failed",
                detail={"request_id": row.request_id, "reason": reason},
                now=now,
            )
        log.warning("bundle.seal_failed", request_id=row_id, reason=reason)

    def expire(self) -> int:
        """Remove the spools of sealed bundles the requester has not acknowledged within
        `bundles.spool_days` (the request fails, with the reason); how many."""
        now = self._clock()
        cutoff = now - timedelta(days=self._settings.spool_days)
        spools: list[Path] = []
        with self._storage.db.write() as s:
            rows = s.execute(
                select(m.BundleRequestRow, m.Bundle)
                .join(m.Bundle, m.Bundle.request_row_id == m.BundleRequestRow.id)
                .where(
                    m.BundleRequestRow.direction == INCOMING,
                    m.BundleRequestRow.state.in_(("sealed", "transferring")),
                    m.Bundle.created_at < cutoff,
                )
            )
            for row, bundle in rows:
                reason = f"not acknowledged within {self._settings.spool_days} days"
                row.state, row.reason, row.updated_at = "failed", reason, now
                audit(
                    s,
                    actor="node",
                    action="bundle.expire",
                    target=row.global_id,
                    outcome="failed",
                    detail={"request_id": row.request_id, "bundle_id": bundle.bundle_id},
                    now=now,
                )
                spools.append(self.spool_dir / bundle.spool_name)
        for spool in spools:
            spool.unlink(missing_ok=True)
        return len(spools)

    # --- serving ------------------------------------------------------------------------

    def open_stream(self, caller: str, bundle_id: str, offset: int) -> StreamSlice:
        """Check a FetchBundle of `caller` (BundleRefused names what is wrong) and mark the
        request `transferring`."""
        now = self._clock()
        with self._storage.db.write() as s:
            bundle, row = self._bundle(s, caller, bundle_id)
            if row.state == "delivered":
                raise BundleRefused(
                    Refusal.FAILED_PRECONDITION, "bundle_id: the bundle was delivered already"
                )
            if row.state not in ("sealed", "transferring"):
                raise BundleRefused(Refusal.FAILED_PRECONDITION, f"bundle_id: it is {row.state}")
            chunk_size = manifest_of(bundle).sealed_stream.chunk_size
            if not unit_boundary(offset, bundle.sealed_size, chunk_size):
                raise BundleRefused(
                    Refusal.OUT_OF_RANGE,
                    f"offset: not the start of a unit of the stream (size {bundle.sealed_size})",
                )
            if row.state == "sealed":
                row.state, row.updated_at = "transferring", now
                audit(
                    s,
                    actor=f"member:{caller}",
                    action="bundle.fetch",
                    target=row.global_id,
                    outcome="started",
                    detail={"request_id": row.request_id, "bundle_id": bundle_id},
                    now=now,
                )
            path = self.spool_dir / bundle.spool_name
            return StreamSlice(row.id, path, offset, bundle.sealed_size, chunk_size)

    def _bundle(
        self, s: Session, caller: str, bundle_id: str
    ) -> tuple[m.Bundle, m.BundleRequestRow]:
        bundle = s.get(m.Bundle, bundle_id)
        row = s.get(m.BundleRequestRow, bundle.request_row_id) if bundle else None
        if bundle is None or row is None or row.direction != INCOMING:
            raise BundleRefused(Refusal.NOT_FOUND, "bundle_id: no such bundle")
        if row.requester != caller:
            raise BundleRefused(
                Refusal.PERMISSION_DENIED, "bundle_id: the bundle was approved for another member"
            )
        return bundle, row

    def served_to_end(self, stream: StreamSlice) -> None:
        """The last unit is about to be sent: the first time, record custody `sent` for
        each file of the stream."""
        now = self._clock()
        with self._storage.db.write() as s:
            row = s.get(m.BundleRequestRow, stream.row_id)
            bundle = s.scalars(
                select(m.Bundle).where(m.Bundle.request_row_id == stream.row_id)
            ).one_or_none()
            if row is None or bundle is None or bundle.verified_offset >= bundle.sealed_size:
                return
            bundle.verified_offset = bundle.sealed_size
            manifest = manifest_of(bundle)
            included = {e.position for e in manifest.stream_order()}
            items = s.scalars(
                select(m.EvidenceItem)
                .join(m.Incident, m.Incident.id == m.EvidenceItem.incident_id)
                .where(m.Incident.global_id == row.global_id)
                .order_by(m.EvidenceItem.position)
            )
            for item in items:
                if item.position in included:
                    s.add(
                        m.CustodyEvent(
                            evidence_id=item.id,
                            kind="sent",
                            at=now,
                            actor=f"node:{self.state}",
                            detail={
                                "to": row.requester,
                                "bundle_id": bundle.bundle_id,
                                "request_id": row.request_id,
                            },
                        )
                    )
            audit(
                s,
                actor=f"member:{row.requester}",
                action="bundle.fetch",
                target=row.global_id,
                outcome="sent",
                detail={"request_id": row.request_id, "bundle_id": bundle.bundle_id},
                now=now,
            )

    # --- the receipt ----------------------------------------------------------------------

    def acknowledge(self, caller: str, bundle_id: str, receipt: bytes, roster: Roster) -> None:
        """Take `caller`'s signed receipt of a bundle it fetched to the end: `delivered`."""
        try:
            got = verify_receipt(
                Envelope.from_json(receipt), roster, requester=caller,
                history=key_history(self._storage.db),
            )  # fmt: skip
        except (BundleFormatError, CryptoError, ValueError) as e:
            raise BundleRefused(Refusal.INVALID, f"receipt: {e}") from None
        if got.bundle_id != bundle_id or got.holder != self.state:
            raise BundleRefused(Refusal.INVALID, "receipt: it is about another bundle")
        now = self._clock()
        with self._storage.db.write() as s:
            bundle, row = self._bundle(s, caller, bundle_id)
            if bundle.receipt_envelope is not None:
                if bundle.receipt_envelope == receipt:
                    return
                raise BundleRefused(
                    Refusal.ALREADY_EXISTS, "receipt: the bundle was acknowledged already"
                )
            manifest = manifest_of(bundle)
            if (
                got.manifest_sha256 != bundle.manifest_sha256
                or got.request_id != row.request_id
                or got.sealed_sha256 != manifest.sealed_stream.ciphertext_sha256.hex()
            ):
                raise BundleRefused(Refusal.INVALID, "receipt: it names another manifest")
            if bundle.verified_offset < bundle.sealed_size:
                raise BundleRefused(
                    Refusal.FAILED_PRECONDITION, "bundle_id: the bundle was not fully sent"
                )
            bundle.receipt_envelope = receipt
            bundle.completed_at = bundle.acknowledged_at = now
            row.state, row.updated_at = "delivered", now
            audit(
                s,
                actor=f"member:{caller}",
                action="bundle.receipt",
                target=row.global_id,
                outcome="delivered",
                detail={
                    "request_id": row.request_id,
                    "bundle_id": bundle_id,
                    "receipt_sha256": hashlib.sha256(receipt).hexdigest(),
                },
                now=now,
            )
            spool = self.spool_dir / bundle.spool_name
        spool.unlink(missing_ok=True)


def manifest_of(bundle: m.Bundle) -> BundleManifest:
    """The manifest this node signed (holder) or verified (requester) before storing it."""
    return BundleManifest.from_payload(Envelope.from_json(bundle.manifest_envelope).payload)


def _local_time(utc: datetime, offset_min: int | None) -> str:
    return Timestamp.from_stored(utc, offset_min).isoformat()
