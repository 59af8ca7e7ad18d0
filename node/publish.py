"""Publishing this node's index: one signed index entry per incident, entered in its log.

`Publisher.publish` finds the incidents whose entry is missing or out of date
(a re-import changed the record: its `content_hash` differs from the one
published), pseudonymises their identifier keys (node.pseudonymise), builds
each entry (federation.index_entry: no narrative, person, name, badge or
address), signs it with the node's roster key and appends the DSSE envelope to
the transparency log (kind `index-entry`), in batches, each batch in one
transaction with the `published_entries` bookkeeping. Incidents that became
`sealed` or were removed get a withdrawal: a new revision with no content.
Nothing published is ever deleted. Custody events (signed) and audit events
(node.audit) not yet logged are entered too. Afterwards a new checkpoint is signed.

The node's own entries are also indexed in `replica_pseudonyms`, so that
cross-state questions are one query over every state's entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Select, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from crypto import signing
from federation.bundle import CustodyRecord, sign_custody
from federation.index_entry import IndexEntry, build_entry, sign_entry, withdrawal
from federation.naming import log_origin, log_signer
from node import models as m
from node.audit import NOT_LOGGED, log_audit
from node.db import insert_rows
from node.hits import record_hits
from node.ingest import NodeStorage
from node.normalize import IdentifierKey
from node.pseudonymise import Pseudonymiser
from node.records import (
    AgentView,
    CustodyView,
    EvidenceView,
    IncidentView,
    LocationInput,
    Timestamp,
)
from node.translog import TransparencyLog, lock_appends

ENTRY_KIND: Final = "index-entry"
CUSTODY_KIND: Final = "custody"
_PUBLISHED: Final = m.Base.metadata.tables["published_entries"]
_PSEUDONYMS: Final = m.Base.metadata.tables["replica_pseudonyms"]
_FACTS: Final = m.Base.metadata.tables["replica_incidents"]
_AGENT_FACTS: Final = m.Base.metadata.tables["replica_agents"]
_INDEXED: Final = (_PSEUDONYMS, _FACTS, _AGENT_FACTS)
_INCIDENTS: Final = m.Base.metadata.tables["incidents"]
_CONDUCT: Final = m.Base.metadata.tables["incident_conduct"]
_AGENTS: Final = m.Base.metadata.tables["agent_observations"]
_KEYS: Final = m.Base.metadata.tables["identifier_keys"]
_PEOPLE: Final = m.Base.metadata.tables["people"]
_EVIDENCE: Final = m.Base.metadata.tables["evidence_items"]
_CUSTODY: Final = m.Base.metadata.tables["custody_events"]
# (last revision, its content hash, withdrawn, log index) of a published incident
_Published = tuple[int, str | None, bool, int]
BATCH: Final = 500


@dataclass(frozen=True)
class PublishReport:
    published: int
    withdrawn: int
    checkpoint_size: int | None
    custody: int = 0  # custody events signed and entered in the log
    audit: int = 0  # audit events entered in the log


class Publisher:
    def __init__(
        self,
        storage: NodeStorage,
        log: TransparencyLog,
        signing_key: signing.SigningKey,
    ) -> None:
        self._storage = storage
        self._log = log
        self._key = signing_key
        self.state = storage.state

    def pending(self) -> tuple[list[int], list[tuple[str, int]]]:
        """(incident ids to publish, (global id, last revision) to withdraw)."""
        db = self._storage.db
        with db.read() as s:
            pe = m.PublishedEntry
            publish = list(
                s.scalars(
                    select(m.Incident.id)
                    .outerjoin(pe, pe.global_id == m.Incident.global_id)
                    .where(
                        m.Incident.state == self.state,  # not incidents received in bundles
                        m.Incident.sharing != "sealed",
                        or_(
                            pe.global_id.is_(None),
                            pe.withdrawn.is_(True),
                            pe.content_hash != m.Incident.content_hash,
                        ),
                    )
                    .order_by(m.Incident.id)
                )
            )
            withdraw = [
                (gid, rev)
                for gid, rev in s.execute(
                    select(pe.global_id, pe.revision)
                    .outerjoin(m.Incident, m.Incident.global_id == pe.global_id)
                    .where(
                        pe.withdrawn.is_(False),
                        or_(m.Incident.id.is_(None), m.Incident.sharing == "sealed"),
                    )
                    .order_by(pe.global_id)
                ).all()
            ]
        return publish, withdraw

    def audit_pending(self) -> bool:
        """Whether some audit event waits to be entered in the log (node.audit)."""
        return self._exists(
            select(m.AuditEvent.id).where(
                m.AuditEvent.log_index.is_(None), m.AuditEvent.action.not_in(NOT_LOGGED)
            )
        )

    def _exists(self, query: Select[Any]) -> bool:
        with self._storage.db.read() as s:
            return s.scalar(query.limit(1)) is not None

    def change_marker(self) -> tuple[int | None, int, int | None]:
        """A cheap fingerprint of what `pending` depends on: the newest incident, the number
        of incidents and the newest audit event (every import and change is audited). While
        it stays the same there is nothing new to publish, and the full `pending` query (a
        join over every incident) need not run."""
        with self._storage.db.read() as s:
            newest, count = s.execute(
                select(func.max(m.Incident.id), func.count(m.Incident.id))
            ).one()
            audit = s.scalar(select(func.max(m.AuditEvent.id)))
        return newest, int(count), audit

    async def publish(
        self,
        pseudonymiser: Pseudonymiser,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> PublishReport:
        """Publish what is pending; `progress(done, total)` after each batch of incidents."""
        publish_ids, withdraw = await asyncio.to_thread(self.pending)
        published = 0
        for start in range(0, len(publish_ids), BATCH):
            chunk = publish_ids[start : start + BATCH]
            views = await asyncio.to_thread(self._views, chunk)
            keys = {str(k) for v, _ in views for a in v.agents for k in a.keys}
            pseudonyms = await pseudonymiser.pseudonyms(keys)
            published += await asyncio.to_thread(self._write, views, pseudonyms)
            if progress is not None:
                progress(start + len(chunk), len(publish_ids))
        withdrawn = await asyncio.to_thread(self._withdraw, withdraw) if withdraw else 0
        custody, audited, size = await asyncio.to_thread(
            self.log_trail, changed=bool(published or withdrawn)
        )
        return PublishReport(published, withdrawn, size, custody, audited)

    def log_trail(self, *, changed: bool = False) -> tuple[int, int, int | None]:
        """Enter the custody and audit events not logged yet in the log and sign a
        checkpoint if anything was entered (or `changed`: entries were, or the log has no
        checkpoint yet): (custody events, audit events, checkpoint size or None).

        Needs no pseudonyms, so it also runs when publishing cannot (no OPRF key yet, or
        its share holders unreachable) and before the node is in a compact: the trail
        never waits on the federation."""
        custody = self.log_custody()
        audited = log_audit(self._storage.db, self._log, self.state)
        size = None
        if changed or custody or audited or self._log.latest_checkpoint() is None:
            size = self.sign_checkpoint()
        return custody, audited, size

    def trail_pending(self) -> bool:
        """Whether a custody or audit event waits to be entered in the log (a read)."""
        return self.audit_pending() or self._exists(
            select(_CUSTODY.c.id).where(_CUSTODY.c.log_index.is_(None), _CUSTODY.c.origin.is_(None))
        )

    def log_custody(self) -> int:
        """Sign each custody event this node recorded and has not logged yet, and enter it
        in the log (kind `custody`: peers receive its leaf hash only), in batches; each
        batch in one transaction with the events' `envelope` and `log_index`."""
        done = 0
        while True:
            with self._storage.db.write() as s:
                lock_appends(s)  # before the select: two loggers never sign one event twice
                rows = s.execute(
                    select(
                        _CUSTODY.c.id,
                        _CUSTODY.c.kind,
                        _CUSTODY.c.at,
                        _CUSTODY.c.actor,
                        _CUSTODY.c.detail,
                        _EVIDENCE.c.sha256,
                        _EVIDENCE.c.position,
                        _INCIDENTS.c.global_id,
                    )
                    .join(_EVIDENCE, _EVIDENCE.c.id == _CUSTODY.c.evidence_id)
                    .join(_INCIDENTS, _INCIDENTS.c.id == _EVIDENCE.c.incident_id)
                    .where(_CUSTODY.c.log_index.is_(None), _CUSTODY.c.origin.is_(None))
                    .order_by(_CUSTODY.c.id)
                    .limit(BATCH)
                ).all()
                if not rows:
                    return done
                envelopes = [
                    sign_custody(
                        CustodyRecord(
                            state=self.state,
                            global_id=gid,
                            evidence_sha256=sha,
                            evidence_position=pos,
                            event_id=event_id,
                            kind=kind,
                            at=at.replace(microsecond=0),
                            actor=actor,
                            detail=detail,
                        ),
                        self._key,
                    ).to_json()
                    for event_id, kind, at, actor, detail, sha, pos, gid in rows
                ]
                indexes = self._log.append_in(s, CUSTODY_KIND, envelopes)
                s.execute(
                    update(_CUSTODY)
                    .where(_CUSTODY.c.id == bindparam("event_id"))
                    .values(envelope=bindparam("signed"), log_index=bindparam("index")),
                    [
                        {"event_id": row[0], "signed": envelope, "index": index}
                        for row, envelope, index in zip(rows, envelopes, indexes, strict=True)
                    ],
                )
                done += len(rows)

    def sign_checkpoint(self) -> int:
        note = self._log.sign_checkpoint(
            log_signer(self.state, self._key), origin=log_origin(self.state)
        )
        return int(note.split("\n", 2)[1])

    def _views(self, ids: Sequence[int]) -> list[tuple[IncidentView, str]]:
        """(view, content hash) of these incidents, in incident id order: the views
        `incident_view(row, fields, personal=False)` builds, read with one Core query per
        table: loading them as ORM objects was about a third of publishing's time."""
        if not ids:
            return []
        with self._storage.db.read() as s:
            return _load_views(s, ids)

    def _write(self, views: Sequence[tuple[IncidentView, str]], pseudonyms: dict[str, str]) -> int:
        now = datetime.now(UTC)
        with self._storage.db.write() as s:
            published = self._published(s, [v.global_id for v, _ in views])
            entries: list[tuple[IndexEntry, str]] = []
            for view, content_hash in views:
                gid = view.global_id
                if view.sharing == "sealed":
                    continue  # sealed since `pending` looked: withdrawn on the next round
                revision, done_hash, withdrawn, _ = published.get(gid, (0, None, False, -1))
                if done_hash == content_hash and not withdrawn:
                    continue  # another publisher (serve's loop, `compact sync`) got there first
                entry = build_entry(view, revision=revision + 1, pseudonyms=pseudonyms)
                entries.append((entry, content_hash))
            return self._append(s, entries, now, published)

    def _withdraw(self, targets: Sequence[tuple[str, int]]) -> int:
        now = datetime.now(UTC)
        with self._storage.db.write() as s:
            published = self._published(s, [gid for gid, _ in targets])
            # Only what is still as `pending` saw it: another publisher may have been first.
            entries: list[tuple[IndexEntry, str | None]] = [
                (withdrawal(self.state, gid, revision=rev + 1), None)
                for gid, rev in targets
                if (p := published.get(gid)) is not None and p[0] == rev and not p[2]
            ]
            return self._append(s, entries, now, published)

    def _published(self, s: Session, gids: Sequence[str]) -> dict[str, _Published]:
        """global id -> (last revision, its content hash, withdrawn, its log index), read in
        this transaction."""
        pe = m.PublishedEntry
        out: dict[str, _Published] = {}
        for start in range(0, len(gids), 500):
            for g, r, h, w, i in s.execute(
                select(
                    pe.global_id, pe.revision, pe.content_hash, pe.withdrawn, pe.log_index
                ).where(pe.global_id.in_(gids[start : start + 500]))
            ):
                out[str(g)] = (int(r), h, bool(w), int(i))
        return out

    def _append(
        self,
        s: Session,
        entries: Sequence[tuple[IndexEntry, str | None]],
        now: datetime,
        published: dict[str, _Published],
    ) -> int:
        if not entries:
            return 0
        envelopes = [sign_entry(e, self._key).to_json() for e, _ in entries]
        indexes = self._log.append_in(s, ENTRY_KIND, envelopes, now=now)
        gids = [e.global_id for e, _ in entries]
        s.execute(delete(m.PublishedEntry).where(m.PublishedEntry.global_id.in_(gids)))
        s.execute(
            insert(_PUBLISHED),  # Core, not the ORM's bulk path: one executemany
            [
                {
                    "global_id": e.global_id,
                    "revision": e.revision,
                    "log_index": i,
                    "entry_sha256": hashlib.sha256(env).hexdigest(),
                    "content_hash": content_hash,
                    "withdrawn": e.withdrawn,
                    "published_at": now,
                }
                for (e, content_hash), i, env in zip(entries, indexes, envelopes, strict=True)
            ],
        )
        replaced = [published[g][3] for g in gids if g in published]
        index_pseudonyms(
            s, self.state, [(i, e) for (e, _), i in zip(entries, indexes, strict=True)], replaced
        )
        record_hits(s, self.state, self.state, indexes, now)
        return len(entries)


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def index_pseudonyms(
    s: Session, state: str, entries: Sequence[tuple[int, IndexEntry]], replaced: Iterable[int]
) -> None:
    """Index `state`'s newest entries (log index, entry) for the analysts: their agent
    pseudonyms in `replica_pseudonyms`, what they say of the incident and its agents in
    `replica_incidents` and `replica_agents`; and drop the rows of the entries they
    replace (by log index). A withdrawn entry indexes nothing."""
    old = sorted(set(replaced))
    for table in _INDEXED:
        for start in range(0, len(old), 500):
            s.execute(
                delete(table).where(
                    table.c.state == state, table.c.log_index.in_(old[start : start + 500])
                )
            )
    current = [(index, e, e.content) for index, e in entries if e.content is not None]
    insert_rows(
        s,
        _PSEUDONYMS,
        ("state", "log_index", "position", "kind", "global_id", "pseudonym", "prefix"),
        [
            (state, index, pos, kind, e.global_id, p, m.pseudonym_prefix(p))
            for index, e, content in current
            for pos, agent in enumerate(content.agents)
            for kind, p in agent.pseudonyms.items()
        ],
    )
    insert_rows(
        s,
        _FACTS,
        ("state", "log_index", "global_id", "day", "county", "location_kind", "status", "conduct"),
        [
            (
                state,
                index,
                e.global_id,
                c.day,
                c.county,
                c.location_kind,
                c.status,
                " ".join(sorted(c.conduct)),
            )
            for index, e, c in current
        ],
    )
    insert_rows(
        s,
        _AGENT_FACTS,
        (
            "state",
            "log_index",
            "position",
            "agency",
            "role",
            "masked",
            "identified_self",
            "body_camera",
        ),
        [
            (
                state,
                index,
                pos,
                a.agency,
                a.role,
                _flag(a.masked),
                _flag(a.identified_self),
                _flag(a.body_camera),
            )
            for index, _, c in current
            for pos, a in enumerate(c.agents)
        ],
    )


