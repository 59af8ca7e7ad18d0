"""Threshold OPRF: the compact key split t-of-n, each share proven, outputs equal to RFC 9497's.

The compact key ``sk`` is split by Shamir sharing over the ristretto255 scalar field:
a random polynomial ``f`` of degree ``t - 1`` with ``f(0) = sk``; share holder ``i``
(``1 <= i <= n``) gets ``f(i)``, and everybody gets the commitments ``f(i) * G`` and
the public key ``sk * G``.

A requester blinds its inputs with :func:`crypto.oprf.blind` in **VOPRF mode**
(:data:`MODE`). Each share holder answers with :func:`evaluate_share`: its share
times every blinded element, and one batched RFC 9497 DLEQ proof (GenerateProof with
the share, its commitment as the public key and the VOPRF context string) that it
used the share it committed to. :func:`combine` verifies the proofs against the
commitments and interpolates ``t`` valid answers at zero in the exponent:
``sum(lambda_i * f(i) * C) = sk * C``. :func:`threshold_finalize` unblinds and hashes.

The result equals the single-key output ``crypto.oprf.evaluate(sk, input,
mode=Mode.VOPRF)`` for every subset of ``t`` share holders: Finalize does not
depend on the mode, and the VOPRF HashToGroup tag used when blinding is the one
``evaluate`` uses in VOPRF mode. (It is *not* the OPRF-mode output of the same key:
the two modes hash inputs to the group with different tags.)

:func:`combine` trusts the commitment table it is given. Check a table once, when it
is loaded, with :func:`verify_commitments`: that every ``t`` commitments interpolate
to the public key. Otherwise a holder whose commitment matches a wrong share passes
its proofs, and subsets with and without it give different pseudonyms.

Fail closed: invalid answers (unknown index, wrong number of elements, a proof that
is malformed or does not verify) are left out, an index counts once, and fewer than
``t`` valid distinct indexes raise :class:`~crypto.errors.ThresholdError`.
Answers beyond the first ``t`` valid ones are not checked (their work would be
wasted). Bad sharing parameters raise :class:`~crypto.errors.PolicyError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from crypto.errors import EncodingError, PolicyError, ThresholdError, VerificationError
from crypto.oprf import (
    MAX_BATCH,
    Mode,
    context_string,
    finalize_elements,
    generate_proof,
    verify_proof,
)
from crypto.ristretto import (
    GENERATOR,
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

__all__ = [
    "MAX_SHARES",
    "MODE",
    "KeyShare",
    "KeySplit",
    "ShareCommitment",
    "ShareEvaluation",
    "combine",
    "combine_verified",
    "evaluate_share",
    "lagrange_coefficients",
    "split_key",
    "threshold_finalize",
    "verify_commitments",
    "verify_share_evaluation",
]

#: The RFC 9497 mode whose output the threshold protocol reproduces.
MODE: Final = Mode.VOPRF
#: Share indexes run from 1 to n; far more than a compact of states needs.
MAX_SHARES: Final = 255

_CONTEXT: Final = context_string(MODE)


@dataclass(frozen=True, slots=True)
class KeyShare:
    """Share holder ``index``'s secret ``f(index)``; its repr does not show the scalar."""

    index: int
    scalar: Scalar


@dataclass(frozen=True, slots=True)
class ShareCommitment:
    """The public commitment ``f(index) * G`` to share ``index``."""

    index: int
    element: Element


@dataclass(frozen=True, slots=True)
class ShareEvaluation:
    """One share holder's answer: ``f(index) * C`` for each blinded ``C``, and a DLEQ proof."""

    index: int
    evaluated_elements: tuple[Element, ...]
    proof: bytes


class KeySplit(NamedTuple):
    """What :func:`split_key` deals: secret shares, their public commitments, the public key."""

    shares: list[KeyShare]
    commitments: list[ShareCommitment]
    public_key: Element


