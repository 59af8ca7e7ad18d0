"""RFC 9497 OPRF and VOPRF over ristretto255-SHA512.

Modes OPRF (0) and VOPRF (1); POPRF (2) is not implemented. Names follow the RFC:

* client: :func:`blind`, then :func:`finalize` (or :func:`finalize_batch`); in VOPRF
  mode the batched DLEQ proof is verified before any output is computed.
* server: :func:`derive_key_pair` (or :func:`generate_key_pair`),
  :func:`blind_evaluate` (a batched proof in VOPRF mode), :func:`evaluate`.
* proofs: :func:`generate_proof` and :func:`verify_proof` (RFC 9497 section 2.2,
  ComputeComposites with ``m`` pairs), usable with any context string (the threshold
  OPRF proves each share with the VOPRF context).

The blind and the proof randomness can be injected so that the RFC's vectors can be
reproduced; leave them ``None`` everywhere else.

Values crossing the wire are decoded with :meth:`Element.from_bytes` and
:meth:`Scalar.from_bytes` (EncodingError for a malformed, non-canonical or identity
encoding) before they reach these functions; proofs are passed as their 64 bytes
``c || s`` and decoded here. Verification raises
:class:`~crypto.errors.VerificationError` and never returns a bool.

Two deliberate departures, both fail closed and both reached only with negligible
probability by honest parties: a proof whose scalars ``c`` or ``s`` are zero, or whose
composite or commitment elements are the identity, does not verify; and a blinded
batch whose composite is the identity is refused by the server (EncodingError).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from typing import Final, Literal, overload

from crypto.errors import EncodingError, VerificationError
from crypto.h2c import hash_to_group, hash_to_scalar
from crypto.ristretto import (
    GENERATOR,
    SCALAR_SIZE,
    Element,
    Scalar,
    base_mult,
    element_add,
    random_scalar,
    scalar_invert,
    scalar_mul,
    scalar_mult,
    scalar_sub,
)

__all__ = [
    "MAX_BATCH",
    "MAX_INPUT_SIZE",
    "PROOF_SIZE",
    "SEED_SIZE",
    "SUITE_ID",
    "Mode",
    "blind",
    "blind_evaluate",
    "context_string",
    "derive_key_pair",
    "evaluate",
    "finalize",
    "finalize_batch",
    "finalize_elements",
    "generate_key_pair",
    "generate_proof",
    "verify_proof",
]


class Mode(enum.IntEnum):
    """RFC 9497 protocol modes (POPRF, 2, is not implemented)."""

    OPRF = 0
    VOPRF = 1


SUITE_ID: Final = b"ristretto255-SHA512"
#: Bytes of a proof: SerializeScalar(c) || SerializeScalar(s).
PROOF_SIZE: Final = 2 * SCALAR_SIZE
#: Bytes of the DeriveKeyPair seed (Ns).
SEED_SIZE: Final = 32
#: Inputs, and key info, are length-prefixed with two bytes.
MAX_INPUT_SIZE: Final = 0xFFFF
#: Composite transcripts number the pairs with two bytes: at most 65536 per proof.
MAX_BATCH: Final = 0x10000

_ELEMENT_LEN: Final = b"\x00\x20"  # I2OSP(Ne, 2)
_SEED_LEN: Final = b"\x00\x40"  # I2OSP(len(seed), 2): SHA-512 output


def context_string(mode: Mode) -> bytes:
    """``"OPRFV1-" || I2OSP(mode, 1) || "-" || identifier`` (RFC 9497 section 3.1)."""
    return b"OPRFV1-" + bytes([Mode(mode)]) + b"-" + SUITE_ID


def _i2osp2(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _h2s_dst(context: bytes) -> bytes:
    return b"HashToScalar-" + context


def _h2g_dst(mode: Mode) -> bytes:
    return b"HashToGroup-" + context_string(mode)


def _check_input(data: bytes, what: str = "input") -> None:
    if not isinstance(data, bytes):
        raise TypeError(f"{what} must be bytes")
    if len(data) > MAX_INPUT_SIZE:
        raise ValueError(f"{what} is longer than {MAX_INPUT_SIZE} bytes")


def _check_batch(cs: Sequence[Element], ds: Sequence[Element]) -> None:
    if len(cs) != len(ds):
        raise ValueError("Cs and Ds must have the same length")
    if not cs:
        raise ValueError("a proof covers at least one pair")
    if len(cs) > MAX_BATCH:
        raise ValueError(f"a proof covers at most {MAX_BATCH} pairs")


# --- keys ----------------------------------------------------------------------------------


def derive_key_pair(seed: bytes, info: bytes, mode: Mode) -> tuple[Scalar, Element]:
    """RFC 9497 section 3.2.1 DeriveKeyPair: ``(skS, pkS)`` from a 32-byte seed and key info."""
    if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
        raise ValueError(f"seed must be {SEED_SIZE} bytes")
    _check_input(info, "info")
    derive_input = seed + _i2osp2(len(info)) + info
    dst = b"DeriveKeyPair" + context_string(mode)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), dst)
        if not sk.is_zero():
            return sk, base_mult(sk)
    raise ValueError("DeriveKeyPairError: no non-zero scalar in 256 tries")  # pragma: no cover


def generate_key_pair() -> tuple[Scalar, Element]:
    """RFC 9497 GenerateKeyPair: a uniformly random non-zero key and its public key."""
    sk = random_scalar()
    return sk, base_mult(sk)


# --- proofs (RFC 9497 section 2.2) ----------------------------------------------------------


def _composite_scalars(
    b: Element, cs: Sequence[Element], ds: Sequence[Element], context: bytes
) -> list[Scalar]:
    """The ``d_i`` of ComputeComposites."""
    seed_dst = b"Seed-" + context
    seed = hashlib.sha512(_ELEMENT_LEN + b.to_bytes() + _i2osp2(len(seed_dst)) + seed_dst).digest()
    prefix = _SEED_LEN + seed
    dst = _h2s_dst(context)
    return [
        hash_to_scalar(
            prefix
            + _i2osp2(i)
            + _ELEMENT_LEN
            + c.to_bytes()
            + _ELEMENT_LEN
            + d.to_bytes()
            + b"Composite",
            dst,
        )
        for i, (c, d) in enumerate(zip(cs, ds, strict=True))
    ]


def _weighted_sum(weights: Sequence[Scalar], elements: Sequence[Element]) -> Element:
    """``sum(w_i * e_i)``; ValueError if a weight is zero or a partial sum the identity."""
    total = scalar_mult(weights[0], elements[0])
    for w, e in zip(weights[1:], elements[1:], strict=True):
        total = element_add(total, scalar_mult(w, e))
    return total


def _challenge(b: Element, m: Element, z: Element, t2: Element, t3: Element, ctx: bytes) -> Scalar:
    transcript = b"".join(_ELEMENT_LEN + e.to_bytes() for e in (b, m, z, t2, t3))
    return hash_to_scalar(transcript + b"Challenge", _h2s_dst(ctx))


def _mult(s: Scalar, e: Element) -> Element:
    return base_mult(s) if e == GENERATOR else scalar_mult(s, e)


def generate_proof(
    k: Scalar,
    a: Element,
    b: Element,
    cs: Sequence[Element],
    ds: Sequence[Element],
    *,
    r: Scalar | None = None,
    context: bytes,
) -> bytes:
    """Prove ``log_a(b) == log_c(d)`` for every pair, with ``b = k*a`` and ``ds[i] = k*cs[i]``.

    RFC 9497 GenerateProof (with ComputeCompositesFast). ``r`` is the proof
    randomness, for test vectors only; by default a fresh random scalar.
    EncodingError if the blinded batch gives an identity composite (negligible
    for honest input).
    """
    _check_batch(cs, ds)
    if k.is_zero():
        raise ValueError("the key must not be zero")
    if r is None:
        r = random_scalar()
    elif r.is_zero():
        raise ValueError("the proof randomness must not be zero")
    try:
        m = _weighted_sum(_composite_scalars(b, cs, ds, context), cs)
    except ValueError:
        raise EncodingError("the blinded elements give an identity composite") from None
    z = scalar_mult(k, m)
    t2 = _mult(r, a)
    t3 = scalar_mult(r, m)
    c = _challenge(b, m, z, t2, t3, context)
    s = scalar_sub(r, scalar_mul(c, k))
    return c.to_bytes() + s.to_bytes()


def _parse_proof(proof: bytes) -> tuple[Scalar, Scalar]:
    if not isinstance(proof, bytes):
        raise TypeError("proof must be bytes")
    if len(proof) != PROOF_SIZE:
        raise EncodingError(f"a proof is {PROOF_SIZE} bytes")
    return Scalar.from_bytes(proof[:SCALAR_SIZE]), Scalar.from_bytes(proof[SCALAR_SIZE:])


def verify_proof(
    a: Element,
    b: Element,
    cs: Sequence[Element],
    ds: Sequence[Element],
    proof: bytes,
    *,
    context: bytes,
) -> None:
    """RFC 9497 VerifyProof: return if ``proof`` shows ``log_a(b) == log_c(d)`` for every pair.

    EncodingError for a proof that is not two canonical scalars, VerificationError
    for one that does not verify.
    """
    _check_batch(cs, ds)
    c, s = _parse_proof(proof)
    try:
        weights = _composite_scalars(b, cs, ds, context)
        m = _weighted_sum(weights, cs)
        z = _weighted_sum(weights, ds)
        t2 = element_add(_mult(s, a), scalar_mult(c, b))
        t3 = element_add(scalar_mult(s, m), scalar_mult(c, z))
    except ValueError:  # a zero scalar in the proof or an identity element on the way
        raise VerificationError("proof does not verify") from None
    if _challenge(b, m, z, t2, t3, context) != c:
        raise VerificationError("proof does not verify")


# --- client ----------------------------------------------------------------------------------


def blind(input: bytes, /, *, mode: Mode, blind: Scalar | None = None) -> tuple[Scalar, Element]:
    """RFC 9497 Blind: ``(blind, blindedElement)`` for a private input.

    ``blind`` is for test vectors only; by default a fresh random scalar. Keep the
    blind secret and use it once.
    """
    _check_input(input)
    point = hash_to_group(input, _h2g_dst(mode))
    if blind is None:
        blind = random_scalar()
    elif blind.is_zero():
        raise ValueError("the blind must not be zero")
    return blind, scalar_mult(blind, point)


def _invert_all(scalars: Sequence[Scalar]) -> list[Scalar]:
    """Montgomery's batch inversion: one inversion and 3(m-1) multiplications."""
    prefix = [scalars[0]]
    for x in scalars[1:]:
        prefix.append(scalar_mul(prefix[-1], x))
    inv = scalar_invert(prefix[-1])
    out: list[Scalar] = [inv] * len(scalars)
    for i in range(len(scalars) - 1, 0, -1):
        out[i] = scalar_mul(inv, prefix[i - 1])
        inv = scalar_mul(inv, scalars[i])
    out[0] = inv
    return out