# --- the views to publish, read with Core --------------------------------------------------
# Each query orders as the ORM relationship does (node.models): conduct by conduct, agents
# by position, identifier keys by kind, evidence by position, custody events by id. Ordering
# in SQL, not in Python, keeps the database's collation, as the relationships do.


def _load_views(s: Session, ids: Sequence[int]) -> list[tuple[IncidentView, str]]:
    """What `node.queries.incident_view(row, fields, personal=False)` builds for each of
    these incidents (no personal field is read, so nothing is decrypted), with its
    content hash, in incident id order."""
    i = _INCIDENTS
    rows = s.execute(
        select(
            i.c.id,
            i.c.global_id,
            i.c.external_id,
            i.c.state,
            i.c.occurred_at,
            i.c.occurred_offset_min,
            i.c.reported_at,
            i.c.reported_offset_min,
            i.c.county,
            i.c.location_kind,
            i.c.city,
            i.c.lat,
            i.c.lon,
            i.c.status,
            i.c.source,
            i.c.sharing,
            i.c.recorded_at,
            i.c.content_hash,
            # restricted_withheld: whether there are people, a narrative or an address
            # (as the truth of the ciphertexts: NULL and empty are both "none")
            exists().where(_PEOPLE.c.incident_id == i.c.id).label("has_people"),
            (func.length(i.c.narrative_enc) > 0).label("has_narrative"),
            (func.length(i.c.address_enc) > 0).label("has_address"),
        )
        .where(i.c.id.in_(ids))
        .order_by(i.c.id)
    ).all()
    conduct = _conduct(s, ids)
    agents = _agents(s, ids)
    evidence = _evidence(s, ids)
    out: list[tuple[IncidentView, str]] = []
    for r in rows:
        view = IncidentView(
            global_id=r.global_id,
            external_id=r.external_id,
            state=r.state,
            occurred_at=Timestamp.from_stored(r.occurred_at, r.occurred_offset_min),
            reported_at=(
                Timestamp.from_stored(r.reported_at, r.reported_offset_min)
                if r.reported_at
                else None
            ),
            location=LocationInput(r.state, r.county, r.location_kind, None, r.city, r.lat, r.lon),
            conduct=tuple(conduct.get(r.id, ())),
            status=r.status,
            source=r.source,
            sharing=r.sharing,
            recorded_at=r.recorded_at,
            narrative=None,
            agents=tuple(agents.get(r.id, ())),
            people=(),
            evidence=tuple(evidence.get(r.id, ())),
            restricted_withheld=bool(r.has_people or r.has_narrative or r.has_address),
        )
        out.append((view, r.content_hash))
    return out


