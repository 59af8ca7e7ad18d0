"""Domain types of a node's records: what domain code works with.

Parsed import records (`*Input`) and read views (`*View`) are frozen dataclasses;
protobuf messages never reach past `node.serde`, ORM rows never past `node.store`
and `node.queries`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone

from node.normalize import IdentifierKey


@dataclass(frozen=True, slots=True)
class Timestamp:
    """An instant and the UTC offset it was recorded with."""

    utc: datetime
    offset_min: int

    @classmethod
    def from_aware(cls, value: datetime) -> Timestamp:
        offset = value.utcoffset()
        assert offset is not None
        return cls(utc=value.astimezone(UTC), offset_min=int(offset.total_seconds() // 60))

    @classmethod
    def from_stored(cls, utc: datetime, offset_min: int | None) -> Timestamp:
        return cls(utc=utc, offset_min=offset_min or 0)

    @property
    def local(self) -> datetime:
        return self.utc.astimezone(timezone(timedelta(minutes=self.offset_min)))

    @property
    def local_date(self) -> date:
        return self.local.date()

    def isoformat(self) -> str:
        return self.local.isoformat()


@dataclass(frozen=True, slots=True)
class LineError:
    """Why one line of an import was rejected. Never contains the line's content."""

    line_number: int
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line_number}" if self.line_number else "file"
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LocationInput:
    state: str
    county: str
    kind: str
    address: str | None = None
    city: str | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True, slots=True)
class AgentInput:
    role: str
    agency: str | None = None
    name: str | None = None
    badge: str | None = None
    unit: str | None = None
    vehicle_plate: str | None = None
    masked: bool | None = None
    identified_self: bool | None = None
    body_camera: bool | None = None
    keys: tuple[IdentifierKey, ...] = ()


@dataclass(frozen=True, slots=True)
class PersonInput:
    role: str
    name: str | None = None
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class EvidenceInput:
    path: str
    media_type: str
    captured_at: Timestamp | None = None
    captured_by: str | None = None
    description: str | None = None

    @property
    def file_name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class IncidentInput:
    """One validated import line."""

    line_number: int
    external_id: str
    occurred_at: Timestamp
    location: LocationInput
    conduct: tuple[str, ...]
    status: str
    source: str
    sharing: str
    # SHA-256 (hex) of the canonical form of the line: a re-import compares it.
    canonical_hash: str
    reported_at: Timestamp | None = None
    narrative: str | None = None
    agents: tuple[AgentInput, ...] = ()
    people: tuple[PersonInput, ...] = ()
    evidence: tuple[EvidenceInput, ...] = ()


@dataclass(frozen=True, slots=True)
class CustodyView:
    kind: str
    at: Timestamp
    actor: str
    detail: str


@dataclass(frozen=True, slots=True)
class EvidenceView:
    sha256: str
    size: int
    media_type: str
    file_name: str
    captured_at: Timestamp | None
    captured_by: str | None
    description: str | None
    custody: tuple[CustodyView, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentView:
    role: str
    agency: str | None
    name: str | None
    badge: str | None
    unit: str | None
    vehicle_plate: str | None
    masked: bool | None
    identified_self: bool | None
    body_camera: bool | None
    keys: tuple[IdentifierKey, ...]


@dataclass(frozen=True, slots=True)
class IncidentView:
    """An incident as one caller may see it: personal fields are None when withheld."""

    global_id: str
    external_id: str
    state: str
    occurred_at: Timestamp
    reported_at: Timestamp | None
    location: LocationInput
    conduct: tuple[str, ...]
    status: str
    source: str
    sharing: str
    recorded_at: datetime
    narrative: str | None
    agents: tuple[AgentView, ...]
    people: tuple[PersonInput, ...]
    evidence: tuple[EvidenceView, ...]
    restricted_withheld: bool


@dataclass(frozen=True, slots=True)
class IncidentSummary:
    global_id: str
    external_id: str
    occurred_at: Timestamp
    county: str
    city: str | None
    location_kind: str
    conduct: tuple[str, ...]
    status: str
    agencies: tuple[str, ...]
    agent_count: int
    evidence_count: int
    # The recording state: another member's for an incident received in a bundle.
    state: str = ""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A search as a caller states it: raw text, validated by the node (`SearchFilters`)."""

    occurred_from: str = ""
    occurred_to: str = ""
    county: str = ""
    location_kind: str = ""
    conduct: tuple[str, ...] = ()
    agency: str = ""
    status: str = ""
    identifier_key: str = ""
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class SearchFilters:
    occurred_from: date | None = None
    occurred_to: date | None = None
    county: str | None = None
    location_kind: str | None = None
    conduct: tuple[str, ...] = ()
    agency: str | None = None
    status: str | None = None
    identifier_key: IdentifierKey | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    incidents: tuple[IncidentSummary, ...]
    next_page_token: str = ""


@dataclass(frozen=True)
class IngestReport:
    """What an import did: counts, and every rejected line with its reason."""

    imported: int = 0
    unchanged: int = 0
    rejected: int = 0
    evidence_stored: int = 0
    evidence_already_held: int = 0
    errors: tuple[LineError, ...] = field(default_factory=tuple)
