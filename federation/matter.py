"""Matters: the signed document that names a case's member states and its exhibits.

A matter (a joint lawsuit, a prosecution) belongs to the state that created it, its
*owner*. Each revision is the canonical JSON (federation.encoding) of a closed schema
with ``"format": "compact-matter-v1"``, signed as a DSSE envelope (``MATTER_TYPE``) by
the owner's roster key, entered in the owner's transparency log and shared with every
member state, which verifies it against the roster and logs it too (docs/matters.md).

Exhibit numbers are Bates-style: the matter's prefix, a hyphen and six digits
(``IL-MN-000001``). The owner allocates them in ascending order and never reuses one:
a later revision keeps every exhibit of an earlier one, unchanged and with its number
(``check_successor``). An exhibit is a whole incident (``evidence`` None) or one
evidence item of it, named by its position in the incident and its SHA-256.

Everything here is pure: no I/O, no database, no clock. Constructors check every field
and raise ``ValueError`` naming the field; parsing and verification of untrusted input
raise ``MatterFormatError``, and nothing else. No message holds a field's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from crypto import signing
from crypto.dsse import Envelope
from federation import schema
from federation.encoding import canonical_json
from federation.errors import FederationError
from federation.keyhistory import KeyHistory
from federation.roster import Roster

__all__ = [
    "MATTER_FORMAT",
    "MATTER_TYPE",
    "MAX_BATES_PREFIX",
    "MAX_EXHIBITS",
    "MAX_MATTER_BYTES",
    "MAX_TITLE",
    "ExhibitEvidence",
    "Matter",
    "MatterExhibit",
    "MatterFormatError",
    "check_successor",
    "exhibit_number",
    "matter_id",
    "sign_matter",
    "verify_matter",
]

MATTER_TYPE: Final = "application/vnd.compact.matter.v1+json"
MATTER_FORMAT: Final = "compact-matter-v1"

# A log entry is at most 1 MiB (node.translog.MAX_ENTRY_BYTES): a matter stays well
# below it. 10,000 exhibits with short descriptions fit; long descriptions fewer.
MAX_MATTER_BYTES: Final = 700 * 1024
MAX_EXHIBITS: Final = 10_000
MAX_TITLE: Final = 300
MAX_BATES_PREFIX: Final = 20
MAX_STATES: Final = 60
_DIGITS: Final = 6

_SLUG: Final = re.compile(r"[A-Z0-9](?:[A-Z0-9-]{0,38}[A-Z0-9])?")
_MATTER_ID: Final = re.compile(rf"([A-Z]{{2}}):({_SLUG.pattern})")
_BATES: Final = re.compile(r"[A-Z0-9]+(?:-[A-Z0-9]+)*")

_MATTER_FIELDS: Final = frozenset(
    {
        "format",
        "matter_id",
        "owner",
        "revision",
        "title",
        "states",
        "bates_prefix",
        "legal_hold",
        "exhibits",
        "updated_at",
    }
)
_EXHIBIT_FIELDS: Final = frozenset({"number", "global_id", "evidence", "description", "added_at"})
_EVIDENCE_FIELDS: Final = frozenset({"position", "sha256"})


class MatterFormatError(FederationError):
    """A matter document that must not be accepted: malformed, forged or inconsistent.

    The message names the field, never a field's value.
    """


def matter_id(owner: str, slug: str) -> str:
    """The id of `owner`'s matter `slug` (1 to 40 of A-Z, 0-9 and inner hyphens)."""
    schema.state(owner, "owner")
    schema.match(slug, "id", _SLUG, "1 to 40 capital letters, digits and inner hyphens")
    return f"{owner}:{slug}"


def exhibit_number(bates_prefix: str, seq: int) -> str:
    """Exhibit `seq` (from 1) of a matter with `bates_prefix`: ``PREFIX-000001``."""
    schema.match(bates_prefix, "bates_prefix", _BATES, "a Bates prefix")
    if type(seq) is not int or not 1 <= seq < 10**_DIGITS:
        schema.fail("seq", f"expected an integer from 1 to {10**_DIGITS - 1}")
    return f"{bates_prefix}-{seq:0{_DIGITS}d}"


def _seq(number: str, bates_prefix: str, where: str) -> int:
    """The sequence number in `number`, which must be `bates_prefix`, '-', six digits."""
    head, _, digits = number.rpartition("-")
    if head != bates_prefix or len(digits) != _DIGITS or not digits.isascii():
        schema.fail(where, "expected the matter's Bates prefix, a hyphen and six digits")
    if not digits.isdigit() or int(digits) == 0:
        schema.fail(where, "expected the matter's Bates prefix, a hyphen and six digits")
    return int(digits)


