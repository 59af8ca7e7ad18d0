"""`compact exhibit export`: a matter's exhibits as a self-verifying package.

The package format is specified in docs/exhibit-package.md; the verifier that checks it
(`federation/verify_package.py`, standard library only) ships inside every package.
Export runs in four steps (docs/design/exhibits.md section 5):

1. **Record**: every exhibit must be held here; in one transaction an `exhibit_exports`
   row, one `exported` custody event per file (detail: matter, package id, exhibit,
   document id) and the audit event `exhibit.export`. Re-running the export to the same
   folder resumes that row, its package id and its events.
2. **Log**: the custody events not logged yet are signed and logged, and a checkpoint
   of this node's log is signed.
3. **Witnesses**: every log the package proves entries of needs a checkpoint, at or past
   its newest entry, cosigned by `min_witnesses` other member states: this node's log
   (cosignatures its peers sent back) and each origin's log (checkpoints kept by
   node.replica, with this node's own cosignature). Short of that, export waits up to
   `wait_seconds` (peers cosign when they sync, and `compact serve` replicates) and then
   stops with ``WitnessesShort`` naming the logs.
4. **Write** the folder as ``OUT.partial``, every file fsynced, then renamed to OUT;
   evidence is streamed from the blob store (its SHA-256 checked as it is read).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto import signing
from crypto.checkpoint import add_cosignature, parse_checkpoint
from crypto.dsse import Envelope, sign_envelope
from crypto.errors import CryptoError
from crypto.merkle_tree import MerkleTree
from crypto.note import parse_note
from federation.bundle import BundleManifest
from federation.encoding import canonical_json
from federation.keyhistory import (
    KeyHistory,
    member_log_verifiers,
    verify_member_checkpoint,
    witness_verifiers,
)
from federation.naming import log_origin
from federation.roster import Roster
from federation.schema import format_time
from node import models as m
from node.blobstore import fsync_dir
from node.errors import Refusal, Refused
from node.fedstore import key_history
from node.ingest import NodeStorage
from node.matters import resolve
from node.publish import Publisher
from node.queries import audit
from node.replica import Replicas
from node.translog import SqlNodeStore, TransparencyLog, cosignature_lines, log_size

PACKAGE_TYPE: Final = "application/vnd.compact.exhibit-package.v1+json"
PACKAGE_FORMAT: Final = "compact-exhibit-package-v1"
MANIFEST_NAME: Final = "package.dsse.json"
VERIFIER_NAME: Final = "verify_package.py"
VERIFIER_SOURCE: Final = Path(__file__).resolve().parent.parent / "federation" / VERIFIER_NAME
DEFAULT_MIN_WITNESSES: Final = 2
CHUNK: Final = 1024 * 1024
_PARTIAL_MARKER: Final = ".compact-export-partial"
_EXTENSION: Final = re.compile(r"\.([a-z0-9]{1,8})$")


class WitnessesShort(Refused):
    """Some log's entries are not yet under a checkpoint with enough witnesses."""

    def __init__(self, message: str) -> None:
        super().__init__(Refusal.FAILED_PRECONDITION, message)


@dataclass(frozen=True)
class PlannedFile:
    """One file of one exhibit, as the package holds it."""

    exhibit: str
    doc_id: str
    global_id: str
    origin: str
    evidence_id: int
    position: int
    sha256: str
    size: int
    media_type: str
    file_name: str
    captured_at: str | None
    received_at: str
    path: str


@dataclass(frozen=True)
class PlannedExhibit:
    number: str
    global_id: str
    origin: str
    description: str
    incident_id: int
    files: tuple[PlannedFile, ...]
    # The origin's bundle manifest (DSSE JSON) for another state's incident, else None.
    origin_manifest: bytes | None = field(default=None, repr=False)

    @property
    def folder(self) -> str:
        return f"exhibits/{self.number}"


@dataclass(frozen=True)
class Plan:
    matter_row: int
    matter_id: str
    title: str
    revision: int
    envelope: bytes
    exhibits: tuple[PlannedExhibit, ...]


