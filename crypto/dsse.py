"""DSSE v1 envelopes signed with Ed25519, verified against a threshold of distinct keys.

The Dead Simple Signing Envelope (https://github.com/secure-systems-lab/dsse,
``protocol.md`` and ``envelope.md``), as used by in-toto and Sigstore. Each
signature is an Ed25519 signature (:mod:`crypto.signing`) over the
pre-authentication encoding::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

where ``type`` is the UTF-8 encoding of the payload type, ``SP`` one ASCII
space and ``LEN`` the ASCII decimal byte length with no leading zeros. The
JSON envelope is::

    {"payload": <b64>, "payloadType": <str>, "signatures": [{"keyid": <str>, "sig": <b64>}]}

:meth:`Envelope.to_json` writes it canonically: keys sorted, no whitespace,
ASCII only (``\\u`` escapes), standard base64 with padding, the signatures in
their order. :meth:`Envelope.from_json` is strict and raises
:class:`~crypto.errors.EncodingError` for input above ``max_size`` bytes, bad
UTF-8 or JSON, duplicate object keys, numbers, a missing or unknown field, a
field of the wrong type, more than ``max_signatures`` signatures, base64 that
is not padded standard or URL-safe base64 in its canonical form (the spec lets
signers use either alphabet; mixing them in one value is rejected), or a
signature that is not 64 bytes. Our profile narrows the spec in two ways:
``keyid`` is required (as in python-tuf and securesystemslib; the spec makes
it optional), and signatures are Ed25519 only.

**Payloads are verified before they are parsed.** :attr:`Envelope.payload` is
unverified bytes: read it only to pass it to :func:`verify_envelope`, and
parse only :attr:`VerifiedPayload.payload`, which exists only once the
threshold was met.

Verification (:func:`verify_envelope`): the payload type must equal the
expected one (:class:`~crypto.errors.VerificationError`); then each signature
is checked against the one key its ``keyid`` names in the
:class:`VerificationPolicy`, and signatures whose ``keyid`` is unknown are
skipped. A signature never counts for a key other than the one it names, and
each key counts once however many signatures name it (python-tuf advisory
GHSA-pwqf-9h7j-7mv8, CVE-2020-6174: duplicate signatures by one key were
counted separately towards the threshold). Fewer distinct verified keys than
the threshold is :class:`~crypto.errors.ThresholdError`. Policies are built
fail-closed (:class:`~crypto.errors.PolicyError`).

Cost: at most one Ed25519 verification per signature over the PAE (about
``len(payload)`` bytes each), and none for unknown or already counted keys.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from crypto.errors import EncodingError, PolicyError, ThresholdError, VerificationError
from crypto.signing import SIGNATURE_SIZE, KeyId, PublicKey, SigningKey

__all__ = [
    "MAX_ENVELOPE_BYTES",
    "MAX_SIGNATURES",
    "Envelope",
    "Signature",
    "VerificationPolicy",
    "VerifiedPayload",
    "add_signature",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

#: Default limit on the size of an envelope's JSON accepted by :meth:`Envelope.from_json`.
MAX_ENVELOPE_BYTES: Final = 16 * 1024 * 1024
#: Default limit on the number of signatures accepted by :meth:`Envelope.from_json`.
MAX_SIGNATURES: Final = 256

_ENVELOPE_FIELDS: Final = frozenset({"payload", "payloadType", "signatures"})
_SIGNATURE_FIELDS: Final = frozenset({"keyid", "sig"})
_URLSAFE: Final = b"-_"


def _is_utf8_text(value: object) -> bool:
    """Whether ``value`` is a ``str`` that UTF-8 can encode (no lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_payload_type(payload_type: object) -> str:
    if not isinstance(payload_type, str):
        raise TypeError("payload_type must be str")
    if not payload_type:
        raise ValueError("payload_type must not be empty")
    if not _is_utf8_text(payload_type):
        raise ValueError("payload_type must be encodable as UTF-8")
    return payload_type


def _check_signer(signer: object) -> SigningKey:
    if not isinstance(signer, SigningKey):
        raise TypeError("signers must be crypto.signing.SigningKey instances")
    return signer


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``payload_type`` and ``payload``."""
    if not isinstance(payload_type, str):
        raise TypeError("payload_type must be str")
    if not isinstance(payload, bytes):
        raise TypeError("payload must be bytes")
    if not _is_utf8_text(payload_type):
        raise ValueError("payload_type must be encodable as UTF-8")
    encoded_type = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(encoded_type), encoded_type, len(payload), payload)


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature of an envelope.

    ``keyid`` is an unauthenticated hint naming the key that made ``sig``;
    it only selects which key of a policy to try.
    """

    keyid: str
    sig: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.keyid, str):
            raise TypeError("keyid must be str")
        if not isinstance(self.sig, bytes):
            raise TypeError("sig must be bytes")


