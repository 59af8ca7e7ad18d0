"""C2SP checkpoints (https://c2sp.org/tlog-checkpoint) and Ed25519 cosignatures
(https://c2sp.org/tlog-cosignature, type ``0x04``, ``cosignature/v1``).

A checkpoint is a signed note whose text is::

    <origin>\\n<tree size, decimal, no leading zeros>\\n<base64(32-byte root hash)>\\n
    [<extension line>\\n ...]

The log signs it as an ordinary Ed25519 note (:func:`sign_checkpoint`).
Witnesses add cosignature lines: ``— <witness name> base64(key hash ||
timestamp (u64, big-endian) || Ed25519 signature)``, where the key hash uses
type byte ``0x04`` and the signature covers ``"cosignature/v1\\ntime
<timestamp>\\n" || checkpoint text`` (:func:`cosignature_message`). A v1
cosignature says: as of ``timestamp`` (POSIX seconds), the largest tree the
witness has seen for this origin, consistent with all earlier ones, has this
root. It commits to the extension lines too, but makes no statement about them.

:func:`verify_checkpoint` is the recipe for clients: the log's signature is
required, every signature from a known key must verify (one bad signature, the
log's or a witness's, rejects the checkpoint), and at least ``threshold``
distinct witnesses must have cosigned. :func:`open_checkpoint` checks the log's
signature alone; it is for witnesses about to cosign, which check consistency
themselves, not for deciding what is true.

Parsing is strict: the size has no leading zeros and fits in 64 bits, the root
hash is canonical base64 of exactly 32 bytes, extension lines are non-empty, so
``parse_checkpoint(text).to_text() == text`` for every accepted ``text``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from crypto.errors import EncodingError, PolicyError, ThresholdError, VerificationError
from crypto.note import (
    CONTROL,
    SURROGATE,
    KeyHash,
    NoteVerifier,
    Signature,
    Signer,
    Verifier,
    add_signature_lines,
    b64decode_canonical,
    b64encode,
    decode_vkey,
    encode_vkey,
    is_valid_key_name,
    key_hash,
    open_note,
    parse_signature_line,
    sign_note,
    text_problem,
)
from crypto.signing import PublicKey, SigningKey

__all__ = [
    "COSIGNATURE_V1_HEADER",
    "MAX_TIMESTAMP",
    "MAX_TREE_SIZE",
    "ROOT_HASH_SIZE",
    "SIG_TYPE_COSIGNATURE_V1",
    "Checkpoint",
    "CosignatureSigner",
    "CosignatureVerifier",
    "VerifiedCheckpoint",
    "WitnessCosignature",
    "add_cosignature",
    "cosignature_message",
    "cosignature_timestamp",
    "open_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
    "verify_checkpoint",
]

SIG_TYPE_COSIGNATURE_V1: Final = 0x04
COSIGNATURE_V1_HEADER: Final = "cosignature/v1\n"
MAX_TIMESTAMP: Final = 2**63 - 1
MAX_TREE_SIZE: Final = 2**64 - 1
ROOT_HASH_SIZE: Final = 32

_TIMESTAMP_SIZE: Final = 8
_COSIGNATURE_SIZE: Final = _TIMESTAMP_SIZE + 64
_SIZE: Final = re.compile("0|[1-9][0-9]{0,19}")


# --- checkpoint bodies -------------------------------------------------------


def _line_problem(line: object, what: str) -> str | None:
    if not isinstance(line, str):
        return f"{what} is not a string"
    if not line:
        return f"{what} is empty"
    if "\n" in line or CONTROL.search(line):
        return f"{what} contains a newline or control character"
    if SURROGATE.search(line):
        return f"{what} is not valid Unicode"
    return None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size, RFC 6962 root hash, extension lines.

    Raises ``ValueError``/``TypeError`` for fields that cannot be encoded.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = _line_problem(self.origin, "origin")
        if problem:
            raise ValueError(problem)
        if type(self.size) is not int:  # bool excluded on purpose
            raise TypeError("size must be int")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError("size must be between 0 and 2**64 - 1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != ROOT_HASH_SIZE:
            raise ValueError(f"root_hash must be {ROOT_HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise TypeError("extensions must be a tuple of str")
        for line in self.extensions:
            problem = _line_problem(line, "extension line")
            if problem:
                raise ValueError(problem)

    def to_text(self) -> str:
        """The note text (checkpoint body), ending with a newline."""
        lines = [self.origin, str(self.size), b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body (note text). Raises :class:`EncodingError`.

    This does not verify anything: parse only text that :func:`verify_checkpoint`
    (or :func:`open_checkpoint`) returned, or text you are about to sign.
    """
    if not isinstance(text, str):
        raise TypeError("text must be str")
    problem = text_problem(text)
    if problem:
        raise EncodingError(f"malformed checkpoint: {problem}")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise EncodingError("malformed checkpoint: fewer than three lines")
    origin, size, root, *extensions = lines
    if not origin:
        raise EncodingError("malformed checkpoint: empty origin")
    if not _SIZE.fullmatch(size) or int(size) > MAX_TREE_SIZE:
        raise EncodingError("malformed checkpoint: tree size is not a decimal uint64")
    root_hash = b64decode_canonical(root)
    if root_hash is None or len(root_hash) != ROOT_HASH_SIZE:
        raise EncodingError("malformed checkpoint: root hash is not base64 of 32 bytes")
    if not all(extensions):
        raise EncodingError("malformed checkpoint: empty extension line")
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, log_signer: Signer) -> str:
    """The signed note of ``checkpoint`` with the log's signature line."""
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError("checkpoint must be a Checkpoint")
    return sign_note(checkpoint.to_text(), [log_signer])


