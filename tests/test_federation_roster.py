"""The roster chain of trust, attacked (python-tuf style: one test per attack)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from crypto import signing, x25519
from crypto.dsse import Envelope, Signature
from crypto.tls import certificate_fingerprint, generate_tls_key, self_signed_certificate
from federation.errors import RosterError, RosterExpiredError, RosterRollbackError
from federation.roster import (
    Member,
    Roster,
    check_in_force,
    cosign_roster,
    member_card_file,
    parse_member_card,
    parse_member_card_file,
    sign_roster,
    verify_chain,
    verify_initial,
    verify_update,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=365)


@dataclasses.dataclass
class Node:
    state: str
    key: signing.SigningKey
    enc: x25519.PrivateKey

    def member(self, endpoint: str | None = None) -> Member:
        pin = hashlib.sha256(f"cert of {self.state}".encode()).hexdigest()
        return Member(
            self.state,
            endpoint or f"{self.state.lower()}.compact.test:7401",
            pin,
            self.key.public_key,
            self.enc.public_key,
        )


def node(state: str) -> Node:
    return Node(state, signing.SigningKey.generate(), x25519.PrivateKey.generate())


IL, MN, CA, NY = node("IL"), node("MN"), node("CA"), node("NY")


def roster(
    version: int, nodes: list[Node], threshold: int = 2, expires: datetime = LATER
) -> Roster:
    members = tuple(sorted((n.member() for n in nodes), key=lambda m: m.state))
    return Roster(version=version, expires=expires, threshold=threshold, members=members)


def signed(r: Roster, *signers: Node) -> Envelope:
    env = sign_roster(r, signers[0].key)
    for s in signers[1:]:
        env = cosign_roster(env, s.key)
    return env


V1 = roster(1, [IL, MN, CA])


def test_initial_roster_trusted_by_pin_and_members() -> None:
    env = signed(V1, IL, MN)
    assert verify_initial(env, pinned_sha256=V1.payload_sha256(), now=NOW) == V1


def test_initial_roster_with_the_wrong_pin() -> None:
    with pytest.raises(RosterError, match="pinned"):
        verify_initial(signed(V1, IL, MN), pinned_sha256="0" * 64, now=NOW)


def test_initial_roster_signed_by_too_few() -> None:
    with pytest.raises(RosterError, match="not signed by enough"):
        verify_initial(signed(V1, IL), pinned_sha256=V1.payload_sha256(), now=NOW)


def test_initial_roster_that_is_not_version_1() -> None:
    v2 = roster(2, [IL, MN, CA])
    with pytest.raises(RosterRollbackError):
        verify_initial(signed(v2, IL, MN), pinned_sha256=v2.payload_sha256(), now=NOW)


def test_member_joins() -> None:
    v2 = roster(2, [IL, MN, CA, NY], threshold=3)
    env = signed(v2, IL, MN, CA)  # 2 of v1 and 3 of v2
    assert verify_update(V1, env, now=NOW) == v2


def test_roster_signed_by_too_few_previous_members() -> None:
    v2 = roster(2, [IL, MN, CA, NY], threshold=2)
    with pytest.raises(RosterError, match="version 1's members"):
        verify_update(V1, signed(v2, IL, NY), now=NOW)  # only one of v1's members


def test_roster_not_signed_by_its_own_threshold() -> None:
    """A rotated key must prove possession: the new version's own threshold applies."""
    rotated = Node("MN", signing.SigningKey.generate(), MN.enc)
    v2 = roster(2, [IL, rotated, CA], threshold=3)
    with pytest.raises(RosterError, match="its own members"):
        verify_update(V1, signed(v2, IL, MN, CA), now=NOW)  # the new MN key never signed
    assert verify_update(V1, signed(v2, IL, MN, CA, rotated), now=NOW) == v2


def test_roster_with_duplicated_signatures() -> None:
    v2 = roster(2, [IL, MN, CA])
    env = signed(v2, IL)
    dup = Envelope(env.payload_type, env.payload, env.signatures * 3)
    with pytest.raises(RosterError, match="not signed by enough"):
        verify_update(V1, dup, now=NOW)