@dataclass(frozen=True, slots=True, repr=False)
class Envelope:
    """A DSSE envelope: payload type, payload bytes and signatures.

    ``payload`` is **not verified**: parse only the payload of the
    :class:`VerifiedPayload` that :func:`verify_envelope` returns.
    """

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.payload_type, str):
            raise TypeError("payload_type must be str")
        if not _is_utf8_text(self.payload_type):
            raise ValueError("payload_type must be encodable as UTF-8")
        if not isinstance(self.payload, bytes):
            raise TypeError("payload must be bytes")
        if not isinstance(self.signatures, tuple) or not all(
            isinstance(s, Signature) for s in self.signatures
        ):
            raise TypeError("signatures must be a tuple of Signature")

    def pae(self) -> bytes:
        """The bytes the signatures are made over (see :func:`pae`)."""
        return pae(self.payload_type, self.payload)

    def to_json(self) -> bytes:
        """The canonical JSON envelope (see the module docstring), ASCII bytes."""
        doc = {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
            "ascii"
        )

    @classmethod
    def from_json(
        cls,
        data: bytes,
        *,
        max_size: int = MAX_ENVELOPE_BYTES,
        max_signatures: int = MAX_SIGNATURES,
    ) -> Envelope:
        """Parse a JSON envelope from untrusted ``data``; :class:`EncodingError` if malformed.

        Nothing is verified: pass the result to :func:`verify_envelope`.
        """
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        _check_limit(max_size, "max_size")
        _check_limit(max_signatures, "max_signatures")
        if len(data) > max_size:
            raise EncodingError("envelope is larger than the size limit")
        doc = _fields(_json_object(data), _ENVELOPE_FIELDS, "envelope")
        payload = _b64_field(doc["payload"], "payload")
        payload_type = doc["payloadType"]
        if not isinstance(payload_type, str) or not _is_utf8_text(payload_type):
            raise EncodingError("envelope field 'payloadType' must be a string")
        items = doc["signatures"]
        if not isinstance(items, list):
            raise EncodingError("envelope field 'signatures' must be a list")
        if len(items) > max_signatures:
            raise EncodingError("envelope has more signatures than the limit")
        signatures: list[Signature] = []
        for item in items:
            fields = _fields(item, _SIGNATURE_FIELDS, "envelope signature")
            keyid = fields["keyid"]
            if not isinstance(keyid, str) or not _is_utf8_text(keyid):
                raise EncodingError("envelope signature field 'keyid' must be a string")
            sig = _b64_field(fields["sig"], "sig")
            if len(sig) != SIGNATURE_SIZE:
                raise EncodingError(f"envelope signature must be {SIGNATURE_SIZE} bytes")
            signatures.append(Signature(keyid=keyid, sig=sig))
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(signatures))

    def __repr__(self) -> str:
        keyids = [s.keyid for s in self.signatures]  # untrusted: shown with repr() escaping
        return (
            f"Envelope(payload_type={self.payload_type!r}, payload=<{len(self.payload)} bytes>, "
            f"keyids={keyids!r})"
        )


def sign_envelope(payload_type: str, payload: bytes, signers: Sequence[SigningKey]) -> Envelope:
    """A new envelope over ``payload`` signed by each of ``signers``, in their order.

    ``ValueError`` for an empty payload type, no signers, or the same key twice.
    """
    _check_payload_type(payload_type)
    if not isinstance(payload, bytes):
        raise TypeError("payload must be bytes")
    if not isinstance(signers, Sequence):
        raise TypeError("signers must be a sequence of SigningKey")
    if not signers:
        raise ValueError("an envelope needs at least one signer")
    message = pae(payload_type, payload)
    signatures: list[Signature] = []
    for signer in signers:
        _check_signer(signer)
        if any(s.keyid == signer.key_id for s in signatures):
            raise ValueError("the same key is listed twice among the signers")
        signatures.append(Signature(keyid=signer.key_id, sig=signer.sign(message)))
    return Envelope(payload_type=payload_type, payload=payload, signatures=tuple(signatures))


