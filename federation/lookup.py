"""`compact agents lookup`: every state's index entries for one identifier key.

The key is normalised as at ingest (node.normalize.parse_query_key) and
pseudonymised through the compact's threshold OPRF (node.pseudonymise), so a
lookup costs what an ingested key costs: it counts against this node's daily
OPRF allowance at every share holder that evaluates it, and it is audited
(`agents_lookup`, with the key kind and its pseudonym, never the key itself).
The entries come from the node's replica (federation.matches describes the
tables), so the lookup itself sends nothing but the blinded key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select

from node import models as m
from node.db import Database

_P = m.ReplicaPseudonym
_I = m.ReplicaIncident
_A = m.ReplicaAgent


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


@dataclass(frozen=True)
class LookupEntry:
    """One agent of one current index entry that carries the key."""

    state: str
    global_id: str
    day: str
    county: str
    location_kind: str
    status: str
    conduct: tuple[str, ...]
    agency: str | None
    role: str
    masked: bool | None
    identified_self: bool | None
    body_camera: bool | None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "global_id": self.global_id,
            "day": self.day,
            "county": self.county,
            "location_kind": self.location_kind,
            "status": self.status,
            "conduct": list(self.conduct),
            "agency": self.agency,
            "role": self.role,
            "masked": self.masked,
            "identified_self": self.identified_self,
            "body_camera": self.body_camera,
        }


def entries_with(db: Database, pseudonym: str) -> list[LookupEntry]:
    """Every current entry whose agents carry `pseudonym`, by state, day and global id."""
    q = (
        select(
            _P.state, _P.global_id, _I.day, _I.county, _I.location_kind, _I.status, _I.conduct,
            _A.agency, _A.role, _A.masked, _A.identified_self, _A.body_camera,
        )
        .join(_I, and_(_I.state == _P.state, _I.log_index == _P.log_index))
        .join(
            _A,
            and_(_A.state == _P.state, _A.log_index == _P.log_index, _A.position == _P.position),
        )
        .where(_P.prefix == m.pseudonym_prefix(pseudonym), _P.pseudonym == pseudonym)
    )  # fmt: skip
    with db.read() as s:
        rows = s.execute(q).all()
    found = [
        LookupEntry(
            str(state), str(gid), str(day), str(county), str(kind), str(status),
            tuple(str(conduct).split()), agency, str(role), _flag(masked),
            _flag(identified_self), _flag(body_camera),
        )
        for (state, gid, day, county, kind, status, conduct, agency, role, masked,
             identified_self, body_camera) in rows
    ]  # fmt: skip
    return sorted(found, key=lambda e: (e.state, e.day, e.global_id))
