"""Publishing this node's index: one signed index entry per incident, entered in its log.

`Publisher.publish` finds the incidents whose entry is missing or out of date
(a re-import changed the record: its `content_hash` differs from the one
published), pseudonymises their identifier keys (node.pseudonymise), builds
each entry (federation.index_entry: no narrative, person, name, badge or
address), signs it with the node's roster key and appends the DSSE envelope to
the transparency log (kind `index-entry`), in batches, each batch in one
transaction with the `published_entries` bookkeeping. Incidents that became
`sealed` or were removed get a withdrawal: a new revision with no content.
Nothing published is ever deleted. Afterwards a new checkpoint is signed.

The node's own entries are also indexed in `replica_pseudonyms`, so that
cross-state questions are one query over every state's entries.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.orm import Session, selectinload

from crypto import signing
from federation.index_entry import IndexEntry, build_entry, sign_entry, withdrawal
from federation.naming import log_origin, log_signer
from node import models as m
from node.ingest import NodeStorage
from node.pseudonymise import Pseudonymiser
from node.queries import incident_view
from node.records import IncidentView
from node.translog import TransparencyLog

ENTRY_KIND: Final = "index-entry"
BATCH: Final = 500


@dataclass(frozen=True)
class PublishReport:
    published: int
    withdrawn: int
    checkpoint_size: int | None


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

    async def publish(
        self,
        pseudonymiser: Pseudonymiser,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> PublishReport:
        publish_ids, withdraw = await asyncio.to_thread(self.pending)
        published = 0
        for start in range(0, len(publish_ids), BATCH):
            chunk = publish_ids[start : start + BATCH]
            views = await asyncio.to_thread(self._views, chunk)
            keys = {str(k) for v, _ in views for a in v.agents for k in a.keys}
            pseudonyms = await pseudonymiser.pseudonyms(keys)
            published += await asyncio.to_thread(self._write, views, pseudonyms)
            if progress is not None:
                progress(len(chunk))
        withdrawn = await asyncio.to_thread(self._withdraw, withdraw) if withdraw else 0
        size = None
        if published or withdrawn or self._log.latest_checkpoint() is None:
            size = await asyncio.to_thread(self.sign_checkpoint)
        return PublishReport(published, withdrawn, size)

    def sign_checkpoint(self) -> int:
        note = self._log.sign_checkpoint(
            log_signer(self.state, self._key), origin=log_origin(self.state)
        )
        return int(note.split("\n", 2)[1])

    def _views(self, ids: Sequence[int]) -> list[tuple[IncidentView, str]]:
        options = (
            selectinload(m.Incident.conduct),
            selectinload(m.Incident.agents).selectinload(m.AgentObservation.keys),
            selectinload(m.Incident.evidence).selectinload(m.EvidenceItem.custody),
        )
        with self._storage.db.read() as s:
            rows = s.scalars(select(m.Incident).where(m.Incident.id.in_(ids)).options(*options))
            return [
                (incident_view(r, self._storage.fields, personal=False), r.content_hash)
                for r in rows
            ]

    def _write(self, views: Sequence[tuple[IncidentView, str]], pseudonyms: dict[str, str]) -> int:
        now = datetime.now(UTC)
        count = 0
        with self._storage.db.write() as s:
            revisions = self._revisions(s, [v.global_id for v, _ in views])
            entries: list[tuple[IndexEntry, str]] = []
            for view, content_hash in views:
                gid = view.global_id
                if view.sharing == "sealed":
                    continue  # sealed since `pending` looked: withdrawn on the next round
                entry = build_entry(
                    view,
                    revision=revisions.get(gid, 0) + 1,
                    pseudonyms=pseudonyms,
                )
                entries.append((entry, content_hash))
            count = self._append(s, entries, now)
        return count

    def _withdraw(self, targets: Sequence[tuple[str, int]]) -> int:
        now = datetime.now(UTC)
        with self._storage.db.write() as s:
            entries = [
                (withdrawal(self.state, gid, revision=rev + 1), None) for gid, rev in targets
            ]
            return self._append(s, entries, now)

    def _revisions(self, s: Session, gids: Sequence[str]) -> dict[str, int]:
        return dict(
            (str(g), int(r))
            for g, r in s.execute(
                select(m.PublishedEntry.global_id, m.PublishedEntry.revision).where(
                    m.PublishedEntry.global_id.in_(gids)
                )
            ).all()
        )

    def _append(
        self, s: Session, entries: Sequence[tuple[IndexEntry, str | None]], now: datetime
    ) -> int:
        if not entries:
            return 0
        envelopes = [sign_entry(e, self._key).to_json() for e, _ in entries]
        indexes = self._log.append_in(s, ENTRY_KIND, envelopes, now=now)
        gids = [e.global_id for e, _ in entries]
        s.execute(delete(m.PublishedEntry).where(m.PublishedEntry.global_id.in_(gids)))
        s.execute(
            insert(m.PublishedEntry),
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
        index_pseudonyms(s, self.state, [e for e, _ in entries])
        return len(entries)


def index_pseudonyms(s: Session, state: str, entries: Sequence[IndexEntry]) -> None:
    """Make `replica_pseudonyms` hold exactly the pseudonyms of these (newest) entries."""
    rp = m.ReplicaPseudonym
    gids = [e.global_id for e in entries]
    for start in range(0, len(gids), 500):
        s.execute(
            delete(rp).where(and_(rp.state == state, rp.global_id.in_(gids[start : start + 500])))
        )
    rows = [
        {"state": state, "global_id": e.global_id, "position": pos, "kind": kind, "pseudonym": p}
        for e in entries
        if e.content is not None
        for pos, agent in enumerate(e.content.agents)
        for kind, p in agent.pseudonyms.items()
    ]
    if rows:
        s.execute(insert(rp), rows)
