"""The import format (DESIGN.md section 3): one JSON object per line, validated.

`parse_record` turns one decoded JSON value into an `IncidentInput` or the list
of everything wrong with it, each error naming its field (`location.kind`,
`agents[0].badge`). Unknown fields are errors, so a misspelt optional field is
never silently dropped. Error reasons never repeat the offending value: import
lines hold personal data, and errors reach logs and terminals.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from node.config import LimitSettings
from node.normalize import identifier_keys
from node.records import (
    AgentInput,
    EvidenceInput,
    IncidentInput,
    LineError,
    LocationInput,
    PersonInput,
    Timestamp,
)
from node.vocab import (
    AGENCY,
    AGENT_ROLE,
    CONDUCT,
    DEFAULT_SHARING,
    LOCATION_KIND,
    PERSON_ROLE,
    SHARING,
    SOURCE,
    STATES,
    STATUS,
)

_TOP: Final = frozenset(
    {
        "external_id",
        "occurred_at",
        "reported_at",
        "location",
        "conduct",
        "status",
        "source",
        "sharing",
        "narrative",
        "agents",
        "people",
        "evidence",
    }
)
_LOCATION: Final = frozenset({"address", "city", "county", "state", "kind", "lat", "lon"})
_AGENT: Final = frozenset(
    {
        "name",
        "badge",
        "agency",
        "unit",
        "vehicle_plate",
        "masked",
        "identified_self",
        "body_camera",
        "role",
    }
)
_PERSON: Final = frozenset({"role", "name", "contact"})
_EVIDENCE: Final = frozenset({"path", "media_type", "captured_at", "captured_by", "description"})
# ASCII only and anchored with \Z (not $, which also matches before a final newline): once
# lowercased, the federation's media type rule (federation.bundle, federation.index_entry).
_MEDIA_TYPE: Final = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9_!#$&^.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9_!#$&^.+-]{0,126}\Z"
)
# Control characters other than tab, newline and carriage return; NUL breaks PostgreSQL.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Lone surrogates (JSON "\ud800" escapes): not Unicode, they cannot be encoded as UTF-8.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_TIMESTAMP: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$"
)


class _Fields:
    """Reads typed fields of one JSON object, collecting errors with their paths."""

    def __init__(self, obj: Mapping[str, Any], prefix: str, errors: list[tuple[str, str]]):
        self.obj = obj
        self.prefix = prefix
        self.errors = errors

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, reason: str) -> None:
        self.errors.append((self.name(key), reason))

    def only(self, allowed: frozenset[str]) -> None:
        for key in sorted(set(self.obj) - allowed):
            self.errors.append((self.name(key), "unknown field"))

    def text(self, key: str, *, max_chars: int, required: bool = False) -> str | None:
        value = self.obj.get(key)
        if value is None or value == "":
            if required:
                self.fail(key, "required" if value is None else "must not be empty")
            return None
        if not isinstance(value, str):
            self.fail(key, "expected a string")
            return None
        if len(value) > max_chars:
            self.fail(key, f"longer than the limit of {max_chars} characters")
            return None
        if _CONTROL.search(value):
            self.fail(key, "contains control characters")
            return None
        if _SURROGATE.search(value):
            self.fail(key, "contains an unpaired surrogate (not valid Unicode)")
            return None
        return value

    def vocab(self, key: str, values: frozenset[str], *, required: bool = False) -> str | None:
        value = self.text(key, max_chars=64, required=required)
        if value is not None and value not in values:
            self.fail(key, "not one of the allowed values")
            return None
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        self.fail(key, "expected true or false")
        return None

    def number(self, key: str, lo: float, hi: float) -> float | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, "expected a number")
            return None
        if not lo <= value <= hi:
            self.fail(key, f"must be between {lo} and {hi}")
            return None
        return float(value)

    def timestamp(self, key: str, *, required: bool = False) -> Timestamp | None:
        value = self.text(key, max_chars=40, required=required)
        if value is None:
            return None
        if not _TIMESTAMP.match(value):
            self.fail(key, "expected an RFC 3339 timestamp with a UTC offset")
            return None
        try:
            parsed = datetime.fromisoformat(value)
            # In UTC: year 1 with a positive offset, or 9999 with a negative one, overflows.
            return Timestamp.from_aware(parsed)
        except (ValueError, OverflowError):
            self.fail(key, "not a valid date and time")
            return None

    def objects(self, key: str, max_items: int) -> list[tuple[str, Mapping[str, Any]]]:
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, "expected a list")
            return []
        if len(value) > max_items:
            self.fail(key, f"more than the limit of {max_items} items")
            return []
        out: list[tuple[str, Mapping[str, Any]]] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                out.append((f"{self.name(key)}[{i}].", item))
            else:
                self.errors.append((f"{self.name(key)}[{i}]", "expected an object"))
        return out


def evidence_path_problem(path: str) -> str | None:
    """Why an evidence path may not be used as given (lexical checks only), or None."""
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return "must be a relative path inside the import folder"
    if "\\" in path:
        return "must use / as the separator"
    parts = path.split("/")
    if any(p == ".." for p in parts):
        return "must not leave the import folder (..)"
    if any(p == "" for p in parts[:-1]) or parts[-1] in ("", "."):
        return "must name a file"
    return None


def canonical_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of the record's canonical JSON: key order and spacing do not matter."""
    data = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def _agent(f: _Fields, state: str, limits: LimitSettings) -> AgentInput:
    f.only(_AGENT)
    n = limits.max_text_chars
    agency = f.vocab("agency", AGENCY)
    name, badge = f.text("name", max_chars=n), f.text("badge", max_chars=n)
    unit, plate = f.text("unit", max_chars=n), f.text("vehicle_plate", max_chars=n)
    return AgentInput(
        role=f.vocab("role", AGENT_ROLE) or "unknown",
        agency=agency,
        name=name,
        badge=badge,
        unit=unit,
        vehicle_plate=plate,
        masked=f.boolean("masked"),
        identified_self=f.boolean("identified_self"),
        body_camera=f.boolean("body_camera"),
        keys=tuple(
            identifier_keys(
                agency=agency, name=name, badge=badge, unit=unit, plate=plate, incident_state=state
            )
        ),
    )


