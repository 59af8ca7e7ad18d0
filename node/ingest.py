"""Importing incidents: validate everything, then write everything, or nothing.

1. Every line is decoded and validated; every evidence file is found, checked
   and hashed. Duplicates within the file and against the database are found.
2. If any line is bad and the caller did not ask to skip bad lines, the import
   stops here: nothing was written.
3. Evidence files are encrypted into the blob store (new ones only).
4. One database transaction writes every record, its agent observations and
   identifier keys, people (encrypted), evidence items and custody events, and
   an audit event. If it fails, the blobs stored in step 3 are removed again.

Re-importing a record with the same `external_id` and the same content
(including the evidence files' bytes) changes nothing; the same `external_id`
with different content is an error for that line.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from crypto.fields import FieldCipher
from node import models as m
from node.blobstore import BlobStore, EvidenceChangedError
from node.config import LimitSettings
from node.db import Database
from node.errors import StorageError
from node.evidence import EvidenceProblem, EvidenceResolver, FolderEvidence, ResolvedEvidence
from node.importfile import Decoded, read_import_file
from node.importformat import parse_record
from node.normalize import NORMALIZATION_VERSION
from node.records import IncidentInput, IngestReport, LineError

_BATCH = 500
_HASH_THREADS = 2
_STORE_THREADS = 2  # hashing releases the GIL; more threads only contend for the disk
_CHUNK = 500  # bound on IN (...) lists


class Progress(Protocol):
    def phase(self, name: str, total: int | None) -> None: ...
    def advance(self, amount: int = 1) -> None: ...


class NoProgress:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass


@dataclass(frozen=True)
class NodeStorage:
    """What the importer writes to."""

    db: Database
    blobs: BlobStore
    fields: FieldCipher
    state: str
    limits: LimitSettings


@dataclass(frozen=True, slots=True)
class Ready:
    record: IncidentInput
    evidence: tuple[ResolvedEvidence, ...]
    content_hash: str


def field_context(column: str, global_id: str, position: int | None = None) -> bytes:
    """Associated data binding a field ciphertext to its column and record."""
    suffix = "" if position is None else f"|{position}"
    return f"{column}|{global_id}{suffix}".encode()


def ingest(
    storage: NodeStorage,
    decoded: Iterable[Decoded],
    evidence: EvidenceResolver,
    *,
    actor: str,
    source_name: str,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestReport:
    """Import `decoded` records; see the module documentation for the guarantees."""
    progress = progress or NoProgress()
    errors: list[LineError] = []
    progress.phase("validating", None)
    records = _parse(storage, decoded, errors, progress)
    ready = _resolve_evidence(records, evidence, errors, progress)
    ready, unchanged = _against_database(storage, _dedupe(ready, errors), errors)
    rejected = len({e.line_number for e in errors})
    errors.sort(key=lambda e: e.line_number)
    if errors and not skip_invalid:
        return IngestReport(rejected=rejected, errors=tuple(errors))
    stored, held = _write(
        storage, ready, actor=actor, source_name=source_name, now=now(), progress=progress
    )
    return IngestReport(
        imported=len(ready),
        unchanged=unchanged,
        rejected=rejected,
        evidence_stored=stored,
        evidence_already_held=held,
        errors=tuple(errors),
    )


def ingest_file(
    storage: NodeStorage,
    path: Path,
    *,
    actor: str,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Import a JSON Lines (or .csv) file; evidence paths are relative to its folder.

    Raises ImportFileError when the file as a whole cannot be imported.
    """
    return ingest(
        storage,
        read_import_file(path, storage.limits),
        FolderEvidence(path.parent, max_bytes=storage.limits.max_evidence_file_bytes),
        actor=actor,
        source_name=path.name,
        skip_invalid=skip_invalid,
        progress=progress,
    )


def _parse(
    storage: NodeStorage, decoded: Iterable[Decoded], errors: list[LineError], progress: Progress
) -> list[IncidentInput]:
    records: list[IncidentInput] = []
    for item in decoded:
        progress.advance()
        if isinstance(item, LineError):
            errors.append(item)
            continue
        line_number, value = item
        parsed = parse_record(line_number, value, node_state=storage.state, limits=storage.limits)
        if isinstance(parsed, list):
            errors.extend(parsed)
        else:
            records.append(parsed)
    return records