def _output(data: bytes, element: Element) -> bytes:
    return hashlib.sha512(
        _i2osp2(len(data)) + data + _ELEMENT_LEN + element.to_bytes() + b"Finalize"
    ).digest()


def finalize_elements(
    inputs: Sequence[bytes], blinds: Sequence[Scalar], evaluated_elements: Sequence[Element]
) -> list[bytes]:
    """The RFC 9497 Finalize hash for elements the caller has already verified.

    For OPRF mode, or VOPRF elements whose proof was checked (the threshold OPRF
    checks every share's proof before combining). Finalize does not depend on the
    mode; the mode chose the HashToGroup tag when the input was blinded.
    """
    if not len(inputs) == len(blinds) == len(evaluated_elements):
        raise ValueError("inputs, blinds and evaluated elements must have the same length")
    if not inputs:
        return []
    for data in inputs:
        _check_input(data)
    if any(b.is_zero() for b in blinds):
        raise ValueError("a blind must not be zero")
    inverses = _invert_all(blinds)
    return [
        _output(data, scalar_mult(inv, e))
        for data, inv, e in zip(inputs, inverses, evaluated_elements, strict=True)
    ]


def finalize_batch(
    inputs: Sequence[bytes],
    blinds: Sequence[Scalar],
    evaluated_elements: Sequence[Element],
    *,
    mode: Mode,
    blinded_elements: Sequence[Element] | None = None,
    proof: bytes | None = None,
    server_public_key: Element | None = None,
) -> list[bytes]:
    """RFC 9497 Finalize over a batch (one proof for the batch in VOPRF mode).

    VOPRF mode needs ``blinded_elements``, ``proof`` and ``server_public_key`` and
    verifies the proof first: EncodingError for a malformed proof or an answer with
    the wrong number of elements, VerificationError for a proof that does not verify.
    """
    if len(evaluated_elements) != len(inputs):
        raise EncodingError("the server answered with the wrong number of elements")
    if Mode(mode) is Mode.VOPRF:
        if blinded_elements is None or proof is None or server_public_key is None:
            raise ValueError("VOPRF needs blinded_elements, proof and server_public_key")
        if len(blinded_elements) != len(inputs):
            raise ValueError("inputs and blinded elements must have the same length")
        verify_proof(
            GENERATOR,
            server_public_key,
            blinded_elements,
            evaluated_elements,
            proof,
            context=context_string(Mode.VOPRF),
        )
    elif blinded_elements is not None or proof is not None or server_public_key is not None:
        raise ValueError("OPRF mode has no proof")
    return finalize_elements(inputs, blinds, evaluated_elements)


