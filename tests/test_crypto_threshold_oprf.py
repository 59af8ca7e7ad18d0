"""crypto.threshold_oprf: every t-subset of share holders gives the single-key RFC 9497 output;
forged, altered, duplicated and missing share answers fail closed."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import oprf
from crypto import threshold_oprf as th
from crypto.errors import EncodingError, PolicyError, ThresholdError, VerificationError
from crypto.oprf import Mode
from crypto.ristretto import (
    Element,
    L,
    Scalar,
    base_mult,
    element_add,
    random_scalar,
    scalar_add,
    scalar_mul,
    scalar_mult,
)

INPUTS = [b"agent|IL|badge-0001", b"agent|NM|badge-0002", b"agent|IL|badge-0003"]


@dataclass(frozen=True)
class Setup:
    sk: Scalar
    pk: Element
    split: th.KeySplit
    t: int
    blinds: list[Scalar]
    blinded: list[Element]
    evaluations: list[th.ShareEvaluation]
    expected: list[bytes]

    def outputs(self, evaluations: Sequence[th.ShareEvaluation]) -> list[bytes]:
        combined = th.combine(self.blinded, evaluations, self.split.commitments, t=self.t)
        return th.threshold_finalize(INPUTS, self.blinds, combined)


def make_setup(t: int, n: int, inputs: Sequence[bytes] = INPUTS) -> Setup:
    sk, pk = oprf.generate_key_pair()
    split = th.split_key(sk, t=t, n=n)
    pairs = [oprf.blind(x, mode=th.MODE) for x in inputs]
    blinded = [e for _, e in pairs]
    evaluations = [th.evaluate_share(s, blinded) for s in split.shares]
    expected = [oprf.evaluate(sk, x, mode=Mode.VOPRF) for x in inputs]
    return Setup(sk, pk, split, t, [b for b, _ in pairs], blinded, evaluations, expected)


SETUPS = {(2, 3): make_setup(2, 3), (3, 5): make_setup(3, 5)}


# --- the property: every t-subset equals the single-key output ---------------------------------


@pytest.mark.parametrize("tn", [(2, 3), (3, 5)], ids=["2-of-3", "3-of-5"])
def test_every_t_subset_gives_the_single_key_output(tn: tuple[int, int]) -> None:
    s = SETUPS[tn]
    subsets = list(itertools.combinations(s.evaluations, s.t))
    assert len(subsets) == {(2, 3): 3, (3, 5): 10}[tn]
    for subset in subsets:
        assert s.outputs(subset) == s.expected
        assert s.outputs(list(reversed(subset))) == s.expected


@pytest.mark.parametrize("tn", [(2, 3), (3, 5)], ids=["2-of-3", "3-of-5"])
def test_more_than_t_answers_give_the_same_output(tn: tuple[int, int]) -> None:
    s = SETUPS[tn]
    assert s.outputs(s.evaluations) == s.expected


def test_output_is_the_voprf_output_not_the_oprf_output() -> None:
    s = SETUPS[(2, 3)]
    assert th.MODE is Mode.VOPRF
    assert s.outputs(s.evaluations[:2]) != [oprf.evaluate(s.sk, x, mode=Mode.OPRF) for x in INPUTS]


@settings(max_examples=15, deadline=None)
@given(
    tn=st.sampled_from([(1, 1), (1, 3), (2, 2), (2, 3), (3, 5), (4, 6)]),
    inputs=st.lists(st.binary(max_size=64), min_size=1, max_size=3),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_any_t_or_more_holders_in_any_order(
    tn: tuple[int, int], inputs: list[bytes], seed: int
) -> None:
    t, n = tn
    s = make_setup(t, n, inputs)
    rnd = random.Random(seed)
    chosen = rnd.sample(s.evaluations, rnd.randint(t, n))
    combined = th.combine(s.blinded, chosen, s.split.commitments, t=t)
    assert th.threshold_finalize(inputs, s.blinds, combined) == s.expected


def test_commitments_as_mapping_or_sequence() -> None:
    s = SETUPS[(2, 3)]
    table = {c.index: c.element for c in s.split.commitments}
    assert th.combine(s.blinded, s.evaluations[1:], table, t=2) == th.combine(
        s.blinded, s.evaluations[1:], s.split.commitments, t=2
    )


# --- the dealer ---------------------------------------------------------------------------------


def counting_rng(start: int) -> Callable[[], Scalar]:
    values = itertools.count(start)
    return lambda: Scalar.from_int(next(values))


def test_split_key_is_shamir_over_the_scalar_field() -> None:
    sk = Scalar.from_int(1234567)
    split = th.split_key(sk, t=3, n=5, rng=counting_rng(10))  # f(x) = sk + 10x + 11x^2
    assert [s.index for s in split.shares] == [1, 2, 3, 4, 5]
    for share in split.shares:
        i = share.index
        assert share.scalar.to_int() == (1234567 + 10 * i + 11 * i * i) % L
    assert [c.element for c in split.commitments] == [base_mult(s.scalar) for s in split.shares]
    assert [c.index for c in split.commitments] == [1, 2, 3, 4, 5]
    assert split.public_key == base_mult(sk)
    shares, commitments, public_key = split  # unpacks
    assert (shares, commitments, public_key) == (split.shares, split.commitments, split.public_key)


def test_lagrange_coefficients_interpolate_at_zero() -> None:
    split = th.split_key(Scalar.from_int(99), t=3, n=5, rng=counting_rng(5))
    for subset in itertools.combinations(split.shares, 3):
        lambdas = th.lagrange_coefficients(s.index for s in subset)
        total = Scalar.from_int(0)
        for s in subset:
            total = scalar_add(total, scalar_mul(lambdas[s.index], s.scalar))
        assert total == Scalar.from_int(99)


def test_split_key_draws_fresh_coefficients() -> None:
    sk = random_scalar()
    a = th.split_key(sk, t=2, n=3)
    b = th.split_key(sk, t=2, n=3)
    assert a.public_key == b.public_key
    assert a.shares != b.shares


def test_t_equals_one_gives_every_holder_the_key() -> None:
    sk = random_scalar()
    split = th.split_key(sk, t=1, n=3)
    assert all(s.scalar == sk for s in split.shares)


def test_zero_key_or_coefficient_is_refused() -> None:
    with pytest.raises(ValueError, match="key"):
        th.split_key(Scalar.from_int(0), t=2, n=3)
    with pytest.raises(ValueError, match="coefficients"):
        th.split_key(random_scalar(), t=2, n=3, rng=lambda: Scalar.from_int(0))


def test_share_repr_does_not_show_the_scalar() -> None:
    share = th.split_key(Scalar.from_int(7), t=2, n=2, rng=counting_rng(1)).shares[0]
    assert "redacted" in repr(share)
    assert "8" not in repr(share).replace("index=1", "")


@pytest.mark.parametrize(("t", "n"), [(0, 3), (-1, 3), (4, 3), (1, 0), (2, th.MAX_SHARES + 1)])
def test_bad_sharing_parameters_are_policy_errors(t: int, n: int) -> None:
    with pytest.raises(PolicyError):
        th.split_key(random_scalar(), t=t, n=n)


def test_verify_commitments() -> None:
    s = SETUPS[(3, 5)]
    th.verify_commitments(s.split.commitments, s.pk, t=3)
    th.verify_commitments({c.index: c.element for c in s.split.commitments}, s.pk, t=3)
    with pytest.raises(VerificationError):
        th.verify_commitments(s.split.commitments, base_mult(random_scalar()), t=3)
    with pytest.raises(VerificationError):  # a 3-of-5 sharing is not a 2-of-5 one
        th.verify_commitments(s.split.commitments, s.pk, t=2)
    for bad in range(5):
        commitments = list(s.split.commitments)
        c = commitments[bad]
        commitments[bad] = th.ShareCommitment(c.index, element_add(c.element, c.element))
        with pytest.raises(VerificationError):
            th.verify_commitments(commitments, s.pk, t=3)


def test_a_holder_with_a_bad_commitment_changes_pseudonyms() -> None:
    """Why verify_commitments matters: a holder that commits to and uses a wrong share
    passes its proofs, and subsets with it give other pseudonyms."""
    s = SETUPS[(2, 3)]
    rogue = th.KeyShare(3, random_scalar())
    commitments = [*s.split.commitments[:2], th.ShareCommitment(3, base_mult(rogue.scalar))]
    with pytest.raises(VerificationError):
        th.verify_commitments(commitments, s.pk, t=2)
    ev = th.evaluate_share(rogue, s.blinded)
    combined = th.combine(s.blinded, [s.evaluations[0], ev], commitments, t=2)
    assert th.threshold_finalize(INPUTS, s.blinds, combined) != s.expected


# --- fail closed ---------------------------------------------------------------------------------


def test_fewer_than_t_answers_raise_threshold_error() -> None:
    s = SETUPS[(3, 5)]
    for k in range(3):
        for subset in itertools.combinations(s.evaluations, k):
            with pytest.raises(ThresholdError, match=f"{k} valid share evaluations, 3 required"):
                s.outputs(subset)
    assert issubclass(ThresholdError, VerificationError)


def test_duplicate_answers_count_once() -> None:
    s = SETUPS[(2, 3)]
    with pytest.raises(ThresholdError, match="1 valid"):
        s.outputs([s.evaluations[0], s.evaluations[0]])
    # A second answer from index 1 made with fresh proof randomness is still index 1.
    again = th.evaluate_share(s.split.shares[0], s.blinded)
    assert again.proof != s.evaluations[0].proof
    with pytest.raises(ThresholdError, match="1 valid"):
        s.outputs([s.evaluations[0], again])
    assert s.outputs([s.evaluations[0], again, s.evaluations[2]]) == s.expected


def test_answer_with_a_wrong_share_is_excluded() -> None:
    s = SETUPS[(2, 3)]
    forged = th.evaluate_share(th.KeyShare(2, random_scalar()), s.blinded)
    with pytest.raises(ThresholdError, match="1 valid share evaluations, 2 required"):
        s.outputs([s.evaluations[0], forged])
    assert s.outputs([s.evaluations[0], forged, s.evaluations[2]]) == s.expected


def test_answer_claiming_another_index_is_excluded() -> None:
    s = SETUPS[(2, 3)]
    relabelled = dataclasses.replace(s.evaluations[2], index=2)
    with pytest.raises(ThresholdError):
        s.outputs([s.evaluations[0], relabelled])


def test_answer_for_another_batch_is_excluded() -> None:
    s = SETUPS[(2, 3)]
    other = [oprf.blind(x, mode=th.MODE)[1] for x in INPUTS]
    stale = th.evaluate_share(s.split.shares[1], other)
    with pytest.raises(ThresholdError):
        s.outputs([s.evaluations[0], stale])


def test_answer_with_elements_from_another_share_is_excluded() -> None:
    """Right proof, but one element evaluated with a different scalar."""
    s = SETUPS[(2, 3)]
    ev = s.evaluations[1]
    bad = scalar_mult(random_scalar(), s.blinded[1])
    tampered = dataclasses.replace(
        ev, evaluated_elements=(ev.evaluated_elements[0], bad, *ev.evaluated_elements[2:])
    )
    with pytest.raises(ThresholdError):
        s.outputs([s.evaluations[0], tampered])


def test_unknown_index_and_wrong_length_are_excluded() -> None:
    s = SETUPS[(2, 3)]
    unknown = dataclasses.replace(s.evaluations[1], index=9)
    short = dataclasses.replace(
        s.evaluations[1], evaluated_elements=s.evaluations[1].evaluated_elements[:2]
    )
    for bad in (unknown, short):
        with pytest.raises(ThresholdError):
            s.outputs([s.evaluations[0], bad])


def flip(data: bytes, position: int, mask: int) -> bytes:
    out = bytearray(data)
    out[position % len(data)] ^= mask
    return bytes(out)


@settings(max_examples=40, deadline=None)
@given(
    holder=st.integers(min_value=0, max_value=2),
    position=st.integers(min_value=0, max_value=10_000),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_changed_proof_byte_is_excluded(holder: int, position: int, mask: int) -> None:
    s = SETUPS[(2, 3)]
    ev = s.evaluations[holder]
    tampered = dataclasses.replace(ev, proof=flip(ev.proof, position, mask))
    others = [e for i, e in enumerate(s.evaluations) if i != holder]
    with pytest.raises(ThresholdError):
        s.outputs([tampered, others[0]])
    assert s.outputs([tampered, *others]) == s.expected  # excluded, the others suffice


@settings(max_examples=40, deadline=None)
@given(
    holder=st.integers(min_value=0, max_value=2),
    element=st.integers(min_value=0, max_value=2),
    position=st.integers(min_value=0, max_value=10_000),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_changed_evaluated_byte_is_rejected(
    holder: int, element: int, position: int, mask: int
) -> None:
    """On the wire: the altered element fails to decode, or decodes and fails the proof."""
    s = SETUPS[(2, 3)]
    ev = s.evaluations[holder]
    wire = [e.to_bytes() for e in ev.evaluated_elements]
    wire[element] = flip(wire[element], position, mask)
    others = [e for i, e in enumerate(s.evaluations) if i != holder]
    try:
        decoded = tuple(Element.from_bytes(w) for w in wire)
    except EncodingError:
        return
    tampered = dataclasses.replace(ev, evaluated_elements=decoded)
    with pytest.raises(ThresholdError):
        s.outputs([tampered, others[0]])


# --- caller mistakes and policy ------------------------------------------------------------------


def test_combine_policy_errors() -> None:
    s = SETUPS[(2, 3)]
    c = s.split.commitments
    with pytest.raises(PolicyError, match="at least 1"):
        th.combine(s.blinded, s.evaluations, c, t=0)
    with pytest.raises(PolicyError, match="exceed"):
        th.combine(s.blinded, s.evaluations, c, t=4)
    with pytest.raises(PolicyError, match="duplicate"):
        th.combine(s.blinded, s.evaluations, [*c, c[0]], t=2)
    with pytest.raises(PolicyError, match="run from 1"):
        th.combine(s.blinded, s.evaluations, {0: c[0].element, 1: c[1].element}, t=2)
    with pytest.raises(PolicyError, match="no share commitments"):
        th.combine(s.blinded, s.evaluations, {}, t=1)
    with pytest.raises(PolicyError, match="duplicate"):
        th.lagrange_coefficients([1, 2, 2])
    with pytest.raises(ValueError, match="nothing"):
        th.combine([], s.evaluations, c, t=2)


def test_evaluate_share_is_reproducible_with_injected_randomness() -> None:
    s = SETUPS[(2, 3)]
    r = random_scalar()
    a = th.evaluate_share(s.split.shares[0], s.blinded, proof_randomness=r)
    b = th.evaluate_share(s.split.shares[0], s.blinded, proof_randomness=r)
    assert a == b
    assert a.evaluated_elements == s.evaluations[0].evaluated_elements
    with pytest.raises(ValueError, match="nothing"):
        th.evaluate_share(s.split.shares[0], [])


def test_threshold_finalize_checks_lengths() -> None:
    s = SETUPS[(2, 3)]
    combined = th.combine(s.blinded, s.evaluations, s.split.commitments, t=2)
    with pytest.raises(ValueError, match="same length"):
        th.threshold_finalize(INPUTS[:2], s.blinds, combined)


def test_verify_share_evaluation_names_each_bad_answer_and_combine_verified_matches() -> None:
    s = make_setup(2, 3)
    for ev in s.evaluations:
        th.verify_share_evaluation(s.blinded, ev, s.split.commitments)
    good, other = s.evaluations[0], s.evaluations[1]
    wrong_proof = dataclasses.replace(good, proof=other.proof)
    wrong_index = dataclasses.replace(good, index=other.index)
    short = dataclasses.replace(good, evaluated_elements=good.evaluated_elements[:-1])
    unknown = dataclasses.replace(good, index=9)
    for bad in (wrong_proof, wrong_index, short, unknown):
        with pytest.raises(VerificationError):
            th.verify_share_evaluation(s.blinded, bad, s.split.commitments)
    verified = {ev.index: ev.evaluated_elements for ev in s.evaluations[1:]}
    combined = th.combine_verified(len(s.blinded), verified, t=2)
    assert th.threshold_finalize(INPUTS, s.blinds, combined) == s.expected
    with pytest.raises(ThresholdError):
        th.combine_verified(len(s.blinded), {good.index: good.evaluated_elements}, t=2)