def _resolve_evidence(
    records: Sequence[IncidentInput],
    resolver: EvidenceResolver,
    errors: list[LineError],
    progress: Progress,
) -> list[Ready]:
    """Find, check and hash every evidence file; distinct files are hashed in parallel."""
    paths = list(dict.fromkeys(item.path for r in records for item in r.evidence))
    resolved: dict[str, ResolvedEvidence | EvidenceProblem] = {}
    if paths:
        progress.phase("checking evidence", len(paths))

        def resolve(path: str) -> ResolvedEvidence | EvidenceProblem:
            try:
                return resolver.resolve(path)
            except EvidenceProblem as e:
                return e

        with ThreadPoolExecutor(max_workers=_HASH_THREADS) as pool:
            for path, result in zip(paths, pool.map(resolve, paths), strict=True):
                resolved[path] = result
                progress.advance()
    ready = []
    for record in records:
        files: list[ResolvedEvidence] = []
        for i, item in enumerate(record.evidence):
            result = resolved[item.path]
            if isinstance(result, EvidenceProblem):
                errors.append(LineError(record.line_number, f"evidence[{i}].path", str(result)))
            else:
                files.append(result)
        if len(files) == len(record.evidence):
            ready.append(Ready(record, tuple(files), content_hash(record, files)))
    return ready


def content_hash(record: IncidentInput, files: Sequence[ResolvedEvidence]) -> str:
    """What a re-import compares: the canonical record and its evidence files' SHA-256."""
    digest = hashlib.sha256(record.canonical_hash.encode())
    for f in files:
        digest.update(f":{f.sha256}".encode())
    return digest.hexdigest()


def _dedupe(ready: list[Ready], errors: list[LineError]) -> list[Ready]:
    """One record per external_id within the file."""
    first: dict[str, Ready] = {}
    for r in ready:
        seen = first.get(r.record.external_id)
        if seen is None:
            first[r.record.external_id] = r
        elif seen.content_hash != r.content_hash:
            errors.append(
                LineError(
                    r.record.line_number,
                    "external_id",
                    f"appears on line {seen.record.line_number} with different content",
                )
            )
    return list(first.values())


def _against_database(
    storage: NodeStorage, ready: list[Ready], errors: list[LineError]
) -> tuple[list[Ready], int]:
    """Drop records already held unchanged; flag those held with other content."""
    held: dict[str, str] = {}
    ids = [r.record.external_id for r in ready]
    with storage.db.read() as s:
        for i in range(0, len(ids), _CHUNK):
            rows = s.execute(
                select(m.Incident.external_id, m.Incident.content_hash).where(
                    m.Incident.state == storage.state,
                    m.Incident.external_id.in_(ids[i : i + _CHUNK]),
                )
            )
            held.update({row[0]: row[1] for row in rows})
    fresh, unchanged = [], 0
    for r in ready:
        existing = held.get(r.record.external_id)
        if existing is None:
            fresh.append(r)
        elif existing == r.content_hash:
            unchanged += 1
        else:
            errors.append(
                LineError(
                    r.record.line_number, "external_id", "already imported with different content"
                )
            )
    return fresh, unchanged


def _write(
    storage: NodeStorage,
    ready: list[Ready],
    *,
    actor: str,
    source_name: str,
    now: datetime,
    progress: Progress,
) -> tuple[int, int]:
    files = {f.sha256: f for r in ready for f in r.evidence}
    with storage.db.read() as s:
        known: set[str] = set()
        digests = list(files)
        for i in range(0, len(digests), _CHUNK):
            known.update(
                s.scalars(select(m.Blob.sha256).where(m.Blob.sha256.in_(digests[i : i + _CHUNK])))
            )
    new_blobs: list[str] = []
    to_store = [f for d, f in files.items() if d not in known]
    try:
        if to_store:
            progress.phase("storing evidence", sum(f.size for f in to_store))
            # What an import killed mid-write left (tests/test_fault_ingest.py).
            storage.blobs.sweep_staging()
        # Two files at a time: one encrypts while the other's fsync waits on the disk.
        with ThreadPoolExecutor(max_workers=_STORE_THREADS) as pool:
            futures = {pool.submit(storage.blobs.put_file, f.file, f.sha256): f for f in to_store}
            failure: BaseException | None = None
            for future in as_completed(futures):
                f = futures[future]
                try:
                    if future.result():
                        new_blobs.append(f.sha256)
                except BaseException as e:  # noqa: BLE001 - re-raised below, after the others
                    failure = failure or e
                progress.advance(f.size)
            if failure is not None:
                raise failure
        progress.phase("writing records", len(ready))
        with storage.db.write() as s:
            if to_store:
                # Another import may store the same file at the same time: its row wins.
                s.execute(
                    _insert_ignoring_duplicates(s, m.Blob, "sha256"),
                    [{"sha256": f.sha256, "size": f.size, "stored_at": now} for f in to_store],
                )
            for i in range(0, len(ready), _BATCH):
                batch = ready[i : i + _BATCH]
                _insert_batch(storage, s, batch, actor=actor, source_name=source_name, now=now)
                progress.advance(len(batch))
            s.add(
                m.AuditEvent(
                    at=now,
                    actor=actor,
                    action="ingest",
                    target=source_name,
                    outcome="ok",
                    detail={"imported": len(ready), "evidence_stored": len(to_store)},
                )
            )
    except EvidenceChangedError:
        _undo(storage, new_blobs)
        raise
    except IntegrityError:
        _undo(storage, new_blobs)
        raise StorageError(
            "the import conflicted with records written at the same time; nothing was imported, "
            "run it again"
        ) from None
    except (SQLAlchemyError, OSError) as e:
        _undo(storage, new_blobs)
        raise StorageError(f"the import failed and was undone ({type(e).__name__})") from None
    except BaseException:
        _undo(storage, new_blobs)
        raise
    _ensure_present(storage, to_store)
    return len(to_store), len(files) - len(to_store)