def _check_threshold(t: int, n: int) -> None:
    for name, value in (("t", t), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int")
    if t < 1:
        raise PolicyError("the threshold must be at least 1")
    if t > n:
        raise PolicyError("the threshold must not exceed the number of shares")
    if n > MAX_SHARES:
        raise PolicyError(f"at most {MAX_SHARES} shares")


def split_key(sk: Scalar, *, t: int, n: int, rng: Callable[[], Scalar] | None = None) -> KeySplit:
    """Split ``sk`` into ``n`` Shamir shares, any ``t`` of which evaluate like ``sk``.

    ``rng`` draws the ``t - 1`` polynomial coefficients (default: libsodium's
    uniform non-zero scalars); inject one only in tests. A zero coefficient is
    refused (ValueError): a zero leading coefficient would lower the threshold.
    """
    _check_threshold(t, n)
    if sk.is_zero():
        raise ValueError("the key must not be zero")
    draw = random_scalar if rng is None else rng
    coefficients = [sk]
    for _ in range(t - 1):
        a = draw()
        if not isinstance(a, Scalar) or a.is_zero():
            raise ValueError("polynomial coefficients must be non-zero scalars")
        coefficients.append(a)
    shares = []
    for i in range(1, n + 1):
        x = Scalar.from_int(i)
        value = coefficients[-1]
        for a in reversed(coefficients[:-1]):  # Horner, in libsodium (constant time)
            value = scalar_add(scalar_mul(value, x), a)
        if value.is_zero():  # probability about n / 2**252
            raise ValueError("a share is zero: split again")
        shares.append(KeyShare(i, value))
    commitments = [ShareCommitment(s.index, base_mult(s.scalar)) for s in shares]
    return KeySplit(shares, commitments, base_mult(sk))


def lagrange_coefficients(indexes: Iterable[int]) -> dict[int, Scalar]:
    """``lambda_i = prod_{j != i} j / (j - i) mod L``: interpolation at 0 from these indexes.

    Indexes are public; the arithmetic is in Python integers.
    """
    points = list(indexes)
    if not points:
        raise ValueError("no indexes")
    if len(set(points)) != len(points):
        raise PolicyError("duplicate share indexes")
    if any(isinstance(i, bool) or not isinstance(i, int) or not 1 <= i < L for i in points):
        raise PolicyError("share indexes are integers from 1")
    out: dict[int, Scalar] = {}
    for i in points:
        num = den = 1
        for j in points:
            if j != i:
                num = num * j % L
                den = den * (j - i) % L
        out[i] = Scalar.from_int(num * pow(den, -1, L))
    return out


def _commitment_map(
    commitments: Mapping[int, Element] | Sequence[ShareCommitment],
) -> dict[int, Element]:
    if isinstance(commitments, Mapping):
        pairs = list(commitments.items())
    else:
        pairs = [(c.index, c.element) for c in commitments]
    table: dict[int, Element] = {}
    for index, element in pairs:
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= MAX_SHARES:
            raise PolicyError(f"share indexes run from 1 to {MAX_SHARES}")
        if index in table:
            raise PolicyError("duplicate share indexes")
        if not isinstance(element, Element):
            raise TypeError("a commitment must be an Element")
        table[index] = element
    if not table:
        raise PolicyError("no share commitments")
    return table


def _interpolate(terms: Mapping[int, Element]) -> Element:
    """``sum(lambda_i * E_i)`` over the given indexes; ValueError for an identity sum."""
    lambdas = lagrange_coefficients(terms)
    total: Element | None = None
    for i, e in terms.items():
        term = scalar_mult(lambdas[i], e)
        total = term if total is None else element_add(total, term)
    assert total is not None
    return total


def verify_commitments(
    commitments: Mapping[int, Element] | Sequence[ShareCommitment],
    public_key: Element,
    *,
    t: int,
) -> None:
    """Check that the commitments are a t-of-n sharing of ``public_key``'s secret.

    Every subset of ``t`` commitments must interpolate to ``public_key``: checked by
    interpolating the first ``t`` and every later one with the first ``t - 1``.
    Otherwise two subsets of share holders could give two different pseudonyms for
    one agent. VerificationError if not; PolicyError for bad parameters.
    """
    table = _commitment_map(commitments)
    _check_threshold(t, len(table))
    indexes = sorted(table)
    base = indexes[: t - 1]
    try:
        for extra in indexes[t - 1 :]:
            got = _interpolate({i: table[i] for i in [*base, extra]})
            if got != public_key:
                raise VerificationError("share commitments do not match the public key")
    except ValueError:
        raise VerificationError("share commitments do not match the public key") from None


def evaluate_share(
    share: KeyShare,
    blinded_elements: Sequence[Element],
    *,
    proof_randomness: Scalar | None = None,
) -> ShareEvaluation:
    """A share holder's answer to a batch: ``share * C`` for each ``C``, and one DLEQ proof
    that ``log_G(commitment) == log_C(share * C)`` for the whole batch.

    ``proof_randomness`` is for tests only.
    """
    if not isinstance(share, KeyShare):
        raise TypeError("share must be a KeyShare")
    k = share.scalar
    if k.is_zero():
        raise ValueError("the share must not be zero")
    if not blinded_elements:
        raise ValueError("nothing to evaluate")
    if len(blinded_elements) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} elements per batch")
    evaluated = tuple(scalar_mult(k, c) for c in blinded_elements)
    proof = generate_proof(
        k,
        GENERATOR,
        base_mult(k),
        blinded_elements,
        evaluated,
        r=proof_randomness,
        context=_CONTEXT,
    )
    return ShareEvaluation(share.index, evaluated, proof)


