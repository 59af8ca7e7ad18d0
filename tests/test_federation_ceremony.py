"""The OPRF key ceremony: shares sealed to members, checked on opening, attacked."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from crypto import x25519
from crypto.oprf import blind
from crypto.ristretto import Element, base_mult, random_scalar
from crypto.threshold_oprf import (
    MODE,
    KeyShare,
    ShareCommitment,
    combine,
    evaluate_share,
    threshold_finalize,
)
from federation.ceremony import CeremonyError, OprfPublic, open_share, run_ceremony
from tests.test_federation_roster import CA, IL, MN, NY, Node, roster

V1 = roster(1, [IL, MN, CA], threshold=2)
NODES = {"IL": IL, "MN": MN, "CA": CA}


def open_all() -> tuple[OprfPublic, dict[str, KeyShare]]:
    out = run_ceremony(V1, threshold=2)
    shares = {
        state: open_share(
            out.sealed_shares[state],
            state=state,
            private_key=NODES[state].enc,
            roster=out.roster,
        )
        for state in NODES
    }
    return out.public, shares


def pseudonym(public: OprfPublic, shares: list[KeyShare], value: bytes) -> bytes:
    b, blinded = blind(value, mode=MODE)
    evaluations = [evaluate_share(s, [blinded]) for s in shares]
    combined = combine(
        [blinded], evaluations, list(public.commitments.values()), t=public.threshold
    )
    return threshold_finalize([value], [b], combined)[0]


def test_every_pair_of_members_computes_the_same_pseudonym() -> None:
    public, shares = open_all()
    value = b"badge:ICE-ERO:4471"
    outputs = {
        pseudonym(public, [shares[a], shares[b]], value)
        for a, b in itertools.combinations(shares, 2)
    }
    assert len(outputs) == 1
    assert pseudonym(public, [shares["IL"], shares["CA"]], b"name:john smith") not in outputs


def test_each_share_is_sealed_to_its_member_only() -> None:
    out = run_ceremony(V1, threshold=2)
    with pytest.raises(CeremonyError, match="cannot be opened"):
        open_share(out.sealed_shares["MN"], state="MN", private_key=IL.enc, roster=out.roster)
    assert set(out.sealed_shares) == {"IL", "MN", "CA"}
    assert len({bytes(v) for v in out.sealed_shares.values()}) == 3


def _reseal(body: dict[str, object], to: Node) -> bytes:
    return x25519.seal(
        to.enc.public_key, json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    )


def _body(out_sealed: bytes, owner: Node) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(x25519.open_sealed(owner.enc, out_sealed))
    return loaded


def test_share_replayed_to_another_state() -> None:
    out = run_ceremony(V1, threshold=2)
    body = _body(out.sealed_shares["IL"], IL)
    with pytest.raises(CeremonyError, match="another state"):
        open_share(_reseal(body, MN), state="MN", private_key=MN.enc, roster=out.roster)


def test_share_under_a_roster_without_an_oprf_record() -> None:
    out = run_ceremony(V1, threshold=2)
    v2 = roster(2, [IL, MN, CA, NY], threshold=2)
    with pytest.raises(CeremonyError, match="no OPRF public record"):
        open_share(out.sealed_shares["IL"], state="IL", private_key=IL.enc, roster=v2)


def test_share_stays_valid_in_a_later_roster_with_the_same_record() -> None:
    out = run_ceremony(V1, threshold=2)
    later = dataclasses.replace(out.roster, version=2)
    share = open_share(out.sealed_shares["IL"], state="IL", private_key=IL.enc, roster=later)
    assert base_mult(share.scalar) == out.public.commitments["IL"].element


def test_roster_payload_carries_the_public_record() -> None:
    out = run_ceremony(V1, threshold=2)
    parsed = type(out.roster).from_payload(out.roster.payload())
    assert parsed.oprf == out.public
    assert V1.oprf is None and b'"oprf"' not in V1.payload()


def test_share_that_does_not_match_its_commitment() -> None:
    out = run_ceremony(V1, threshold=2)
    body = _body(out.sealed_shares["IL"], IL)
    body["share"] = random_scalar().to_bytes().hex()
    with pytest.raises(CeremonyError, match="commitment"):
        open_share(_reseal(body, IL), state="IL", private_key=IL.enc, roster=out.roster)


def test_share_with_a_zero_scalar() -> None:
    out = run_ceremony(V1, threshold=2)
    body = _body(out.sealed_shares["IL"], IL)
    body["share"] = "00" * 32
    with pytest.raises(CeremonyError, match="commitment"):
        open_share(_reseal(body, IL), state="IL", private_key=IL.enc, roster=out.roster)


def test_public_record_with_a_forged_commitment() -> None:
    """A host that hands one member an inconsistent commitment set is caught on opening."""
    out = run_ceremony(V1, threshold=2)
    forged = dict(out.public.commitments)
    forged["CA"] = ShareCommitment(forged["CA"].index, base_mult(random_scalar()))
    bad = OprfPublic(out.public.threshold, out.public.public_key, forged)
    with pytest.raises(CeremonyError, match="another OPRF key"):
        open_share(
            out.sealed_shares["IL"],
            state="IL",
            private_key=IL.enc,
            roster=dataclasses.replace(out.roster, oprf=bad),
        )
    with pytest.raises(CeremonyError):
        OprfPublic.from_json(bad.to_json())


def test_public_record_of_another_ceremony() -> None:
    first, second = run_ceremony(V1, threshold=2), run_ceremony(V1, threshold=2)
    with pytest.raises(CeremonyError, match="another OPRF key"):
        open_share(first.sealed_shares["IL"], state="IL", private_key=IL.enc, roster=second.roster)


def test_public_record_round_trip_and_malformed() -> None:
    out = run_ceremony(V1, threshold=2)
    assert OprfPublic.from_json(out.public.to_json()) == out.public
    for bad in (
        b"",
        b"[]",
        b'{"format":"x"}',
        out.public.to_json().replace(b'"threshold":2', b'"threshold":"2"'),
    ):
        with pytest.raises(CeremonyError):
            OprfPublic.from_json(bad)
    identity = json.loads(out.public.to_json())
    identity["public_key"] = "00" * 32
    with pytest.raises(CeremonyError):
        OprfPublic.from_json(json.dumps(identity).encode())


@pytest.mark.parametrize("sealed", [b"", b"x" * 100, b"x" * 5000])
def test_garbage_sealed_shares(sealed: bytes) -> None:
    out = run_ceremony(V1, threshold=2)
    with pytest.raises(CeremonyError):
        open_share(sealed, state="IL", private_key=IL.enc, roster=out.roster)


@pytest.mark.parametrize("threshold", [0, 4])
def test_threshold_out_of_range(threshold: int) -> None:
    with pytest.raises(CeremonyError, match="threshold"):
        run_ceremony(V1, threshold=threshold)


def test_threshold_of_one_among_several_members_is_refused() -> None:
    """With t = 1 every share would be the whole key: any member alone could compute
    every pseudonym offline (found writing docs/threat-model.md)."""
    with pytest.raises(CeremonyError, match="at least 2"):
        run_ceremony(V1, threshold=1)
    alone = roster(1, [IL], threshold=1)
    assert run_ceremony(alone, threshold=1).roster.oprf is not None


def test_commitments_are_share_times_generator() -> None:
    public, shares = open_all()
    for state, share in shares.items():
        assert base_mult(share.scalar) == public.commitments[state].element
    assert isinstance(public.public_key, Element)


def test_roster_whose_oprf_record_lacks_a_member_is_refused() -> None:
    from federation.errors import RosterError

    out = run_ceremony(V1, threshold=2)
    partial = dict(out.public.commitments)
    del partial["CA"]
    with pytest.raises(RosterError, match="one share commitment per member"):
        dataclasses.replace(
            out.roster, oprf=OprfPublic(out.public.threshold, out.public.public_key, partial)
        )
    broken = out.roster.payload().replace(b'"format":"compact-oprf-public-v1"', b'"format":"x"')
    with pytest.raises(RosterError, match=r"roster\.oprf"):
        type(out.roster).from_payload(broken)
