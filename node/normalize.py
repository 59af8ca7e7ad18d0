"""Identifier keys: how an agent observation is linked to others (compact protocol).

Every node of the compact must derive identical keys from identical input, so
the rules below are a protocol: changing any of them is a protocol change and
must bump ``NORMALIZATION_VERSION`` (stored with each observation). The golden
file ``tests/golden/identifier_keys.json`` pins the current behaviour;
``scripts/gen_golden_identifiers.py`` recomputes its expected values so that a
rule change can be reviewed as a diff.

Each agent observation yields zero or more identifier keys, ``kind:value``.

Text normalisation (``normalize_text``): the text is put in NFKD form, every
combining mark (``unicodedata.combining(c) != 0``) is removed, the result is
case-folded (``str.casefold``), every run of characters that are not
alphanumeric (``str.isalnum``) becomes one space, and the ends are trimmed.

Kinds, in the fixed order in which ``identifier_keys`` returns them:

- ``badge``: ``AGENCY:BADGE``; the badge normalised, uppercased, with spaces
  (hence punctuation) and leading zeros removed (``04471`` -> ``ICE-ERO:4471``,
  ``HS 0093`` -> ``ICE-HSI:HS0093``).
- ``name``: if the raw name has a comma it is split at its first comma and
  "Last, First Middle" becomes "First Middle Last"; the text is normalised;
  single letters and the suffixes jr, sr, ii, iii, iv are dropped; the first
  and the last remaining tokens are kept (``Smith, John Q.`` -> ``john smith``).
  Fewer than two tokens left: no name key.
- ``name_agency``: ``AGENCY:`` + the ``name`` value.
- ``plate``: tokens uppercased; if the first token is a US state or territory
  code (``US_STATE_CODES``) and more tokens follow, it is the issuing state,
  otherwise the incident's state is; the other tokens are joined without
  separators (``IL ABC 1234`` and ``il-abc-1234`` -> ``IL:ABC1234``). A plate
  identifies a vehicle, not a person.
- ``unit``: ``AGENCY:`` + the normalised unit text, all tokens kept
  (``ICE-ERO:midway team 3``).

Decisions this module implements (beyond the rules above):

- AGENCY is the agency vocabulary value exactly as given (``ICE-ERO``,
  ``CBP-USBP``; validated elsewhere). When the agency is absent (None, or the
  empty string) or ``UNKNOWN``, no ``badge``, ``name_agency`` or ``unit`` key is
  derived: these keys are scoped to an agency, and an unscoped one would link
  unrelated agents. The ``name`` and ``plate`` keys do not depend on the agency.
- A badge that is empty once spaces, punctuation and leading zeros are removed
  (``000``, ``--``) gives no key. Only the ASCII digit ``0`` counts as a
  leading zero.
- The name's comma is the ASCII comma ``,`` (U+002C) of the raw text; other
  commas (full-width U+FF0C, ideographic U+3001) do not reorder the name, even
  those that NFKD would turn into ``,``.
- "Single letters" are tokens of exactly one character that is a letter
  (``str.isalpha``) after normalisation; a one-digit token is kept. The
  suffixes are dropped wherever they appear among the tokens. Apostrophes
  split names like any punctuation, so ``O'Brien`` gives the tokens ``o brien``
  and the ``o`` is then dropped as a single letter.
- A plate with nothing left after the state prefix gives no key. A plate whose
  only token is a state code (``IL``) is the plate text itself, issued by the
  incident's state (the "more tokens follow" rule).
- The incident state must be one of ``US_STATE_CODES`` (uppercase); anything
  else is a programming error and raises ``ValueError``.
- Keys come in the fixed order badge, name, name_agency, plate, unit, without
  duplicates.
- Characters that NFKD does not decompose are kept as they are (``Ø`` -> ``ø``,
  ``ł``, Cyrillic, CJK): there is no transliteration, so ``Søren`` and
  ``Soren`` give different keys. The result depends on the Unicode database of
  the running Python (``unicodedata.unidata_version``); characters assigned
  in newer Unicode versions may normalise differently on older nodes.

``parse_query_key`` turns a search query ``KIND:RAW`` into the key that the
same input would have produced. The kind is matched after trimming spaces and
lowercasing; for badge, name_agency and unit the raw part is ``AGENCY:VALUE``
(split at its first colon; the agency is trimmed, uppercased, and must be
non-empty and not ``UNKNOWN``). Its errors say what is wrong with the query
without repeating the query.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

NORMALIZATION_VERSION: Final = 1

KEY_KINDS: Final[tuple[str, ...]] = ("badge", "name", "name_agency", "plate", "unit")
# How strongly two observations sharing a key of this kind are linked (DESIGN.md section 3).
KEY_STRENGTH: Final[dict[str, str]] = {
    "badge": "strong",
    "name_agency": "strong",
    "name": "medium",
    "unit": "medium",
    "plate": "vehicle",
}
STRENGTHS: Final[tuple[str, ...]] = ("vehicle", "medium", "strong")  # weakest first

# The 50 states, DC, and the territories PR, GU, VI, AS and MP. Deliberately a
# copy, not node.vocab.STATES: this set is part of the key protocol.
US_STATE_CODES: Final[frozenset[str]] = frozenset(
    {
        "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA",
        "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME", "MD",
        "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ",
        "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC",
        "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY",
        "DC", "PR", "GU", "VI", "AS", "MP",
    }
)  # fmt: skip

_NAME_SUFFIXES: Final = frozenset({"jr", "sr", "ii", "iii", "iv"})
_UNSCOPED_AGENCY: Final = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class IdentifierKey:
    """One identifier key; ``kind`` is one of ``KEY_KINDS``."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class KeyQueryError(ValueError):
    """A search key that cannot be parsed or yields no key (the message says why)."""


