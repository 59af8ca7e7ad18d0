"""Matter documents (federation.matter): round trips, strict parsing, numbering, the rules
that tie one revision to the next, and signatures.

IL owns the matter; MN and CA are members; NY is not a member of the roster.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crypto.dsse import sign_envelope
from federation.encoding import canonical_json
from federation.matter import (
    MATTER_TYPE,
    MAX_MATTER_BYTES,
    ExhibitEvidence,
    Matter,
    MatterExhibit,
    MatterFormatError,
    check_successor,
    exhibit_number,
    matter_id,
    sign_matter,
    verify_matter,
)
from tests.test_federation_roster import CA, IL, MN, NY, roster

ROSTER = roster(1, [IL, MN, CA])
NOW = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)
IL_GID = "IL-44717613-8a84-4971-a218-2ebd1ba3d81e"
MN_GID = "MN-5d0c8a4e-1f3b-4c2d-9e8f-0a1b2c3d4e5f"
CA_GID = "CA-0a1b2c3d-1f3b-4c2d-9e8f-0a1b2c3d4e5f"
SHA = hashlib.sha256(b"a phone video").hexdigest()
# A distinctive value: it must never appear in an error message.
SECRET = "Quokka-Zebra-7731"

EXHIBITS = (
    MatterExhibit("IL-MN-000001", IL_GID, None, f"Stop on I-90 {SECRET}", NOW),
    MatterExhibit("IL-MN-000002", MN_GID, ExhibitEvidence(0, SHA), "Bystander video\nfull", NOW),
)
MATTER = Matter(
    matter_id="IL:DOE-V-NOEM",
    owner="IL",
    revision=2,
    title="Doe v. Noem",
    states=("CA", "IL", "MN"),
    bates_prefix="IL-MN",
    legal_hold=True,
    exhibits=EXHIBITS,
    updated_at=NOW,
)


def obj(matter: Matter = MATTER) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(matter.payload())
    return parsed


def encode(o: dict[str, Any]) -> bytes:
    return canonical_json(o)


# --- round trips and the canonical form -----------------------------------------------


def test_round_trip() -> None:
    assert Matter.from_payload(MATTER.payload()) == MATTER
    empty = replace(MATTER, exhibits=(), revision=1)
    assert Matter.from_payload(empty.payload()) == empty


def test_payload_is_canonical_json_with_every_field() -> None:
    o = obj()
    assert o["format"] == "compact-matter-v1"
    assert o["exhibits"][0] == {
        "number": "IL-MN-000001",
        "global_id": IL_GID,
        "evidence": None,
        "description": f"Stop on I-90 {SECRET}",
        "added_at": "2026-11-21T12:00:05Z",
    }
    assert o["exhibits"][1]["evidence"] == {"position": 0, "sha256": SHA}
    assert MATTER.payload() == encode(o)


def test_non_canonical_payload_is_refused() -> None:
    pretty = json.dumps(obj(), indent=1).encode()
    with pytest.raises(MatterFormatError, match="matter: not in canonical form"):
        Matter.from_payload(pretty)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.update(format="compact-matter-v2"), "format: expected compact-matter-v1"),
        (lambda o: o.pop("legal_hold"), "missing field legal_hold"),
        (lambda o: o.update(extra=1), "has an unknown field"),
        (lambda o: o.update(matter_id="IL:doe"), "matter_id: expected STATE:ID"),
        (lambda o: o.update(matter_id="MN:DOE"), "matter_id: does not begin with the owner"),
        (lambda o: o.update(revision=0), "revision: expected an integer from 1"),
        (lambda o: o.update(revision=True), "revision: expected an integer"),
        (lambda o: o.update(revision=2**31), "revision: expected at most 2147483647"),
        (lambda o: o.update(title=""), "title: must not be empty"),
        (lambda o: o.update(title="a\nb"), "title: contains a control character"),
        (lambda o: o.update(title="x" * 301), "title: longer than 300 characters"),
        (lambda o: o.update(states=["IL", "CA", "MN"]), "states: not sorted"),
        (lambda o: o.update(states=["CA", "MN"]), "states: does not include the owner"),
        (lambda o: o.update(states=["CA", "IL", "XX"]), r"states\[2\]: expected a US state"),
        (lambda o: o.update(bates_prefix="il-mn"), "bates_prefix: expected capital letters"),
        (lambda o: o.update(bates_prefix="IL--MN"), "bates_prefix: expected capital letters"),
        (lambda o: o.update(bates_prefix="A" * 21), "bates_prefix: longer than 20"),
        (lambda o: o.update(legal_hold=1), "legal_hold: expected a boolean"),
        (lambda o: o.update(updated_at="2026-11-21 12:00:05"), "updated_at: expected a UTC time"),
        (lambda o: o.update(exhibits={}), "exhibits: expected a list"),
        (lambda o: o["exhibits"][0].pop("added_at"), r"exhibits\[0\]: missing field added_at"),
        (
            lambda o: o["exhibits"][0].update(number="IL-000001"),
            r"exhibits\[0\]\.number: expected the matter's Bates prefix",
        ),
        (
            lambda o: o["exhibits"][0].update(number="IL-MN-00001"),
            r"exhibits\[0\]\.number: expected the matter's Bates prefix",
        ),
        (
            lambda o: o["exhibits"][0].update(number="IL-MN-000000"),
            r"exhibits\[0\]\.number: expected the matter's Bates prefix",
        ),
        (
            lambda o: o["exhibits"][1].update(number="IL-MN-000001"),
            r"exhibits\[1\]\.number: not after the exhibit before it",
        ),
        (
            lambda o: o["exhibits"][1].update(global_id=IL_GID, evidence=None),
            r"exhibits\[1\]: the same incident or evidence item as an earlier exhibit",
        ),
        (
            lambda o: o["exhibits"][1].update(global_id="NY-" + IL_GID[3:]),
            r"exhibits\[1\]\.global_id: an incident of a state not in the matter",
        ),
        (
            lambda o: o["exhibits"][1]["evidence"].update(position=-1),
            r"exhibits\[1\]\.evidence\.position: expected an integer from 0",
        ),
        (
            lambda o: o["exhibits"][1]["evidence"].update(sha256=SHA.upper()),
            r"exhibits\[1\]\.evidence\.sha256: expected 64 lowercase hex digits",
        ),
        (
            lambda o: o["exhibits"][1].update(evidence={"position": 0}),
            r"exhibits\[1\]\.evidence: missing field sha256",
        ),
        (
            lambda o: o["exhibits"][1].update(description="x" * 2001),
            r"exhibits\[1\]\.description: longer than 2000 characters",
        ),
        (
            lambda o: o["exhibits"][1].update(added_at="2026-11-22T00:00:00Z"),
            r"exhibits\[1\]\.added_at: later than the matter's updated_at",
        ),
    ],
)
def test_bad_fields_are_named(change: Any, message: str) -> None:
    o = obj()
    change(o)
    with pytest.raises(MatterFormatError, match=message) as raised:
        Matter.from_payload(encode(o))
    assert SECRET not in str(raised.value)


def test_construction_errors_are_value_errors_naming_the_field() -> None:
    with pytest.raises(ValueError, match="updated_at: a naive datetime"):
        replace(MATTER, updated_at=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match=r"exhibits\[0\]: expected a MatterExhibit"):
        replace(MATTER, exhibits=("IL-MN-000001",))  # type: ignore[arg-type]


def test_size_limit() -> None:
    big = tuple(
        MatterExhibit(exhibit_number("IL", i), IL_GID, ExhibitEvidence(i, SHA), "x" * 2000, NOW)
        for i in range(1, 400)
    )
    matter = replace(MATTER, bates_prefix="IL", exhibits=big)
    assert len(matter.payload()) > MAX_MATTER_BYTES
    with pytest.raises(MatterFormatError, match="larger than"):
        sign_matter(matter, IL.key)


# --- numbering --------------------------------------------------------------------------


def test_numbers() -> None:
    assert exhibit_number("IL-MN", 1) == "IL-MN-000001"
    assert exhibit_number("X7", 999_999) == "X7-999999"
    with pytest.raises(ValueError, match="seq: expected an integer from 1 to 999999"):
        exhibit_number("IL", 1_000_000)
    with pytest.raises(ValueError, match="bates_prefix"):
        exhibit_number("il", 1)
    assert MATTER.next_number() == "IL-MN-000003"
    assert replace(MATTER, exhibits=()).next_number() == "IL-MN-000001"
    # Numbers are never reused: after a gap the next one follows the last.
    gap = replace(MATTER, exhibits=(replace(EXHIBITS[0], number="IL-MN-000007"),))
    assert gap.next_number() == "IL-MN-000008"


def test_matter_id() -> None:
    assert matter_id("IL", "DOE-V-NOEM") == "IL:DOE-V-NOEM"
    for bad in ("", "-DOE", "DOE-", "doe", "A" * 41, "DOE V NOEM"):
        with pytest.raises(ValueError, match="id: expected 1 to 40 capital letters"):
            matter_id("IL", bad)


# --- one revision to the next -----------------------------------------------------------


def test_a_successor_may_add_exhibits_and_change_title_states_and_hold() -> None:
    later = NOW + timedelta(hours=1)
    added = MatterExhibit(MATTER.next_number(), CA_GID, None, "Arrest in Fresno", later)
    new = MATTER.revised(
        later,
        exhibits=(*EXHIBITS, added),
        title="Doe v. Noem (amended)",
        legal_hold=False,
    )
    assert new.revision == 3
    check_successor(MATTER, new)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"revision": 2}, "revision: not later"),
        ({"owner": "MN", "matter_id": "MN:DOE-V-NOEM"}, "matter_id: not the same matter"),
        ({"bates_prefix": "ILMN", "exhibits": ()}, "bates_prefix: changed"),
        ({"exhibits": EXHIBITS[:1]}, "exhibits: an earlier exhibit was changed"),
        ({"exhibits": (EXHIBITS[0], replace(EXHIBITS[1], description="edited"))}, "exhibits"),
        ({"updated_at": NOW - timedelta(seconds=1), "exhibits": ()}, "updated_at: earlier"),
    ],
)
def test_a_successor_must_keep_what_is_fixed(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"revision": 3, **changes}
    new = replace(MATTER, **fields)
    with pytest.raises(MatterFormatError, match=message):
        check_successor(MATTER, new)


def test_owner_change_is_refused() -> None:
    new = replace(MATTER, revision=3, owner="MN", matter_id="MN:DOE-V-NOEM")
    with pytest.raises(MatterFormatError):
        check_successor(MATTER, new)
    same_id = replace(MATTER, revision=3)
    object.__setattr__(same_id, "owner", "MN")  # a forged document the constructor forbids
    with pytest.raises(MatterFormatError, match="owner: changed"):
        check_successor(MATTER, same_id)


# --- signatures -------------------------------------------------------------------------


def test_signed_by_the_owner() -> None:
    assert verify_matter(sign_matter(MATTER, IL.key), ROSTER, owner="IL") == MATTER


def test_signed_by_another_member() -> None:
    with pytest.raises(MatterFormatError, match="matter: not signed by IL's roster key"):
        verify_matter(sign_matter(MATTER, MN.key), ROSTER, owner="IL")


def test_naming_another_owner() -> None:
    with pytest.raises(MatterFormatError, match="matter: signed by MN but names another owner"):
        verify_matter(sign_matter(MATTER, MN.key), ROSTER, owner="MN")


def test_signed_by_a_non_member() -> None:
    ny = replace(MATTER, owner="NY", matter_id="NY:DOE", states=("IL", "NY"), exhibits=())
    with pytest.raises(MatterFormatError, match="NY is not a member of roster version 1"):
        verify_matter(sign_matter(ny, NY.key), ROSTER, owner="NY")


def test_payload_type_mismatch() -> None:
    envelope = sign_envelope("application/json", MATTER.payload(), [IL.key])
    with pytest.raises(MatterFormatError, match=re.escape(f"payload type is not {MATTER_TYPE}")):
        verify_matter(envelope, ROSTER, owner="IL")


def test_flipped_payload_byte_is_not_signed() -> None:
    envelope = sign_matter(MATTER, IL.key)
    payload = bytearray(envelope.payload)
    payload[payload.index(b"Doe v. Noem")] ^= 0x20
    forged = replace(envelope, payload=bytes(payload))
    with pytest.raises(MatterFormatError, match="not signed by IL's roster key"):
        verify_matter(forged, ROSTER, owner="IL")