def add_signature(envelope: Envelope, signer: SigningKey) -> Envelope:
    """A copy of ``envelope`` with ``signer``'s signature appended.

    ``ValueError`` if the envelope already has a signature under ``signer``'s
    key id (valid or not: remove it first) or an empty payload type. Existing
    signatures are not checked.
    """
    if not isinstance(envelope, Envelope):
        raise TypeError("envelope must be an Envelope")
    _check_signer(signer)
    _check_payload_type(envelope.payload_type)
    if any(s.keyid == signer.key_id for s in envelope.signatures):
        raise ValueError("the envelope already has a signature by this key")
    signature = Signature(keyid=signer.key_id, sig=signer.sign(envelope.pae()))
    return Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=(*envelope.signatures, signature),
    )


class VerificationPolicy:
    """Which Ed25519 keys may sign, and how many distinct ones must: built fail-closed.

    ``keys`` is a sequence of :class:`~crypto.signing.PublicKey` or a mapping
    from each key's id to the key. :class:`PolicyError` for no keys, the same
    key twice, a key id that is not its key's id, or a threshold below 1 or
    above the number of keys; ``TypeError`` for anything but Ed25519
    ``PublicKey`` values (an X25519 key is refused) or an ``int`` threshold.
    The policy keeps its own read-only copy of the keys and cannot be changed.
    """

    __slots__ = ("_keys", "_threshold")

    _keys: Mapping[KeyId, PublicKey]
    _threshold: int

    def __init__(
        self, keys: Mapping[KeyId, PublicKey] | Sequence[PublicKey], threshold: int
    ) -> None:
        if type(threshold) is not int:  # bool is a subclass of int: excluded on purpose
            raise TypeError("threshold must be an int")
        table: dict[KeyId, PublicKey] = {}
        if isinstance(keys, Mapping):
            for claimed, key in keys.items():
                _check_public_key(key)
                if not isinstance(claimed, str) or claimed != key.key_id:
                    raise PolicyError("a key id in the policy is not the id of its key")
                _add_unique(table, key)
        elif isinstance(keys, Sequence) and not isinstance(keys, (str, bytes, bytearray)):
            for key in keys:
                _check_public_key(key)
                _add_unique(table, key)
        else:
            raise TypeError("keys must be a sequence of PublicKey or a mapping of KeyId to it")
        if not table:
            raise PolicyError("a verification policy needs at least one key")
        if threshold < 1:
            raise PolicyError("the threshold must be at least 1")
        if threshold > len(table):
            raise PolicyError("the threshold is larger than the number of keys")
        object.__setattr__(self, "_keys", MappingProxyType(table))
        object.__setattr__(self, "_threshold", threshold)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a VerificationPolicy cannot be changed")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("a VerificationPolicy cannot be changed")

    @property
    def keys(self) -> Mapping[KeyId, PublicKey]:
        """The authorised keys by key id (read-only)."""
        return self._keys

    @property
    def threshold(self) -> int:
        """How many distinct authorised keys must have signed."""
        return self._threshold

    def __repr__(self) -> str:
        return f"VerificationPolicy(threshold={self._threshold}, key_ids={sorted(self._keys)})"


def _check_public_key(key: object) -> None:
    if not isinstance(key, PublicKey):
        raise TypeError("policy keys must be crypto.signing.PublicKey (Ed25519) instances")


def _add_unique(table: dict[KeyId, PublicKey], key: PublicKey) -> None:
    if key.key_id in table:
        raise PolicyError("the policy lists the same key twice")
    table[key.key_id] = key


@dataclass(frozen=True, slots=True, repr=False)
class VerifiedPayload:
    """What :func:`verify_envelope` returns: the payload, safe to parse now.

    ``key_ids`` holds every authorised key whose signature verified (at least
    the threshold, possibly more).
    """

    payload_type: str
    payload: bytes
    key_ids: frozenset[KeyId]

    def __repr__(self) -> str:
        return (
            f"VerifiedPayload(payload_type={self.payload_type!r}, "
            f"payload=<{len(self.payload)} bytes>, key_ids={sorted(self.key_ids)})"
        )