def _conduct(s: Session, ids: Sequence[int]) -> dict[int, list[str]]:
    """incident id -> its conduct, in the relationship's order."""
    c = _CONDUCT
    out: dict[int, list[str]] = {}
    for incident_id, conduct in s.execute(
        select(c.c.incident_id, c.c.conduct)
        .where(c.c.incident_id.in_(ids))
        .order_by(c.c.incident_id, c.c.conduct)
    ).all():
        out.setdefault(incident_id, []).append(conduct)
    return out


def _agents(s: Session, ids: Sequence[int]) -> dict[int, list[AgentView]]:
    """incident id -> its agent observations (with their keys), by position."""
    a, k = _AGENTS, _KEYS
    keys: dict[int, list[IdentifierKey]] = {}
    for observation_id, kind, value in s.execute(
        select(k.c.observation_id, k.c.kind, k.c.value)
        .join(a, a.c.id == k.c.observation_id)
        .where(a.c.incident_id.in_(ids))
        # the relationship orders by kind alone; value only makes ties deterministic
        # (an observation has at most one key of each kind: node.normalize)
        .order_by(k.c.observation_id, k.c.kind, k.c.value)
    ).all():
        keys.setdefault(observation_id, []).append(IdentifierKey(kind, value))
    out: dict[int, list[AgentView]] = {}
    for r in s.execute(
        select(
            a.c.id,
            a.c.incident_id,
            a.c.role,
            a.c.agency,
            a.c.name,
            a.c.badge,
            a.c.unit,
            a.c.vehicle_plate,
            a.c.masked,
            a.c.identified_self,
            a.c.body_camera,
        )
        .where(a.c.incident_id.in_(ids))
        .order_by(a.c.incident_id, a.c.position)
    ):
        out.setdefault(r.incident_id, []).append(
            AgentView(
                r.role,
                r.agency,
                r.name,
                r.badge,
                r.unit,
                r.vehicle_plate,
                r.masked,
                r.identified_self,
                r.body_camera,
                tuple(keys.get(r.id, ())),
            )
        )
    return out