def _location(f: _Fields, node_state: str, limits: LimitSettings) -> LocationInput | None:
    f.only(_LOCATION)
    n = limits.max_text_chars
    state = f.vocab("state", STATES, required=True)
    if state is not None and state != node_state:
        f.fail("state", f"this node records incidents of {node_state}")
        state = None
    county = f.text("county", max_chars=n, required=True)
    kind = f.vocab("kind", LOCATION_KIND, required=True)
    lat, lon = f.number("lat", -90, 90), f.number("lon", -180, 180)
    if (f.obj.get("lat") is None) != (f.obj.get("lon") is None):
        f.fail("lat" if f.obj.get("lat") is None else "lon", "lat and lon go together")
    address, city = f.text("address", max_chars=n), f.text("city", max_chars=n)
    if state is None or county is None or kind is None:
        return None
    return LocationInput(state, county, kind, address, city, lat, lon)


def parse_record(
    line_number: int, value: Any, *, node_state: str, limits: LimitSettings
) -> IncidentInput | list[LineError]:
    """Validate one decoded import record."""
    if not isinstance(value, dict):
        return [LineError(line_number, "", "expected a JSON object")]
    errors: list[tuple[str, str]] = []
    top = _Fields(value, "", errors)
    top.only(_TOP)
    n = limits.max_text_chars
    external_id = top.text("external_id", max_chars=n, required=True)
    occurred_at = top.timestamp("occurred_at", required=True)
    reported_at = top.timestamp("reported_at")
    status = top.vocab("status", STATUS, required=True)
    source = top.vocab("source", SOURCE, required=True)
    sharing = top.vocab("sharing", SHARING) or DEFAULT_SHARING
    narrative = top.text("narrative", max_chars=limits.max_narrative_chars)

    location: LocationInput | None = None
    raw_location = value.get("location")
    if not isinstance(raw_location, dict):
        top.fail("location", "required" if raw_location is None else "expected an object")
    else:
        location = _location(_Fields(raw_location, "location.", errors), node_state, limits)

    conduct = _conduct(top, value.get("conduct"))
    state = location.state if location else node_state
    agents = [
        _agent(_Fields(o, p, errors), state, limits)
        for p, o in top.objects("agents", limits.max_list_items)
    ]
    people = [
        _person(_Fields(o, p, errors), limits)
        for p, o in top.objects("people", limits.max_list_items)
    ]
    evidence = [
        _evidence(_Fields(o, p, errors), limits)
        for p, o in top.objects("evidence", limits.max_list_items)
    ]
    if errors:
        return [LineError(line_number, f, r) for f, r in errors]
    assert external_id
    assert occurred_at
    assert location
    assert status
    assert source
    return IncidentInput(
        line_number=line_number,
        external_id=external_id,
        occurred_at=occurred_at,
        reported_at=reported_at,
        location=location,
        conduct=conduct,
        status=status,
        source=source,
        sharing=sharing,
        narrative=narrative,
        agents=tuple(agents),
        people=tuple(p for p in people if p is not None),
        evidence=tuple(e for e in evidence if e is not None),
        canonical_hash=canonical_hash(value),
    )