@dataclass(frozen=True)
class ExhibitEvidence:
    """One evidence item of an incident: its position in the incident and its SHA-256."""

    position: int
    sha256: str

    def __post_init__(self) -> None:
        schema.integer(self.position, "position", 0)
        schema.hex64(self.sha256, "sha256")

    def to_obj(self) -> dict[str, Any]:
        return {"position": self.position, "sha256": self.sha256}


@dataclass(frozen=True)
class MatterExhibit:
    """One exhibit: an incident (`evidence` None) or one of its evidence items."""

    number: str
    global_id: str
    evidence: ExhibitEvidence | None
    description: str
    added_at: datetime

    def __post_init__(self) -> None:
        schema.string(self.number, "number", max_chars=MAX_BATES_PREFIX + 1 + _DIGITS,
                      control=schema.CONTROL_NAME)  # fmt: skip
        schema.global_id(self.global_id, "global_id", None)
        if self.evidence is not None and not isinstance(self.evidence, ExhibitEvidence):
            schema.fail("evidence", "expected an ExhibitEvidence or None")
        schema.text(self.description, "description")
        schema.check_time(self.added_at, "added_at")

    @property
    def origin(self) -> str:
        """The state whose incident this is."""
        return self.global_id[:2]

    @property
    def key(self) -> tuple[str, int]:
        """What an exhibit is of, as the matter keeps it unique: (global id, position or -1)."""
        return self.global_id, -1 if self.evidence is None else self.evidence.position

    def to_obj(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "global_id": self.global_id,
            "evidence": None if self.evidence is None else self.evidence.to_obj(),
            "description": self.description,
            "added_at": schema.format_time(self.added_at),
        }


@dataclass(frozen=True)
class Matter:
    """One revision of a matter, as its owner signs it."""

    matter_id: str
    owner: str
    revision: int
    title: str
    states: tuple[str, ...]
    bates_prefix: str
    legal_hold: bool
    exhibits: tuple[MatterExhibit, ...]
    updated_at: datetime

    def __post_init__(self) -> None:
        found = _MATTER_ID.fullmatch(self.matter_id) if isinstance(self.matter_id, str) else None
        if found is None:
            schema.fail("matter_id", "expected STATE:ID (ID: 1 to 40 of A-Z, 0-9, inner hyphens)")
        schema.state(self.owner, "owner")
        if found.group(1) != self.owner:
            schema.fail("matter_id", "does not begin with the owner's code")
        schema.integer(self.revision, "revision", 1)
        if self.revision > schema.MAX_REVISION:
            schema.fail("revision", f"expected at most {schema.MAX_REVISION}")
        schema.string(self.title, "title", max_chars=MAX_TITLE, control=schema.CONTROL_NAME)
        states = schema.as_tuple(self.states, "states", MAX_STATES)
        for i, code in enumerate(states):
            schema.state(code, f"states[{i}]")
        schema.sorted_unique(states, "states")
        if self.owner not in states:
            schema.fail("states", "does not include the owner")
        schema.match(
            self.bates_prefix, "bates_prefix", _BATES,
            "capital letters and digits in groups joined by single hyphens",
        )  # fmt: skip
        if len(self.bates_prefix) > MAX_BATES_PREFIX:
            schema.fail("bates_prefix", f"longer than {MAX_BATES_PREFIX} characters")
        if type(self.legal_hold) is not bool:
            schema.fail("legal_hold", "expected a boolean")
        schema.check_time(self.updated_at, "updated_at")
        self._check_exhibits(schema.as_tuple(self.exhibits, "exhibits", MAX_EXHIBITS))

    def _check_exhibits(self, exhibits: tuple[Any, ...]) -> None:
        last = 0
        seen: set[tuple[str, int]] = set()
        for i, exhibit in enumerate(exhibits):
            where = f"exhibits[{i}]"
            if not isinstance(exhibit, MatterExhibit):
                schema.fail(where, "expected a MatterExhibit")
            seq = _seq(exhibit.number, self.bates_prefix, f"{where}.number")
            if seq <= last:
                schema.fail(f"{where}.number", "not after the exhibit before it")
            last = seq
            if exhibit.origin not in self.states:
                schema.fail(f"{where}.global_id", "an incident of a state not in the matter")
            if exhibit.key in seen:
                schema.fail(where, "the same incident or evidence item as an earlier exhibit")
            seen.add(exhibit.key)
            if exhibit.added_at > self.updated_at:
                schema.fail(f"{where}.added_at", "later than the matter's updated_at")

    # --- derived ------------------------------------------------------------------------

    def next_number(self) -> str:
        """The number the next exhibit gets: one past the last ever allocated."""
        last = _seq(self.exhibits[-1].number, self.bates_prefix, "number") if self.exhibits else 0
        return exhibit_number(self.bates_prefix, last + 1)

    def exhibit(self, number: str) -> MatterExhibit | None:
        return next((e for e in self.exhibits if e.number == number), None)

    def revised(self, updated_at: datetime, **changes: Any) -> Matter:
        """The next revision with `changes` (checked as any revision is)."""
        return replace(self, revision=self.revision + 1, updated_at=updated_at, **changes)

    # --- encoding -----------------------------------------------------------------------

    def to_obj(self) -> dict[str, Any]:
        return {
            "format": MATTER_FORMAT,
            "matter_id": self.matter_id,
            "owner": self.owner,
            "revision": self.revision,
            "title": self.title,
            "states": list(self.states),
            "bates_prefix": self.bates_prefix,
            "legal_hold": self.legal_hold,
            "exhibits": [e.to_obj() for e in self.exhibits],
            "updated_at": schema.format_time(self.updated_at),
        }

    def payload(self) -> bytes:
        return canonical_json(self.to_obj())

    @classmethod
    def from_payload(cls, data: bytes) -> Matter:
        """Parse a matter (strict, closed schema, canonical form only)."""
        return schema.parse(data, MAX_MATTER_BYTES, "matter", _matter_from_obj, MatterFormatError)


