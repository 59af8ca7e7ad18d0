"""Field rules and parsing shared by the federation's signed documents.

Every signed document of the compact (bundle requests, decisions, custody records and
manifests in ``federation.bundle``; matters in ``federation.matter``) is the canonical
JSON (``federation.encoding``) of a closed schema, signed as a DSSE envelope by one
member's Ed25519 roster key. This module holds what they have in common:

- the field rules: each check raises ``Invalid`` (a ``ValueError``) naming the field by
  its path from the document's top and the rule it breaks, never the value (values may
  be personal data);
- ``parse``: bytes to a document, refusing anything that is not the canonical encoding
  of a valid document, raising the caller's error class (one per document family);
- ``sign`` and ``verified``: a document in and out of its DSSE envelope, verified
  against one roster before its payload is read (and, given the key history, against
  any key the signer had in a roster version: documents signed before a key rotation,
  stored or forwarded, stay valid after it).

Everything here is pure: no I/O, no database, no clock.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn, Protocol, TypeVar

from crypto import signing
from crypto.dsse import Envelope, VerificationPolicy, sign_envelope, verify_envelope
from crypto.errors import CryptoError
from federation.encoding import canonical_json, load_json_object
from federation.errors import FederationError
from federation.keyhistory import KeyHistory, member_signing_keys
from federation.roster import Roster
from node.vocab import STATES

__all__ = [
    "CONTROL_IMPORT",
    "CONTROL_NAME",
    "CONTROL_TEXT",
    "GLOBAL_ID",
    "HASH_SIZE",
    "HEX64",
    "MAX_INT",
    "MAX_NAME",
    "MAX_TEXT",
    "SURROGATE",
    "UUID",
    "Document",
    "Invalid",
    "as_list",
    "as_tuple",
    "b64",
    "check_format",
    "check_time",
    "fail",
    "fields",
    "format_time",
    "global_id",
    "hash_hex",
    "hex64",
    "integer",
    "json_object",
    "json_value",
    "match",
    "name",
    "one_of",
    "opt_str",
    "parse",
    "parse_time",
    "request_id",
    "set_field",
    "sign",
    "sorted_unique",
    "state",
    "string",
    "text",
    "verified",
    "verified_payload",
    "within",
]

MAX_INT: Final = 2**63 - 1
MAX_TEXT: Final = 2000
MAX_NAME: Final = 100
MAX_JSON_DEPTH: Final = 32
HASH_SIZE: Final = 32

GLOBAL_ID: Final = re.compile(r"[A-Z]{2}-[0-9a-f-]{36}")
UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX64: Final = re.compile(r"[0-9a-f]{64}")
_TIME: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
# Names (users, actors, files): no control character at all (C0, DEL, C1). Free text
# (purpose, reason, description): tab and newline allowed. Text that comes from the
# import format (captured_by, description): its rule, tab, newline and carriage return
# allowed. Lone surrogates are refused everywhere: they cannot be encoded as UTF-8.
CONTROL_NAME: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
CONTROL_TEXT: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
CONTROL_IMPORT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
SURROGATE: Final = re.compile("[\ud800-\udfff]")


# --- field rules ---------------------------------------------------------------------


class Invalid(ValueError):
    """A field that breaks its rule: names the field (a path) and the rule, never the value."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.where = where
        self.reason = reason


#: The largest revision (of an index entry or a matter) a node stores: a 32-bit column
#: on PostgreSQL. A peer's document beyond it would fail the insert and stall the sync.
MAX_REVISION: Final = 2**31 - 1


def fail(where: str, reason: str) -> NoReturn:
    raise Invalid(where, reason)


@contextmanager
def within(prefix: str) -> Iterator[None]:
    """Name failures inside a nested object by their path from the document's top."""
    try:
        yield
    except Invalid as e:
        raise Invalid(f"{prefix}.{e.where}" if e.where else prefix, e.reason) from None


def string(value: object, where: str, *, max_chars: int, control: re.Pattern[str]) -> str:
    """A non-empty string of at most `max_chars` characters that `control` finds nothing in."""
    if not isinstance(value, str):
        fail(where, "expected a string")
    if not value:
        fail(where, "must not be empty")
    if len(value) > max_chars:
        fail(where, f"longer than {max_chars} characters")
    if control.search(value):
        fail(where, "contains a control character or an unpaired surrogate")
    return value


def opt_str(value: object, where: str, *, max_chars: int, control: re.Pattern[str]) -> None:
    if value is not None:
        string(value, where, max_chars=max_chars, control=control)