def test_roster_signed_by_non_members() -> None:
    v2 = roster(2, [IL, MN, CA])
    with pytest.raises(RosterError):
        verify_update(V1, signed(v2, NY, node("TX")), now=NOW)


def test_revoked_member_cannot_help_sign_the_next_version() -> None:
    v2 = roster(2, [IL, MN], threshold=2)  # CA leaves
    assert verify_update(V1, signed(v2, IL, MN, CA), now=NOW) == v2
    v3 = roster(3, [IL, MN], threshold=2)
    with pytest.raises(RosterError):
        verify_update(v2, signed(v3, IL, CA), now=NOW)


def test_rollback_roster() -> None:
    v2 = roster(2, [IL, MN, CA])
    trusted = verify_update(V1, signed(v2, IL, MN), now=NOW)
    with pytest.raises(RosterRollbackError, match="cannot follow version 2"):
        verify_update(trusted, signed(V1, IL, MN), now=NOW)


def test_replayed_same_version() -> None:
    with pytest.raises(RosterRollbackError):
        verify_update(V1, signed(V1, IL, MN), now=NOW)


def test_skipped_version() -> None:
    v3 = roster(3, [IL, MN, CA])
    with pytest.raises(RosterRollbackError, match="3 cannot follow version 1"):
        verify_update(V1, signed(v3, IL, MN), now=NOW)


def test_forged_payload_after_signing() -> None:
    v2 = roster(2, [IL, MN, CA])
    env = signed(v2, IL, MN)
    evil = roster(2, [IL, MN, CA], threshold=1)
    forged = Envelope(env.payload_type, evil.payload(), env.signatures)
    with pytest.raises(RosterError):
        verify_update(V1, forged, now=NOW)


def test_wrong_payload_type() -> None:
    v2 = roster(2, [IL, MN, CA])
    env = signed(v2, IL, MN)
    with pytest.raises(RosterError):
        verify_update(V1, Envelope("application/json", env.payload, env.signatures), now=NOW)


def test_expired_roster_stops_traffic() -> None:
    check_in_force(V1, now=NOW)
    with pytest.raises(RosterExpiredError, match="expired"):
        check_in_force(V1, now=LATER)


def test_an_update_that_is_already_expired_is_refused() -> None:
    v2 = roster(2, [IL, MN, CA], expires=NOW - timedelta(seconds=1))
    with pytest.raises(RosterExpiredError):
        verify_update(V1, signed(v2, IL, MN), now=NOW)


def test_chain_only_the_last_version_must_be_current() -> None:
    v2 = roster(2, [IL, MN, CA], expires=NOW - timedelta(days=1))
    v3 = roster(3, [IL, MN, CA, NY], threshold=3)
    final = verify_chain(V1, [signed(v2, IL, MN), signed(v3, IL, MN, CA)], now=NOW)
    assert final == v3
    with pytest.raises(RosterRollbackError):
        verify_chain(V1, [signed(v3, IL, MN, CA)], now=NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.update(version=0), "positive"),
        (lambda o: o.update(version="2"), "integers"),
        (lambda o: o.update(threshold=4), "threshold"),
        (lambda o: o.update(threshold=0), "threshold"),
        (lambda o: o.update(expires="2027-01-01"), "expires"),
        (lambda o: o.update(format="compact-roster-v9"), "format"),
        (lambda o: o.update(extra=1), "unknown"),
        (lambda o: o["members"].append(dict(o["members"][0])), "sorted|share"),
        (lambda o: o["members"][0].update(state="ZZ"), "state"),
        (lambda o: o["members"][0].update(endpoint="nowhere"), "endpoint"),
        (lambda o: o["members"][0].update(tls_pin="AB" * 32), "tls_pin"),
        (lambda o: o["members"][0].update(signing_key="00" * 32), "not usable"),
        (lambda o: o["members"][0].update(encryption_key="00" * 32), "not usable"),
        (lambda o: o["members"][1].update(tls_pin=o["members"][0]["tls_pin"]), "TLS pin"),
        (lambda o: o.update(members=[]), "members"),
    ],
)
def test_malformed_roster_payloads(change: object, message: str) -> None:
    obj = json.loads(V1.payload())
    change(obj)  # type: ignore[operator]
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(RosterError, match=message):
        Roster.from_payload(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b"{",
        b"\xff",
        b'{"version": 1.5}',
        b"x" * 300_000,
        V1.payload().replace(b",", b", "),
    ],
)
def test_unparseable_or_non_canonical_payloads(data: bytes) -> None:
    with pytest.raises(RosterError):
        Roster.from_payload(data)


