"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a text followed by a blank line and one or more signature
lines::

    <text: UTF-8, ends with "\\n", no control characters but "\\n">
    <blank line>
    — <key name> base64(key hash (4 bytes, big-endian) || signature)
    ...

The text is everything up to the *last* blank line, and includes its final
newline. A key is named by ``(key name, key hash)`` where the key hash is
``SHA-256(name || 0x0A || type byte || public key)[:4]``. Ed25519 note keys
(type ``0x01``) sign the UTF-8 text; other types (``0x04`` witness
cosignatures, :mod:`crypto.checkpoint`) sign messages derived from it. Verifier
keys are written ``<name>+<8 lowercase hex digits of the key hash>+base64(type
|| public key)`` ("vkeys"). :meth:`Signer.from_skey` reads the private key form
of golang.org/x/mod/sumdb/note, ``PRIVATE+KEY+<name>+<hash>+base64(0x01 ||
32-byte seed)``.

Parsing is stricter than Go's ``note.Open`` in two ways, both needed so that
one note has exactly one encoding: base64 must be canonical (padding present,
unused bits zero), and vkey hashes must be lowercase. :func:`open_note` is
stricter in two more: *every* signature line from a known key is verified (Go
checks only the first line per key and skips the others unverified), and a
verifier list naming one key twice is refused before anything is verified
(Go refuses it only when a signature from that key is looked up).

Errors: :class:`EncodingError` for notes, signature lines and keys that do not
parse; :class:`VerificationError` when a known key's signature is bad or no
known key signed; :class:`PolicyError` for an ambiguous verifier list.
``ValueError``/``TypeError`` for caller mistakes when *producing* notes.
Messages never contain key material nor echo the note.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, NewType, Protocol

from crypto.errors import EncodingError, PolicyError, VerificationError
from crypto.signing import PublicKey, SigningKey

__all__ = [
    "CONTROL",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "SIG_TYPE_ED25519",
    "SURROGATE",
    "KeyHash",
    "Note",
    "NoteVerifier",
    "Signature",
    "Signer",
    "VerifiedNote",
    "Verifier",
    "add_signature_lines",
    "b64decode_canonical",
    "b64encode",
    "decode_vkey",
    "encode_vkey",
    "is_valid_key_name",
    "key_hash",
    "open_note",
    "parse_note",
    "parse_signature_line",
    "sign_note",
    "text_problem",
]

#: A 32-bit key hash (key ID), as the big-endian integer of its 4 bytes.
KeyHash = NewType("KeyHash", int)

SIG_TYPE_ED25519: Final = 0x01
#: Default limits for notes from untrusted sources. The spec requires accepting
#: at least 16 signatures; Go's x/mod caps notes at 100.
MAX_NOTE_BYTES: Final = 1 << 20
MAX_SIGNATURES: Final = 100

_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_ED25519_KEY_SIZE: Final = 32
#: Key types whose public key is a 32-byte Ed25519 point.
_ED25519_TYPES: Final = frozenset({0x01, 0x04})

# Control characters other than "\n" (the spec: "below U+0020").
CONTROL: Final = re.compile("[\x00-\x09\x0b-\x1f]")
SURROGATE: Final = re.compile("[\ud800-\udfff]")
_BASE64: Final = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HASH_HEX: Final = re.compile("[0-9a-f]{8}")


# --- encodings ---------------------------------------------------------------


def b64decode_canonical(text: str) -> bytes | None:
    """Standard base64 with padding, in the one form ``b64encode`` produces; else None."""
    if not _BASE64.fullmatch(text):
        return None
    raw = base64.b64decode(text)
    if base64.b64encode(raw).decode("ascii") != text:  # non-zero unused bits
        return None
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def text_problem(text: str) -> str | None:
    """Why ``text`` is not a valid note text (or checkpoint body), or None."""
    if not text.endswith("\n"):
        return "does not end with a newline"
    if CONTROL.search(text):
        return "contains a control character"
    if SURROGATE.search(text):
        return "is not valid Unicode"
    return None


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space (Go's ``unicode.IsSpace``), no ``+``, no control character."""
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and not any(c.isspace() or c < " " for c in name)
        and not SURROGATE.search(name)
    )