def _insert_ignoring_duplicates(s: Session, model: Any, key: str) -> Any:
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model).on_conflict_do_nothing(index_elements=[key])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model).on_conflict_do_nothing(index_elements=[key])


def _undo(storage: NodeStorage, blobs: list[str]) -> None:
    """Remove the blobs this import stored, unless a committed record now references them."""
    from node.holds import remove_unreferenced  # node.holds needs NodeStorage from here

    remove_unreferenced(storage, blobs)


def _ensure_present(storage: NodeStorage, stored: list[ResolvedEvidence]) -> None:
    """After commit: a failed import running alongside may have removed a shared blob."""
    if not stored:
        return
    with storage.blobs.locked():
        for f in stored:
            if not storage.blobs.has(f.sha256):
                storage.blobs.put_file(f.file, f.sha256)


def _table(model: type[m.Base]) -> Table:
    """The Core table of a model: plain executemany, without the ORM's per-row work."""
    return m.Base.metadata.tables[model.__tablename__]


def _allocate_ids(s: Session, model: Any, n: int) -> list[int]:
    """`n` fresh primary keys for `model`, so rows can be inserted without RETURNING.

    SQLite: the write transaction began with BEGIN IMMEDIATE and holds the
    database's write lock, so max(id) cannot move under us. PostgreSQL: the
    ids come from the table's own sequence, safe under concurrent writers.
    """
    if n == 0:
        return []
    if s.get_bind().dialect.name == "postgresql":
        rows = s.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": model.__tablename__, "n": n},
        )
        return [row[0] for row in rows]
    start = s.execute(select(func.coalesce(func.max(model.id), 0))).scalar_one()
    return list(range(start + 1, start + 1 + n))


