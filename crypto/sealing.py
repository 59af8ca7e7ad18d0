"""Sealed bundle streams: one file of any size, encrypted to one or more recipients.

A bundle's files travel as one *sealed stream*: XChaCha20-Poly1305
secretstream chunks under a fresh key, that key sealed to each recipient's
X25519 key, and the whole stream bound to the bundle's signed manifest by
:class:`SealedStreamInfo` (sizes and SHA-256 of the plaintext and of the
sealed bytes). Memory use is one chunk, whatever the size of the stream.

Format, version 1
-----------------

Integers are unsigned big-endian; ``||`` is concatenation; ``n`` is the
number of recipients. The stream is a header followed by chunks::

    offset      size     field
    0           4        magic          b"CPSS"
    4           1        version        0x01
    5           32       bundle_id      random, new for every bundle
    37          4        chunk_size     plaintext bytes per chunk, 1 KiB to 16 MiB
    41          2        n              number of recipient slots, 1 to 256
    43          128 * n  slots          key_id (16) || sealed_key (112), one per recipient
    43 + 128n   24       stream_header  secretstream XChaCha20-Poly1305 header
    67 + 128n   32       header_mac     HMAC-SHA256(mac_key, bytes 0 to 67 + 128n)
    99 + 128n            chunks

* ``stream_key``: 32 random bytes, new for every bundle, never stored.
* ``key_id = SHA-256(recipient X25519 public key, 32 raw bytes)[:16]``; the raw
  form of :func:`crypto.keystore.key_id`. Slots are sorted by ``key_id``,
  strictly ascending (so no key appears twice).
* ``sealed_key = crypto_box_seal(stream_key || bundle_id, recipient_public_key)``:
  libsodium's sealed box (ephemeral X25519 key, 32 + 64 + 16 = 112 bytes).
* ``payload_key = HKDF-SHA256(ikm=stream_key, salt=bundle_id,
  info=b"compact sealed stream v1 payload", length=32)`` and ``mac_key``, the
  same with ``info=b"compact sealed stream v1 header"``.
* ``stream_header`` is what ``crypto_secretstream_xchacha20poly1305_init_push``
  returns for ``payload_key``.
* Chunk ``i`` (``i = 0, 1, ...``) is ``crypto_secretstream_xchacha20poly1305_push``
  of the ``i``-th piece of plaintext with associated data
  ``bundle_id || u64(i)``: the piece plus 17 bytes (:data:`ABYTES`). Every
  chunk but the last holds exactly ``chunk_size`` bytes of plaintext and is
  tagged ``TAG_MESSAGE``; the last is tagged ``TAG_FINAL`` and holds 1 to
  ``chunk_size`` bytes (0 only when the whole plaintext is empty, which is one
  empty final chunk). Nothing follows it. So the sealed size of ``p`` bytes is
  ``99 + 128n + p + 17 * max(1, ceil(p / chunk_size))`` (:func:`sealed_size`).

Why this construction
---------------------

* **Sealed boxes** give each recipient the stream key without a key exchange,
  and say nothing about the sender: anybody can seal a stream to a public
  key. Who made a bundle is proven only by the DSSE-signed manifest, which
  carries :meth:`SealedStreamInfo.to_manifest_dict`. Putting ``bundle_id``
  inside the sealed box ties the stream key to this bundle: a slot copied into
  another bundle's header opens to the wrong bundle id and is refused.
* **Key ids in clear** make the recipient's slot a lookup rather than a trial
  decryption, and let an auditor read off the header which keys can open a
  bundle. They reveal the recipients to whoever sees the sealed bytes; but the
  transfer runs over mTLS between named nodes, and a bundle is requested by and
  approved for a named recipient, so this costs no secrecy the system has.
* **The header MAC** (after age's) authenticates every header byte, the other
  recipients' slots included, before any chunk is read, and commits to the
  stream key: HMAC-SHA256 is collision resistant in its key, so a dishonest
  sender cannot give two recipients two keys that open the same header (and the
  same secretstream to two different plaintexts). Poly1305 alone would not
  stop that.
* **HKDF with bundle_id as salt, and bundle_id in each chunk's associated
  data**: a chunk from another bundle fails even if a stream key were ever
  reused; the chunk index in the associated data states explicitly what
  secretstream's internal counter already enforces (order).
* **Canonical chunking** (full chunks, a non-empty final chunk) makes the
  sealed size a function of the plaintext size, which the manifest binds.

Use
---

The sender seals, then signs::

    info = seal_stream(src, tmp, [recipient_public_key, ...])
    manifest["sealed_stream"] = info.to_manifest_dict()   # then DSSE-sign the manifest

The receiver verifies the manifest's signature first, then opens::

    expected = SealedStreamInfo.from_manifest_dict(verified_manifest["sealed_stream"])
    open_stream(sealed, tmp_plaintext, private_key, expected=expected)
    # only now move tmp_plaintext into place

Reading
-------

:class:`SealedStreamReader` (or :func:`open_stream`) refuses, with
:class:`~crypto.errors.DecryptionError` and nothing else: a wrong magic or
version, bounds or slot order out of range, a key that has no slot, a slot
that does not open or opens to another bundle id, a header whose MAC fails,
any altered, reordered, duplicated, replayed, dropped or truncated chunk, a
missing final chunk, bytes after it, a non-canonical chunking, and (given the
manifest's :class:`SealedStreamInfo`) a stream with another bundle id, chunk
size, size or SHA-256, of the plaintext or of the sealed bytes. Broken framing
is not told apart from tampering (this module never raises
:class:`~crypto.errors.EncodingError` for a stream; only
:meth:`SealedStreamInfo.from_manifest_dict` does, for a malformed manifest
entry).

The reader releases a chunk's plaintext only after that chunk authenticated,
and the final chunk only after the whole stream checked out (against the
manifest, when given). **Plaintext released before** :meth:`SealedStreamReader.close`
**returns is provisional**: every piece is authentic, but the stream as a whole
is not yet; write it to a temporary place and commit it only after ``close()``.

Without the manifest's values (``expected=None``) the reader proves only that
the stream was made by someone who held the stream key: the sender, any other
recipient, and the sender can be anybody. Pass ``expected`` from a verified
manifest.

Resuming a transfer
-------------------

:attr:`SealedStreamReader.verified_offset` counts the sealed bytes consumed in
whole verified units (the header, then each chunk); after a broken
connection, :meth:`SealedStreamReader.rewind` drops what was received past it
and the sender resumes from there, with the same reader.

There is no serialised snapshot to resume in another process. The
secretstream state could be copied (52 bytes in PyNaCl's ``state.statebuf``;
a failed pull leaves it unchanged), but it holds the stream's subkey in
clear, and the running SHA-256 states of the plaintext and of the sealed
bytes cannot be exported from ``hashlib``: resuming would re-read the kept
prefix anyway. So a receiver that must survive a restart keeps the sealed
bytes it received and, after a restart, either feeds that prefix to a new
reader (which releases that plaintext again) before asking for the
rest, or completes the sealed file first, checks its size and SHA-256 against
the manifest, and opens it afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, Final

import nacl.bindings
import nacl.exceptions
import nacl.utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto import x25519
from crypto.errors import DecryptionError, EncodingError

__all__ = [
    "ABYTES",
    "BUNDLE_ID_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MAX_RECIPIENTS",
    "MIN_CHUNK_SIZE",
    "SLOT_SIZE",
    "SealedStreamInfo",
    "SealedStreamReader",
    "SealedStreamWriter",
    "check_binding",
    "header_size",
    "open_stream",
    "recipient_key_id",
    "seal_stream",
    "sealed_size",
]

MAGIC: Final = b"CPSS"
FORMAT_VERSION: Final = 1
#: The ``"format"`` value of :meth:`SealedStreamInfo.to_manifest_dict`.
FORMAT_NAME: Final = "compact-sealed-stream"
BUNDLE_ID_SIZE: Final = 32
KEY_ID_SIZE: Final = 16
MIN_CHUNK_SIZE: Final = 1024
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
MAX_RECIPIENTS: Final = 256
#: Bytes a chunk adds to its plaintext (secretstream tag byte + Poly1305 tag).
ABYTES: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_ABYTES

_KEY_SIZE: Final = 32
_SEALED_KEY_SIZE: Final = x25519.SEAL_OVERHEAD + _KEY_SIZE + BUNDLE_ID_SIZE
SLOT_SIZE: Final = KEY_ID_SIZE + _SEALED_KEY_SIZE
_PREFIX_SIZE: Final = len(MAGIC) + 1 + BUNDLE_ID_SIZE + 4 + 2
_STREAM_HEADER_SIZE: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_MAC_SIZE: Final = 32
_PAYLOAD_INFO: Final = b"compact sealed stream v1 payload"
_HEADER_INFO: Final = b"compact sealed stream v1 header"
_TAG_MESSAGE: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_HEX64: Final = re.compile(r"[0-9a-f]{64}")

_State = nacl.bindings.crypto_secretstream_xchacha20poly1305_state
_push = nacl.bindings.crypto_secretstream_xchacha20poly1305_push
_pull = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull


# --- sizes and names ------------------------------------------------------------------------


def header_size(recipients: int) -> int:
    """Bytes before the first chunk of a stream sealed to ``recipients`` keys."""
    if not 1 <= recipients <= MAX_RECIPIENTS:
        raise ValueError(f"recipients must be between 1 and {MAX_RECIPIENTS}")
    return _PREFIX_SIZE + recipients * SLOT_SIZE + _STREAM_HEADER_SIZE + _MAC_SIZE


def _chunk_count(plaintext_size: int, chunk_size: int) -> int:
    return max(1, -(-plaintext_size // chunk_size))


def sealed_size(
    plaintext_size: int, *, recipients: int, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> int:
    """The size of the sealed stream of ``plaintext_size`` bytes (see the module docstring)."""
    _check_chunk_size(chunk_size)
    if plaintext_size < 0:
        raise ValueError("plaintext_size must not be negative")
    chunks = _chunk_count(plaintext_size, chunk_size)
    return header_size(recipients) + plaintext_size + chunks * ABYTES


def recipient_key_id(public_key: x25519.PublicKey) -> bytes:
    """The 16-byte key id of an X25519 public key: ``SHA-256(raw public key)[:16]``."""
    if not isinstance(public_key, x25519.PublicKey):
        raise TypeError("public_key must be a crypto.x25519.PublicKey")
    return hashlib.sha256(public_key.raw).digest()[:KEY_ID_SIZE]


def _check_key(key: bytes, name: str) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"{name} must be bytes")
    if len(key) != _KEY_SIZE:
        raise ValueError(f"{name} must be {_KEY_SIZE} bytes")


def _check_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")


def _check_chunk_size(chunk_size: int) -> None:
    _check_int(chunk_size, "chunk_size")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}")


def _as_bytes(data: bytes | bytearray | memoryview, name: str) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"{name} must be bytes, bytearray or memoryview")


def _derive_keys(stream_key: bytes, bundle_id: bytes) -> tuple[bytes, bytes]:
    """(payload_key, mac_key) of the module docstring."""

    def hkdf(info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=_KEY_SIZE, salt=bundle_id, info=info).derive(
            stream_key
        )

    return hkdf(_PAYLOAD_INFO), hkdf(_HEADER_INFO)


def _header_mac(mac_key: bytes, header_without_mac: bytes) -> bytes:
    return hmac.new(mac_key, header_without_mac, hashlib.sha256).digest()


def _chunk_ad(bundle_id: bytes, index: int) -> bytes:
    return bundle_id + index.to_bytes(8, "big")


# --- what the manifest binds ------------------------------------------------------------------

_MANIFEST_KEYS: Final = frozenset(
    {
        "format",
        "version",
        "bundle_id",
        "chunk_size",
        "plaintext_size",
        "plaintext_sha256",
        "ciphertext_size",
        "ciphertext_sha256",
    }
)


def _implied_recipients(plaintext_size: int, chunk_size: int, ciphertext_size: int) -> int:
    body = plaintext_size + _chunk_count(plaintext_size, chunk_size) * ABYTES
    slots, rest = divmod(ciphertext_size - body - header_size(1) + SLOT_SIZE, SLOT_SIZE)
    if rest or not 1 <= slots <= MAX_RECIPIENTS:
        raise ValueError("ciphertext_size is not that of a sealed stream of plaintext_size")
    return slots


@dataclass(frozen=True)
class SealedStreamInfo:
    """The values of one sealed stream that its signed manifest carries.

    ``bundle_id`` (32 bytes), ``chunk_size``, the size and raw SHA-256 digest
    of the plaintext, the size and raw SHA-256 digest of the complete sealed
    stream (header and every chunk), and ``format_version``. Checked on
    construction, including that the sizes are those of a canonical stream
    (``ValueError``/``TypeError`` otherwise).
    """

    bundle_id: bytes
    chunk_size: int
    plaintext_size: int
    plaintext_sha256: bytes
    ciphertext_size: int
    ciphertext_sha256: bytes
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        for name in ("bundle_id", "plaintext_sha256", "ciphertext_sha256"):
            value = getattr(self, name)
            if not isinstance(value, bytes):
                raise TypeError(f"{name} must be bytes")
            if len(value) != 32:
                raise ValueError(f"{name} must be 32 bytes")
        for name in ("chunk_size", "plaintext_size", "ciphertext_size", "format_version"):
            _check_int(getattr(self, name), name)
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version (this is version {FORMAT_VERSION})")
        _check_chunk_size(self.chunk_size)
        if self.plaintext_size < 0:
            raise ValueError("plaintext_size must not be negative")
        _implied_recipients(self.plaintext_size, self.chunk_size, self.ciphertext_size)

    @property
    def recipients(self) -> int:
        """The number of recipient slots that the sizes imply."""
        return _implied_recipients(self.plaintext_size, self.chunk_size, self.ciphertext_size)

    def to_manifest_dict(self) -> dict[str, str | int]:
        """The JSON-ready form for the signed manifest: lowercase hex bytes, integer sizes."""
        return {
            "format": FORMAT_NAME,
            "version": self.format_version,
            "bundle_id": self.bundle_id.hex(),
            "chunk_size": self.chunk_size,
            "plaintext_size": self.plaintext_size,
            "plaintext_sha256": self.plaintext_sha256.hex(),
            "ciphertext_size": self.ciphertext_size,
            "ciphertext_sha256": self.ciphertext_sha256.hex(),
        }

    @classmethod
    def from_manifest_dict(cls, value: Mapping[str, object]) -> SealedStreamInfo:
        """Parse :meth:`to_manifest_dict`'s form, strictly.

        Exactly those keys; ``format`` and ``version`` as written by this
        version; integers as ``int`` (not ``bool``); hex as 64 lowercase
        digits; sizes consistent. Anything else raises
        :class:`~crypto.errors.EncodingError`. Parse only a manifest whose
        signature was verified first.
        """
        if not isinstance(value, Mapping):
            raise EncodingError("a sealed stream's manifest entry must be an object")
        if set(value) != _MANIFEST_KEYS:
            raise EncodingError("a sealed stream's manifest entry has missing or extra fields")
        if value["format"] != FORMAT_NAME:
            raise EncodingError("not a sealed stream's manifest entry")
        ints: dict[str, int] = {}
        for name in ("version", "chunk_size", "plaintext_size", "ciphertext_size"):
            item = value[name]
            if type(item) is not int:
                raise EncodingError(f"manifest field {name!r} must be an integer")
            ints[name] = item
        raw: dict[str, bytes] = {}
        for name in ("bundle_id", "plaintext_sha256", "ciphertext_sha256"):
            item = value[name]
            if not isinstance(item, str) or not _HEX64.fullmatch(item):
                raise EncodingError(f"manifest field {name!r} must be 64 lowercase hex digits")
            raw[name] = bytes.fromhex(item)
        if ints["version"] != FORMAT_VERSION:
            raise EncodingError("unsupported sealed stream version")
        try:
            return cls(
                bundle_id=raw["bundle_id"],
                chunk_size=ints["chunk_size"],
                plaintext_size=ints["plaintext_size"],
                plaintext_sha256=raw["plaintext_sha256"],
                ciphertext_size=ints["ciphertext_size"],
                ciphertext_sha256=raw["ciphertext_sha256"],
            )
        except ValueError:
            pass
        # Raised outside the except block so that nothing is chained to it.
        raise EncodingError("a sealed stream's manifest entry has inconsistent values")


def _binding_bytes(info: SealedStreamInfo) -> bytes:
    return b"".join(
        [
            info.format_version.to_bytes(4, "big"),
            info.bundle_id,
            info.chunk_size.to_bytes(8, "big"),
            info.plaintext_size.to_bytes(8, "big"),
            info.plaintext_sha256,
            info.ciphertext_size.to_bytes(8, "big"),
            info.ciphertext_sha256,
        ]
    )


def check_binding(manifest: SealedStreamInfo, computed: SealedStreamInfo) -> None:
    """Raise :class:`DecryptionError` unless the stream read (``computed``) is the manifest's.

    Every field is compared: version, bundle id, chunk size, and the sizes and
    SHA-256 digests of the plaintext and of the sealed bytes.
    """
    if not isinstance(manifest, SealedStreamInfo) or not isinstance(computed, SealedStreamInfo):
        raise TypeError("check_binding takes two SealedStreamInfo values")
    if not hmac.compare_digest(_binding_bytes(manifest), _binding_bytes(computed)):
        raise DecryptionError("the sealed stream is not the one its manifest describes")


# --- writing ----------------------------------------------------------------------------------


class SealedStreamWriter:
    """Incremental sealing of one stream to ``recipients`` (:class:`crypto.x25519.PublicKey`).

    Call :meth:`header` once, then :meth:`update` any number of times, then
    :meth:`finalize` once, and write their outputs in that order. ``update``
    emits whole chunks only and holds back at most ``chunk_size`` bytes, so the
    chunking is canonical whatever the sizes of the pieces given to it. After
    ``finalize``, :attr:`info` (and its fields as properties) is what the
    manifest carries.

    ``bundle_id`` and ``stream_key`` are random unless given: pass them only in
    tests (a known stream key is a known plaintext) or, for ``bundle_id``,
    when the caller allocated a random one itself.
    """

    __slots__ = (
        "_bundle_id",
        "_chunk_size",
        "_cipher_hash",
        "_cipher_size",
        "_header",
        "_index",
        "_info",
        "_pending",
        "_pending_size",
        "_plain_hash",
        "_plain_size",
        "_stage",
        "_state",
    )

    def __init__(
        self,
        recipients: Sequence[x25519.PublicKey],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        bundle_id: bytes | None = None,
        stream_key: bytes | None = None,
    ) -> None:
        if isinstance(recipients, bytes | bytearray | str) or not isinstance(recipients, Sequence):
            raise TypeError("recipients must be a sequence of crypto.x25519.PublicKey")
        if not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise ValueError(f"a stream needs 1 to {MAX_RECIPIENTS} recipients")
        _check_chunk_size(chunk_size)
        if bundle_id is None:
            bundle_id = nacl.utils.random(BUNDLE_ID_SIZE)
        elif not isinstance(bundle_id, bytes):
            raise TypeError("bundle_id must be bytes")
        elif len(bundle_id) != BUNDLE_ID_SIZE:
            raise ValueError(f"bundle_id must be {BUNDLE_ID_SIZE} bytes")
        if stream_key is None:
            stream_key = nacl.utils.random(_KEY_SIZE)
        else:
            _check_key(stream_key, "stream_key")
        # x25519.PublicKey admits only canonical keys of large order: every key id names one key.
        by_id = {recipient_key_id(public_key): public_key for public_key in recipients}
        if len(by_id) != len(recipients):
            raise ValueError("recipients must not repeat a key")
        slots = [
            key_id + x25519.seal(by_id[key_id], stream_key + bundle_id) for key_id in sorted(by_id)
        ]
        payload_key, mac_key = _derive_keys(stream_key, bundle_id)
        self._state = _State()
        stream_header = nacl.bindings.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, payload_key
        )
        head = b"".join(
            [
                MAGIC,
                FORMAT_VERSION.to_bytes(1, "big"),
                bundle_id,
                chunk_size.to_bytes(4, "big"),
                len(slots).to_bytes(2, "big"),
                *slots,
                stream_header,
            ]
        )
        self._header = head + _header_mac(mac_key, head)
        self._bundle_id = bundle_id
        self._chunk_size = chunk_size
        self._index = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._plain_hash = hashlib.sha256()
        self._plain_size = 0
        self._cipher_hash = hashlib.sha256()
        self._cipher_size = 0
        self._info: SealedStreamInfo | None = None
        self._stage = 0  # 0: header not yet taken, 1: updating, 2: finalized

    def __repr__(self) -> str:
        return f"SealedStreamWriter(bundle_id={self._bundle_id.hex()}, <keys redacted>)"

    @property
    def bundle_id(self) -> bytes:
        """The stream's 32-byte bundle id (known from the start)."""
        return self._bundle_id

    def _push(self, piece: bytes, tag: int) -> bytes:
        record = _push(self._state, piece, _chunk_ad(self._bundle_id, self._index), tag)
        self._index += 1
        self._cipher_hash.update(record)
        self._cipher_size += len(record)
        return record

    def header(self) -> bytes:
        """The stream's header (:func:`header_size` bytes). Once, before anything else."""
        if self._stage != 0:
            raise RuntimeError("SealedStreamWriter.header() was already called")
        self._stage = 1
        self._cipher_hash.update(self._header)
        self._cipher_size += len(self._header)
        return self._header

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Seal the next piece of plaintext; returns zero or more whole chunks."""
        if self._stage != 1:
            raise RuntimeError(
                "SealedStreamWriter.update() needs header() first and cannot follow finalize()"
            )
        data = _as_bytes(data, "data")
        size = len(data)
        self._plain_hash.update(data)
        self._plain_size += size
        chunk_size = self._chunk_size
        pending = self._pending
        if self._pending_size + size <= chunk_size:
            # Held back even when it fills a chunk: only a later byte proves it is not the last.
            if size:
                pending.append(data)
                self._pending_size += size
            return b""
        records: list[bytes] = []
        pos = 0
        if pending:
            pos = chunk_size - self._pending_size
            if pos:
                pending.append(data[:pos])
            records.append(self._push(b"".join(pending), _TAG_MESSAGE))
            pending.clear()
        if size - pos > chunk_size:
            with memoryview(data) as view:
                while size - pos > chunk_size:
                    records.append(self._push(bytes(view[pos : pos + chunk_size]), _TAG_MESSAGE))
                    pos += chunk_size
        pending.append(data[pos:] if pos else data)
        self._pending_size = size - pos
        return b"".join(records)

    def finalize(self) -> bytes:
        """The final chunk (tagged TAG_FINAL). The writer cannot be used afterwards."""
        if self._stage != 1:
            raise RuntimeError(
                "SealedStreamWriter.finalize() needs header() first and can only be called once"
            )
        self._stage = 2
        last = self._push(b"".join(self._pending), _TAG_FINAL)
        self._pending.clear()
        self._pending_size = 0
        self._state = _State()  # forget the key schedule
        self._info = SealedStreamInfo(
            bundle_id=self._bundle_id,
            chunk_size=self._chunk_size,
            plaintext_size=self._plain_size,
            plaintext_sha256=self._plain_hash.digest(),
            ciphertext_size=self._cipher_size,
            ciphertext_sha256=self._cipher_hash.digest(),
        )
        return last

    @property
    def info(self) -> SealedStreamInfo:
        """What the manifest carries; available after :meth:`finalize`."""
        if self._info is None:
            raise RuntimeError("the stream's info is known only after finalize()")
        return self._info

    @property
    def plaintext_sha256(self) -> bytes:
        return self.info.plaintext_sha256

    @property
    def ciphertext_sha256(self) -> bytes:
        return self.info.ciphertext_sha256

    @property
    def plaintext_size(self) -> int:
        return self.info.plaintext_size

    @property
    def ciphertext_size(self) -> int:
        return self.info.ciphertext_size


def seal_stream(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[x25519.PublicKey],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    bundle_id: bytes | None = None,
    stream_key: bytes | None = None,
) -> SealedStreamInfo:
    """Seal everything ``src`` yields into ``dst``; returns what the manifest carries."""
    writer = SealedStreamWriter(
        recipients, chunk_size=chunk_size, bundle_id=bundle_id, stream_key=stream_key
    )
    dst.write(writer.header())
    while True:
        piece = src.read(chunk_size)
        if not piece:
            break
        out = writer.update(piece)
        if out:
            dst.write(out)
    dst.write(writer.finalize())
    return writer.info


# --- reading ----------------------------------------------------------------------------------


class _Stage(Enum):
    HEADER = 1
    CHUNKS = 2
    DONE = 3  # the final chunk was read
    CLOSED = 4
    FAILED = 5


def _take(src: bytes | bytearray, pos: int, size: int) -> bytes:
    """``src[pos : pos + size]`` as bytes, copied once (not at all if that is all of ``src``)."""
    if type(src) is bytes and pos == 0 and size == len(src):
        return src
    with memoryview(src) as view:
        return bytes(view[pos : pos + size])


class SealedStreamReader:
    """Incremental opening of one sealed stream with an X25519 private key.

    Give the sealed bytes to :meth:`feed` in pieces of any size; each call
    returns the plaintext of the chunks it completed and verified. Then
    :meth:`close` returns the stream's :class:`SealedStreamInfo`.

    ``expected`` is the :class:`SealedStreamInfo` from the bundle's verified
    manifest; it must be passed explicitly, ``None`` only when there is no
    manifest. With it, the reader refuses a stream of another bundle, chunk
    size or size as soon as the header arrives and a byte too many as soon as it
    arrives, knows where the stream ends, and checks both digests before it
    releases the final chunk. Without it, the reader cannot tell where the
    final chunk ends: pass ``eof=True`` with the last :meth:`feed`.

    Everything returned before :meth:`close` succeeds is provisional (see the
    module docstring). After any :class:`DecryptionError` the reader refuses
    every further call.
    """

    __slots__ = (
        "_buffer",
        "_bundle_id",
        "_chunk_size",
        "_cipher_hash",
        "_earlier",
        "_eof",
        "_expected",
        "_index",
        "_info",
        "_key_id",
        "_offset",
        "_plain_hash",
        "_plain_size",
        "_private_key",
        "_received",
        "_stage",
        "_state",
        "_withheld",
    )

    def __init__(
        self,
        private_key: x25519.PrivateKey,
        *,
        expected: SealedStreamInfo | None,
        earlier_keys: Sequence[x25519.PrivateKey] = (),
    ) -> None:
        if not isinstance(private_key, x25519.PrivateKey):
            raise TypeError("private_key must be a crypto.x25519.PrivateKey")
        if not all(isinstance(k, x25519.PrivateKey) for k in earlier_keys):
            raise TypeError("earlier_keys must be crypto.x25519.PrivateKey")
        if expected is not None and not isinstance(expected, SealedStreamInfo):
            raise TypeError("expected must be a SealedStreamInfo or None")
        self._private_key = private_key
        self._key_id = recipient_key_id(private_key.public_key)
        # A recipient's retired keys (after a key rotation): a stream sealed to one of them
        # before the rotation still opens. The slot is chosen by key id, not by trial.
        self._earlier = {recipient_key_id(k.public_key): k for k in earlier_keys}
        self._expected = expected
        self._buffer = bytearray()
        self._offset = 0  # sealed bytes consumed in whole verified units
        self._received = 0  # sealed bytes fed (and not rewound)
        self._stage = _Stage.HEADER
        self._bundle_id = b""
        self._chunk_size = 0
        self._state = _State()
        self._index = 0
        self._plain_hash = hashlib.sha256()
        self._plain_size = 0
        self._cipher_hash = hashlib.sha256()
        self._withheld: bytes | None = None
        self._eof = False
        self._info: SealedStreamInfo | None = None

    def __repr__(self) -> str:
        return f"SealedStreamReader(key_id={self._key_id.hex()}, <key redacted>)"

    @property
    def verified_offset(self) -> int:
        """Sealed bytes consumed in whole verified units: 0, then the header, then each chunk."""
        return self._offset

    def feed(self, data: bytes | bytearray | memoryview, *, eof: bool = False) -> bytes:
        """Take the next sealed bytes; return the plaintext of every chunk they completed.

        ``eof=True`` says that no bytes follow ``data``: the stream must then be
        complete, or :class:`DecryptionError` is raised. A call that raises
        returns nothing, not even chunks it verified before the failure.
        """
        if self._stage is _Stage.FAILED:
            raise DecryptionError("the sealed stream was already rejected")
        if self._stage is _Stage.CLOSED or self._eof:
            raise RuntimeError("SealedStreamReader.feed() after the end of input or close()")
        data = _as_bytes(data, "data")
        try:
            return self._feed(data, eof)
        except BaseException:
            self._fail()
            raise

    def rewind(self) -> int:
        """Drop the bytes received past :attr:`verified_offset` and return that offset.

        For a transfer that broke off: the next :meth:`feed` must continue the
        stream from the returned offset. Only before the final chunk was read.
        """
        if self._stage is _Stage.FAILED:
            raise DecryptionError("the sealed stream was already rejected")
        if self._eof or self._stage not in (_Stage.HEADER, _Stage.CHUNKS):
            raise RuntimeError("SealedStreamReader.rewind() after the stream was read to its end")
        self._buffer.clear()
        self._received = self._offset
        return self._offset

    def close(self) -> SealedStreamInfo:
        """Check that the whole stream was read and verified; return its values.

        Raises :class:`DecryptionError` if the stream is truncated (or, with
        ``expected``, anything did not match; that was checked earlier). Without
        ``expected``, ``feed(..., eof=True)`` must have been called first
        (``RuntimeError`` otherwise). Only now is the released plaintext final.
        """
        if self._stage is _Stage.FAILED:
            raise DecryptionError("the sealed stream was already rejected")
        if self._expected is None and not self._eof:
            raise RuntimeError("without expected, call feed(..., eof=True) before close()")
        if self._stage is not _Stage.DONE and self._stage is not _Stage.CLOSED:
            self._fail()
            raise DecryptionError("the sealed stream is truncated")
        info = self._info
        if info is None:  # unreachable: reaching DONE sets it
            raise RuntimeError("SealedStreamReader lost the stream's values")
        self._stage = _Stage.CLOSED
        return info

    # --- internals ------------------------------------------------------------------------

    def _fail(self) -> None:
        self._stage = _Stage.FAILED
        self._buffer = bytearray()
        self._state = _State()
        self._withheld = None
        self._info = None

    def _want(self) -> int:
        """How many more bytes complete the next unit (a read size for :func:`open_stream`)."""
        if self._stage is _Stage.HEADER:
            if len(self._buffer) < _PREFIX_SIZE:
                return _PREFIX_SIZE - len(self._buffer)
            count = int.from_bytes(self._buffer[_PREFIX_SIZE - 2 : _PREFIX_SIZE], "big")
            if 1 <= count <= MAX_RECIPIENTS:
                return max(1, header_size(count) - len(self._buffer))
            return 1
        if self._stage is _Stage.CHUNKS:
            return max(1, self._record_size() - len(self._buffer))
        return 1

    def _record_size(self) -> int:
        size = self._chunk_size + ABYTES
        if self._expected is not None:
            size = min(size, self._expected.ciphertext_size - self._offset)
        return size

    def _feed(self, data: bytes, eof: bool) -> bytes:
        expected = self._expected
        if expected is not None and self._received + len(data) > expected.ciphertext_size:
            raise DecryptionError("the sealed stream is longer than its manifest says")
        self._received += len(data)
        buffer = self._buffer  # holds less than one unit: the header, or a chunk
        if self._stage is _Stage.HEADER:
            buffer += data
            pos = self._read_header(buffer)
            if not pos:
                data = b""
            else:
                with memoryview(buffer) as view:
                    data = bytes(view[pos:])
                buffer.clear()
        out: list[bytes] = []
        pos = 0
        while self._stage is _Stage.CHUNKS:
            size = self._record_size()
            held = len(buffer)
            available = held + len(data) - pos
            if available < size:
                if not (eof and expected is None and available):
                    break
                size = available  # the end of input: what is left must be the final chunk
            take = size - held
            if held:  # a chunk split between two feeds: one copy to join it
                with memoryview(data) as view:
                    record = b"".join((buffer, view[pos : pos + take]))
                buffer.clear()
            else:
                record = _take(data, pos, take)
            pos += take
            out.append(self._open_record(record))
        if pos < len(data):
            if self._stage is _Stage.DONE:
                raise DecryptionError("the sealed stream has data after its final chunk")
            with memoryview(data) as view:
                buffer += view[pos:]
        if eof:
            self._eof = True
            if self._stage is not _Stage.DONE:
                raise DecryptionError("the sealed stream is truncated")
        if self._withheld is not None and (eof or expected is not None):
            out.append(self._withheld)
            self._withheld = None
        return b"".join(out)

    def _read_header(self, src: bytes | bytearray) -> int:
        """Check and open the header once all of it is in ``src``; return its size (or 0)."""
        if len(src) < _PREFIX_SIZE:
            return 0
        prefix = _take(src, 0, _PREFIX_SIZE)
        if prefix[:5] != MAGIC + FORMAT_VERSION.to_bytes(1, "big"):
            raise DecryptionError("not a sealed stream of a version this reader knows")
        bundle_id = prefix[5:37]
        chunk_size = int.from_bytes(prefix[37:41], "big")
        count = int.from_bytes(prefix[41:43], "big")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE or not 1 <= count <= MAX_RECIPIENTS:
            raise DecryptionError("the sealed stream's header is malformed")
        expected = self._expected
        if expected is not None and (
            not hmac.compare_digest(bundle_id, expected.bundle_id)
            or chunk_size != expected.chunk_size
            or sealed_size(expected.plaintext_size, recipients=count, chunk_size=chunk_size)
            != expected.ciphertext_size
        ):
            raise DecryptionError("the sealed stream is not the one its manifest describes")
        size = header_size(count)
        if len(src) < size:
            return 0
        header = _take(src, 0, size)
        slots_end = _PREFIX_SIZE + count * SLOT_SIZE
        key_ids = [header[i : i + KEY_ID_SIZE] for i in range(_PREFIX_SIZE, slots_end, SLOT_SIZE)]
        if any(a >= b for a, b in itertools.pairwise(key_ids)):
            raise DecryptionError("the sealed stream's header is malformed")
        if self._key_id in key_ids:
            key_id, private_key = self._key_id, self._private_key
        else:
            earlier = next((k for k in key_ids if k in self._earlier), None)
            if earlier is None:
                raise DecryptionError("the sealed stream is not sealed to this key")
            key_id, private_key = earlier, self._earlier[earlier]
        start = _PREFIX_SIZE + key_ids.index(key_id) * SLOT_SIZE + KEY_ID_SIZE
        opened: bytes | None
        try:
            opened = x25519.open_sealed(private_key, header[start : start + _SEALED_KEY_SIZE])
        except DecryptionError:
            opened = None
        # Raised outside the except block so that nothing is chained to it.
        if (
            opened is None
            or len(opened) != _KEY_SIZE + BUNDLE_ID_SIZE
            or not hmac.compare_digest(opened[_KEY_SIZE:], bundle_id)
        ):
            raise DecryptionError("the sealed stream's key slot failed authentication")
        payload_key, mac_key = _derive_keys(opened[:_KEY_SIZE], bundle_id)
        if not hmac.compare_digest(_header_mac(mac_key, header[:-_MAC_SIZE]), header[-_MAC_SIZE:]):
            raise DecryptionError("the sealed stream's header failed authentication")
        nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(
            self._state, header[slots_end : slots_end + _STREAM_HEADER_SIZE], payload_key
        )
        self._bundle_id = bundle_id
        self._chunk_size = chunk_size
        self._cipher_hash.update(header)
        self._offset = size
        self._stage = _Stage.CHUNKS
        return size

    def _open_record(self, record: bytes) -> bytes:
        """Verify and decrypt one chunk; returns its plaintext, or b"" while it is withheld."""
        pulled: tuple[bytes, int] | None = None
        if len(record) >= ABYTES:
            try:
                pulled = _pull(self._state, record, _chunk_ad(self._bundle_id, self._index))
            except nacl.exceptions.CryptoError:
                pulled = None
        if pulled is None:
            raise DecryptionError("a chunk of the sealed stream failed authentication")
        plaintext, tag = pulled
        at_end = (
            self._expected is not None
            and self._offset + len(record) == self._expected.ciphertext_size
        )
        if tag == _TAG_MESSAGE:
            if at_end or len(plaintext) != self._chunk_size:  # a final chunk was due
                raise DecryptionError("the sealed stream is truncated")
        elif tag == _TAG_FINAL:
            if not plaintext and self._index:
                raise DecryptionError("the sealed stream's final chunk is empty")
        else:
            raise DecryptionError("a chunk of the sealed stream has an unexpected tag")
        self._index += 1
        self._offset += len(record)
        self._cipher_hash.update(record)
        self._plain_hash.update(plaintext)
        self._plain_size += len(plaintext)
        if tag == _TAG_MESSAGE:
            return plaintext
        self._stage = _Stage.DONE
        try:
            info = SealedStreamInfo(
                bundle_id=self._bundle_id,
                chunk_size=self._chunk_size,
                plaintext_size=self._plain_size,
                plaintext_sha256=self._plain_hash.digest(),
                ciphertext_size=self._offset,
                ciphertext_sha256=self._cipher_hash.digest(),
            )
        except ValueError:
            info = None
        if info is None:  # cannot happen for a stream this reader accepted so far
            raise DecryptionError("the sealed stream is malformed")
        if self._expected is not None:
            check_binding(self._expected, info)
        self._info = info
        self._withheld = plaintext
        return b""


def open_stream(
    src: BinaryIO,
    dst: BinaryIO,
    private_key: x25519.PrivateKey,
    *,
    expected: SealedStreamInfo | None,
) -> SealedStreamInfo:
    """Open the sealed stream ``src`` into ``dst``; returns the stream's values.

    Reads one chunk at a time. On :class:`DecryptionError`, ``dst`` may hold
    provisional plaintext of the chunks verified before the failure: ``dst``
    must be a temporary place that the caller discards unless this returns.
    """
    reader = SealedStreamReader(private_key, expected=expected)
    while True:
        piece = src.read(reader._want())
        if not piece:
            break
        out = reader.feed(piece)
        if out:
            dst.write(out)
    out = reader.feed(b"", eof=True)
    if out:
        dst.write(out)
    return reader.close()