def finalize(
    input: bytes,
    blind: Scalar,
    evaluated_element: Element,
    /,
    *,
    mode: Mode,
    blinded_element: Element | None = None,
    proof: bytes | None = None,
    server_public_key: Element | None = None,
) -> bytes:
    """RFC 9497 Finalize for one input: the 64-byte PRF output (see :func:`finalize_batch`)."""
    return finalize_batch(
        [input],
        [blind],
        [evaluated_element],
        mode=mode,
        blinded_elements=None if blinded_element is None else [blinded_element],
        proof=proof,
        server_public_key=server_public_key,
    )[0]


# --- server ----------------------------------------------------------------------------------


@overload
def blind_evaluate(
    sk: Scalar,
    blinded_elements: Sequence[Element],
    *,
    mode: Literal[Mode.OPRF],
    proof_randomness: None = None,
) -> tuple[list[Element], None]: ...
@overload
def blind_evaluate(
    sk: Scalar,
    blinded_elements: Sequence[Element],
    *,
    mode: Literal[Mode.VOPRF],
    proof_randomness: Scalar | None = None,
) -> tuple[list[Element], bytes]: ...
@overload
def blind_evaluate(
    sk: Scalar,
    blinded_elements: Sequence[Element],
    *,
    mode: Mode,
    proof_randomness: Scalar | None = None,
) -> tuple[list[Element], bytes | None]: ...
def blind_evaluate(
    sk: Scalar,
    blinded_elements: Sequence[Element],
    *,
    mode: Mode,
    proof_randomness: Scalar | None = None,
) -> tuple[list[Element], bytes | None]:
    """RFC 9497 BlindEvaluate over a batch: ``(evaluatedElements, proof or None)``.

    In VOPRF mode one proof covers the batch, against ``pkS = sk * G``.
    ``proof_randomness`` is for test vectors only.
    """
    if sk.is_zero():
        raise ValueError("the key must not be zero")
    if not blinded_elements:
        raise ValueError("nothing to evaluate")
    evaluated = [scalar_mult(sk, c) for c in blinded_elements]
    if Mode(mode) is Mode.OPRF:
        if proof_randomness is not None:
            raise ValueError("OPRF mode has no proof")
        return evaluated, None
    proof = generate_proof(
        sk,
        GENERATOR,
        base_mult(sk),
        blinded_elements,
        evaluated,
        r=proof_randomness,
        context=context_string(Mode.VOPRF),
    )
    return evaluated, proof


def evaluate(sk: Scalar, input: bytes, /, *, mode: Mode) -> bytes:
    """RFC 9497 Evaluate: the PRF output computed with the key, no blinding."""
    if sk.is_zero():
        raise ValueError("the key must not be zero")
    _check_input(input)
    return _output(input, scalar_mult(sk, hash_to_group(input, _h2g_dst(mode))))
