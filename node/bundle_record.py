"""An incident as a bundle manifest carries it: an import-format record (docs/import-format.md).

The holder writes the incident in full, as it may share it (`incident_record`): every
field of the import format except `evidence`, which the manifest lists beside the
record with hashes and custody. A redaction leaves `people` empty or the `narrative`
out. The requester reads it back (`record_from_manifest`) and validates it with the
same parser as an import (node.importformat.parse_record) under the holder's state, so
a received record meets every rule a local one does.

Signed JSON has no floating-point numbers (federation.encoding), so coordinates travel
as the shortest decimal strings that read back to the same float (`repr`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from node.records import IncidentView

_COORDINATES = ("lat", "lon")


def _put(out: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        out[key] = value


def incident_record(view: IncidentView, *, redactions: Collection[str]) -> dict[str, Any]:
    """The record of `view` (read with personal fields) for a manifest, after `redactions`
    (`people`, `narrative`)."""
    if view.restricted_withheld:
        raise ValueError("the incident was read without its personal fields")
    loc = view.location
    location: dict[str, Any] = {"state": loc.state, "county": loc.county, "kind": loc.kind}
    _put(location, "address", loc.address)
    _put(location, "city", loc.city)
    for name in _COORDINATES:
        value = getattr(loc, name)
        if value is not None:
            location[name] = repr(float(value))
    record: dict[str, Any] = {
        "external_id": view.external_id,
        "occurred_at": view.occurred_at.isoformat(),
        "location": location,
        "conduct": list(view.conduct),
        "status": view.status,
        "source": view.source,
        "sharing": view.sharing,
    }
    if view.reported_at is not None:
        record["reported_at"] = view.reported_at.isoformat()
    if "narrative" not in redactions:
        _put(record, "narrative", view.narrative)
    agents = []
    for a in view.agents:
        agent: dict[str, Any] = {"role": a.role}
        for key in ("agency", "name", "badge", "unit", "vehicle_plate"):
            _put(agent, key, getattr(a, key))
        for key in ("masked", "identified_self", "body_camera"):
            _put(agent, key, getattr(a, key))
        agents.append(agent)
    record["agents"] = agents
    people = []
    if "people" not in redactions:
        for p in view.people:
            person: dict[str, Any] = {"role": p.role}
            _put(person, "name", p.name)
            _put(person, "contact", p.contact)
            people.append(person)
    record["people"] = people
    return record


def record_from_manifest(record: Mapping[str, Any]) -> dict[str, Any]:
    """The import-format record again, with coordinates as numbers. A coordinate that is
    not a decimal string is left as it is, for the import parser to refuse by name."""
    out = dict(record)
    location = out.get("location")
    if isinstance(location, Mapping):
        location = dict(location)
        for name in _COORDINATES:
            value = location.get(name)
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    continue
                if math.isfinite(number) and repr(number) == value:
                    location[name] = number
        out["location"] = location
    return out