def _verifies(key: PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(message, signature)
    except VerificationError:
        return False
    return True


def verify_envelope(
    envelope: Envelope, policy: VerificationPolicy, *, payload_type: str
) -> VerifiedPayload:
    """Verify ``envelope`` against ``policy``; the payload is safe to parse only after this.

    Raises :class:`VerificationError` if the envelope's payload type is not
    ``payload_type``, and :class:`ThresholdError` (a ``VerificationError``) if
    fewer than ``policy.threshold`` distinct authorised keys signed it.
    """
    if not isinstance(envelope, Envelope):
        raise TypeError("envelope must be an Envelope")
    if not isinstance(policy, VerificationPolicy):
        raise TypeError("policy must be a VerificationPolicy")
    _check_payload_type(payload_type)
    if envelope.payload_type != payload_type:
        raise VerificationError("the envelope's payload type is not the expected one")
    message = envelope.pae()
    verified: set[KeyId] = set()
    for signature in envelope.signatures:
        # Only the key the signature names is tried: it never counts for another key.
        key = policy.keys.get(KeyId(signature.keyid))
        if key is None or key.key_id in verified:
            continue  # an unknown key, or one already counted: each key counts once
        if _verifies(key, message, signature.sig):
            verified.add(key.key_id)
    if len(verified) < policy.threshold:
        raise ThresholdError(
            f"{len(verified)} distinct authorised keys signed the envelope; "
            f"{policy.threshold} are required"
        )
    return VerifiedPayload(
        payload_type=envelope.payload_type, payload=envelope.payload, key_ids=frozenset(verified)
    )


# --- strict JSON ----------------------------------------------------------------------


class _Invalid:
    """Marker for input that did not parse."""


_INVALID: Final = _Invalid()


def _check_limit(value: object, name: str) -> None:
    if type(value) is not int:
        raise TypeError(f"{name} must be an int")
    if value < 1:
        raise ValueError(f"{name} must be at least 1")


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            # Parsers disagree on which duplicate wins: refuse rather than pick one.
            raise EncodingError("envelope has a duplicate field")
        obj[key] = value
    return obj


def _reject_number(_text: str) -> object:
    raise EncodingError("envelope must not contain numbers")


def _json_object(data: bytes) -> dict[str, object]:
    """Strictly parse one JSON object; never chains the parser's exception (it holds the input)."""
    parsed: object = _INVALID
    # ValueError includes UnicodeDecodeError and JSONDecodeError (whose .doc is the input).
    with contextlib.suppress(ValueError, RecursionError):
        parsed = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_float=_reject_number,
            parse_int=_reject_number,
            parse_constant=_reject_number,
        )
    if isinstance(parsed, _Invalid):
        raise EncodingError("envelope is not valid UTF-8 JSON")
    if not isinstance(parsed, dict):
        raise EncodingError("envelope is not a JSON object")
    return parsed


def _fields(obj: object, expected: frozenset[str], what: str) -> dict[str, object]:
    # Field names from the input are not echoed: they are attacker-chosen and unbounded.
    if not isinstance(obj, dict):
        raise EncodingError(f"{what} must be a JSON object")
    if not expected <= obj.keys():
        raise EncodingError(f"{what} is missing a field")
    if not obj.keys() <= expected:
        raise EncodingError(f"{what} has an unknown field")
    return obj


def _b64_field(value: object, name: str) -> bytes:
    """Decode padded standard or URL-safe base64, accepting only the canonical encoding."""
    if isinstance(value, str) and value.isascii():
        encoded = value.encode("ascii")
        for altchars in (None, _URLSAFE):
            raw: bytes | None = None
            with contextlib.suppress(binascii.Error, ValueError):
                raw = base64.b64decode(encoded, altchars=altchars, validate=True)
            # Re-encoding must give the input back: no stray bits, no mixed alphabets.
            if raw is not None and base64.b64encode(raw, altchars=altchars) == encoded:
                return raw
    raise EncodingError(f"envelope field {name!r} must be padded standard or URL-safe base64")
