"""Identifier keys (node.normalize): golden cases, query parsing, properties.

The golden file tests/golden/identifier_keys.json is the compact-wide record
of the protocol; these tests compare the implementation with the committed
file and never rewrite it (scripts/gen_golden_identifiers.py does, on purpose).
"""

from __future__ import annotations

import json
import re
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.normalize import (
    KEY_KINDS,
    NORMALIZATION_VERSION,
    US_STATE_CODES,
    IdentifierKey,
    KeyQueryError,
    badge_key,
    identifier_keys,
    name_value,
    normalize_text,
    parse_query_key,
    plate_key,
    unit_key,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "identifier_keys.json"
FIELDS = {"case", "agency", "name", "badge", "unit", "plate", "incident_state", "expected"}


def _golden_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return cases


GOLDEN_CASES = _golden_cases()


# --- Golden file -------------------------------------------------------------


def test_golden_file_is_well_formed() -> None:
    names = [c["case"] for c in GOLDEN_CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in GOLDEN_CASES:
        assert set(case) == FIELDS, case["case"]
        assert case["incident_state"] in US_STATE_CODES, case["case"]
        assert isinstance(case["expected"], list), case["case"]


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=[c["case"] for c in GOLDEN_CASES])
def test_golden_identifier_keys(case: dict[str, Any]) -> None:
    keys = identifier_keys(
        agency=case["agency"],
        name=case["name"],
        badge=case["badge"],
        unit=case["unit"],
        plate=case["plate"],
        incident_state=case["incident_state"],
    )
    assert [str(k) for k in keys] == case["expected"]


def test_golden_file_matches_its_generator_byte_for_byte() -> None:
    """The generator (in --check mode, which writes nothing) would leave the file unchanged."""
    before = GOLDEN.read_bytes()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_golden_identifiers.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert GOLDEN.read_bytes() == before


def test_golden_file_covers_every_kind_and_the_spec_examples() -> None:
    expected = {k for c in GOLDEN_CASES for k in c["expected"]}
    assert {k.split(":", 1)[0] for k in expected} == set(KEY_KINDS)
    for key in (
        "badge:ICE-ERO:4471",
        "badge:ICE-HSI:HS0093",
        "name:john smith",
        "name:maria garcia",
        "plate:IL:ABC1234",
        "unit:ICE-ERO:midway team 3",
    ):
        assert key in expected


# --- Constants and the key type ---------------------------------------------


def test_constants() -> None:
    assert NORMALIZATION_VERSION == 1
    assert KEY_KINDS == ("badge", "name", "name_agency", "plate", "unit")
    assert len(US_STATE_CODES) == 56
    assert {"DC", "PR", "GU", "VI", "AS", "MP", "IL", "WY"} <= US_STATE_CODES
    assert all(len(c) == 2 and c.isupper() and c.isascii() for c in US_STATE_CODES)


def test_identifier_key_str_and_value_semantics() -> None:
    key = IdentifierKey("badge", "ICE-ERO:4471")
    assert str(key) == "badge:ICE-ERO:4471"
    assert key == IdentifierKey("badge", "ICE-ERO:4471")
    assert len({key, IdentifierKey("badge", "ICE-ERO:4471")}) == 1
    with pytest.raises(AttributeError):
        key.value = "other"  # type: ignore[misc]


# --- The individual functions ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("   ", ""),
        ("  Hello,   World!  ", "hello world"),
        ("Núñez-García", "nunez garcia"),
        ("\uff21\uff22\uff23\u3000\uff11\uff12\uff13", "abc 123"),
        ("Straße", "strasse"),
        ("a\u0308b", "ab"),
        ("O'Brien", "o brien"),
        ("tab\tand\nnewline", "tab and newline"),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


def test_badge_key() -> None:
    assert badge_key("ICE-ERO", "04471") == IdentifierKey("badge", "ICE-ERO:4471")
    assert badge_key("ICE-HSI", "HS 0093") == IdentifierKey("badge", "ICE-HSI:HS0093")
    assert badge_key(None, "4471") is None
    assert badge_key("UNKNOWN", "4471") is None
    assert badge_key("", "4471") is None
    assert badge_key("ICE-ERO", "000") is None
    assert badge_key("ICE-ERO", "--") is None


def test_name_value() -> None:
    assert name_value("Smith, John Q.") == "john smith"
    assert name_value("JOHN SMITH") == "john smith"
    assert name_value("Núñez-García, María José") == "maria garcia"
    assert name_value("Smith") is None
    assert name_value("") is None


def test_plate_key() -> None:
    assert plate_key("IL ABC 1234", "WI") == IdentifierKey("plate", "IL:ABC1234")
    assert plate_key("ABC 1234", "WI") == IdentifierKey("plate", "WI:ABC1234")
    assert plate_key("IL", "WI") == IdentifierKey("plate", "WI:IL")
    assert plate_key(" - ", "WI") is None


def test_unit_key() -> None:
    assert unit_key("ICE-ERO", "Midway Team 3") == IdentifierKey("unit", "ICE-ERO:midway team 3")
    assert unit_key(None, "Midway Team 3") is None
    assert unit_key("UNKNOWN", "Midway Team 3") is None
    assert unit_key("ICE-ERO", " ") is None


def test_invalid_incident_state_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="state"):
        plate_key("ABC 1234", "il")
    with pytest.raises(ValueError, match="state"):
        identifier_keys(
            agency=None, name=None, badge=None, unit=None, plate=None, incident_state=""
        )