def verify_share_evaluation(
    blinded_elements: Sequence[Element],
    evaluation: ShareEvaluation,
    commitments: Mapping[int, Element] | Sequence[ShareCommitment],
) -> None:
    """Check one share holder's answer: a known index, one element per input, a valid proof.

    VerificationError if not (EncodingError for a malformed proof); PolicyError for a bad
    commitment table. Lets a requester tell which holder answered wrongly.
    """
    table = _commitment_map(commitments)
    if not isinstance(evaluation, ShareEvaluation):
        raise TypeError("evaluation must be a ShareEvaluation")
    _check_batch_size(blinded_elements)
    commitment = table.get(evaluation.index)
    if commitment is None:
        raise VerificationError("no commitment for this share index")
    if len(evaluation.evaluated_elements) != len(blinded_elements):
        raise VerificationError("the answer has the wrong number of elements")
    verify_proof(
        GENERATOR,
        commitment,
        blinded_elements,
        evaluation.evaluated_elements,
        evaluation.proof,
        context=_CONTEXT,
    )


def _check_batch_size(blinded_elements: Sequence[Element]) -> None:
    if not blinded_elements:
        raise ValueError("nothing to combine")
    if len(blinded_elements) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} elements per batch")


def combine(
    blinded_elements: Sequence[Element],
    evaluations: Sequence[ShareEvaluation],
    commitments: Mapping[int, Element] | Sequence[ShareCommitment],
    *,
    t: int,
) -> list[Element]:
    """Verify share answers and interpolate ``t`` valid ones: ``sk * C`` for each blinded ``C``.

    Answers are taken in order; one is left out if its index has no commitment or
    was already counted, if it has the wrong number of elements, or if its proof is
    malformed or does not verify. ThresholdError if fewer than ``t`` distinct
    indexes remain; PolicyError for a bad threshold or commitment table.
    """
    table = _commitment_map(commitments)
    _check_threshold(t, len(table))
    _check_batch_size(blinded_elements)
    valid: dict[int, tuple[Element, ...]] = {}
    for ev in evaluations:
        if len(valid) == t:
            break
        if not isinstance(ev, ShareEvaluation):
            raise TypeError("evaluations must be ShareEvaluation values")
        if ev.index in valid:
            continue
        try:
            verify_share_evaluation(blinded_elements, ev, table)
        except (EncodingError, VerificationError):
            continue
        valid[ev.index] = ev.evaluated_elements
    return combine_verified(len(blinded_elements), valid, t=t)


def combine_verified(
    count: int, verified: Mapping[int, Sequence[Element]], *, t: int
) -> list[Element]:
    """Interpolate answers already checked with :func:`verify_share_evaluation`.

    ``verified`` maps share index to its evaluated elements (``count`` each); the first
    ``t`` indexes are used. ThresholdError if there are fewer than ``t``.
    """
    if len(verified) < t:
        raise ThresholdError(f"{len(verified)} valid share evaluations, {t} required")
    indexes = list(verified)[:t]
    if any(len(verified[i]) != count for i in indexes):
        raise ValueError("every answer must have one element per input")
    lambdas = lagrange_coefficients(indexes)
    combined: list[Element] = []
    try:
        for pos in range(count):
            total = scalar_mult(lambdas[indexes[0]], verified[indexes[0]][pos])
            for i in indexes[1:]:
                total = element_add(total, scalar_mult(lambdas[i], verified[i][pos]))
            combined.append(total)
    except ValueError:  # unreachable with verified answers and a non-zero key
        raise VerificationError("share evaluations combine to the identity") from None
    return combined


def threshold_finalize(
    inputs: Sequence[bytes], blinds: Sequence[Scalar], combined_elements: Sequence[Element]
) -> list[bytes]:
    """RFC 9497 Finalize of combined elements: equal to ``evaluate(sk, input, mode=VOPRF)``.

    The inputs must have been blinded with :func:`crypto.oprf.blind` in :data:`MODE`.
    """
    return finalize_elements(inputs, blinds, combined_elements)