def _evidence(s: Session, ids: Sequence[int]) -> dict[int, list[EvidenceView]]:
    """incident id -> its evidence items (with their custody), by position; as
    `node.queries._evidence_view` builds each."""
    e, c = _EVIDENCE, _CUSTODY
    items = s.execute(
        select(
            e.c.id,
            e.c.incident_id,
            e.c.sha256,
            e.c.size,
            e.c.media_type,
            e.c.file_name,
            e.c.captured_at,
            e.c.captured_offset_min,
            e.c.captured_by,
            e.c.description,
        )
        .where(e.c.incident_id.in_(ids))
        .order_by(e.c.incident_id, e.c.position)
    ).all()
    if not items:
        return {}
    custody: dict[int, list[CustodyView]] = {}
    for evidence_id, kind, at, actor, detail in s.execute(
        select(c.c.evidence_id, c.c.kind, c.c.at, c.c.actor, c.c.detail)
        .join(e, e.c.id == c.c.evidence_id)
        .where(e.c.incident_id.in_(ids))
        .order_by(c.c.evidence_id, c.c.id)
    ).all():
        custody.setdefault(evidence_id, []).append(
            CustodyView(
                kind, Timestamp.from_stored(at, 0), actor, json.dumps(detail, sort_keys=True)
            )
        )
    out: dict[int, list[EvidenceView]] = {}
    for (
        evidence_id,
        incident_id,
        sha256,
        size,
        media_type,
        file_name,
        captured_at,
        captured_offset_min,
        captured_by,
        description,
    ) in items:
        out.setdefault(incident_id, []).append(
            EvidenceView(
                sha256=sha256,
                size=size,
                media_type=media_type,
                file_name=file_name,
                captured_at=(
                    Timestamp.from_stored(captured_at, captured_offset_min) if captured_at else None
                ),
                captured_by=captured_by,
                description=description,
                custody=tuple(custody.get(evidence_id, ())),
            )
        )
    return out