def _evidence_from_obj(obj: object) -> ExhibitEvidence | None:
    if obj is None:
        return None
    fields = schema.fields(obj, _EVIDENCE_FIELDS)
    return ExhibitEvidence(position=fields["position"], sha256=fields["sha256"])


def _exhibit_from_obj(obj: object) -> MatterExhibit:
    fields = schema.fields(obj, _EXHIBIT_FIELDS)
    with schema.within("evidence"):
        evidence = _evidence_from_obj(fields["evidence"])
    return MatterExhibit(
        number=fields["number"],
        global_id=fields["global_id"],
        evidence=evidence,
        description=fields["description"],
        added_at=schema.parse_time(fields["added_at"], "added_at"),
    )


def _matter_from_obj(obj: dict[str, Any]) -> Matter:
    schema.fields(obj, _MATTER_FIELDS)
    schema.check_format(obj, MATTER_FORMAT)
    exhibits = []
    for i, item in enumerate(schema.as_list(obj["exhibits"], "exhibits", MAX_EXHIBITS)):
        with schema.within(f"exhibits[{i}]"):
            exhibits.append(_exhibit_from_obj(item))
    return Matter(
        matter_id=obj["matter_id"],
        owner=obj["owner"],
        revision=obj["revision"],
        title=obj["title"],
        states=schema.as_list(obj["states"], "states", MAX_STATES),
        bates_prefix=obj["bates_prefix"],
        legal_hold=obj["legal_hold"],
        exhibits=tuple(exhibits),
        updated_at=schema.parse_time(obj["updated_at"], "updated_at"),
    )


def check_successor(old: Matter, new: Matter) -> None:
    """Refuse `new` as a later revision of `old` unless it keeps what must not change: the
    id, the owner, the Bates prefix and every earlier exhibit, unchanged and in order.

    Raises MatterFormatError naming what changed.
    """
    if new.matter_id != old.matter_id:
        raise MatterFormatError("matter_id: not the same matter")
    if new.revision <= old.revision:
        raise MatterFormatError("revision: not later than the one held")
    if new.owner != old.owner:
        raise MatterFormatError("owner: changed")
    if new.bates_prefix != old.bates_prefix:
        raise MatterFormatError("bates_prefix: changed")
    if new.updated_at < old.updated_at:
        raise MatterFormatError("updated_at: earlier than the revision held")
    if new.exhibits[: len(old.exhibits)] != old.exhibits:
        raise MatterFormatError("exhibits: an earlier exhibit was changed, renumbered or removed")


def sign_matter(matter: Matter, key: signing.SigningKey) -> Envelope:
    """The matter signed with its owner's roster key."""
    return schema.sign(MATTER_TYPE, matter, Matter.from_payload, key)


def verify_matter(
    envelope: Envelope, roster: Roster, *, owner: str, history: KeyHistory | None = None
) -> Matter:
    """A matter signed by `owner`'s roster key (with `history`: any key it had in a roster
    version) and naming `owner` as its owner."""
    return schema.verified(
        envelope, roster, owner, MATTER_TYPE, "matter", Matter.from_payload,
        "owner", lambda m: m.owner, MatterFormatError, history,
    )  # fmt: skip