def key_hash(name: str, sig_type: int, public_key: bytes) -> KeyHash:
    """``SHA-256(name || 0x0A || sig_type || public_key)[:4]`` as a big-endian integer."""
    if not is_valid_key_name(name):
        raise ValueError("invalid key name")
    if not 0 <= sig_type <= 0xFF:
        raise ValueError("sig_type must be one byte")
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key).digest()
    return KeyHash(int.from_bytes(digest[:4], "big"))


def encode_vkey(name: str, sig_type: int, public_key: bytes) -> str:
    """The vkey ``name+hash+base64(type || key)`` of a public key."""
    digest = key_hash(name, sig_type, public_key)
    return f"{name}+{digest:08x}+{b64encode(bytes([sig_type]) + public_key)}"


def decode_vkey(vkey: str) -> tuple[str, int, bytes]:
    """Parse a vkey into ``(name, type, public key)``, checking its key hash.

    The key is split on its first two ``+`` only (base64 may contain ``+``).
    Ed25519 types (``0x01``, ``0x04``) must carry a valid 32-byte public key;
    other types are refused. Raises :class:`EncodingError`.
    """
    if not isinstance(vkey, str):
        raise TypeError("vkey must be str")
    name, _, rest = vkey.partition("+")
    hash_hex, _, key_b64 = rest.partition("+")
    raw = b64decode_canonical(key_b64)
    if not is_valid_key_name(name) or not _HASH_HEX.fullmatch(hash_hex) or not raw:
        raise EncodingError("malformed verifier key")
    sig_type, public_key = raw[0], raw[1:]
    if sig_type not in _ED25519_TYPES:
        raise EncodingError("unsupported verifier key type")
    if len(public_key) != _ED25519_KEY_SIZE:
        raise EncodingError("malformed verifier key: wrong key length")
    if int(hash_hex, 16) != key_hash(name, sig_type, public_key):
        raise EncodingError("verifier key hash does not match the key")
    PublicKey.from_bytes(public_key)  # EncodingError unless a valid Ed25519 public key
    return name, sig_type, public_key


def _check_public_key(key: PublicKey) -> PublicKey:
    if not isinstance(key, PublicKey):
        raise TypeError("key must be a crypto.signing.PublicKey")
    return key


# --- types -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """One signature line: key name, key hash, and the signature bytes after the hash."""

    name: str
    key_hash: KeyHash
    signature: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise ValueError("invalid key name")
        if type(self.key_hash) is not int or not 0 <= self.key_hash <= 0xFFFFFFFF:
            raise ValueError("key_hash must be a 32-bit unsigned integer")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise ValueError("signature must be non-empty bytes")

    @property
    def line(self) -> str:
        """The signature line, ending with a newline."""
        blob = self.key_hash.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {b64encode(blob)}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed, *unverified* note: its text and every signature line, in order."""

    text: str
    signatures: tuple[Signature, ...]


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """The result of :func:`open_note`.

    ``verified`` holds each distinct signature line from a known key (every one
    verified), ``unverified`` each distinct line from an unknown key, both in
    note order.
    """

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]

    def verified_by(self, verifier: NoteVerifier) -> bool:
        """Whether ``verifier``'s key signed the text (and that signature verified)."""
        return any(
            s.name == verifier.name and s.key_hash == verifier.key_hash for s in self.verified
        )


class NoteVerifier(Protocol):
    """A known key: :class:`Verifier` or :class:`crypto.checkpoint.CosignatureVerifier`."""

    @property
    def name(self) -> str: ...

    @property
    def key_hash(self) -> KeyHash: ...

    def verify(self, text: bytes, signature: bytes) -> None:
        """Raise :class:`VerificationError` unless ``signature`` is valid for ``text``."""