def _insert_with_ids(s: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    ids = _allocate_ids(s, model, len(rows))
    for row, ident in zip(rows, ids, strict=True):
        row["id"] = ident
    if rows:
        s.execute(insert(_table(model)), rows)
    return ids


def _insert_batch(
    storage: NodeStorage,
    s: Session,
    batch: list[Ready],
    *,
    actor: str,
    source_name: str,
    now: datetime,
) -> None:
    gids = [f"{storage.state}-{uuid.uuid4()}" for _ in batch]
    evidence = insert_incidents(storage, s, batch, gids, state=storage.state, now=now)
    custody_rows: list[dict[str, Any]] = []
    for evidence_id, r, pos, row in evidence:
        item = r.record.evidence[pos]
        if item.captured_at is not None:
            # As the import reports it: who captured the file, and when.
            custody_rows.append(
                {
                    "evidence_id": evidence_id,
                    "kind": "collected",
                    "at": item.captured_at.utc,
                    "actor": item.captured_by or "unknown",
                    "detail": {"reported_by": "import", "import": source_name},
                }
            )
        custody_rows.append(
            {
                "evidence_id": evidence_id,
                "kind": "received",
                "at": now,
                "actor": actor,
                "detail": {
                    "import": source_name,
                    "line": r.record.line_number,
                    "sha256": row["sha256"],
                    "size": row["size"],
                },
            }
        )
    if custody_rows:
        s.execute(insert(_table(m.CustodyEvent)), custody_rows)


def insert_incidents(
    storage: NodeStorage,
    s: Session,
    batch: Sequence[Ready],
    global_ids: Sequence[str],
    *,
    state: str,
    now: datetime,
) -> list[tuple[int, Ready, int, dict[str, Any]]]:
    """Insert validated records (under `global_ids`, recorded by `state`) with their agents,
    people (encrypted) and evidence items, in the caller's transaction. Returns each
    evidence item's id, record, position and row, for its custody events."""
    seal = storage.fields.seal
    incident_rows: list[dict[str, Any]] = []
    for r, gid in zip(batch, global_ids, strict=True):
        rec, loc = r.record, r.record.location
        incident_rows.append(
            {
                "global_id": gid,
                "state": state,
                "external_id": rec.external_id,
                "content_hash": r.content_hash,
                "occurred_at": rec.occurred_at.utc,
                "occurred_offset_min": rec.occurred_at.offset_min,
                "occurred_on": rec.occurred_at.local_date,
                "reported_at": rec.reported_at.utc if rec.reported_at else None,
                "reported_offset_min": rec.reported_at.offset_min if rec.reported_at else None,
                "address_enc": (
                    seal(loc.address, context=field_context("incidents.address", gid))
                    if loc.address is not None
                    else None
                ),
                "city": loc.city,
                "county": loc.county,
                "location_kind": loc.kind,
                "lat": loc.lat,
                "lon": loc.lon,
                "status": rec.status,
                "source": rec.source,
                "sharing": rec.sharing,
                "narrative_enc": (
                    seal(rec.narrative, context=field_context("incidents.narrative", gid))
                    if rec.narrative is not None
                    else None
                ),
                "recorded_at": now,
            }
        )
    incident_ids = _insert_with_ids(s, m.Incident, incident_rows)

    conduct_rows, obs_rows, people_rows, evidence_rows = [], [], [], []
    obs_keys: list[tuple[Any, ...]] = []
    evidence_meta: list[tuple[Ready, int]] = []
    for r, incident_id, row in zip(batch, incident_ids, incident_rows, strict=True):
        gid = row["global_id"]
        conduct_rows += [{"incident_id": incident_id, "conduct": c} for c in r.record.conduct]
        for pos, a in enumerate(r.record.agents):
            obs_rows.append(
                {
                    "incident_id": incident_id,
                    "position": pos,
                    "agency": a.agency,
                    "name": a.name,
                    "badge": a.badge,
                    "unit": a.unit,
                    "vehicle_plate": a.vehicle_plate,
                    "masked": a.masked,
                    "identified_self": a.identified_self,
                    "body_camera": a.body_camera,
                    "role": a.role,
                    "normalization_version": NORMALIZATION_VERSION,
                }
            )
            obs_keys.append(a.keys)
        for pos, p in enumerate(r.record.people):
            people_rows.append(
                {
                    "incident_id": incident_id,
                    "position": pos,
                    "role": p.role,
                    "name_enc": (
                        seal(p.name, context=field_context("people.name", gid, pos))
                        if p.name is not None
                        else None
                    ),
                    "contact_enc": (
                        seal(p.contact, context=field_context("people.contact", gid, pos))
                        if p.contact is not None
                        else None
                    ),
                }
            )
        for pos, (item, f) in enumerate(zip(r.record.evidence, r.evidence, strict=True)):
            evidence_rows.append(
                {
                    "incident_id": incident_id,
                    "position": pos,
                    "sha256": f.sha256,
                    "size": f.size,
                    "media_type": item.media_type,
                    "file_name": item.file_name,
                    "captured_at": item.captured_at.utc if item.captured_at else None,
                    "captured_offset_min": item.captured_at.offset_min
                    if item.captured_at
                    else None,
                    "captured_by": item.captured_by,
                    "description": item.description,
                }
            )
            evidence_meta.append((r, pos))
    if conduct_rows:
        s.execute(insert(_table(m.IncidentConduct)), conduct_rows)
    obs_ids = _insert_with_ids(s, m.AgentObservation, obs_rows)
    key_rows = [
        {"observation_id": oid, "kind": k.kind, "value": k.value}
        for oid, keys in zip(obs_ids, obs_keys, strict=True)
        for k in keys
    ]
    if key_rows:
        s.execute(insert(_table(m.IdentifierKeyRow)), key_rows)
    if people_rows:
        s.execute(insert(_table(m.Person)), people_rows)
    evidence_ids = _insert_with_ids(s, m.EvidenceItem, evidence_rows)
    return [
        (evidence_id, r, pos, row)
        for evidence_id, (r, pos), row in zip(
            evidence_ids, evidence_meta, evidence_rows, strict=True
        )
    ]