# --- cosignatures ------------------------------------------------------------


def _check_timestamp(timestamp: int) -> None:
    if type(timestamp) is not int:
        raise TypeError("timestamp must be int")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("timestamp must be between 0 and 2**63 - 1")


def cosignature_message(checkpoint_text: str, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs: header, ``time <timestamp>``, checkpoint text."""
    _check_timestamp(timestamp)
    return f"{COSIGNATURE_V1_HEADER}time {timestamp}\n{checkpoint_text}".encode()


def cosignature_timestamp(signature: Signature) -> int:
    """The timestamp in a cosignature line's signature (not verified).

    :class:`EncodingError` unless the signature is 8 + 64 bytes with a
    timestamp of at most 2**63 - 1.
    """
    raw = signature.signature
    if len(raw) != _COSIGNATURE_SIZE:
        raise EncodingError("not an Ed25519 cosignature/v1: wrong signature length")
    timestamp = int.from_bytes(raw[:_TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise EncodingError("not an Ed25519 cosignature/v1: timestamp out of range")
    return timestamp


@dataclass(frozen=True, slots=True, repr=False)
class CosignatureVerifier:
    """A witness's Ed25519 cosignature key (type ``0x04``)."""

    name: str
    key: PublicKey
    key_hash: KeyHash = field(init=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise ValueError("invalid key name")
        if not isinstance(self.key, PublicKey):
            raise TypeError("key must be a crypto.signing.PublicKey")
        digest = key_hash(self.name, SIG_TYPE_COSIGNATURE_V1, self.key.raw)
        object.__setattr__(self, "key_hash", digest)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse a type ``0x04`` vkey. A type ``0x01`` note key is refused, not converted."""
        name, sig_type, public_key = decode_vkey(vkey)
        if sig_type != SIG_TYPE_COSIGNATURE_V1:
            raise EncodingError("verifier key is not an Ed25519 cosignature key (type 0x04)")
        return cls(name, PublicKey.from_bytes(public_key))

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, SIG_TYPE_COSIGNATURE_V1, self.key.raw)

    def verify(self, text: bytes, signature: bytes) -> None:
        ok = len(signature) == _COSIGNATURE_SIZE
        if ok:
            timestamp = int.from_bytes(signature[:_TIMESTAMP_SIZE], "big")
            ok = timestamp <= MAX_TIMESTAMP
        if ok:
            try:
                self.key.verify(
                    f"{COSIGNATURE_V1_HEADER}time {timestamp}\n".encode() + text,
                    signature[_TIMESTAMP_SIZE:],
                )
            except VerificationError:
                ok = False
        # Raised outside the except block so that nothing is chained to it.
        if not ok:
            raise VerificationError(f"invalid signature for key {self.name}+{self.key_hash:08x}")

    def __repr__(self) -> str:
        return f"CosignatureVerifier({self.name}+{self.key_hash:08x})"


class CosignatureSigner:
    """A witness's Ed25519 signing key, used for ``cosignature/v1`` (type ``0x04``)."""

    __slots__ = ("_key", "key_hash", "name")

    def __init__(self, name: str, key: SigningKey) -> None:
        if not is_valid_key_name(name):
            raise ValueError("invalid key name")
        if not isinstance(key, SigningKey):
            raise TypeError("key must be a crypto.signing.SigningKey")
        self.name: Final = name
        self._key: Final = key
        self.key_hash: Final = key_hash(name, SIG_TYPE_COSIGNATURE_V1, key.public_key.raw)

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self._key.public_key)

    def cosign(self, checkpoint: Checkpoint | str, *, timestamp: int) -> str:
        """The cosignature line (ending with a newline) for a checkpoint at ``timestamp``.

        ``checkpoint`` is a :class:`Checkpoint` or its text (which must parse).
        Cosigning is a statement about the log: the caller must have verified
        the log's signature and consistency with every checkpoint it cosigned
        before for this origin.
        """
        if isinstance(checkpoint, str):
            checkpoint = parse_checkpoint(checkpoint)
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError("checkpoint must be a Checkpoint or its text")
        message = cosignature_message(checkpoint.to_text(), timestamp)
        signed = timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + self._key.sign(message)
        return Signature(self.name, self.key_hash, signed).line

    def __repr__(self) -> str:
        return f"CosignatureSigner({self.name}+{self.key_hash:08x}, <key redacted>)"


def add_cosignature(signed_checkpoint: str, cosignature_line: str) -> str:
    """Add a cosignature line to a signed checkpoint, replacing one from the same key.

    Nothing is verified here; only framing is checked (:class:`EncodingError`):
    the note must parse and the line must have the size of an Ed25519
    cosignature/v1.
    """
    cosignature_timestamp(parse_signature_line(cosignature_line))
    return add_signature_lines(signed_checkpoint, [cosignature_line])


# --- verification ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessCosignature:
    """A witness whose cosignature verified, and its timestamp (the latest, if several)."""

    name: str
    key_hash: KeyHash
    timestamp: int


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """A checkpoint signed by the log and cosigned by ``cosignatures`` (note order)."""

    checkpoint: Checkpoint
    cosignatures: tuple[WitnessCosignature, ...]


def _check_log(log: Verifier) -> None:
    if not isinstance(log, Verifier):
        raise TypeError("log must be a Verifier (an Ed25519 note key)")


def _check_origin(checkpoint: Checkpoint, origin: str | None) -> None:
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError("checkpoint is for another origin")


def open_checkpoint(note: str | bytes, *, log: Verifier, origin: str | None = None) -> Checkpoint:
    """Verify the log's signature on a checkpoint (and its origin, if given); nothing else.

    Other signature lines are ignored. For a witness checking what it is asked
    to cosign; clients use :func:`verify_checkpoint`.
    """
    _check_log(log)
    checkpoint = parse_checkpoint(open_note(note, [log]).text)
    _check_origin(checkpoint, origin)
    return checkpoint


def verify_checkpoint(
    note: str | bytes,
    *,
    log: Verifier,
    witnesses: Sequence[CosignatureVerifier],
    threshold: int,
    origin: str | None = None,
) -> VerifiedCheckpoint:
    """Verify a cosigned checkpoint: the log's signature and ``threshold`` witnesses.

    The policy is checked first (:class:`PolicyError`): ``1 <= threshold <=
    len(witnesses)``; no two witnesses with the same key name and hash, or the
    same public key (a v1 cosignature does not sign the witness name, so one
    key listed twice would be counted twice); no witness using the log's key.
    Checking the log's signature alone is :func:`open_checkpoint`.

    Then every signature line from the log or a listed witness is verified,
    and any bad one raises :class:`VerificationError`, as does a missing log
    signature, a body that is not a checkpoint (:class:`EncodingError`, after
    the signatures verified) or, when ``origin`` is given, another origin.
    Fewer than ``threshold`` distinct witnesses raises :class:`ThresholdError`.
    Lines from other keys are ignored. Timestamps are returned, not judged:
    freshness is the caller's policy.
    """
    _check_log(log)
    if type(threshold) is not int:
        raise TypeError("threshold must be int")
    if not 1 <= threshold <= len(witnesses):
        raise PolicyError("threshold must be at least 1 and at most the number of witnesses")
    keys = {log.key.raw}
    idents: set[tuple[str, int]] = {(log.name, log.key_hash)}
    for w in witnesses:
        if not isinstance(w, CosignatureVerifier):
            raise TypeError("witnesses must be CosignatureVerifier objects")
        if w.key.raw in keys or (w.name, w.key_hash) in idents:
            raise PolicyError("a witness key is listed twice or is the log's key")
        keys.add(w.key.raw)
        idents.add((w.name, w.key_hash))

    known: list[NoteVerifier] = [log, *witnesses]
    opened = open_note(note, known)
    if not opened.verified_by(log):
        raise VerificationError("checkpoint is not signed by the log")
    checkpoint = parse_checkpoint(opened.text)
    _check_origin(checkpoint, origin)

    latest: dict[tuple[str, int], int] = {}
    by_ident = {(w.name, w.key_hash) for w in witnesses}
    for sig in opened.verified:
        ident = (sig.name, sig.key_hash)
        if ident in by_ident:
            timestamp = cosignature_timestamp(sig)
            latest[ident] = max(timestamp, latest.get(ident, timestamp))
    if len(latest) < threshold:
        raise ThresholdError(
            f"{len(latest)} distinct witness cosignatures verified, {threshold} required"
        )
    cosignatures = tuple(
        WitnessCosignature(name, KeyHash(digest), timestamp)
        for (name, digest), timestamp in latest.items()
    )
    return VerifiedCheckpoint(checkpoint, cosignatures)
