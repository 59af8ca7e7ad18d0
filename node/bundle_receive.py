"""The requester's side of a bundle: verify the manifest, receive the stream, store it.

1. **Manifest** (`BundleReceiver.accept_manifest`): verified against the roster (the
   holder's signature, this node as requester, the request, the bundle id and
   redactions of the verified decision) and every proof checked
   (federation.bundle.check_manifest_proofs) before it is stored; the request becomes
   `transferring`. A manifest that fails is quarantined (`quarantined`, the reason, the
   manifest kept beside the spool, an alert).
2. **Stream** (`Receiving`): each unit from FetchBundle must start where the last ended;
   it is verified by the sealed-stream reader, then two threads take it: one appends the
   unit to the spool, the other writes its plaintext to the evidence files being staged
   (encrypted at rest, node.blobstore.BlobWriter, each checked against its SHA-256 in the
   manifest when complete). The spool is fsynced and its verified length recorded every
   `SYNC_BYTES` and when a stream ends, so the recorded length is never ahead of the
   bytes on disk. After a broken connection or a bad unit the transfer continues from the
   last verified unit; after a restart the spool is cut to the recorded length and read
   again (the staged files are rebuilt from it), then the transfer continues.
3. **Store** (`BundleReceiver.store`): after the final unit and the whole-stream checks,
   the incident (validated by the import parser under the holder's state), its evidence
   items, the holder's signed custody records and this node's own `received` event,
   the provenance and the signed receipt are written in one transaction; the staged
   files are moved into the blob store first and removed again if that fails. Nothing
   is visible before. A file whose hash does not match the manifest, or a record that
   does not validate, quarantines the bundle.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import queue
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

import structlog
from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from crypto import signing, x25519
from crypto.dsse import Envelope
from crypto.errors import CryptoError, DecryptionError
from crypto.sealing import SealedStreamReader
from federation.bundle import (
    BundleDecision,
    BundleFormatError,
    BundleManifest,
    BundleReceipt,
    CustodyRecord,
    ManifestEvidence,
    check_manifest_proofs,
    sign_receipt,
    verify_manifest,
)
from federation.roster import Roster
from node import models as m
from node.blobstore import BlobWriter, EvidenceChangedError
from node.bundle_record import record_from_manifest
from node.bundle_seal import manifest_of, spool_path, unit_count
from node.bundles import OUTGOING, BundleRefused
from node.errors import Refusal, StorageError
from node.evidence import ResolvedEvidence
from node.fedstore import key_history
from node.holds import refresh_for_incident, remove_unreferenced
from node.importformat import parse_record
from node.ingest import NodeStorage, Ready, content_hash, insert_incidents
from node.queries import audit

log = structlog.get_logger("compact.bundles")

#: The spool is fsynced and its verified length recorded at least this often.
SYNC_BYTES: Final = 32 * 1024 * 1024

#: Units waiting for the spool thread, and for the staging thread, at most (1 MiB each at
#: the default chunk size).
PIPELINE_UNITS: Final = 4


class TransferFault(Exception):
    """One attempt of a transfer broke (a unit out of order or not verifying, the
    connection lost); the transfer continues from the last verified unit next time."""


class BadBundle(Exception):
    """The bundle itself is wrong (signed by the holder, yet not what it claims): it is
    quarantined. The message names what failed and holds no value."""


class BundleBusy(Exception):
    """Another process is receiving this bundle."""


@dataclass(frozen=True)
class Transfer:
    """An outgoing bundle to receive or acknowledge."""

    row_id: int
    request_id: str
    holder: str
    bundle_id: str
    sealed_size: int
    verified_offset: int


class _Carver:
    """The plaintext of the stream cut into the included files, each staged as a blob."""

    def __init__(self, manifest: BundleManifest, storage: NodeStorage, staging: Path) -> None:
        self._staging = staging
        self._items = [
            (i, item) for i, item in enumerate(manifest.evidence) if item.included
        ]  # stream order
        self._blobs = storage.blobs
        self._next = 0
        self._writer: BlobWriter | None = None
        self._left = 0
        self.finished: list[BlobWriter] = []
        self._advance()

    def _advance(self) -> None:
        while self._writer is None and self._next < len(self._items):
            index, item = self._items[self._next]
            writer = self._blobs.writer(item.sha256, staging=self._staging)
            if item.size:
                self._writer, self._left = writer, item.size
                return
            self._finish(writer, index, item)

    def _finish(self, writer: BlobWriter, index: int, item: ManifestEvidence) -> None:
        try:
            writer.finish(item.size)
        except EvidenceChangedError:
            raise BadBundle(
                f"evidence[{index}]: the file does not match its SHA-256 in the manifest"
            ) from None
        self.finished.append(writer)
        self._next += 1

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._writer is None:  # the reader checked the size against the manifest
                raise BadBundle("sealed_stream: more bytes than the files it carries")
            take = min(self._left, len(view))
            self._writer.write(bytes(view[:take]))
            view = view[take:]
            self._left -= take
            if self._left == 0:
                writer, self._writer = self._writer, None
                index, item = self._items[self._next]
                self._finish(writer, index, item)
                self._advance()

    @property
    def complete(self) -> bool:
        return self._next == len(self._items)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        for writer in self.finished:
            writer.abort()


class _Worker:
    """One thread doing jobs in order from a bounded queue. Its first error is kept (the
    jobs after it are dropped, so that nobody waits on a full queue) and raised by the next
    `put` or `drain`."""

    def __init__(self, name: str, depth: int) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self.error is None:
                    job()
            except BaseException as e:  # noqa: BLE001 - raised in the thread that feeds this one
                self.error = e
            finally:
                self._jobs.task_done()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, job: Callable[[], None]) -> None:
        """Queue a job (waiting while the queue is full); the error of an earlier one."""
        self.check()
        self._jobs.put(job)

    def drain(self) -> None:
        """Wait until every queued job is done; the first error of any."""
        self._jobs.join()
        self.check()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()


class Receiving:
    """One bundle being received in this process: the stream reader, the files being
    staged and the spool. Built from the spool (`verified` bytes, read again).

    `feed` verifies and decrypts a unit on the calling thread, so a unit that does not
    verify is refused at once. Writing it to the spool and staging its plaintext happen
    on two threads of their own, each behind a queue of `PIPELINE_UNITS` units, so that
    receiving, verifying and writing overlap. An error of either thread (a full disk, a
    file that does not match its SHA-256) is raised by a later `feed`, by `sync` (the
    spool's) or by `settle`/`finish` (either's)."""

    def __init__(
        self,
        manifest: BundleManifest,
        private_key: x25519.PrivateKey,
        storage: NodeStorage,
        spool: Path,
        verified: int,
        *,
        earlier_keys: Sequence[x25519.PrivateKey] = (),
    ) -> None:
        self.manifest = manifest
        self.spool = spool
        self.sealed_size = manifest.sealed_stream.ciphertext_size
        self._reader = SealedStreamReader(
            private_key, expected=manifest.sealed_stream, earlier_keys=earlier_keys
        )
        # Files staged by an earlier Receiving of this bundle (a process that died) are
        # rebuilt from the spool: the old ones go first.
        staging = storage.blobs.staging_dir(f"bundle-{spool.stem}")
        shutil.rmtree(staging, ignore_errors=True)
        self.staging = staging
        self._carver = _Carver(manifest, storage, staging)
        self._received = verified  # verified by the reader, queued for the spool
        self._written = verified  # in the spool file (maybe not synced); spool thread
        self._synced = verified
        self._broken = False
        spool.parent.mkdir(parents=True, exist_ok=True)
        self._file = spool.open("r+b" if spool.exists() else "w+b")
        self._spooler = _Worker(f"bundle-spool-{spool.stem}", PIPELINE_UNITS)
        self._staging = _Worker(f"bundle-stage-{spool.stem}", PIPELINE_UNITS)
        try:
            if self._file.seek(0, os.SEEK_END) < verified:
                raise StorageError("a bundle spool is shorter than its recorded progress")
            self._file.truncate(verified)
            self._file.seek(0)
            fed = 0
            while fed < verified:
                data = self._file.read(min(1 << 20, verified - fed))
                if not data:
                    raise StorageError("a bundle spool is shorter than its recorded progress")
                fed += len(data)
                self._carver.write(self._reader.feed(data))
            if self._reader.verified_offset != verified:
                raise StorageError("a bundle spool does not end at a unit of the stream")
        except DecryptionError:
            self.abort()
            raise StorageError("a bundle spool no longer verifies") from None
        except BaseException:
            self.abort()
            raise

    @property
    def offset(self) -> int:
        """Sealed bytes received and verified (on disk once `sync` returns)."""
        return self._received

    @property
    def done(self) -> bool:
        return self._received == self.sealed_size

    def feed(self, offset: int, data: bytes) -> None:
        """One unit from the holder. TransferFault: not the next unit, or it does not verify.
        After any failure this Receiving is unusable: build another from the spool."""
        if self._broken:
            raise RuntimeError("Receiving.feed() after a failure")
        if offset != self._received:
            raise TransferFault("the holder sent a unit that is not the next one")
        try:
            plaintext = self._reader.feed(data)
        except DecryptionError:
            self._broken = True
            raise TransferFault("a unit of the stream did not verify") from None
        if self._reader.verified_offset != offset + len(data):
            self._broken = True
            raise TransferFault("the holder sent a part of a unit")
        try:
            self._spooler.put(functools.partial(self._append, data))
            self._staging.put(functools.partial(self._carver.write, plaintext))
        except BaseException:
            self._broken = True
            raise
        self._received += len(data)

    def _append(self, data: bytes) -> None:  # the spool thread
        self._file.write(data)
        self._written += len(data)

    @property
    def due(self) -> bool:
        return self._received - self._synced >= SYNC_BYTES

    def sync(self) -> int:
        """Write out, flush and fsync the spool; the verified length now on disk (OSError
        if not). After a failure elsewhere it still saves what the spool holds."""
        self._spooler.drain()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._synced = self._written
        return self._written

    def settle(self) -> None:
        """Wait until every unit fed is in the spool and staged; the first error of either."""
        try:
            self._spooler.drain()
            self._staging.drain()
        except BaseException:
            self._broken = True
            raise

    def finish(self) -> list[BlobWriter]:
        """The whole stream checked (against the manifest); the staged files."""
        if self._broken:
            raise RuntimeError("Receiving.finish() after a failure")
        self.settle()
        try:
            self._reader.close()
        except DecryptionError:
            raise TransferFault("the stream is not complete") from None
        if not self._carver.complete:
            raise BadBundle("sealed_stream: fewer bytes than the files it carries")
        return list(self._carver.finished)

    def _stop(self) -> None:
        self._spooler.stop()
        self._staging.stop()

    def abort(self) -> None:
        self._stop()
        self._carver.abort()
        self._file.close()
        shutil.rmtree(self.staging, ignore_errors=True)

    def close(self) -> None:
        self._stop()
        self._file.close()


class BundleReceiver:
    def __init__(
        self,
        storage: NodeStorage,
        signing_key: signing.SigningKey,
        private_key: x25519.PrivateKey,
        spool_dir: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        alert: Callable[[str, str, str, dict[str, object]], None] | None = None,
        earlier_keys: Sequence[x25519.PrivateKey] = (),
    ) -> None:
        self._storage = storage
        self._key = signing_key
        self._private = private_key
        # Retired X25519 keys (node.keyrotation): a holder may have sealed to one before
        # it applied the roster that rotated this node's keys.
        self._earlier = tuple(earlier_keys)
        self.spool_dir = spool_dir
        self._clock = clock
        self._alert = alert
        self.state = storage.state

    # --- the manifest -------------------------------------------------------------------

    def accept_manifest(self, row_id: int, envelope: bytes, roster: Roster) -> None:
        """Verify the holder's manifest for an approved outgoing request and store it (the
        request becomes `transferring`); one that fails is quarantined (BadBundle). What
        the holder signed may carry a key it had in an earlier roster version (the
        manifest, the logged entries, the checkpoint and its cosignatures: the key
        history)."""
        with self._storage.db.read() as s:
            row = s.get(m.BundleRequestRow, row_id)
            if row is None or row.direction != OUTGOING:
                raise BundleRefused(Refusal.NOT_FOUND, "no such outgoing request")
            if row.state != "approved" or row.decision_envelope is None:
                return
            holder, request_id, global_id = row.holder, row.request_id, row.global_id
            decision = BundleDecision.from_payload(
                Envelope.from_json(row.decision_envelope).payload
            )
        history = key_history(self._storage.db)
        try:
            manifest = verify_manifest(
                Envelope.from_json(envelope),
                roster,
                holder=holder,
                requester=self.state,
                history=history,
            )
            check_manifest_proofs(manifest, roster, history=history)
        except (BundleFormatError, CryptoError, ValueError) as e:
            self.quarantine(row_id, f"manifest: {e}", manifest=envelope)
            raise BadBundle(f"manifest: {e}") from None
        if (
            manifest.request_id != request_id
            or manifest.bundle_id != decision.bundle_id
            or manifest.global_id != global_id
        ):
            reason = "manifest: it is about another request or bundle"
            self.quarantine(row_id, reason, manifest=envelope)
            raise BadBundle(reason)
        if manifest.redactions != decision.redactions:
            reason = "manifest: its redactions are not the decision's"
            self.quarantine(row_id, reason, manifest=envelope)
            raise BadBundle(reason)
        now = self._clock()
        info = manifest.sealed_stream
        with self._storage.db.write() as s:
            row = s.get(m.BundleRequestRow, row_id)
            assert row is not None
            if row.state != "approved":
                return
            s.add(
                m.Bundle(
                    bundle_id=manifest.bundle_id,
                    request_row_id=row.id,
                    manifest_envelope=envelope,
                    manifest_sha256=hashlib.sha256(envelope).hexdigest(),
                    spool_name=spool_path(self.spool_dir, row.id).name,
                    sealed_size=info.ciphertext_size,
                    verified_offset=0,
                    units=unit_count(info.plaintext_size, info.chunk_size),
                    created_at=now,
                )
            )
            row.state, row.updated_at = "transferring", now
            audit(
                s,
                actor=f"member:{holder}",
                action="bundle.manifest",
                target=global_id,
                outcome="verified",
                detail={
                    "request_id": request_id,
                    "bundle_id": manifest.bundle_id,
                    "sealed_size": info.ciphertext_size,
                },
                now=now,
            )

    def quarantine(self, row_id: int, reason: str, *, manifest: bytes | None = None) -> None:
        """Keep a bundle that failed verification out of sight: `quarantined`, with the
        reason; its spool (and a manifest not stored otherwise) kept; an alert raised."""
        now = self._clock()
        if manifest is not None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            (self.spool_dir / f"{row_id}.manifest").write_bytes(manifest)
        with self._storage.db.write() as s:
            row = s.get(m.BundleRequestRow, row_id)
            if row is None:
                return
            row.state, row.reason, row.updated_at = "quarantined", reason, now
            holder, request_id, gid = row.holder, row.request_id, row.global_id
            audit(
                s,
                actor="node",
                action="bundle.receive",
                target=gid,
                outcome="quarantined",
                detail={"request_id": request_id, "reason": reason},
                now=now,
            )
        if self._alert is not None:
            self._alert(
                "bad-bundle",
                holder,
                f"a bundle from {holder} failed verification and is quarantined: {reason}",
                {"request_id": request_id},
            )

    # --- the stream ---------------------------------------------------------------------

    def transfers(self, *, state: str = "transferring") -> list[Transfer]:
        """Outgoing bundles in `state` (transferring: to receive; delivered: to acknowledge
        while the holder has not confirmed)."""
        with self._storage.db.read() as s:
            query = (
                select(m.BundleRequestRow, m.Bundle)
                .join(m.Bundle, m.Bundle.request_row_id == m.BundleRequestRow.id)
                .where(
                    m.BundleRequestRow.direction == OUTGOING,
                    m.BundleRequestRow.state == state,
                )
                .order_by(m.BundleRequestRow.id)
            )
            if state == "delivered":
                query = query.where(m.Bundle.acknowledged_at.is_(None))
            return [
                Transfer(
                    row.id,
                    row.request_id,
                    row.holder,
                    bundle.bundle_id,
                    bundle.sealed_size,
                    bundle.verified_offset,
                )
                for row, bundle in s.execute(query)
            ]

    def lock(self, row_id: int) -> BinaryIO:
        """An exclusive lock on receiving one bundle, across the processes of this node
        (BundleBusy if another holds it); close the returned file to release it."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        f = (self.spool_dir / f"{row_id}.lock").open("a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise BundleBusy("another process of this node is receiving the bundle") from None
        return f

    def resume(self, row_id: int) -> Receiving:
        with self._storage.db.read() as s:
            bundle = _bundle_of(s, row_id)
            manifest = manifest_of(bundle)
            spool, verified = self.spool_dir / bundle.spool_name, bundle.verified_offset
        return Receiving(
            manifest, self._private, self._storage, spool, verified, earlier_keys=self._earlier
        )

    def save_progress(self, row_id: int, receiving: Receiving) -> None:
        """Record the verified length once the spool holds it on disk."""
        offset = receiving.sync()
        with self._storage.db.write() as s:
            bundle = _bundle_of(s, row_id)
            bundle.verified_offset = max(bundle.verified_offset, offset)

    def restart(self, row_id: int) -> None:
        """Forget a damaged spool: the transfer starts again from the first unit."""
        with self._storage.db.write() as s:
            bundle = _bundle_of(s, row_id)
            bundle.verified_offset = 0
            spool = self.spool_dir / bundle.spool_name
        spool.unlink(missing_ok=True)
        log.warning("bundle.spool_damaged", row=row_id)

    # --- storing ------------------------------------------------------------------------

    def store(self, row_id: int, receiving: Receiving) -> bytes:
        """Store a completely received bundle in one transaction; the signed receipt.
        BadBundle: quarantined (nothing stored); StorageError: nothing stored, try again."""
        try:
            staged = receiving.finish()
        except BadBundle as e:
            receiving.abort()
            self.quarantine(row_id, str(e))
            raise
        receiving.close()
        manifest = receiving.manifest
        try:
            ready = self._record(manifest)
        except BadBundle as e:
            _abort_all(staged)
            shutil.rmtree(receiving.staging, ignore_errors=True)
            self.quarantine(row_id, str(e))
            raise
        placed: list[str] = []
        try:
            for writer in staged:
                if writer.place():
                    placed.append(writer.sha256)
            receipt = self._commit(row_id, manifest, ready)
        except BadBundle as e:
            _abort_all(staged)
            self._undo(placed)
            self.quarantine(row_id, str(e))
            raise
        except (SQLAlchemyError, OSError) as e:
            _abort_all(staged)
            self._undo(placed)
            raise StorageError(
                f"the received bundle could not be stored ({type(e).__name__}); "
                "nothing of it was stored, and it is stored again from its spool next time"
            ) from None
        except BaseException:
            _abort_all(staged)
            self._undo(placed)
            raise
        finally:
            shutil.rmtree(receiving.staging, ignore_errors=True)
        receiving.spool.unlink(missing_ok=True)
        return receipt

    def _record(self, manifest: BundleManifest) -> Ready:
        record = record_from_manifest(manifest.incident)
        record["evidence"] = [
            {
                k: v
                for k, v in {
                    "path": item.file_name,
                    "media_type": item.media_type,
                    "captured_at": item.captured_at,
                    "captured_by": item.captured_by,
                    "description": item.description,
                }.items()
                if v is not None
            }
            for item in manifest.evidence
        ]
        parsed = parse_record(1, record, node_state=manifest.holder, limits=self._storage.limits)
        if isinstance(parsed, list):
            first = parsed[0]
            raise BadBundle(f"incident: {first.field or 'record'}: {first.reason}")
        files = [ResolvedEvidence(Path(), e.sha256, e.size) for e in manifest.evidence]
        return Ready(parsed, tuple(files), content_hash(parsed, files))

    def _commit(self, row_id: int, manifest: BundleManifest, ready: Ready) -> bytes:
        now = self._clock()
        with self._storage.db.write() as s:
            row = s.get(m.BundleRequestRow, row_id)
            bundle = _bundle_of(s, row_id)
            assert row is not None
            if row.state != "transferring":
                raise StorageError(f"the request is {row.state} now")
            if s.scalar(select(m.Incident.id).where(m.Incident.global_id == manifest.global_id)):
                raise BadBundle("incident: this node holds that incident already")
            digests = {e.sha256: e.size for e in manifest.evidence}
            known = set(s.scalars(select(m.Blob.sha256).where(m.Blob.sha256.in_(list(digests)))))
            for i, item in enumerate(manifest.evidence):
                if not item.included and item.sha256 not in known:
                    raise BadBundle(f"evidence[{i}]: held by this node no longer")
            new = [d for d in digests if d not in known]
            if new:
                s.execute(
                    insert(m.Blob),
                    [{"sha256": d, "size": digests[d], "stored_at": now} for d in new],
                )
            evidence = insert_incidents(
                self._storage, s, [ready], [manifest.global_id], state=manifest.holder, now=now
            )
            custody: list[dict[str, object]] = []
            for (evidence_id, _r, _pos, _row), item in zip(
                evidence, manifest.evidence, strict=True
            ):
                for logged in item.custody:
                    # verified with the manifest (check_manifest_proofs) before it was stored
                    record = CustodyRecord.from_payload(
                        Envelope.from_json(logged.envelope_bytes).payload
                    )
                    custody.append(
                        {
                            "evidence_id": evidence_id,
                            "kind": record.kind,
                            "at": record.at,
                            "actor": record.actor,
                            "detail": record.detail,
                            "origin": manifest.holder,
                            "envelope": logged.envelope_bytes,
                            "log_index": logged.log_index,
                        }
                    )
                custody.append(
                    {
                        "evidence_id": evidence_id,
                        "kind": "received",
                        "at": now,
                        "actor": row.requested_by,
                        "detail": {
                            "from": manifest.holder,
                            "bundle_id": manifest.bundle_id,
                            "request_id": manifest.request_id,
                            "delivery": item.delivery,
                            "sha256": item.sha256,
                        },
                        "origin": None,
                        "envelope": None,
                        "log_index": None,
                    }
                )
            if custody:
                s.execute(insert(m.CustodyEvent), custody)
            incident_id = s.scalar(
                select(m.Incident.id).where(m.Incident.global_id == manifest.global_id)
            )
            assert incident_id is not None
            s.add(
                m.IncidentProvenance(
                    incident_id=incident_id,
                    origin=manifest.holder,
                    bundle_id=manifest.bundle_id,
                    manifest_sha256=bundle.manifest_sha256,
                    received_at=now,
                )
            )
            s.flush()
            refresh_for_incident(s, manifest.global_id)  # a held matter's exhibit arrived
            receipt = sign_receipt(
                BundleReceipt(
                    bundle_id=manifest.bundle_id,
                    request_id=manifest.request_id,
                    requester=self.state,
                    holder=manifest.holder,
                    manifest_sha256=bundle.manifest_sha256,
                    sealed_sha256=manifest.sealed_stream.ciphertext_sha256.hex(),
                    received_at=now.replace(microsecond=0),
                ),
                self._key,
            ).to_json()
            bundle.verified_offset = bundle.sealed_size
            bundle.completed_at = now
            bundle.receipt_envelope = receipt
            row.state, row.reason, row.updated_at = "delivered", None, now
            audit(
                s,
                actor="node",
                action="bundle.receive",
                target=manifest.global_id,
                outcome="delivered",
                detail={
                    "request_id": manifest.request_id,
                    "bundle_id": manifest.bundle_id,
                    "from": manifest.holder,
                    "files": len(manifest.stream_order()),
                    "sealed_size": bundle.sealed_size,
                },
                now=now,
            )
            return receipt

    def _undo(self, placed: Sequence[str]) -> None:
        """Remove blobs placed for a bundle that was then not stored, unless referenced."""
        remove_unreferenced(self._storage, placed)

    def receipt(self, row_id: int) -> bytes:
        with self._storage.db.read() as s:
            bundle = _bundle_of(s, row_id)
            assert bundle.receipt_envelope is not None
            return bundle.receipt_envelope

    def acknowledged(self, row_id: int) -> None:
        now = self._clock()
        with self._storage.db.write() as s:
            bundle = _bundle_of(s, row_id)
            bundle.acknowledged_at = now


def _abort_all(writers: Sequence[BlobWriter]) -> None:
    for writer in writers:
        writer.abort()


def _bundle_of(s: Session, row_id: int) -> m.Bundle:
    """The bundle of outgoing request row `row_id` (stored with its verified manifest)."""
    return s.scalars(select(m.Bundle).where(m.Bundle.request_row_id == row_id)).one()