def name(value: object, where: str) -> None:
    """A user name or an actor: 1 to 100 characters, no control characters."""
    string(value, where, max_chars=MAX_NAME, control=CONTROL_NAME)


def text(value: object, where: str) -> None:
    """Free text: 1 to 2,000 characters, no control characters but tab and newline."""
    string(value, where, max_chars=MAX_TEXT, control=CONTROL_TEXT)


def match(value: object, where: str, pattern: re.Pattern[str], expected: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        fail(where, f"expected {expected}")
    return value


def state(value: object, where: str) -> str:
    if not isinstance(value, str) or value not in STATES:
        fail(where, "expected a US state, DC or territory code")
    return value


def global_id(value: object, where: str, of_state: str | None) -> None:
    """A global incident id; of `of_state` unless `of_state` is None."""
    found = match(value, where, GLOBAL_ID, "a global incident id")
    if of_state is not None and not found.startswith(f"{of_state}-"):
        fail(where, f"not a global id of {of_state}")


def request_id(value: object, where: str) -> None:
    match(value, where, UUID, "a lowercase UUID")


def hex64(value: object, where: str) -> None:
    match(value, where, HEX64, "64 lowercase hex digits")


def integer(value: object, where: str, minimum: int) -> None:
    if type(value) is not int:  # bool excluded on purpose
        fail(where, "expected an integer")
    if not minimum <= value <= MAX_INT:
        fail(where, f"expected an integer from {minimum} to 2**63 - 1")


def one_of(value: object, where: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        fail(where, f"expected one of {', '.join(allowed)}")


def as_tuple(value: object, where: str, max_items: int) -> tuple[Any, ...]:
    if not isinstance(value, tuple):
        fail(where, "expected a tuple")
    if len(value) > max_items:
        fail(where, f"more than {max_items} items")
    return value


def sorted_unique(values: tuple[str, ...], where: str) -> None:
    if any(a >= b for a, b in itertools.pairwise(values)):
        fail(where, "not sorted, or an item appears twice")


def check_time(value: object, where: str) -> None:
    """An aware datetime in UTC with whole seconds (construction)."""
    if not isinstance(value, datetime):
        fail(where, "expected a datetime")
    offset = value.utcoffset()
    if offset is None:
        fail(where, "a naive datetime (no time zone)")
    if offset != timedelta(0):
        fail(where, "not in UTC")
    if value.microsecond:
        fail(where, "not whole seconds")


def format_time(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` for an aware UTC datetime with whole seconds."""
    check_time(value, "time")
    return value.replace(tzinfo=None).isoformat() + "Z"


def parse_time(value: object, where: str) -> datetime:
    found = match(value, where, _TIME, "a UTC time as YYYY-MM-DDTHH:MM:SSZ")
    parsed: datetime | None
    try:
        parsed = datetime.strptime(found, _TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:  # the message holds the value: not chained, not shown
        parsed = None
    if parsed is None:
        fail(where, "not a valid date and time")
    return parsed


def json_value(value: object, where: str, depth: int = 0) -> None:
    """A JSON value as federation.encoding reads it: no floats, string keys, no surrogates."""
    if depth > MAX_JSON_DEPTH:
        fail(where, f"nested more than {MAX_JSON_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            fail(where, "holds an integer outside the 64-bit range")
    elif isinstance(value, str):
        if SURROGATE.search(value):
            fail(where, "holds an unpaired surrogate")
    elif isinstance(value, list):
        for item in value:
            json_value(item, where, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or SURROGATE.search(key):
                fail(where, "holds an object key that is not a string")
            json_value(item, where, depth + 1)
    else:  # floats among them: they have no canonical form
        fail(
            where, "holds a value that is not a JSON string, integer, boolean, null, list or object"
        )


def json_object(value: object, where: str) -> dict[str, Any]:
    """A checked private copy of a JSON object (the caller's dict may change later)."""
    if not isinstance(value, dict):
        fail(where, "expected a JSON object")
    json_value(value, where)
    copy: dict[str, Any] = json.loads(canonical_json(value))
    return copy


def set_field(obj: object, field_name: str, value: object) -> None:
    """Set a field of a frozen dataclass from its ``__post_init__``."""
    object.__setattr__(obj, field_name, value)


# --- parsing -------------------------------------------------------------------------


def fields(obj: object, expected: frozenset[str], where: str = "") -> dict[str, Any]:
    """`obj` as a JSON object with exactly the fields `expected`."""
    if not isinstance(obj, dict):
        fail(where, "expected a JSON object")
    missing = sorted(expected - obj.keys())
    if missing:
        fail(where, f"missing field {missing[0]}")
    if obj.keys() - expected:
        fail(where, "has an unknown field")  # not named: the name is the sender's text
    return obj


def check_format(obj: dict[str, Any], expected: str) -> None:
    if obj["format"] != expected:
        fail("format", f"expected {expected}")


def as_list(value: object, where: str, max_items: int) -> tuple[Any, ...]:
    if not isinstance(value, list):
        fail(where, "expected a list")
    if len(value) > max_items:
        fail(where, f"more than {max_items} items")
    return tuple(value)


def b64(value: object, where: str) -> bytes:
    """Padded standard base64 in its canonical form only."""
    raw: bytes | None = None
    if isinstance(value, str) and value.isascii():
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None and base64.b64encode(raw).decode("ascii") != value:
            raw = None
    if raw is None:
        fail(where, "expected canonical padded standard base64")
    return raw


def hash_hex(value: object, where: str) -> bytes:
    return bytes.fromhex(match(value, where, HEX64, "64 lowercase hex digits"))


class Document(Protocol):
    def payload(self) -> bytes: ...


D = TypeVar("D", bound=Document)


def parse(
    data: bytes,
    limit: int,
    what: str,
    build: Callable[[dict[str, Any]], D],
    error: type[FederationError],
) -> D:
    """The document `build` makes of `data`, which must be its canonical encoding.

    Anything else raises `error` naming `what` and the field; nothing that saw the
    input is chained to it.
    """
    # Errors are raised outside the except blocks: nothing that saw the input (the JSON
    # decoder's error holds the document) is chained to them.
    problem = "malformed"
    document: D | None = None
    obj: dict[str, Any] | None = None
    try:
        obj = load_json_object(data, limit=limit)
    except ValueError as e:
        problem = str(e)  # fixed messages, never the input
    if obj is not None:
        try:
            document = build(obj)
        except Invalid as e:
            problem = str(e)
        except (TypeError, ValueError):  # not expected: every field is checked before use
            problem = "malformed"
    if document is None:
        raise error(f"{what}: {problem}")
    # Every field was checked, so the object re-encodes to the canonical form of `data`.
    if document.payload() != data:
        raise error(f"{what}: not in canonical form")
    return document


# --- signing and verifying -----------------------------------------------------------


def sign(
    payload_type: str,
    document: D,
    parse_payload: Callable[[bytes], D],
    key: signing.SigningKey,
) -> Envelope:
    """`document` signed by `key`, once it passes the checks a receiving member applies."""
    payload = document.payload()
    parse_payload(payload)  # the size limit among them
    return sign_envelope(payload_type, payload, [key])


def verified(
    envelope: Envelope,
    roster: Roster,
    signer: str,
    payload_type: str,
    what: str,
    parse_payload: Callable[[bytes], D],
    role: str,
    named: Callable[[D], str],
    error: type[FederationError],
    history: KeyHistory | None = None,
) -> D:
    """The document in `envelope`, signed by `signer`'s roster key (with `history`: any
    key `signer` had in a roster version) and naming `signer` as its `role` (the field
    `named` reads)."""
    document = parse_payload(
        verified_payload(envelope, roster, signer, payload_type, what, error, history=history)
    )
    if named(document) != signer:
        raise error(f"{what}: signed by {signer} but names another {role}")
    return document


def verified_payload(
    envelope: Envelope,
    roster: Roster,
    signer: str,
    payload_type: str,
    what: str,
    error: type[FederationError],
    history: KeyHistory | None = None,
) -> bytes:
    """The payload of `envelope` once `signer`'s roster key is proven to have signed it.

    `signer` must be a member of `roster`. With `history`, a signature by any key
    `signer` had in a roster version is proof as well (what it signed before it rotated
    its key); without, only its key in `roster` is.
    """
    if not isinstance(envelope, Envelope):
        raise TypeError("envelope must be a crypto.dsse.Envelope")
    if not isinstance(signer, str) or signer not in STATES:
        raise ValueError("state must be a US state, DC or territory code")
    member = roster.member(signer)
    if member is None:
        raise error(f"{what}: {signer} is not a member of roster version {roster.version}")
    if envelope.payload_type != payload_type:
        raise error(f"{what}: the envelope's payload type is not {payload_type}")
    try:
        policy = VerificationPolicy(list(member_signing_keys(member, history)), 1)
        result = verify_envelope(envelope, policy, payload_type=payload_type)
    except CryptoError:
        raise error(f"{what}: not signed by {signer}'s roster key") from None
    return result.payload