@dataclass(frozen=True)
class LoggedCustody:
    state: str
    log_index: int
    envelope: bytes


@dataclass
class LogPlan:
    """One log the package proves entries of: the checkpoint every entry is proved against
    (the newest, well witnessed) and earlier ones the package also carries."""

    state: str
    needed: int  # the checkpoint must cover this many entries
    checkpoint_size: int = 0
    checkpoint_note: str = ""
    earlier: list[tuple[int, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ExportReport:
    package_id: str
    out: Path
    zip_path: Path | None
    exhibits: int
    files: int
    bytes: int
    resumed: bool


Progress = Callable[[str, int, int], None]


class ExhibitExporter:
    """Exports matters of this node (see the module docstring)."""

    def __init__(
        self,
        storage: NodeStorage,
        log: TransparencyLog,
        replicas: Replicas,
        publisher: Publisher,
        signing_key: signing.SigningKey,
        roster: Callable[[], Roster],
        roster_envelopes: Callable[[], list[bytes]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.storage = storage
        self.state = storage.state
        self.log = log
        self.replicas = replicas
        self.publisher = publisher
        self.key = signing_key
        self.roster = roster
        self.roster_envelopes = roster_envelopes
        self.clock = clock
        self.sleep = sleep

    # --- the whole export --------------------------------------------------------------------

    def export(
        self,
        matter_ref: str,
        out: Path,
        *,
        user: str,
        make_zip: bool = False,
        wait_seconds: float = 0.0,
        min_witnesses: int = DEFAULT_MIN_WITNESSES,
        progress: Progress | None = None,
    ) -> ExportReport:
        out = out.absolute()
        if min_witnesses < 1:
            raise Refused(Refusal.INVALID, "--min-witnesses must be at least 1")
        if out.exists() or out.is_symlink():
            raise Refused(Refusal.ALREADY_EXISTS, f"{out} exists already: choose a new folder")
        zip_path = out.with_name(out.name + ".zip") if make_zip else None
        if zip_path is not None and zip_path.exists():
            raise Refused(Refusal.ALREADY_EXISTS, f"{zip_path} exists already")
        if not out.parent.is_dir():
            raise Refused(Refusal.NOT_FOUND, f"{out.parent} is not a folder")
        plan = self._plan(matter_ref)
        package_id, resumed = self._record(plan, out, user)
        self.publisher.log_custody()
        self.publisher.sign_checkpoint()
        custody = self._custody(plan)
        logs = self._logs(plan, custody)
        self._await_witnesses(logs, min_witnesses, wait_seconds)
        written = self._write(plan, package_id, out, user, custody, logs, min_witnesses, progress)
        if zip_path is not None:
            from node.package_zip import write_canonical_zip

            write_canonical_zip(out, zip_path, store=_stored)
        self._finish(package_id)
        files = sum(len(e.files) for e in plan.exhibits)
        return ExportReport(package_id, out, zip_path, len(plan.exhibits), files, written, resumed)

    # --- 1. plan and record ------------------------------------------------------------------

    def _plan(self, matter_ref: str) -> Plan:
        with self.storage.db.read() as s:
            global_id = resolve(s, matter_ref, self.state)
            row = s.scalars(select(m.Matter).where(m.Matter.global_id == global_id)).one()
            exhibits = s.scalars(
                select(m.Exhibit).where(m.Exhibit.matter_id == row.id).order_by(m.Exhibit.seq)
            ).all()
            if not exhibits:
                raise Refused(Refusal.FAILED_PRECONDITION, f"{global_id} has no exhibits to export")
            planned = [self._plan_exhibit(s, e) for e in exhibits]
            return Plan(
                row.id, global_id, row.title, row.revision, bytes(row.envelope), tuple(planned)
            )

    def _plan_exhibit(self, s: Session, exhibit: m.Exhibit) -> PlannedExhibit:
        number, gid = exhibit.number, exhibit.global_id
        origin = gid[:2]  # a global id begins with its state code
        incident = s.scalars(select(m.Incident).where(m.Incident.global_id == gid)).one_or_none()
        if incident is None:
            raise Refused(
                Refusal.FAILED_PRECONDITION,
                f"{number}: {origin}'s incident is not held here yet (request its bundle)",
            )
        query = select(m.EvidenceItem).where(m.EvidenceItem.incident_id == incident.id)
        if exhibit.evidence_position >= 0:
            query = query.where(m.EvidenceItem.position == exhibit.evidence_position)
        items = s.scalars(query.order_by(m.EvidenceItem.position)).all()
        if exhibit.evidence_position >= 0 and (
            not items or items[0].sha256 != exhibit.evidence_sha256
        ):
            raise Refused(
                Refusal.FAILED_PRECONDITION, f"{number}: the exhibit's file is not held here"
            )
        if not items:
            raise Refused(Refusal.FAILED_PRECONDITION, f"{number}: the incident has no files")
        received = _received_at(s, incident.id, self.state)
        files = []
        for i, item in enumerate(items, start=1):
            if not self.storage.blobs.has(item.sha256):
                raise Refused(
                    Refusal.FAILED_PRECONDITION,
                    f"{number}: file {i} is missing from the blob store",
                )
            doc_id = f"{number}.{i:03d}"
            files.append(
                PlannedFile(
                    exhibit=number,
                    doc_id=doc_id,
                    global_id=gid,
                    origin=origin,
                    evidence_id=item.id,
                    position=item.position,
                    sha256=item.sha256,
                    size=item.size,
                    media_type=item.media_type,
                    file_name=item.file_name,
                    captured_at=_captured(item),
                    received_at=_utc(received),
                    path=f"exhibits/{number}/{doc_id}{_extension(item.file_name)}",
                )
            )
        manifest = None if origin == self.state else _origin_manifest(s, number, gid, incident.id)
        return PlannedExhibit(
            number, gid, origin, exhibit.description, incident.id, tuple(files), manifest
        )

    def _record(self, plan: Plan, out: Path, user: str) -> tuple[str, bool]:
        """The export row and its `exported` events: found again for the same folder and
        revision, else written in one transaction."""
        now = self.clock()
        with self.storage.db.write() as s:
            row = s.scalars(
                select(m.ExhibitExport).where(
                    m.ExhibitExport.matter_id == plan.matter_row,
                    m.ExhibitExport.out_path == str(out),
                    m.ExhibitExport.revision == plan.revision,
                    m.ExhibitExport.state == "recorded",
                )
            ).first()
            if row is not None:
                return row.package_id, True
            package_id = secrets.token_hex(32)
            s.add(
                m.ExhibitExport(
                    package_id=package_id,
                    matter_id=plan.matter_row,
                    revision=plan.revision,
                    out_path=str(out),
                    state="recorded",
                    exported_by=user,
                    created_at=now,
                )
            )
            for exhibit in plan.exhibits:
                for f in exhibit.files:
                    s.add(
                        m.CustodyEvent(
                            evidence_id=f.evidence_id,
                            kind="exported",
                            at=now,
                            actor=user,
                            detail={
                                "matter": plan.matter_id,
                                "package_id": package_id,
                                "exhibit": f.exhibit,
                                "doc_id": f.doc_id,
                            },
                        )
                    )
            audit(
                s,
                actor=user,
                action="exhibit.export",
                target=plan.matter_id,
                detail={
                    "package_id": package_id,
                    "revision": plan.revision,
                    "exhibits": len(plan.exhibits),
                },
                now=now,
            )
            return package_id, False

    def _finish(self, package_id: str) -> None:
        with self.storage.db.write() as s:
            row = s.scalars(
                select(m.ExhibitExport).where(m.ExhibitExport.package_id == package_id)
            ).one()
            row.state = "written"
            row.finished_at = self.clock()

    # --- 2. the custody entries and the logs that hold them ----------------------------------

    def _custody(self, plan: Plan) -> dict[str, list[LoggedCustody]]:
        """Exhibit number -> its logged custody records (ours and the origin's), in log order."""
        ids = {f.evidence_id: e.number for e in plan.exhibits for f in e.files}
        found: dict[str, list[LoggedCustody]] = {e.number: [] for e in plan.exhibits}
        with self.storage.db.read() as s:
            rows = s.execute(
                select(
                    m.CustodyEvent.evidence_id,
                    m.CustodyEvent.origin,
                    m.CustodyEvent.log_index,
                    m.CustodyEvent.envelope,
                )
                .where(
                    m.CustodyEvent.evidence_id.in_(list(ids)),
                    m.CustodyEvent.log_index.is_not(None),
                    m.CustodyEvent.envelope.is_not(None),
                )
                .order_by(m.CustodyEvent.origin, m.CustodyEvent.log_index)
            )
            for evidence_id, origin, index, envelope in rows:
                if index is None or envelope is None:  # excluded by the query
                    continue
                found[ids[evidence_id]].append(
                    LoggedCustody(origin or self.state, int(index), bytes(envelope))
                )
        return found

    def _logs(self, plan: Plan, custody: dict[str, list[LoggedCustody]]) -> dict[str, LogPlan]:
        logs: dict[str, LogPlan] = {}
        for records in custody.values():
            for r in records:
                lp = logs.setdefault(r.state, LogPlan(r.state, 0))
                lp.needed = max(lp.needed, r.log_index + 1)
        for exhibit in plan.exhibits:
            envelope = exhibit.origin_manifest
            if envelope is None:
                continue
            note = BundleManifest.from_payload(Envelope.from_json(envelope).payload).checkpoint
            lp = logs.setdefault(exhibit.origin, LogPlan(exhibit.origin, 0))
            size = parse_checkpoint(parse_note(note).text).size
            lp.needed = max(lp.needed, size)
            lp.earlier.append((size, note))
        return logs

    # --- 3. witnesses ------------------------------------------------------------------------

    def _await_witnesses(
        self, logs: dict[str, LogPlan], min_witnesses: int, wait_seconds: float
    ) -> None:
        roster = self.roster()
        for state in logs:
            others = [mb.state for mb in roster.members if mb.state != state]
            if len(others) < min_witnesses:
                raise Refused(
                    Refusal.FAILED_PRECONDITION,
                    f"{state}'s log can be witnessed by {len(others)} other member(s) only "
                    f"({', '.join(others) or 'none'}); --min-witnesses {min_witnesses} cannot "
                    "be met in this compact",
                )
        deadline = time.monotonic() + wait_seconds
        while True:
            history = key_history(self.storage.db)
            short = [
                lp
                for lp in logs.values()
                if not self._witnessed(lp, roster, min_witnesses, history)
            ]
            if not short:
                return
            if time.monotonic() >= deadline:
                names = "; ".join(
                    f"{lp.state}'s log (entries up to {lp.needed - 1})" for lp in short
                )
                raise WitnessesShort(
                    f"no checkpoint with {min_witnesses} witness cosignatures yet for {names}; "
                    "members cosign when they sync: keep `compact serve` running here and "
                    "there, then run the export again (or give --wait SECONDS)"
                )
            self.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def _witnessed(
        self, lp: LogPlan, roster: Roster, min_witnesses: int, history: KeyHistory | None = None
    ) -> bool:
        """Whether a checkpoint of `lp`'s log covering its entries is cosigned by
        `min_witnesses` other members of `roster` (the newest such is kept in `lp`). With
        `history`, the
        log's signature and the cosignatures may be by any key of their state in a roster
        version (signed before a key rotation); a witness counts once, whatever number of
        its keys cosigned."""
        member = roster.member(lp.state)
        if member is None:
            raise Refused(
                Refusal.FAILED_PRECONDITION,
                f"{lp.state} is not a member of the roster in force",
            )
        logs = member_log_verifiers(member, history)
        witnesses = witness_verifiers(roster.members, history, exclude=lp.state)
        for size, note in reversed(self._candidates(lp)):
            try:
                verify_member_checkpoint(
                    note,
                    logs=logs,
                    witnesses=witnesses,
                    threshold=min_witnesses,
                    origin=log_origin(lp.state),
                )
            except CryptoError:
                continue
            lp.checkpoint_size, lp.checkpoint_note = size, note
            return True
        return False

    def _candidates(self, lp: LogPlan) -> list[tuple[int, str]]:
        """Checkpoints of the log covering its entries, ascending, with the cosignatures
        known here (and, for a peer's log, whose entries the replica holds)."""
        if lp.state == self.state:
            with self.storage.db.read() as s:
                rows = s.execute(
                    select(m.LogCheckpoint.size, m.LogCheckpoint.note)
                    .where(m.LogCheckpoint.size >= lp.needed)
                    .order_by(m.LogCheckpoint.size)
                ).all()
                found = []
                for size, signed in rows:
                    note = signed
                    for line in cosignature_lines(s, int(size)):
                        note = _with_line(note, line)
                    found.append((int(size), note))
                return found
        with self.storage.db.read() as s:
            held = s.scalar(select(m.ReplicaLog.size).where(m.ReplicaLog.state == lp.state)) or 0
        return [
            (k.size, k.note)
            for k in self.replicas.checkpoints(lp.state, min_size=lp.needed)
            if k.size <= held
        ]

    # --- proofs ------------------------------------------------------------------------------

    def _tree(self, s: Session, state: str) -> MerkleTree:
        if state == self.state:
            return MerkleTree(SqlNodeStore(s), log_size(s))
        held = s.scalar(select(m.ReplicaLog.size).where(m.ReplicaLog.state == state)) or 0
        table = m.Base.metadata.tables["replica_log_nodes"]
        return MerkleTree(SqlNodeStore(s, table, {"state": state}), int(held))

    # --- 4. write ----------------------------------------------------------------------------

    def _write(
        self,
        plan: Plan,
        package_id: str,
        out: Path,
        user: str,
        custody: dict[str, list[LoggedCustody]],
        logs: dict[str, LogPlan],
        min_witnesses: int,
        progress: Progress | None,
    ) -> int:
        partial = out.with_name(out.name + ".partial")
        if partial.exists() or partial.is_symlink():
            if not (partial / _PARTIAL_MARKER).is_file():
                raise Refused(
                    Refusal.ALREADY_EXISTS,
                    f"{partial} exists and is not an unfinished export: move it away",
                )
            shutil.rmtree(partial)
        partial.mkdir()
        (partial / _PARTIAL_MARKER).write_text(package_id)
        writer = _PackageWriter(partial)
        exported_at = _utc(self.clock())
        writer.add_bytes(VERIFIER_NAME, VERIFIER_SOURCE.read_bytes())

        roster_paths = []
        versions = [
            (stored, Envelope.from_json(stored).payload) for stored in self.roster_envelopes()
        ]
        for stored, payload in versions:
            path = f"roster/v{_roster_version(payload):04d}.dsse.json"
            writer.add_bytes(path, stored)
            roster_paths.append(path)
        v1_sha256 = hashlib.sha256(versions[0][1]).hexdigest()
        matter_path = f"matter/r{plan.revision:04d}.dsse.json"
        writer.add_bytes(matter_path, plan.envelope)

        logs_obj = self._write_logs(writer, logs)
        exhibits_obj = []
        total_files = sum(len(e.files) for e in plan.exhibits)
        done = 0
        for exhibit in plan.exhibits:
            manifest_path = None
            if exhibit.origin_manifest is not None:
                manifest_path = f"{exhibit.folder}/origin-manifest.dsse.json"
                writer.add_bytes(manifest_path, exhibit.origin_manifest)
            custody_path = f"{exhibit.folder}/custody.json"
            writer.add_bytes(custody_path, self._custody_json(custody[exhibit.number], logs))
            files_obj = []
            for f in exhibit.files:
                writer.add_stream(
                    f.path, self.storage.blobs.read(f.sha256, chunk_size=CHUNK), f.sha256, f.size
                )
                done += 1
                if progress is not None:
                    progress("write", done, total_files)
                files_obj.append(
                    {
                        "doc_id": f.doc_id,
                        "path": f.path,
                        "position": f.position,
                        "sha256": f.sha256,
                        "size": f.size,
                        "media_type": f.media_type,
                        "file_name": f.file_name,
                    }
                )
            exhibits_obj.append(
                {
                    "number": exhibit.number,
                    "global_id": exhibit.global_id,
                    "origin": exhibit.origin,
                    "description": exhibit.description,
                    "origin_manifest": manifest_path,
                    "custody": custody_path,
                    "files": files_obj,
                }
            )

        from node.exhibit_docs import DocumentRow, PackageInfo, render_all

        info = PackageInfo(
            package_name=out.name,
            package_id=package_id,
            matter_id=plan.matter_id,
            matter_title=plan.title,
            matter_revision=plan.revision,
            exporter=self.state,
            exporter_name=self.state,
            exported_at=exported_at,
            exported_by=user,
            roster_v1_sha256=v1_sha256,
        )
        rows = [
            DocumentRow(
                exhibit=f.exhibit,
                doc_id=f.doc_id,
                description=e.description,
                origin=f.origin,
                global_id=f.global_id,
                file_name=f.file_name,
                media_type=f.media_type,
                sha256=f.sha256,
                size=f.size,
                native_path=f.path,
                collected_at=f.captured_at,
                received_at=f.received_at,
            )
            for e in plan.exhibits
            for f in e.files
        ]
        for path, data in render_all(info, rows).items():
            writer.add_bytes(path, data)

        roster_version = len(roster_paths)
        manifest = {
            "format": PACKAGE_FORMAT,
            "package_id": package_id,
            "name": out.name,
            "exporter": self.state,
            "exported_at": exported_at,
            "exported_by": user,
            "min_witnesses": min_witnesses,
            "matter": {"id": plan.matter_id, "revision": plan.revision, "path": matter_path},
            "roster": {
                "versions": roster_paths,
                "in_force": roster_version,
                "v1_sha256": v1_sha256,
            },
            "logs": logs_obj,
            "exhibits": exhibits_obj,
            "files": writer.inventory(),
        }
        envelope = sign_envelope(PACKAGE_TYPE, canonical_json(manifest), [self.key])
        (partial / _PARTIAL_MARKER).unlink()
        writer.add_bytes(MANIFEST_NAME, envelope.to_json(), listed=False)
        writer.sync_dirs()
        os.replace(partial, out)
        fsync_dir(out.parent)
        return writer.total

    def _write_logs(self, writer: _PackageWriter, logs: dict[str, LogPlan]) -> list[Any]:
        found = []
        with self.storage.db.read() as s:
            for state in sorted(logs):
                lp = logs[state]
                sizes = sorted(
                    {size: note for size, note in lp.earlier if size < lp.checkpoint_size}.items()
                )
                chain = [*sizes, (lp.checkpoint_size, lp.checkpoint_note)]
                checkpoints = []
                for size, note in chain:
                    path = f"logs/{state}/{size:010d}.checkpoint"
                    writer.add_bytes(path, note.encode("utf-8"))
                    checkpoints.append({"size": size, "path": path})
                consistency_path = None
                if len(chain) > 1:
                    tree = self._tree(s, state)
                    proofs = [
                        {
                            "from": old,
                            "to": new,
                            "proof": [h.hex() for h in tree.consistency_proof(old, new)],
                        }
                        for (old, _), (new, _) in itertools.pairwise(chain)
                        if old > 0
                    ]
                    consistency_path = f"logs/{state}/consistency.json"
                    writer.add_bytes(consistency_path, canonical_json(proofs))
                found.append(
                    {"state": state, "checkpoints": checkpoints, "consistency": consistency_path}
                )
        return found

    def _custody_json(self, records: Sequence[LoggedCustody], logs: dict[str, LogPlan]) -> bytes:
        entries = []
        with self.storage.db.read() as s:
            trees: dict[str, MerkleTree] = {}
            for r in records:
                size = logs[r.state].checkpoint_size
                tree = trees.get(r.state) or trees.setdefault(r.state, self._tree(s, r.state))
                entries.append(
                    {
                        "state": r.state,
                        "checkpoint_size": size,
                        "log_index": r.log_index,
                        "envelope": base64.b64encode(r.envelope).decode("ascii"),
                        "proof": [h.hex() for h in tree.inclusion_proof(r.log_index, size)],
                    }
                )
        return canonical_json(entries)


# --- writing files -------------------------------------------------------------------------


class _PackageWriter:
    """Writes files under the package folder, fsynced, and lists (path, SHA-256, size)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listed: list[dict[str, Any]] = []
        self._dirs: set[Path] = {root}
        self.total = 0

    def _open(self, path: str) -> Path:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        parent = target.parent
        while parent != self.root and parent not in self._dirs:
            self._dirs.add(parent)
            parent = parent.parent
        return target

    def add_bytes(self, path: str, data: bytes, *, listed: bool = True) -> None:
        self.add_stream(path, iter([data]), hashlib.sha256(data).hexdigest(), len(data), listed)

    def add_stream(
        self, path: str, chunks: Iterator[bytes], sha256: str, size: int, listed: bool = True
    ) -> None:
        target = self._open(path)
        digest = hashlib.sha256()
        written = 0
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                digest.update(chunk)
                written += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        if written != size or digest.hexdigest() != sha256:
            raise Refused(Refusal.FAILED_PRECONDITION, f"{path}: not the bytes expected")
        self.total += written
        if listed:
            self._listed.append({"path": path, "sha256": sha256, "size": size})

    def inventory(self) -> list[dict[str, Any]]:
        return sorted(self._listed, key=lambda f: str(f["path"]).encode("utf-8"))

    def sync_dirs(self) -> None:
        for d in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(d)


# --- small helpers -------------------------------------------------------------------------


def _stored(path: str) -> bool:
    """Evidence files are stored in the zip (read as raw byte ranges); text is deflated."""
    return path.startswith("exhibits/") and not path.endswith(".json")


def _extension(file_name: str) -> str:
    match = _EXTENSION.search(file_name.lower())
    return f".{match.group(1)}" if match else ".bin"


def _captured(item: m.EvidenceItem) -> str | None:
    if item.captured_at is None:
        return None
    return _utc(item.captured_at)


def _utc(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` (stored times carry microseconds; the package does not)."""
    return format_time(value.astimezone(UTC).replace(microsecond=0))


def _origin_manifest(s: Session, number: str, global_id: str, incident_id: int) -> bytes:
    """The manifest of the bundle that brought a received incident (refused, before
    anything is recorded, if it is not kept)."""
    envelope = s.scalar(
        select(m.Bundle.manifest_envelope)
        .join(m.IncidentProvenance, m.IncidentProvenance.bundle_id == m.Bundle.bundle_id)
        .where(m.IncidentProvenance.incident_id == incident_id)
    )
    if envelope is None:
        raise Refused(
            Refusal.FAILED_PRECONDITION,
            f"{number}: the bundle that brought {global_id} is not kept here",
        )
    return bytes(envelope)


def _received_at(s: Session, incident_id: int, state: str) -> datetime:
    received = s.scalar(
        select(m.IncidentProvenance.received_at).where(
            m.IncidentProvenance.incident_id == incident_id
        )
    )
    if received is not None:
        return received
    recorded: datetime = s.scalars(
        select(m.Incident.recorded_at).where(m.Incident.id == incident_id)
    ).one()
    return recorded


def _roster_version(payload: bytes) -> int:
    version = json.loads(payload)["version"]
    if type(version) is not int:
        raise ValueError("a stored roster version has no version number")
    return version


def _with_line(note: str, line: str) -> str:
    try:
        return add_cosignature(note, line)
    except CryptoError:
        return note
