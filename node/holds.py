"""Legal holds: what a matter under hold keeps on this node, and the one way blobs go.

A matter under legal hold keeps, on every member node that holds them, each incident
its exhibits name and the evidence files they cover: every file of an incident that is
an exhibit as a whole, and the one file of a file exhibit. `refresh` writes those as
`legal_holds` rows inside the transaction that changes what a hold covers (a matter's
revision, a bundle stored); their RESTRICT keys make the database itself refuse to
delete a held incident or blob.

Files leave the blob store through `remove_unreferenced` only (tests/test_holds.py
checks that nothing else calls `BlobStore.remove`): under the store's lock it keeps
every blob the database references, held ones among them. Anything that would
re-encrypt or rewrite evidence must call `check_not_held` first.

User guide: docs/matters.md ("Legal hold").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from node import models as m
from node.errors import NodeError

if TYPE_CHECKING:
    from node.ingest import NodeStorage

_CHUNK = 500


class LegalHoldError(NodeError):
    """An operation refused because a matter's legal hold covers what it would change."""


def refresh(s: Session, matter_row_id: int) -> None:
    """Rewrite the holds of one matter from its current exhibits and hold flag, in `s`."""
    s.execute(delete(m.LegalHold).where(m.LegalHold.matter_id == matter_row_id))
    under_hold = s.scalar(select(m.Matter.legal_hold).where(m.Matter.id == matter_row_id))
    if not under_hold:
        return
    exhibits = s.execute(
        select(m.Exhibit.global_id, m.Exhibit.evidence_position, m.Exhibit.evidence_sha256)
        .where(m.Exhibit.matter_id == matter_row_id)
        .order_by(m.Exhibit.seq)
    ).all()
    incidents: dict[str, int] = {}
    gids = sorted({gid for gid, _, _ in exhibits})
    for i in range(0, len(gids), _CHUNK):
        found = s.execute(
            select(m.Incident.global_id, m.Incident.id).where(
                m.Incident.global_id.in_(gids[i : i + _CHUNK])
            )
        )
        incidents.update((gid, incident_id) for gid, incident_id in found)
    # Every file of the incidents held here, read in chunks (not a query per exhibit).
    files: dict[int, list[tuple[int, str]]] = {}
    ids = sorted(set(incidents.values()))
    for i in range(0, len(ids), _CHUNK):
        for owner, at, digest in s.execute(
            select(
                m.EvidenceItem.incident_id, m.EvidenceItem.position, m.EvidenceItem.sha256
            ).where(m.EvidenceItem.incident_id.in_(ids[i : i + _CHUNK]))
        ):
            files.setdefault(owner, []).append((at, digest))
    rows: set[tuple[int, str | None]] = set()
    for gid, position, sha256 in exhibits:
        held = incidents.get(gid)
        if held is None:  # not held here (yet): held when its bundle is stored
            continue
        rows.add((held, None))
        rows.update(
            (held, digest)
            for at, digest in files.get(held, [])
            if position < 0 or (at == position and digest == sha256)
        )
    s.add_all(
        m.LegalHold(matter_id=matter_row_id, incident_id=incident_id, blob_sha256=digest)
        for incident_id, digest in sorted(rows, key=lambda r: (r[0], r[1] or ""))
    )
    s.flush()


def refresh_for_incident(s: Session, global_id: str) -> None:
    """Rewrite the holds of every held matter with an exhibit of `global_id` (its bundle
    has just been stored here), in `s`."""
    matters = s.scalars(
        select(m.Matter.id)
        .join(m.Exhibit, m.Exhibit.matter_id == m.Matter.id)
        .where(m.Matter.legal_hold.is_(True), m.Exhibit.global_id == global_id)
        .distinct()
    ).all()
    for matter_row_id in matters:
        refresh(s, matter_row_id)


def held_by(s: Session, digests: Sequence[str]) -> dict[str, list[str]]:
    """For each of `digests` under hold, the matters that hold it."""
    found: dict[str, set[str]] = {}
    for i in range(0, len(digests), _CHUNK):
        rows = s.execute(
            select(m.LegalHold.blob_sha256, m.Matter.global_id)
            .join(m.Matter, m.Matter.id == m.LegalHold.matter_id)
            .where(m.LegalHold.blob_sha256.in_(list(digests[i : i + _CHUNK])))
        )
        for digest, matter in rows:
            if digest is not None:
                found.setdefault(digest, set()).add(matter)
    return {digest: sorted(matters) for digest, matters in found.items()}


def check_not_held(s: Session, digests: Sequence[str]) -> None:
    """Raise LegalHoldError if a matter's hold covers any of `digests`."""
    held = held_by(s, digests)
    if held:
        matters = sorted({mt for names in held.values() for mt in names})
        raise LegalHoldError(
            f"{len(held)} evidence file(s) are under legal hold by matter(s)"
            f" {', '.join(matters)}; release the hold first"
        )


def remove_unreferenced(storage: NodeStorage, digests: Iterable[str]) -> list[str]:
    """Delete the blobs among `digests` that no record references (files an import or a
    bundle placed and then did not store); the ones removed. A blob the database
    references, and so any held blob, stays."""
    wanted = sorted(set(digests))
    if not wanted:
        return []
    removed: list[str] = []
    with storage.blobs.locked(), storage.db.read() as s:
        keep: set[str] = set()
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            keep.update(s.scalars(select(m.Blob.sha256).where(m.Blob.sha256.in_(chunk))))
        keep.update(held_by(s, wanted))
        for digest in wanted:
            if digest not in keep:
                storage.blobs.remove(digest)
                removed.append(digest)
    return removed