def test_payload_round_trip_and_member_cards() -> None:
    assert Roster.from_payload(V1.payload()) == V1
    for m in V1.members:
        assert parse_member_card(m.card()) == m
    with pytest.raises(RosterError):
        parse_member_card(V1.members[0].card().replace(b"member-card", b"roster"))


def test_lookup_by_state_and_pin() -> None:
    il = V1.member("IL")
    assert il is not None and V1.member_by_pin(il.tls_pin) == il
    assert V1.member("TX") is None and V1.member_by_pin("0" * 64) is None


def test_signature_from_a_member_under_another_member_id_counts_for_nobody() -> None:
    v2 = roster(2, [IL, MN, CA])
    env = signed(v2, IL)
    relabelled = Signature(MN.key.key_id, env.signatures[0].sig)
    with pytest.raises(RosterError):
        verify_update(
            V1, Envelope(env.payload_type, env.payload, (env.signatures[0], relabelled)), now=NOW
        )


# --- member card files (card + TLS certificate) ---------------------------------------------


def certificate(state: str) -> bytes:
    return self_signed_certificate(
        generate_tls_key(), common_name=f"compact node {state}", hosts=["127.0.0.1"]
    )


def card_file_obj(member: Member, pem: bytes) -> dict[str, object]:
    obj: dict[str, object] = json.loads(member_card_file(member, pem))
    return obj


def test_member_card_file_round_trip() -> None:
    pem = certificate("IL")
    member = dataclasses.replace(IL.member(), tls_pin=certificate_fingerprint(pem))
    data = member_card_file(member, pem)
    assert parse_member_card_file(data) == (member, pem)
    obj = json.loads(data)
    assert obj["format"] == "compact-member-card-v1" and obj["tls_certificate"] == pem.decode()
    # The card part alone is still a member card.
    assert parse_member_card(member.card()) == member


def test_member_card_file_with_another_members_certificate() -> None:
    pem, other = certificate("IL"), certificate("MN")
    member = dataclasses.replace(IL.member(), tls_pin=certificate_fingerprint(pem))
    with pytest.raises(RosterError, match="does not match the card's tls_pin"):
        parse_member_card_file(member_card_file(member, other))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tls_certificate": None}, "missing"),
        ({"extra": "x"}, "unknown"),
        ({"tls_certificate": 5}, "expected a PEM certificate"),
        ({"tls_certificate": "not a certificate"}, "not exactly one PEM certificate"),
        ({"format": "compact-roster-v1"}, "unknown format"),
        ({"endpoint": "no port"}, "endpoint"),
    ],
)
def test_member_card_file_strict_fields(change: dict[str, object], message: str) -> None:
    pem = certificate("IL")
    member = dataclasses.replace(IL.member(), tls_pin=certificate_fingerprint(pem))
    obj = card_file_obj(member, pem)
    for key, value in change.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    with pytest.raises(RosterError, match=message):
        parse_member_card_file(json.dumps(obj).encode())


def test_member_card_file_with_two_certificates_or_too_large() -> None:
    pem = certificate("IL")
    member = dataclasses.replace(IL.member(), tls_pin=certificate_fingerprint(pem))
    obj = card_file_obj(member, pem)
    obj["tls_certificate"] = (pem + certificate("MN")).decode()
    with pytest.raises(RosterError, match="not exactly one PEM certificate"):
        parse_member_card_file(json.dumps(obj).encode())
    obj["tls_certificate"] = pem.decode() + " " * 17_000
    with pytest.raises(RosterError, match="larger than 16384 bytes"):
        parse_member_card_file(json.dumps(obj).encode())
    with pytest.raises(RosterError):
        parse_member_card_file(b"[]")