# --- Query keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "kind", "value"),
    [
        ("badge:ICE-ERO:04471", "badge", "ICE-ERO:4471"),
        ("badge:ice-hsi:HS 0093", "badge", "ICE-HSI:HS0093"),
        ("name:Smith, John Q.", "name", "john smith"),
        ("name:JOHN SMITH", "name", "john smith"),
        ("name_agency:ICE-ERO:Smith, John", "name_agency", "ICE-ERO:john smith"),
        ("plate:il-abc-1234", "plate", "IL:ABC1234"),
        ("plate:IL:ABC1234", "plate", "IL:ABC1234"),
        ("plate:ABC 1234", "plate", "TX:ABC1234"),
        ("unit:ICE-ERO:Midway Team 3", "unit", "ICE-ERO:midway team 3"),
        ("unit:ICE-ERO:Midway: Team 3", "unit", "ICE-ERO:midway team 3"),
        (" Badge :  ice-ero :04471", "badge", "ICE-ERO:4471"),
    ],
)
def test_parse_query_key(query: str, kind: str, value: str) -> None:
    assert parse_query_key(query, default_state="TX") == IdentifierKey(kind, value)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "KIND:VALUE"),
        ("ICE-ERO 4471", "KIND:VALUE"),
        ("shoe:ICE-ERO:4471", "unknown key kind"),
        (":ICE-ERO:4471", "unknown key kind"),
        ("badge:4471", "badge:AGENCY:VALUE"),
        ("badge::4471", "badge:AGENCY:VALUE"),
        ("badge:UNKNOWN:4471", "not UNKNOWN"),
        ("badge:unknown:4471", "not UNKNOWN"),
        ("badge:ICE-ERO:000", "badge gives no key"),
        ("name:Smith", "name gives no key"),
        ("name:", "name gives no key"),
        ("name_agency:Smith, John", "name_agency:AGENCY:VALUE"),
        ("name_agency:ICE-ERO:Smith", "name gives no key"),
        ("plate: -- ", "plate gives no key"),
        ("unit:Midway Team 3", "unit:AGENCY:VALUE"),
        ("unit:ICE-ERO:  ", "unit gives no key"),
    ],
)
def test_parse_query_key_errors(query: str, message: str) -> None:
    with pytest.raises(KeyQueryError, match=re.escape(message)):
        parse_query_key(query, default_state="IL")


def test_query_errors_do_not_echo_the_query() -> None:
    secret = "Zebediah"
    for query in (
        f"{secret}",
        f"{secret}:x",
        f"badge:{secret}",
        f"badge:ICE-ERO-{secret}",
        "name:Zebediah",
        f"name_agency:ICE-ERO:{secret}-Jr",
        f"unit:{secret}",
    ):
        with pytest.raises(KeyQueryError) as info:
            parse_query_key(query, default_state="IL")
        assert secret.lower() not in str(info.value).lower()


def test_key_query_error_is_a_value_error() -> None:
    assert issubclass(KeyQueryError, ValueError)


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=[c["case"] for c in GOLDEN_CASES])
def test_golden_keys_parse_back_to_themselves(case: dict[str, Any]) -> None:
    """A stored key, typed as a query, finds itself."""
    for text in case["expected"]:
        assert str(parse_query_key(text, default_state="IL")) == text


# --- Properties ---------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=60)
_optional_text = st.none() | _text
_agencies = st.sampled_from([None, "UNKNOWN", "ICE-ERO", "ICE-HSI", "CBP-USBP", "FBI"])
_states = st.sampled_from(sorted(US_STATE_CODES))
# Letters whose NFKD form without combining marks is ASCII, plus separators.
_latin_name_chars = st.sampled_from(
    string.ascii_letters
    + string.digits
    + " ,.-'\u2019\t"
    + "áéíóúñüçÁÉÍÓÚÑÜÇàèìòùâêîôûäëïöÿÅåĀāŠšŽžß\uff21\uff5a\uff10"
)


@given(_text)
def test_normalize_text_is_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once


@given(_text)
def test_normalize_text_has_no_stray_spaces(text: str) -> None:
    out = normalize_text(text)
    assert out == out.strip()
    assert "  " not in out
    assert all(c == " " or c.isalnum() for c in out)
    assert out == out.casefold()


@given(st.text(_latin_name_chars, max_size=40))
def test_latin_name_values_are_ascii_lowercase(name: str) -> None:
    value = name_value(name)
    if value is not None:
        assert re.fullmatch(r"[a-z0-9]+ [a-z0-9]+", value)


@given(_text)
def test_name_values_are_two_normalised_tokens(name: str) -> None:
    value = name_value(name)
    if value is not None:
        tokens = value.split(" ")
        assert len(tokens) == 2
        assert all(t and normalize_text(t) == t for t in tokens)


@given(
    agency=_agencies,
    name=_optional_text,
    badge=_optional_text,
    unit=_optional_text,
    plate=_optional_text,
    state=_states,
)
def test_identifier_keys_never_raise_and_are_well_formed(
    agency: str | None,
    name: str | None,
    badge: str | None,
    unit: str | None,
    plate: str | None,
    state: str,
) -> None:
    keys = identifier_keys(
        agency=agency, name=name, badge=badge, unit=unit, plate=plate, incident_state=state
    )
    kinds = [k.kind for k in keys]
    assert kinds == sorted(kinds, key=KEY_KINDS.index)
    assert len(set(kinds)) == len(kinds)
    scoped = agency not in (None, "UNKNOWN")
    for key in keys:
        assert key.value
        if key.kind in ("badge", "name_agency", "unit"):
            assert scoped
            assert key.value.startswith(f"{agency}:")
        # A stored key, typed as a query, finds itself.
        assert parse_query_key(str(key), default_state=state) == key


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_the_ascii_shortcut_equals_the_general_rule(text: str) -> None:
    from node.normalize import _normalize_unicode

    assert normalize_text(text) == _normalize_unicode(text)
