"""Index entries: what a node publishes about each incident (DESIGN.md section 4).

An entry holds the global incident id, the state, the day, county, location
kind, conduct, status, each agent's agency and role with its flags (masked,
identified themself, body camera) and its identifier keys as compact-wide
pseudonyms only, and the evidence count by media type. Never a narrative, a
person, a name, a badge, a unit, a plate, an address, coordinates or a city.
The schema is closed: an entry with any other field does not parse, so
personal data cannot travel in one by accident.

Entries are DSSE-signed by their state's node (payload type ``PAYLOAD_TYPE``)
and verified against the roster: the signing key must be the roster key of
the state the entry names (or, given the key history, any key that state had
in a roster version: an entry signed before a key rotation stays valid after
it). Corrections are new revisions of the same global id; a withdrawal is a
revision with ``withdrawn`` set and no content. Nothing is ever deleted.
Incidents with sharing level ``sealed`` are never indexed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from crypto import signing
from crypto.dsse import Envelope, VerificationPolicy, sign_envelope, verify_envelope
from crypto.errors import CryptoError
from federation.encoding import canonical_json, load_json_object
from federation.errors import FederationError
from federation.keyhistory import KeyHistory, member_signing_keys
from federation.roster import Roster
from federation.schema import CONTROL_IMPORT, MAX_REVISION
from node.records import IncidentView
from node.vocab import AGENCY, AGENT_ROLE, CONDUCT, LOCATION_KIND, STATES, STATUS

PAYLOAD_TYPE: Final = "application/vnd.compact.index-entry.v1+json"
FORMAT: Final = "compact-index-entry-v1"
MAX_PAYLOAD_BYTES: Final = 64 * 1024
KEY_KINDS: Final = ("badge", "name", "name_agency", "plate", "unit")
# Anchored with \Z, not $ (which also matches before a final newline), and ASCII digits.
_PSEUDONYM: Final = re.compile(r"^[0-9a-f]{128}\Z")  # RFC 9497 ristretto255-SHA512 output
_GLOBAL_ID: Final = re.compile(r"^[A-Z]{2}-[0-9a-f-]{36}\Z")
_DAY: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_MEDIA_TYPE: Final = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^.+_-]{0,63}/[a-z0-9][a-z0-9!#$&^.+_-]{0,126}\Z"
)
_TOP: Final = frozenset({"format", "state", "global_id", "revision", "withdrawn", "content"})
_CONTENT: Final = frozenset(
    {"day", "county", "location_kind", "conduct", "status", "agents", "evidence"}
)
_AGENT: Final = frozenset(
    {"agency", "role", "masked", "identified_self", "body_camera", "pseudonyms"}
)


class IndexEntryError(FederationError):
    """An index entry that must not be accepted (malformed, forged, or personal)."""


@dataclass(frozen=True)
class AgentEntry:
    agency: str | None
    role: str
    masked: bool | None
    identified_self: bool | None
    body_camera: bool | None
    pseudonyms: Mapping[str, str]  # key kind -> pseudonym (hex)


@dataclass(frozen=True)
class EntryContent:
    day: str
    county: str
    location_kind: str
    conduct: tuple[str, ...]
    status: str
    agents: tuple[AgentEntry, ...]
    evidence: Mapping[str, int] = field(default_factory=dict)  # media type -> count


@dataclass(frozen=True)
class IndexEntry:
    state: str
    global_id: str
    revision: int
    content: EntryContent | None  # None: withdrawn

    @property
    def withdrawn(self) -> bool:
        return self.content is None

    def payload(self) -> bytes:
        c = self.content
        return canonical_json(
            {
                "format": FORMAT,
                "state": self.state,
                "global_id": self.global_id,
                "revision": self.revision,
                "withdrawn": c is None,
                "content": None
                if c is None
                else {
                    "day": c.day,
                    "county": c.county,
                    "location_kind": c.location_kind,
                    "conduct": list(c.conduct),
                    "status": c.status,
                    "agents": [
                        {
                            "agency": a.agency,
                            "role": a.role,
                            "masked": a.masked,
                            "identified_self": a.identified_self,
                            "body_camera": a.body_camera,
                            "pseudonyms": dict(sorted(a.pseudonyms.items())),
                        }
                        for a in c.agents
                    ],
                    "evidence": dict(sorted(c.evidence.items())),
                },
            }
        )

    @classmethod
    def from_payload(cls, data: bytes) -> IndexEntry:
        """Parse an entry (strict, closed schema, canonical form only)."""
        try:
            obj = load_json_object(data, limit=MAX_PAYLOAD_BYTES)
            entry = _parse(obj)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
            raise IndexEntryError("index entry: malformed") from None
        # The entry must re-encode to exactly these bytes: one entry, one encoding (a list
        # written as an object, {} for [], parses to the same entry but is not its form).
        if entry.payload() != data:
            raise IndexEntryError("index entry: not in canonical form")
        return entry


def build_entry(view: IncidentView, *, revision: int, pseudonyms: Mapping[str, str]) -> IndexEntry:
    """The entry for one incident.

    `pseudonyms` maps each identifier key ("kind:value") to its pseudonym (hex).
    IndexEntryError for a sealed incident (never indexed) or a key without a pseudonym.
    """
    if view.sharing == "sealed":
        raise IndexEntryError("sealed incidents are not indexed")
    agents = []
    for agent in view.agents:
        found: dict[str, str] = {}
        for key in agent.keys:
            p = pseudonyms.get(str(key))
            if p is None:
                raise IndexEntryError("an identifier key has no pseudonym yet")
            found[key.kind] = p
        agents.append(
            AgentEntry(
                agent.agency,
                agent.role,
                agent.masked,
                agent.identified_self,
                agent.body_camera,
                found,
            )
        )
    evidence = Counter(e.media_type for e in view.evidence)
    content = EntryContent(
        day=view.occurred_at.local_date.isoformat(),
        county=view.location.county,
        location_kind=view.location.kind,
        conduct=tuple(sorted(view.conduct)),
        status=view.status,
        agents=tuple(agents),
        evidence=dict(evidence),
    )
    entry = IndexEntry(view.state, view.global_id, revision, content)
    IndexEntry.from_payload(entry.payload())  # the same checks a receiving peer applies
    return entry


def withdrawal(state: str, global_id: str, *, revision: int) -> IndexEntry:
    return IndexEntry(state, global_id, revision, None)


def sign_entry(entry: IndexEntry, key: signing.SigningKey) -> Envelope:
    return sign_envelope(PAYLOAD_TYPE, entry.payload(), [key])


def verify_entry(
    envelope: Envelope, roster: Roster, *, state: str, history: KeyHistory | None = None
) -> IndexEntry:
    """An entry published by `state`'s node, verified against the roster before it is parsed
    (with `history`, signed by any key `state` had in a roster version)."""
    return EntryVerifier(roster, state, history=history).verify(envelope)


class EntryVerifier:
    """Verifies many entries of one state against one roster (the policy is built once).

    `state` must be a member of `roster`. Without `history` only its key in `roster`
    verifies; with it, any key the state had in a roster version (entries stay in a
    log after the state rotated its key)."""

    def __init__(self, roster: Roster, state: str, *, history: KeyHistory | None = None) -> None:
        member = roster.member(state)
        if member is None:
            raise IndexEntryError(f"{state} is not a member of roster version {roster.version}")
        self.state = state
        self._policy = VerificationPolicy(list(member_signing_keys(member, history)), 1)
        self._prefix = f"{state}-"

    def verify(self, envelope: Envelope) -> IndexEntry:
        try:
            verified = verify_envelope(envelope, self._policy, payload_type=PAYLOAD_TYPE)
        except CryptoError:
            raise IndexEntryError(f"the entry is not signed by {self.state}'s roster key") from None
        entry = IndexEntry.from_payload(verified.payload)
        if entry.state != self.state or not entry.global_id.startswith(self._prefix):
            raise IndexEntryError(f"{self.state}'s key signed an entry of another state")
        return entry


# --- parsing ---------------------------------------------------------------------------


def _parse(obj: dict[str, Any]) -> IndexEntry:
    _fields(obj, _TOP)
    if obj["format"] != FORMAT or obj["state"] not in STATES:
        raise ValueError("format or state")
    if not _GLOBAL_ID.match(obj["global_id"]) or type(obj["revision"]) is not int:
        raise ValueError("id or revision")
    if not 1 <= obj["revision"] <= MAX_REVISION or type(obj["withdrawn"]) is not bool:
        raise ValueError("revision or withdrawn")
    if obj["withdrawn"]:
        if obj["content"] is not None:
            raise ValueError("a withdrawal has no content")
        return IndexEntry(obj["state"], obj["global_id"], obj["revision"], None)
    c = obj["content"]
    _fields(c, _CONTENT)
    if (
        not _is_day(c["day"])
        or not isinstance(c["county"], str)
        or not 0 < len(c["county"]) <= 1000
        or CONTROL_IMPORT.search(c["county"])  # the import format's rule for the county
    ):
        raise ValueError("day or county")
    if c["location_kind"] not in LOCATION_KIND or c["status"] not in STATUS:
        raise ValueError("vocabulary")
    if not c["conduct"] or any(x not in CONDUCT for x in c["conduct"]):
        raise ValueError("conduct")
    if len(c["agents"]) > 100 or len(c["evidence"]) > 100:
        raise ValueError("too many")
    agents = tuple(_agent(a) for a in c["agents"])
    evidence = {}
    for media_type, count in c["evidence"].items():
        if not _MEDIA_TYPE.match(media_type) or type(count) is not int or count < 1:
            raise ValueError("evidence")
        evidence[media_type] = count
    content = EntryContent(
        c["day"],
        c["county"],
        c["location_kind"],
        tuple(c["conduct"]),
        c["status"],
        agents,
        evidence,
    )
    return IndexEntry(obj["state"], obj["global_id"], obj["revision"], content)


def _agent(a: Any) -> AgentEntry:
    _fields(a, _AGENT)
    if a["agency"] is not None and a["agency"] not in AGENCY:
        raise ValueError("agency")
    if a["role"] not in AGENT_ROLE:
        raise ValueError("role")
    for flag in ("masked", "identified_self", "body_camera"):
        if a[flag] is not None and type(a[flag]) is not bool:
            raise ValueError("flag")
    p = a["pseudonyms"]
    if not isinstance(p, dict) or any(
        k not in KEY_KINDS or not _PSEUDONYM.match(v) for k, v in p.items()
    ):
        raise ValueError("pseudonyms")
    return AgentEntry(
        a["agency"], a["role"], a["masked"], a["identified_self"], a["body_camera"], p
    )


def _is_day(value: object) -> bool:
    """A calendar date as YYYY-MM-DD: replicas read it back with `date.fromisoformat`."""
    if not isinstance(value, str) or not _DAY.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _fields(obj: Any, expected: frozenset[str]) -> None:
    if not isinstance(obj, dict) or set(obj) != expected:
        raise ValueError("fields")