_ASCII_SEPARATORS: Final = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=1 << 16)
def normalize_text(text: str) -> str:
    """NFKD, combining marks removed, case-folded, non-alphanumeric runs as one space, trimmed.

    Pure, so cached: the same agents recur across many incidents. ASCII text takes
    an exact shortcut (NFKD and combining marks change nothing there, casefold is
    lower, and isalnum is [A-Za-z0-9]); a test checks it against the general path.
    """
    if text.isascii():
        return _ASCII_SEPARATORS.sub(" ", text.lower()).strip()
    return _normalize_unicode(text)


def _normalize_unicode(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join("".join(c if c.isalnum() else " " for c in folded).split())


def _agency_scope(agency: str | None) -> str | None:
    """The agency a key is scoped to, or None when keys cannot be scoped."""
    if not agency or agency == _UNSCOPED_AGENCY:
        return None
    return agency


def _check_state(state: str) -> None:
    if state not in US_STATE_CODES:
        raise ValueError("the incident state is not a US state or territory code")


def badge_key(agency: str | None, badge: str) -> IdentifierKey | None:
    """``badge:AGENCY:BADGE``, or None without an agency or without badge characters."""
    scope = _agency_scope(agency)
    if scope is None:
        return None
    value = normalize_text(badge).replace(" ", "").upper().lstrip("0")
    return IdentifierKey("badge", f"{scope}:{value}") if value else None


def name_value(name: str) -> str | None:
    """ "first last" from a name, or None when fewer than two tokens remain."""
    last, comma, rest = name.partition(",")
    if comma:
        name = f"{rest} {last}"
    tokens = [
        t
        for t in normalize_text(name).split()
        if t not in _NAME_SUFFIXES and not (len(t) == 1 and t.isalpha())
    ]
    if len(tokens) < 2:
        return None
    return f"{tokens[0]} {tokens[-1]}"


def plate_key(plate: str, incident_state: str) -> IdentifierKey | None:
    """``plate:STATE:PLATE``, or None when the plate has no characters left."""
    _check_state(incident_state)
    tokens = [t.upper() for t in normalize_text(plate).split()]
    state = incident_state
    if len(tokens) > 1 and tokens[0] in US_STATE_CODES:
        state, tokens = tokens[0], tokens[1:]
    value = "".join(tokens)
    return IdentifierKey("plate", f"{state}:{value}") if value else None


def unit_key(agency: str | None, unit: str) -> IdentifierKey | None:
    """``unit:AGENCY:unit text``, or None without an agency or without unit text."""
    scope = _agency_scope(agency)
    if scope is None:
        return None
    value = normalize_text(unit)
    return IdentifierKey("unit", f"{scope}:{value}") if value else None


def _name_agency_key(agency: str | None, name: str) -> IdentifierKey | None:
    scope = _agency_scope(agency)
    value = name_value(name)
    if scope is None or value is None:
        return None
    return IdentifierKey("name_agency", f"{scope}:{value}")


def identifier_keys(
    *,
    agency: str | None,
    name: str | None,
    badge: str | None,
    unit: str | None,
    plate: str | None,
    incident_state: str,
) -> list[IdentifierKey]:
    """Every key of one agent observation, in ``KEY_KINDS`` order, without duplicates."""
    return list(_identifier_keys(agency, name, badge, unit, plate, incident_state))


@functools.lru_cache(maxsize=1 << 16)
def _identifier_keys(
    agency: str | None,
    name: str | None,
    badge: str | None,
    unit: str | None,
    plate: str | None,
    incident_state: str,
) -> tuple[IdentifierKey, ...]:
    # Pure, so cached: one agent is usually observed at many incidents.
    _check_state(incident_state)
    candidates = [
        badge_key(agency, badge) if badge is not None else None,
        IdentifierKey("name", value)
        if name is not None and (value := name_value(name)) is not None
        else None,
        _name_agency_key(agency, name) if name is not None else None,
        plate_key(plate, incident_state) if plate is not None else None,
        unit_key(agency, unit) if unit is not None else None,
    ]
    keys: list[IdentifierKey] = []
    for key in candidates:
        if key is not None and key not in keys:
            keys.append(key)
    return tuple(keys)


def _split_agency(kind: str, raw: str) -> tuple[str, str]:
    agency, colon, rest = raw.partition(":")
    agency = agency.strip().upper()
    if not colon or not agency:
        raise KeyQueryError(f"a {kind} key is written {kind}:AGENCY:VALUE")
    if agency == _UNSCOPED_AGENCY:
        raise KeyQueryError(f"a {kind} key needs a known agency, not {_UNSCOPED_AGENCY}")
    return agency, rest


def parse_query_key(text: str, *, default_state: str) -> IdentifierKey:
    """The normalised key of a search query ``KIND:RAW``.

    ``default_state`` issues plates given without a state. Raises
    ``KeyQueryError`` for a missing colon, an unknown kind, or input that
    yields no key.
    """
    kind, colon, raw = text.partition(":")
    if not colon:
        raise KeyQueryError("expected KIND:VALUE, e.g. badge:ICE-ERO:4471")
    kind = kind.strip().lower()
    key: IdentifierKey | None
    if kind == "name":
        value = name_value(raw)
        if value is None:
            raise KeyQueryError(
                "the name gives no key: it needs two names besides initials and suffixes"
            )
        return IdentifierKey("name", value)
    if kind == "plate":
        key = plate_key(raw, default_state)
        if key is None:
            raise KeyQueryError("the plate gives no key: it has no letters or digits")
        return key
    if kind not in KEY_KINDS:
        raise KeyQueryError(f"unknown key kind; expected one of {', '.join(KEY_KINDS)}")
    agency, rest = _split_agency(kind, raw)
    if kind == "badge":
        key = badge_key(agency, rest)
        if key is None:
            raise KeyQueryError("the badge gives no key: it has no letters or digits besides zeros")
    elif kind == "name_agency":
        key = _name_agency_key(agency, rest)
        if key is None:
            raise KeyQueryError(
                "the name gives no key: it needs two names besides initials and suffixes"
            )
    else:
        key = unit_key(agency, rest)
        if key is None:
            raise KeyQueryError("the unit gives no key: it has no letters or digits")
    return key
