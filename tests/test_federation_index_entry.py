"""Index entries: nothing personal leaves, entries verify against the roster, forgeries fail."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from crypto.dsse import Envelope
from crypto.oprf import Mode, derive_key_pair, evaluate
from federation.index_entry import (
    IndexEntry,
    IndexEntryError,
    build_entry,
    sign_entry,
    verify_entry,
    withdrawal,
)
from tests.test_federation_roster import CA, IL, MN, NY, roster
from tests.test_serde import incident

ROSTER = roster(1, [IL, MN, CA])
SK, _PK = derive_key_pair(b"\x01" * 32, b"test compact key", Mode.VOPRF)
VIEW = incident(global_id="IL-44717613-8a84-4971-a218-2ebd1ba3d81e")


def pseudonyms_for(view: object) -> dict[str, str]:
    keys = {str(k) for a in VIEW.agents for k in a.keys}
    return {k: evaluate(SK, k.encode(), mode=Mode.VOPRF).hex() for k in keys}


def entry() -> IndexEntry:
    return build_entry(VIEW, revision=1, pseudonyms=pseudonyms_for(VIEW))


def test_nothing_personal_is_published() -> None:
    e = entry()
    payload = e.payload()
    # Search what is left once the id and the pseudonyms (random hex) are removed.
    assert e.content is not None
    for value in [e.global_id, *(p for a in e.content.agents for p in a.pseudonyms.values())]:
        payload = payload.replace(value.encode(), b"")
    for secret in (
        "Jane Roe",  # a person
        "2700 S Pulaski",  # an address
        "Chicago",  # the city
        "text",  # the narrative
        "Smith",
        "john smith",  # a name, raw and normalised
        "04471",
        "4471",  # a badge
        "SRT",  # a unit
        "ABC",  # a plate
        "41.84",  # coordinates
        "IL-HL-1",  # the external id
        "clip.mp4",
        "bystander",  # evidence details
    ):
        assert secret.encode() not in payload, secret
    obj = json.loads(e.payload())
    assert obj["content"]["evidence"] == {"video/mp4": 1}
    assert obj["content"]["day"] == "2025-10-04"
    assert set(obj["content"]["agents"][0]["pseudonyms"]) == {"badge", "name"}


def test_same_key_same_pseudonym_in_every_entry() -> None:
    a, b = entry(), entry()
    assert a.payload() == b.payload()
    assert a.content is not None
    assert (
        a.content.agents[0].pseudonyms["badge"]
        == evaluate(SK, b"badge:ICE-ERO:4471", mode=Mode.VOPRF).hex()
    )


def test_sealed_incidents_are_never_indexed() -> None:
    with pytest.raises(IndexEntryError, match="sealed"):
        build_entry(replace(VIEW, sharing="sealed"), revision=1, pseudonyms=pseudonyms_for(VIEW))


def test_an_identifier_without_a_pseudonym_is_refused() -> None:
    with pytest.raises(IndexEntryError, match="no pseudonym"):
        build_entry(VIEW, revision=1, pseudonyms={})


def test_signed_entry_verifies_against_the_roster() -> None:
    e = entry()
    assert verify_entry(sign_entry(e, IL.key), ROSTER, state="IL") == e


def test_forged_entry_signed_by_another_member() -> None:
    with pytest.raises(IndexEntryError, match="not signed by IL"):
        verify_entry(sign_entry(entry(), MN.key), ROSTER, state="IL")


def test_member_publishing_for_another_state() -> None:
    e = replace(entry(), state="MN")
    with pytest.raises(IndexEntryError, match="another state"):
        verify_entry(sign_entry(e, MN.key), ROSTER, state="MN")


def test_entry_signed_by_a_revoked_member() -> None:
    without_ca = roster(2, [IL, MN])
    ca_view = replace(VIEW, global_id="CA-44717613-8a84-4971-a218-2ebd1ba3d81e", state="CA")
    e = replace(build_entry(ca_view, revision=1, pseudonyms=pseudonyms_for(VIEW)), state="CA")
    with pytest.raises(IndexEntryError, match="not a member"):
        verify_entry(sign_entry(e, CA.key), without_ca, state="CA")


def test_tampered_entry() -> None:
    env = sign_entry(entry(), IL.key)
    tampered = Envelope(
        env.payload_type, env.payload.replace(b"substantiated", b"closed"), env.signatures
    )
    with pytest.raises(IndexEntryError):
        verify_entry(tampered, ROSTER, state="IL")


def test_outsider_key() -> None:
    with pytest.raises(IndexEntryError):
        verify_entry(sign_entry(entry(), NY.key), ROSTER, state="IL")


def test_withdrawal_round_trip() -> None:
    w = withdrawal("IL", VIEW.global_id, revision=2)
    assert w.withdrawn
    assert verify_entry(sign_entry(w, IL.key), ROSTER, state="IL") == w


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o["content"].update(narrative="secret"),
        lambda o: o["content"]["agents"][0].update(name="John Smith"),
        lambda o: o["content"]["agents"][0].update(badge="04471"),
        lambda o: o["content"].update(address="2700 S Pulaski Rd"),
        lambda o: o["content"]["agents"][0]["pseudonyms"].update(badge="ICE-ERO:4471"),
        lambda o: o["content"]["agents"][0]["pseudonyms"].update(shoe="ab" * 64),
        lambda o: o["content"].update(status="open"),
        lambda o: o["content"].update(conduct=[]),
        lambda o: o.update(revision=0),
        lambda o: o.update(revision=2**31),  # beyond the stored column: would stall sync
        lambda o: o.update(withdrawn=True),
        lambda o: o.update(global_id="IL-1"),
        lambda o: o["content"]["evidence"].update({"video/mp4": 0}),
        lambda o: o["content"]["agents"][0].update(masked="yes"),
    ],
)
def test_closed_schema_refuses_extra_or_bad_fields(change: object) -> None:
    obj = json.loads(entry().payload())
    change(obj)  # type: ignore[operator]
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(IndexEntryError):
        IndexEntry.from_payload(data)


@pytest.mark.parametrize("data", [b"", b"{}", b"\xff", b"[1]", b"x" * 70_000])
def test_unparseable_entries(data: bytes) -> None:
    with pytest.raises(IndexEntryError):
        IndexEntry.from_payload(data)


def test_non_canonical_entry() -> None:
    with pytest.raises(IndexEntryError, match="canonical"):
        IndexEntry.from_payload(entry().payload().replace(b",", b", "))
