"""Hits: new cross-state links that involve this state's incidents.

When this node publishes entries of its own, or stores a batch of a peer's
entries, it looks up the pseudonyms of those entries on the other side (a peer's
entries for its own; its own for a peer's) in the same transaction, and records
each new pair (its incident, the peer's incident, the shared pseudonym) as a
hit. The peer's node records the mirror hit when it next syncs. A hit is the
prompt for a bundle request; it holds nothing that the index does not share (a
pseudonym, its kind, two global ids). Docs: docs/analysis.md, "Hits".

A hit is a direct link: the two incidents carry the same pseudonym of one key
kind. Agents joined only transitively are in `compact agents matches`. A name
and agency shared by two observations that carry different badges is not a hit
(two people of the same name in one agency); their shared `name` still is, as a
medium link.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, insert, select
from sqlalchemy.orm import Session, aliased

from node import models as m
from node.db import Database
from node.normalize import KEY_STRENGTH

_P = m.ReplicaPseudonym
_CHUNK: Final = 500


def _badge_of(badge: Any, observation: Any) -> Any:
    """Join condition: `badge` is the badge row of `observation` (both aliases of _P)."""
    return and_(
        badge.state == observation.state,
        badge.log_index == observation.log_index,
        badge.position == observation.position,
        badge.kind == "badge",
    )


def record_hits(
    s: Session, own_state: str, state: str, log_indexes: Sequence[int], now: datetime
) -> int:
    """Record the new hits that `state`'s entries at `log_indexes` (just indexed in
    `replica_pseudonyms`) create; returns how many. `state` may be this node's own."""
    if not log_indexes:
        return 0
    new, other = aliased(_P), aliased(_P)
    new_badge, other_badge = aliased(_P), aliased(_P)
    # The other side as equalities on `state`, so that the (prefix, state) index finds
    # only its rows: an agent seen in many of one state's entries must not make each of
    # them read all the others (publishing 100,000 entries went quadratic).
    side: ColumnElement[bool]
    if state == own_state:
        peers = sorted(str(st) for st in s.scalars(select(m.ReplicaLog.state)) if st != own_state)
        if not peers:
            return 0
        side = other.state.in_(peers)
    else:
        side = other.state == own_state
    found: set[tuple[str, str, str, str, str]] = set()  # kind, pseudonym, own, peer, peer gid
    indexes = sorted(set(log_indexes))
    for start in range(0, len(indexes), _CHUNK):
        chunk = indexes[start : start + _CHUNK]
        q = (
            select(
                new.kind, new.pseudonym, new.global_id, other.state, other.global_id,
                new_badge.pseudonym, other_badge.pseudonym,
            )
            .join(other, and_(other.prefix == new.prefix, other.pseudonym == new.pseudonym))
            .outerjoin(new_badge, _badge_of(new_badge, new))
            .outerjoin(other_badge, _badge_of(other_badge, other))
            .where(new.state == state, new.log_index.between(chunk[0], chunk[-1]), side)
        )  # fmt: skip
        for kind, pseudonym, new_gid, other_state, other_gid, badge, other_b in s.execute(q):
            if kind == "name_agency" and badge and other_b and badge != other_b:
                continue  # one name and agency, two badges: two people
            if state == own_state:
                found.add((kind, pseudonym, new_gid, other_state, other_gid))
            else:
                found.add((kind, pseudonym, other_gid, state, new_gid))
    if not found:
        return 0
    ordered = sorted(found)
    # The pairs already recorded, read by this state's incident (indexed): a row-value IN
    # over the unique key would be a scan of the whole table on SQLite.
    known: set[tuple[str, str, str, str]] = set()
    h = m.Hit
    own_ids = sorted({own for _, _, own, _, _ in ordered})
    for start in range(0, len(own_ids), _CHUNK):
        recorded = select(h.pseudonym, h.own_global_id, h.peer_state, h.peer_global_id).where(
            h.own_global_id.in_(own_ids[start : start + _CHUNK])
        )
        known.update((str(p), str(own), str(ps), str(pg)) for p, own, ps, pg in s.execute(recorded))
    rows = [
        {
            "found_at": now,
            "kind": kind,
            "pseudonym": p,
            "own_global_id": own,
            "peer_state": peer,
            "peer_global_id": peer_gid,
        }
        for kind, p, own, peer, peer_gid in ordered
        if (p, own, peer, peer_gid) not in known
    ]
    if rows:
        s.execute(insert(m.Base.metadata.tables["hits"]), rows)
    return len(rows)


@dataclass(frozen=True)
class HitView:
    id: int
    found_at: datetime
    kind: str
    strength: str
    pseudonym: str
    own_global_id: str
    peer_state: str
    peer_global_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "found_at": self.found_at.isoformat(),
            "kind": self.kind,
            "strength": self.strength,
            "pseudonym": self.pseudonym,
            "own_global_id": self.own_global_id,
            "peer_state": self.peer_state,
            "peer_global_id": self.peer_global_id,
        }


def list_hits(
    db: Database,
    *,
    peer: str | None = None,
    since: date | None = None,
    kinds: Sequence[str] = tuple(KEY_STRENGTH),
    limit: int | None = None,
) -> list[HitView]:
    """Hits, newest first: with one peer, found on or after a day (UTC), of these kinds."""
    h = m.Hit
    q = select(h).where(h.kind.in_(list(kinds))).order_by(h.found_at.desc(), h.id.desc())
    if peer:
        q = q.where(h.peer_state == peer)
    if since:
        q = q.where(h.found_at >= datetime.combine(since, time.min, tzinfo=UTC))
    if limit:
        q = q.limit(limit)
    with db.read() as s:
        return [
            HitView(r.id, r.found_at, r.kind, KEY_STRENGTH[r.kind], r.pseudonym,
                    r.own_global_id, r.peer_state, r.peer_global_id)
            for r in s.scalars(q)
        ]  # fmt: skip