def _conduct(top: _Fields, raw: Any) -> tuple[str, ...]:
    if raw is None:
        top.fail("conduct", "required")
        return ()
    if not isinstance(raw, list) or not raw:
        top.fail("conduct", "expected a non-empty list")
        return ()
    out: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str):
            top.fail(f"conduct[{i}]", "expected a string")
        elif item not in CONDUCT:
            top.fail(f"conduct[{i}]", "not one of the allowed values")
        elif item not in out:
            out.append(item)
    return tuple(sorted(out))


def _person(f: _Fields, limits: LimitSettings) -> PersonInput | None:
    f.only(_PERSON)
    role = f.vocab("role", PERSON_ROLE, required=True)
    name = f.text("name", max_chars=limits.max_text_chars)
    contact = f.text("contact", max_chars=limits.max_text_chars)
    return PersonInput(role, name, contact) if role else None


def _evidence(f: _Fields, limits: LimitSettings) -> EvidenceInput | None:
    f.only(_EVIDENCE)
    path = f.text("path", max_chars=limits.max_text_chars, required=True)
    if path is not None and (problem := evidence_path_problem(path)):
        f.fail("path", problem)
        path = None
    media_type = f.text("media_type", max_chars=200) or "application/octet-stream"
    if not _MEDIA_TYPE.match(media_type):
        f.fail("media_type", "expected a media type such as video/mp4")
    captured_at = f.timestamp("captured_at")
    captured_by = f.text("captured_by", max_chars=limits.max_text_chars)
    description = f.text("description", max_chars=limits.max_narrative_chars)
    if path is None:
        return None
    return EvidenceInput(path, media_type.lower(), captured_at, captured_by, description)


def decode_line(line_number: int, raw: bytes, limits: LimitSettings) -> Any | LineError:
    """UTF-8 and JSON decoding of one line, bounded by the line limit."""
    if len(raw) > limits.max_line_bytes:
        return LineError(line_number, "", f"longer than the limit of {limits.max_line_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return LineError(line_number, "", "not valid UTF-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        return LineError(line_number, "", f"not valid JSON ({e.msg} at column {e.colno})")
    except ValueError:  # an integer of more digits than int() converts (sys.int_info)
        return LineError(line_number, "", "not valid JSON (a number with too many digits)")
    except RecursionError:
        return LineError(line_number, "", "not valid JSON (nested too deeply)")