@dataclass(frozen=True, slots=True, repr=False)
class Verifier:
    """An Ed25519 note key (type ``0x01``) that :func:`open_note` trusts."""

    name: str
    key: PublicKey
    key_hash: KeyHash = field(init=False)

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise ValueError("invalid key name")
        _check_public_key(self.key)
        object.__setattr__(self, "key_hash", key_hash(self.name, SIG_TYPE_ED25519, self.key.raw))

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse a type ``0x01`` vkey; :class:`EncodingError` if it is malformed or another type."""
        name, sig_type, public_key = decode_vkey(vkey)
        if sig_type != SIG_TYPE_ED25519:
            raise EncodingError("verifier key is not an Ed25519 note key (type 0x01)")
        return cls(name, PublicKey.from_bytes(public_key))

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, SIG_TYPE_ED25519, self.key.raw)

    def verify(self, text: bytes, signature: bytes) -> None:
        try:
            self.key.verify(text, signature)
        except VerificationError:
            ok = False
        else:
            ok = True
        # Raised outside the except block so that nothing is chained to it.
        if not ok:
            raise VerificationError(f"invalid signature for key {self.name}+{self.key_hash:08x}")

    def __repr__(self) -> str:
        return f"Verifier({self.name}+{self.key_hash:08x})"


class Signer:
    """An Ed25519 note signing key (type ``0x01``) with its key name."""

    __slots__ = ("_key", "key_hash", "name")

    def __init__(self, name: str, key: SigningKey) -> None:
        if not is_valid_key_name(name):
            raise ValueError("invalid key name")
        if not isinstance(key, SigningKey):
            raise TypeError("key must be a crypto.signing.SigningKey")
        self.name: Final = name
        self._key: Final = key
        self.key_hash: Final = key_hash(name, SIG_TYPE_ED25519, key.public_key.raw)

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Read Go's ``PRIVATE+KEY+<name>+<hash>+base64(0x01 || seed)``, checking the hash."""
        if not isinstance(skey, str):
            raise TypeError("skey must be str")
        parts = skey.split("+", 4)
        raw = b64decode_canonical(parts[4]) if len(parts) == 5 else None
        if (
            raw is None
            or parts[:2] != ["PRIVATE", "KEY"]
            or not is_valid_key_name(parts[2])
            or not _HASH_HEX.fullmatch(parts[3])
            or len(raw) != 1 + _ED25519_KEY_SIZE
            or raw[0] != SIG_TYPE_ED25519
        ):
            raise EncodingError("malformed signer key")
        signer = cls(parts[2], SigningKey.from_seed(raw[1:]))
        if signer.key_hash != int(parts[3], 16):
            raise EncodingError("signer key hash does not match the key")
        return signer

    def verifier(self) -> Verifier:
        return Verifier(self.name, self._key.public_key)

    def _sign(self, text: bytes) -> Signature:
        return Signature(self.name, self.key_hash, self._key.sign(text))

    def __repr__(self) -> str:
        return f"Signer({self.name}+{self.key_hash:08x}, <key redacted>)"


# --- parsing -----------------------------------------------------------------


def _parse_line(line: str) -> Signature:
    """One signature line without its newline."""
    if not line.startswith(_SIG_PREFIX):
        raise EncodingError("malformed note: a signature line does not start with '\u2014 '")
    name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not is_valid_key_name(name):
        raise EncodingError("malformed note: invalid key name in a signature line")
    blob = b64decode_canonical(b64)
    if blob is None or len(blob) < 5:
        raise EncodingError("malformed note: invalid signature encoding")
    return Signature(name, KeyHash(int.from_bytes(blob[:4], "big")), blob[4:])


def parse_signature_line(line: str) -> Signature:
    """Parse one signature line, ``— <name> <base64>\\n`` (the newline is required)."""
    if not isinstance(line, str):
        raise TypeError("line must be str")
    if len(line) > MAX_NOTE_BYTES:
        raise EncodingError("malformed note: signature line too long")
    if not line.endswith("\n") or "\n" in line[:-1] or CONTROL.search(line):
        raise EncodingError("malformed note: not a single signature line")
    return _parse_line(line[:-1])


def _decode(note: str | bytes, max_bytes: int) -> str:
    if isinstance(note, bytes):
        if len(note) > max_bytes:
            raise EncodingError(f"malformed note: larger than {max_bytes} bytes")
        try:
            text: str | None = note.decode("utf-8")
        except UnicodeDecodeError:  # raised below, outside this block: nothing chained
            text = None
        if text is None:
            raise EncodingError("malformed note: not valid UTF-8")
        return text
    if isinstance(note, str):
        if len(note) > max_bytes:  # every character is at least one byte
            raise EncodingError(f"malformed note: larger than {max_bytes} bytes")
        if SURROGATE.search(note):
            raise EncodingError("malformed note: not valid Unicode")
        if len(note.encode("utf-8")) > max_bytes:
            raise EncodingError(f"malformed note: larger than {max_bytes} bytes")
        return note
    raise TypeError("note must be str or bytes")


def parse_note(
    note: str | bytes, *, max_bytes: int = MAX_NOTE_BYTES, max_signatures: int = MAX_SIGNATURES
) -> Note:
    """Split a note into its text and signature lines, without verifying anything.

    ``bytes`` must be UTF-8; limits are on the UTF-8 size and the number of
    signature lines (duplicates included). Raises :class:`EncodingError`.
    """
    text = _decode(note, max_bytes)
    if CONTROL.search(text):
        raise EncodingError("malformed note: contains a control character")
    split = text.rfind("\n\n")
    if split < 0:
        raise EncodingError("malformed note: no blank line before the signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise EncodingError("malformed note: no signatures")
    if not block.endswith("\n"):
        raise EncodingError("malformed note: does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > max_signatures:
        raise EncodingError(f"malformed note: more than {max_signatures} signatures")
    return Note(body, tuple(_parse_line(line) for line in lines))


# --- verifying and signing ---------------------------------------------------


def _verify(note: Note, verifiers: Sequence[NoteVerifier]) -> VerifiedNote:
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        ident = (v.name, v.key_hash)
        if ident in known:
            raise PolicyError(f"ambiguous key {v.name}+{v.key_hash:08x}")
        known[ident] = v
    message = note.text.encode("utf-8")
    verified: dict[Signature, None] = {}  # insertion-ordered sets
    unverified: dict[Signature, None] = {}
    for sig in note.signatures:
        verifier = known.get((sig.name, sig.key_hash))
        if verifier is None:
            unverified[sig] = None
        elif sig not in verified:
            verifier.verify(message, sig.signature)
            verified[sig] = None
    if not verified:
        raise VerificationError("note has no verifiable signatures")
    return VerifiedNote(note.text, tuple(verified), tuple(unverified))


def open_note(
    note: str | bytes,
    verifiers: Sequence[NoteVerifier],
    *,
    max_bytes: int = MAX_NOTE_BYTES,
    max_signatures: int = MAX_SIGNATURES,
) -> VerifiedNote:
    """Parse ``note`` and verify it against the known keys ``verifiers``.

    Lines from unknown ``(name, key hash)`` pairs are ignored; every line from
    a known key is verified and one bad signature rejects the whole note
    (:class:`VerificationError`, "invalid signature for key <name>+<hash>");
    at least one known key must have signed ("note has no verifiable
    signatures"). A list naming one key twice raises :class:`PolicyError`.
    """
    return _verify(parse_note(note, max_bytes=max_bytes, max_signatures=max_signatures), verifiers)


def _encoded_text(text: str) -> bytes:
    if not isinstance(text, str):
        raise TypeError("text must be str")
    problem = text_problem(text)
    if problem:
        raise ValueError(f"note text {problem}")
    return text.encode("utf-8")


def _render(text: str, signatures: Sequence[Signature]) -> str:
    return text + "\n" + "".join(s.line for s in signatures)


def _check_producible(note: str) -> str:
    """Never hand out a note that :func:`parse_note` with default limits would refuse."""
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise ValueError(f"signed note would be larger than {MAX_NOTE_BYTES} bytes")
    return note


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign ``text`` (valid note text, ending with a newline) with each of ``signers``."""
    message = _encoded_text(text)
    if not signers or len(signers) > MAX_SIGNATURES:
        raise ValueError(f"a note needs 1 to {MAX_SIGNATURES} signers")
    seen: set[tuple[str, int]] = set()
    for s in signers:
        if not isinstance(s, Signer):
            raise TypeError("signers must be Signer objects")
        if (s.name, s.key_hash) in seen:
            raise ValueError(f"signer {s.name}+{s.key_hash:08x} given twice")
        seen.add((s.name, s.key_hash))
    return _check_producible(_render(text, [s._sign(message) for s in signers]))


def add_signature_lines(note: str, lines: Sequence[str]) -> str:
    """Add signature lines to a signed note, without verifying anything.

    As Go's ``note.Sign`` does with a note's existing signatures, a new line
    replaces an existing line of the same ``(name, key hash)``; the others keep
    their order and the new lines follow. Raises :class:`EncodingError` if the
    note or a line does not parse, or if the result would not parse.
    """
    parsed = parse_note(note)
    new = [parse_signature_line(line) for line in lines]
    replaced = {(s.name, s.key_hash) for s in new}
    if len(replaced) != len(new):
        raise EncodingError("two new signature lines are from the same key")
    kept = [s for s in parsed.signatures if (s.name, s.key_hash) not in replaced]
    result = _render(parsed.text, kept + new)
    parse_note(result)
    return result
