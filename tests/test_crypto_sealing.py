"""crypto.sealing: round trips, the documented layout, and every attack on a sealed stream fails.

The tamper tests use the smallest chunk size (1 KiB) so that a stream of a few
chunks is a few KiB and can be attacked at every byte. They check both the
error and what was released before it: no plaintext of a chunk that did not
verify, and no final chunk before the whole stream did.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import x25519
from crypto.errors import DecryptionError, EncodingError
from crypto.keystore import key_id as keystore_key_id
from crypto.sealing import (
    ABYTES,
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_RECIPIENTS,
    MIN_CHUNK_SIZE,
    SLOT_SIZE,
    SealedStreamInfo,
    SealedStreamReader,
    SealedStreamWriter,
    check_binding,
    header_size,
    open_stream,
    recipient_key_id,
    seal_stream,
    sealed_size,
)

CS = MIN_CHUNK_SIZE
RECORD = CS + ABYTES
SIZES = [0, 1, CS - 1, CS, CS + 1, 3 * CS, 3 * CS + 5]

TAG_MESSAGE = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
TAG_PUSH = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_PUSH
TAG_REKEY = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_REKEY


def keypair(seed: int) -> tuple[bytes, bytes]:
    secret = bytes((seed + i) % 256 for i in range(32))
    return secret, nacl.bindings.crypto_scalarmult_base(secret)


def pub(raw: bytes) -> x25519.PublicKey:
    return x25519.PublicKey.from_bytes(raw)


def priv(raw: bytes) -> x25519.PrivateKey:
    return x25519.PrivateKey.from_bytes(raw)


SK_A, PK_A = keypair(1)
SK_B, PK_B = keypair(2)
SK_C, PK_C = keypair(3)
SK_EVE, PK_EVE = keypair(4)


def make(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def seal(
    data: bytes,
    recipients: list[bytes] | None = None,
    *,
    chunk_size: int = CS,
    bundle_id: bytes | None = None,
    stream_key: bytes | None = None,
) -> tuple[bytes, SealedStreamInfo]:
    out = io.BytesIO()
    info = seal_stream(
        io.BytesIO(data),
        out,
        [pub(pk) for pk in ([PK_A] if recipients is None else recipients)],
        chunk_size=chunk_size,
        bundle_id=bundle_id,
        stream_key=stream_key,
    )
    return out.getvalue(), info


def open_all(
    blob: bytes, expected: SealedStreamInfo | None, key: bytes = SK_A
) -> tuple[bytes, SealedStreamInfo]:
    out = io.BytesIO()
    info = open_stream(io.BytesIO(blob), out, priv(key), expected=expected)
    return out.getvalue(), info


def feed_all(
    blob: bytes, expected: SealedStreamInfo | None, key: bytes = SK_A, piece: int = 1000
) -> tuple[list[bytes], BaseException | None]:
    """Feed ``blob`` in pieces; returns what was released and the error (if any)."""
    reader = SealedStreamReader(priv(key), expected=expected)
    released: list[bytes] = []
    try:
        for start in range(0, len(blob), piece):
            released.append(reader.feed(blob[start : start + piece]))
        released.append(reader.feed(b"", eof=True))
        reader.close()
    except DecryptionError as e:
        return released, e
    return released, None


# --- an independent reading of the documented format -------------------------------------------


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 with the standard library, one output block."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


@dataclass(frozen=True)
class Header:
    magic: bytes
    version: int
    bundle_id: bytes
    chunk_size: int
    count: int
    slots: list[bytes]
    stream_header: bytes
    mac: bytes
    size: int


def parse_header(blob: bytes) -> Header:
    """The header's fields at the offsets the module docstring gives."""
    count = int.from_bytes(blob[41:43], "big")
    end = 43 + 128 * count
    return Header(
        magic=blob[:4],
        version=blob[4],
        bundle_id=blob[5:37],
        chunk_size=int.from_bytes(blob[37:41], "big"),
        count=count,
        slots=[blob[i : i + 128] for i in range(43, end, 128)],
        stream_header=blob[end : end + 24],
        mac=blob[end + 24 : end + 56],
        size=end + 56,
    )


def records(blob: bytes, recipients: int = 1, chunk_size: int = CS) -> list[bytes]:
    body = blob[header_size(recipients) :]
    step = chunk_size + ABYTES
    return [body[i : i + step] for i in range(0, len(body), step)]


def craft(
    pieces: list[tuple[bytes, int]],
    *,
    recipients: list[bytes] | None = None,
    chunk_size: int = CS,
    bundle_id: bytes = bytes(32),
    stream_key: bytes = bytes(range(32)),
    ad: Callable[[int], bytes | None] | None = None,
    version: int = 1,
    slot_keys: dict[bytes, bytes] | None = None,
    sort_slots: bool = True,
) -> bytes:
    """A stream built from the documented format, with arbitrary chunks, tags and fields.

    ``ad(i)`` gives chunk i's associated data (default: the documented one);
    ``slot_keys`` maps a recipient to a stream key other than ``stream_key``.
    """
    recipients = [PK_A] if recipients is None else recipients
    slots = []
    for pk in recipients:
        key = (slot_keys or {}).get(pk, stream_key)
        slots.append(sha(pk)[:16] + nacl.bindings.crypto_box_seal(key + bundle_id, pk))
    if sort_slots:
        slots.sort()
    payload_key = hkdf_sha256(stream_key, bundle_id, b"compact sealed stream v1 payload")
    mac_key = hkdf_sha256(stream_key, bundle_id, b"compact sealed stream v1 header")
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    stream_header = nacl.bindings.crypto_secretstream_xchacha20poly1305_init_push(
        state, payload_key
    )
    head = b"".join(
        [
            b"CPSS",
            bytes([version]),
            bundle_id,
            chunk_size.to_bytes(4, "big"),
            len(slots).to_bytes(2, "big"),
            *slots,
            stream_header,
        ]
    )
    out = [head, hmac.new(mac_key, head, hashlib.sha256).digest()]
    for i, (piece, tag) in enumerate(pieces):
        data = bundle_id + i.to_bytes(8, "big") if ad is None else ad(i)
        out.append(
            nacl.bindings.crypto_secretstream_xchacha20poly1305_push(state, piece, data, tag)
        )
    return b"".join(out)


def canonical(data: bytes, chunk_size: int = CS) -> list[tuple[bytes, int]]:
    pieces = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    return [(p, TAG_FINAL if i == len(pieces) - 1 else TAG_MESSAGE) for i, p in enumerate(pieces)]


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int) -> None:
    data = make(size, size)
    blob, info = seal(data)
    assert len(blob) == info.ciphertext_size == sealed_size(size, recipients=1, chunk_size=CS)
    assert info.plaintext_size == size
    assert info.plaintext_sha256 == sha(data)
    assert info.ciphertext_sha256 == sha(blob)
    assert info.chunk_size == CS
    assert info.recipients == 1
    assert open_all(blob, info) == (data, info)
    assert open_all(blob, None) == (data, info)


@pytest.mark.parametrize("size", [0, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE + 1])
def test_round_trip_default_chunk_size(size: int) -> None:
    data = make(size, 9)
    blob, info = seal(data, chunk_size=DEFAULT_CHUNK_SIZE)
    assert info.chunk_size == DEFAULT_CHUNK_SIZE
    assert len(records(blob, chunk_size=DEFAULT_CHUNK_SIZE)) == max(
        1, -(-size // DEFAULT_CHUNK_SIZE)
    )
    assert open_all(blob, info) == (data, info)


def test_round_trip_largest_chunk_size() -> None:
    data = make(MAX_CHUNK_SIZE + 3, 4)
    blob, info = seal(data, chunk_size=MAX_CHUNK_SIZE)
    assert open_all(blob, info) == (data, info)


def test_every_recipient_opens_and_no_one_else() -> None:
    data = make(3 * CS + 5, 1)
    blob, info = seal(data, [PK_C, PK_A, PK_B])
    assert info.recipients == 3
    assert len(blob) == sealed_size(len(data), recipients=3, chunk_size=CS)
    for key in (SK_A, SK_B, SK_C):
        assert open_all(blob, info, key) == (data, info)
        assert open_all(blob, None, key) == (data, info)
    for expected in (info, None):
        with pytest.raises(DecryptionError, match="not sealed to this key"):
            open_all(blob, expected, SK_EVE)


def test_slots_are_sorted_by_key_id_whatever_the_order_given() -> None:
    a, _ = seal(b"x", [PK_C, PK_A, PK_B], bundle_id=bytes(32))
    b, _ = seal(b"x", [PK_B, PK_C, PK_A], bundle_id=bytes(32))
    ids_a = [s[:16] for s in parse_header(a).slots]
    ids_b = [s[:16] for s in parse_header(b).slots]
    assert ids_a == ids_b == sorted(sha(pk)[:16] for pk in (PK_A, PK_B, PK_C))


@settings(max_examples=60, deadline=None)
@given(
    size=st.one_of(st.integers(0, 5 * CS + 3), st.sampled_from(SIZES)),
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(0, 5 * CS + 3), max_size=8),
    feeds=st.lists(st.integers(1, 3 * RECORD), min_size=1, max_size=6),
    with_expected=st.booleans(),
)
def test_round_trip_any_split_points(
    size: int, seed: int, cuts: list[int], feeds: list[int], with_expected: bool
) -> None:
    data = make(size, seed)
    writer = SealedStreamWriter([pub(PK_A)], chunk_size=CS)
    out = [writer.header()]
    previous = 0
    for point in [*sorted({min(c, size) for c in cuts}), size]:
        emitted = writer.update(data[previous:point])
        assert len(emitted) % RECORD == 0  # only whole, full chunks before the final one
        out.append(emitted)
        previous = point
    out.append(writer.finalize())
    blob = b"".join(out)
    info = writer.info
    assert len(blob) == sealed_size(size, recipients=1, chunk_size=CS) == info.ciphertext_size
    assert (info.plaintext_sha256, info.ciphertext_sha256) == (sha(data), sha(blob))

    reader = SealedStreamReader(priv(SK_A), expected=info if with_expected else None)
    got = []
    pos = 0
    i = 0
    while pos < len(blob):
        step = feeds[i % len(feeds)]
        got.append(reader.feed(blob[pos : pos + step]))
        pos += step
        i += 1
    got.append(reader.feed(b"", eof=True))
    assert reader.close() == info
    assert b"".join(got) == data


def test_writer_accepts_bytearray_and_memoryview() -> None:
    data = make(2 * CS + 7, 5)
    writer = SealedStreamWriter([pub(PK_A)], chunk_size=CS)
    blob = writer.header()
    source = bytearray(data)
    blob += writer.update(source[: CS + 3])
    blob += writer.update(memoryview(source)[CS + 3 :])
    source[:] = bytes(len(source))  # the writer copied what it holds back
    blob += writer.finalize()
    assert open_all(blob, writer.info) == (data, writer.info)


def test_short_reads_are_handled_and_reads_are_bounded() -> None:
    data = make(3 * CS + 5, 2)
    src = Trickle(data)
    out = io.BytesIO()
    info = seal_stream(src, out, [pub(PK_A)], chunk_size=CS)
    blob = out.getvalue()
    assert len(blob) == sealed_size(len(data), recipients=1, chunk_size=CS)
    reader = Trickle(blob)
    plain = io.BytesIO()
    assert open_stream(reader, plain, priv(SK_A), expected=info) == info
    assert plain.getvalue() == data
    assert reader.largest_request <= RECORD


def test_open_stream_reads_one_chunk_at_a_time() -> None:
    data = make(3 * CS + 5, 3)
    blob, info = seal(data)
    src = Recorder(blob)
    open_stream(src, io.BytesIO(), priv(SK_A), expected=info)
    assert max(src.requests) <= RECORD
    assert src.requests[:2] == [43, header_size(1) - 43]


class Trickle(io.BytesIO):
    """A file whose reads return at most 7 bytes, and which records the sizes asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest_request = 0

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size > 0:
            self.largest_request = max(self.largest_request, size)
            return super().read(min(size, 7))
        return super().read(7)


class Recorder(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.requests: list[int] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.requests.append(-1 if size is None else size)
        return super().read(size)


# --- the documented layout and a known-answer vector ------------------------------------------


@pytest.mark.parametrize("size", [0, CS, 3 * CS + 5])
def test_layout_is_as_documented(size: int) -> None:
    data = make(size, size)
    bundle_id = bytes(range(32, 64))
    stream_key = bytes(range(64, 96))
    blob, info = seal(data, [PK_B, PK_A], bundle_id=bundle_id, stream_key=stream_key)
    h = parse_header(blob)
    assert (h.magic, h.version, h.bundle_id, h.chunk_size, h.count) == (
        b"CPSS",
        1,
        bundle_id,
        CS,
        2,
    )
    assert h.size == header_size(2) == 99 + 2 * 128
    by_id = {s[:16]: s[16:] for s in h.slots}
    for secret, public in ((SK_A, PK_A), (SK_B, PK_B)):
        assert recipient_key_id(pub(public)) == sha(public)[:16]
        assert recipient_key_id(pub(public)).hex() == keystore_key_id(public)
        sealed = by_id[sha(public)[:16]]
        assert len(sealed) == 112
        assert nacl.bindings.crypto_box_seal_open(sealed, public, secret) == stream_key + bundle_id
    mac_key = hkdf_sha256(stream_key, bundle_id, b"compact sealed stream v1 header")
    assert h.mac == hmac.new(mac_key, blob[: h.size - 32], hashlib.sha256).digest()
    payload_key = hkdf_sha256(stream_key, bundle_id, b"compact sealed stream v1 payload")
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(
        state, h.stream_header, payload_key
    )
    recs = records(blob, 2)
    assert len(recs) == max(1, -(-size // CS))
    plain = []
    for i, rec in enumerate(recs):
        piece, tag = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(
            state, rec, bundle_id + i.to_bytes(8, "big")
        )
        last = i == len(recs) - 1
        assert tag == (TAG_FINAL if last else TAG_MESSAGE)
        assert len(piece) == (size - CS * i if last else CS)
        plain.append(piece)
    assert b"".join(plain) == data
    assert info.ciphertext_sha256 == sha(blob)


def test_sizes() -> None:
    assert header_size(1) == 227
    assert header_size(MAX_RECIPIENTS) == 99 + 128 * 256
    assert sealed_size(0, recipients=1, chunk_size=CS) == 227 + 17
    assert sealed_size(CS, recipients=1, chunk_size=CS) == 227 + CS + 17
    assert sealed_size(CS + 1, recipients=2, chunk_size=CS) == 355 + CS + 1 + 2 * 17
    assert sealed_size(5 * 2**20, recipients=1) == 227 + 5 * 2**20 + 5 * 17
    for bad in (0, MAX_RECIPIENTS + 1):
        with pytest.raises(ValueError, match="recipients"):
            header_size(bad)
    with pytest.raises(ValueError, match="negative"):
        sealed_size(-1, recipients=1)
    with pytest.raises(ValueError, match="chunk_size"):
        sealed_size(1, recipients=1, chunk_size=CS - 1)


# Made by seal_stream with chunk_size=1024 and fixed inputs: see regenerate_golden().
GOLDEN_SECRET = bytes(range(1, 33))
GOLDEN_BUNDLE_ID = bytes(range(100, 132))
GOLDEN_STREAM_KEY = bytes(range(200, 232))
GOLDEN_PLAINTEXT = b"compact sealed stream v1\n"
GOLDEN_STREAM = bytes.fromhex(
    "43505353016465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80818283000004000001aa"
    "a8fff703b50b2297f4f6e13508f72440a624ad514f4b575c4f2fa34fdb197fc4f6c719f15d8d12eb64f2d42a"
    "4e5051840cce76b0d94381f12f477fb786adf106d451179043b7c7feb2a5b754f2c2a9e7d24384094122105f"
    "d4fd38d66ab9addf6b1187ad71db32bfe7b38ec3a1c278974d19dd06ee60437c86b241b84af4fbdd1e33d395"
    "a030f282a1a2d9b337dc8ad9da4b6c589631889bf1c01893cd4a514d8525c96a04bfbd0d1f97de9b020be6e8"
    "28c9cea7159d0f9b2bcd5bd7db47b9a8c96ce129c635ceac2136a3f7172b4a5d25ccd52f1c2fafa90cf7320a"
    "e03e7a117d"
)
GOLDEN_MANIFEST = {
    "format": "compact-sealed-stream",
    "version": 1,
    "bundle_id": "6465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80818283",
    "chunk_size": 1024,
    "plaintext_size": 25,
    "plaintext_sha256": "d0fcda33413c21ba37d1ba5ca4a075027e8ca616938c57a8a6cff87ec49d6302",
    "ciphertext_size": 269,
    "ciphertext_sha256": "a7e499bf485c2dda4d5eda9d68cae607af18c45373aa3ea060cb90ad0f7e3fa0",
}


def regenerate_golden() -> str:
    """Python source for the GOLDEN_* values (a new stream: sealed boxes use ephemeral keys)."""
    out = io.BytesIO()
    info = seal_stream(
        io.BytesIO(GOLDEN_PLAINTEXT),
        out,
        [pub(nacl.bindings.crypto_scalarmult_base(GOLDEN_SECRET))],
        chunk_size=1024,
        bundle_id=GOLDEN_BUNDLE_ID,
        stream_key=GOLDEN_STREAM_KEY,
    )
    text = out.getvalue().hex()
    lines = "\n".join(f'    "{text[i : i + 88]}"' for i in range(0, len(text), 88))
    return (
        f"GOLDEN_STREAM = bytes.fromhex(\n{lines}\n)\nGOLDEN_MANIFEST = {info.to_manifest_dict()!r}"
    )


def test_golden_stream_opens_to_the_known_plaintext_and_values() -> None:
    expected = SealedStreamInfo.from_manifest_dict(GOLDEN_MANIFEST)
    assert open_all(GOLDEN_STREAM, expected, GOLDEN_SECRET) == (GOLDEN_PLAINTEXT, expected)
    assert open_all(GOLDEN_STREAM, None, GOLDEN_SECRET) == (GOLDEN_PLAINTEXT, expected)
    assert sha(GOLDEN_STREAM).hex() == GOLDEN_MANIFEST["ciphertext_sha256"]
    assert sha(GOLDEN_PLAINTEXT).hex() == GOLDEN_MANIFEST["plaintext_sha256"]
    # Its slot holds the injected stream key, bound to the bundle id.
    public = nacl.bindings.crypto_scalarmult_base(GOLDEN_SECRET)
    sealed = GOLDEN_STREAM[43 + 16 : 43 + 128]
    assert nacl.bindings.crypto_box_seal_open(sealed, public, GOLDEN_SECRET) == (
        GOLDEN_STREAM_KEY + GOLDEN_BUNDLE_ID
    )


def test_injected_inputs_reproduce_every_deterministic_byte() -> None:
    """Same injected inputs: same header fields and key ids, same slot contents once opened.

    The sealed boxes (ephemeral key) and the secretstream header (random nonce
    chosen by libsodium) differ from run to run by design, and with them the
    chunks and the header MAC; the golden stream above pins those by decryption.
    """
    public = nacl.bindings.crypto_scalarmult_base(GOLDEN_SECRET)
    a, info_a = seal(
        GOLDEN_PLAINTEXT,
        [public],
        chunk_size=1024,
        bundle_id=GOLDEN_BUNDLE_ID,
        stream_key=GOLDEN_STREAM_KEY,
    )
    b, info_b = seal(
        GOLDEN_PLAINTEXT,
        [public],
        chunk_size=1024,
        bundle_id=GOLDEN_BUNDLE_ID,
        stream_key=GOLDEN_STREAM_KEY,
    )
    deterministic = 43 + 16  # fixed fields and the key id
    assert a[:deterministic] == b[:deterministic] == GOLDEN_STREAM[:deterministic]
    assert len(a) == len(b) == len(GOLDEN_STREAM)
    assert a[deterministic:] != b[deterministic:]
    assert (info_a.plaintext_sha256, info_a.bundle_id) == (
        info_b.plaintext_sha256,
        GOLDEN_BUNDLE_ID,
    )
    assert info_a.ciphertext_sha256 != info_b.ciphertext_sha256
    for blob in (a, b):
        sealed = blob[deterministic : 43 + 128]
        opened = nacl.bindings.crypto_box_seal_open(sealed, public, GOLDEN_SECRET)
        assert opened == GOLDEN_STREAM_KEY + GOLDEN_BUNDLE_ID
        assert open_all(blob, None, GOLDEN_SECRET)[0] == GOLDEN_PLAINTEXT


def test_fresh_bundle_id_and_key_by_default() -> None:
    a, info_a = seal(b"same")
    b, info_b = seal(b"same")
    assert info_a.bundle_id != info_b.bundle_id
    assert a[5:37] == info_a.bundle_id
    # The two keys differ: neither stream's slot opens to the other's key.
    key_a = nacl.bindings.crypto_box_seal_open(a[59:171], PK_A, SK_A)[:32]
    key_b = nacl.bindings.crypto_box_seal_open(b[59:171], PK_A, SK_A)[:32]
    assert key_a != key_b


# --- tampering -----------------------------------------------------------------------------

DATA = make(3 * CS + 5, 42)  # four chunks: three full, one of 5 bytes
BLOB, INFO = seal(DATA)
HEADER = header_size(1)
BOUNDARIES = [HEADER + i * RECORD for i in range(4)]  # where each chunk starts


def assert_fails(
    blob: bytes, expected: SealedStreamInfo | None = INFO, match: str | None = None
) -> list[bytes]:
    """Opening fails, with no exception chained; returns what was released first."""
    released, error = feed_all(blob, expected)
    assert error is not None, "the altered stream was accepted"
    assert error.__context__ is None and error.__cause__ is None
    if match is not None:
        assert error.args and match in str(error.args[0]), error
    with pytest.raises(DecryptionError):
        open_all(blob, expected)
    return released


def released_prefix_ok(released: list[bytes], bad_chunk: int) -> None:
    """Only chunks before ``bad_chunk`` were released, and never the final one."""
    got = b"".join(released)
    assert DATA.startswith(got)
    assert len(got) % CS == 0 and len(got) // CS <= min(bad_chunk, 3)


def test_tamper_control() -> None:
    assert len(records(BLOB)) == 4
    released, error = feed_all(BLOB, INFO)
    assert error is None and b"".join(released) == DATA
    released, error = feed_all(BLOB, None)
    assert error is None and b"".join(released) == DATA


@pytest.mark.parametrize("expected", [INFO, None], ids=["manifest", "no-manifest"])
def test_truncated_anywhere(expected: SealedStreamInfo | None) -> None:
    for cut in range(len(BLOB)):
        released = assert_fails(BLOB[:cut], expected)
        chunk = max(0, (cut - HEADER) // RECORD)
        released_prefix_ok(released, chunk)


@pytest.mark.parametrize("index", range(4))
def test_truncated_at_a_chunk_boundary(index: int) -> None:
    assert_fails(BLOB[: BOUNDARIES[index]], match="truncated")
    assert_fails(BLOB[: BOUNDARIES[index]], None, match="truncated")


def test_dropped_final_chunk() -> None:
    recs = records(BLOB)
    truncated = BLOB[:HEADER] + b"".join(recs[:-1])
    assert_fails(truncated, match="truncated")
    assert_fails(truncated, None, match="truncated")
    for expected in (INFO, None):
        # The end of input is where the truncation shows, not only at close().
        reader = SealedStreamReader(priv(SK_A), expected=expected)
        assert reader.feed(truncated) == DATA[: 3 * CS]
        with pytest.raises(DecryptionError, match="truncated"):
            reader.feed(b"", eof=True)


@pytest.mark.parametrize("index", range(3))
def test_dropped_chunk(index: int) -> None:
    recs = records(BLOB)
    del recs[index]
    for expected in (INFO, None):
        released = assert_fails(BLOB[:HEADER] + b"".join(recs), expected)
        released_prefix_ok(released, index)


@pytest.mark.parametrize(("a", "b"), [(0, 1), (1, 2), (0, 2), (2, 3)])
def test_reordered_chunks(a: int, b: int) -> None:
    recs = records(BLOB)
    recs[a], recs[b] = recs[b], recs[a]
    for expected in (INFO, None):
        released = assert_fails(BLOB[:HEADER] + b"".join(recs), expected)
        released_prefix_ok(released, a)


@pytest.mark.parametrize("index", range(3))
def test_duplicated_chunk(index: int) -> None:
    recs = records(BLOB)
    recs.insert(index + 1, recs[index])
    for expected in (INFO, None):
        released = assert_fails(BLOB[:HEADER] + b"".join(recs), expected)
        released_prefix_ok(released, index + 1)


@pytest.mark.parametrize("index", range(4))
def test_chunk_replayed_from_another_bundle(index: int) -> None:
    """Same recipient, same plaintext and chunking: the other bundle's chunk does not fit."""
    other, _ = seal(DATA)
    recs = records(BLOB)
    recs[index] = records(other)[index]
    for expected in (INFO, None):
        released = assert_fails(BLOB[:HEADER] + b"".join(recs), expected)
        released_prefix_ok(released, index)


@pytest.mark.parametrize("same_bundle_id", [False, True])
def test_chunk_replayed_from_a_bundle_with_the_same_stream_key(same_bundle_id: bool) -> None:
    """Even a reused stream key (which the writer never does) does not let chunks move."""
    key = bytes(range(7, 39))
    mine, info = seal(DATA, bundle_id=bytes(32), stream_key=key)
    other, _ = seal(DATA, bundle_id=bytes(32) if same_bundle_id else b"\x01" * 32, stream_key=key)
    recs = records(mine)
    recs[1] = records(other)[1]
    assert_fails(mine[:HEADER] + b"".join(recs), info)
    assert_fails(mine[:HEADER] + b"".join(recs), None)


def test_header_of_another_bundle() -> None:
    other, other_info = seal(DATA)
    spliced = other[:HEADER] + BLOB[HEADER:]
    assert assert_fails(spliced, INFO, match="not the one its manifest describes") == []
    assert b"".join(assert_fails(spliced, other_info)) == b""
    assert b"".join(assert_fails(spliced, None)) == b""


def test_slot_moved_from_another_bundle() -> None:
    other, _ = seal(b"other")
    moved = BLOB[:43] + other[43 : 43 + SLOT_SIZE] + BLOB[43 + SLOT_SIZE :]
    assert assert_fails(moved, INFO, match="key slot") == []
    assert assert_fails(moved, None, match="key slot") == []


@pytest.mark.parametrize(
    "garbage", [b"\x00", b"garbage", bytes(RECORD), pytest.param(None, id="final chunk again")]
)
def test_appended_data(garbage: bytes | None) -> None:
    suffix = records(BLOB)[-1] if garbage is None else garbage
    released = assert_fails(BLOB + suffix, INFO, match="longer than its manifest")
    released_prefix_ok(released, 3)
    released = assert_fails(BLOB + suffix, None)  # read as part of the short final chunk
    released_prefix_ok(released, 3)


@pytest.mark.parametrize("garbage", [b"\x00", bytes(RECORD), b"CPSS"])
def test_appended_data_after_a_full_final_chunk(garbage: bytes) -> None:
    data = make(2 * CS, 3)
    blob, info = seal(data)
    assert len(records(blob)[-1]) == RECORD
    assert open_all(blob, info)[0] == data
    # With the manifest, the end is known: the final chunk is released, the extra byte refused.
    reader = SealedStreamReader(priv(SK_A), expected=info)
    assert reader.feed(blob) == data
    with pytest.raises(DecryptionError, match="longer than its manifest"):
        reader.feed(garbage)
    with pytest.raises(DecryptionError, match="already rejected"):
        reader.close()
    # Without it, the final chunk is withheld until the end of input, which never comes clean.
    for piece in (RECORD, 4096):
        released, error = feed_all(blob + garbage, None, piece=piece)
        assert isinstance(error, DecryptionError) and "after its final chunk" in str(error)
        assert data[:CS].startswith(b"".join(released))
    reader = SealedStreamReader(priv(SK_A), expected=None)
    assert reader.feed(blob) == data[:CS]
    with pytest.raises(DecryptionError, match="after its final chunk"):
        reader.feed(garbage)


def test_appended_data_in_a_later_feed_after_the_final_chunk() -> None:
    reader = SealedStreamReader(priv(SK_A), expected=None)
    got = reader.feed(BLOB)
    with pytest.raises(DecryptionError, match="failed authentication"):
        reader.feed(b"\x00", eof=True)
    assert got == DATA[: 3 * CS]


def test_flipped_bit_at_every_position() -> None:
    for position in range(len(BLOB)):
        altered = bytearray(BLOB)
        altered[position] ^= 0x01
        chunk = max(0, (position - HEADER) // RECORD) if position >= HEADER else -1
        for expected in (INFO, None):
            released = assert_fails(bytes(altered), expected)
            released_prefix_ok(released, max(chunk, 0))


@settings(max_examples=200, deadline=None)
@given(
    size=st.sampled_from([0, 1, CS, CS + 1, 2 * CS + 9]),
    recipients=st.integers(1, 3),
    position=st.integers(0, 10**6),
    mask=st.integers(1, 255),
    with_expected=st.booleans(),
)
def test_any_single_byte_change_is_rejected(
    size: int, recipients: int, position: int, mask: int, with_expected: bool
) -> None:
    data = make(size, size)
    blob, info = seal(data, [PK_A, PK_B, PK_C][:recipients])
    position %= len(blob)
    altered = bytearray(blob)
    altered[position] ^= mask
    released, error = feed_all(bytes(altered), info if with_expected else None)
    assert isinstance(error, DecryptionError)
    got = b"".join(released)
    assert data.startswith(got)
    chunk = (position - header_size(recipients)) // RECORD
    assert len(got) <= max(0, chunk) * CS  # nothing from the altered chunk or after it
    assert len(got) < len(data) or not data  # the final chunk never before the whole verified


@settings(max_examples=60, deadline=None)
@given(
    position=st.integers(0, 10**6),
    length=st.integers(1, 40),
    insert=st.booleans(),
    with_expected=st.booleans(),
)
def test_any_insertion_or_deletion_is_rejected(
    position: int, length: int, insert: bool, with_expected: bool
) -> None:
    position %= len(BLOB)
    if insert:
        altered = BLOB[:position] + random.Random(position).randbytes(length) + BLOB[position:]
    else:
        altered = BLOB[:position] + BLOB[position + length :]
    released, error = feed_all(altered, INFO if with_expected else None)
    assert isinstance(error, DecryptionError)
    assert DATA.startswith(b"".join(released)) and len(b"".join(released)) < len(DATA)


def test_flipped_bit_in_another_recipients_slot() -> None:
    blob, info = seal(DATA, [PK_A, PK_B, PK_C])
    slots = {s[:16]: i for i, s in enumerate(parse_header(blob).slots)}
    b_slot = 43 + slots[sha(PK_B)[:16]] * SLOT_SIZE
    for offset in (0, 16, 60, SLOT_SIZE - 1):
        altered = bytearray(blob)
        altered[b_slot + offset] ^= 0x80
        for expected in (info, None):
            # A's own slot is intact: the header MAC catches the change before any chunk.
            released, error = feed_all(bytes(altered), expected, SK_A)
            assert isinstance(error, DecryptionError) and released == [], (offset, error)
            if offset:
                assert "header failed authentication" in str(error)


def test_wrong_recipient() -> None:
    for expected in (INFO, None):
        released, error = feed_all(BLOB, expected, SK_EVE)
        assert isinstance(error, DecryptionError) and "not sealed to this key" in str(error)
        assert released == []


def test_slot_relabelled_with_another_key_id() -> None:
    """Eve writes her key id over A's slot: the box was sealed to A and does not open."""
    altered = BLOB[:43] + sha(PK_EVE)[:16] + BLOB[43 + 16 :]
    released, error = feed_all(altered, None, SK_EVE)
    assert isinstance(error, DecryptionError) and "key slot" in str(error)
    assert released == []
    assert_fails(altered, None, match="not sealed to this key")


def test_sender_cannot_give_recipients_different_keys() -> None:
    """The header MAC commits to one stream key: a slot holding another key is refused."""
    blob = craft(
        canonical(DATA),
        recipients=[PK_A, PK_B],
        slot_keys={PK_B: bytes(range(100, 132))},
    )
    info = open_all(blob, None, SK_A)[1]
    assert open_all(blob, info, SK_A)[0] == DATA
    for expected in (info, None):
        released, error = feed_all(blob, expected, SK_B)
        assert isinstance(error, DecryptionError)
        assert "header failed authentication" in str(error) and released == []


def test_resealed_by_a_co_recipient() -> None:
    """Same key, bundle id and plaintext, sealed anew by an insider: the manifest binds bytes."""
    key = bytes(range(9, 41))
    _, info = seal(DATA, [PK_A, PK_B], bundle_id=bytes(32), stream_key=key)
    forged, forged_info = seal(DATA, [PK_A, PK_B], bundle_id=bytes(32), stream_key=key)
    assert forged_info.plaintext_sha256 == info.plaintext_sha256
    assert open_all(forged, None)[0] == DATA  # authentic as far as the key can tell
    released, error = feed_all(forged, info)
    assert isinstance(error, DecryptionError) and "manifest" in str(error)
    released_prefix_ok(released, 3)  # the final chunk was withheld


# --- the manifest's values -----------------------------------------------------------------


def altered_info(**changes: object) -> SealedStreamInfo:
    fields = {
        "bundle_id": INFO.bundle_id,
        "chunk_size": INFO.chunk_size,
        "plaintext_size": INFO.plaintext_size,
        "plaintext_sha256": INFO.plaintext_sha256,
        "ciphertext_size": INFO.ciphertext_size,
        "ciphertext_sha256": INFO.ciphertext_sha256,
    }
    fields.update(changes)
    return SealedStreamInfo(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["plaintext_sha256", "ciphertext_sha256"])
def test_digest_other_than_the_manifests(field: str) -> None:
    expected = altered_info(**{field: sha(b"something else")})
    released, error = feed_all(BLOB, expected)
    assert isinstance(error, DecryptionError)
    assert "not the one its manifest describes" in str(error)
    released_prefix_ok(released, 3)  # the final chunk was withheld
    released, error = feed_all(BLOB, expected, piece=RECORD)
    assert isinstance(error, DecryptionError)
    assert b"".join(released) == DATA[: 2 * CS]  # the last piece fed held chunk 2 too
    reader = SealedStreamReader(priv(SK_A), expected=expected)
    with pytest.raises(DecryptionError):
        reader.feed(BLOB)
    with pytest.raises(DecryptionError, match="already rejected"):
        reader.close()


def test_single_chunk_stream_with_other_digest_releases_nothing() -> None:
    blob, info = seal(b"y")
    expected = SealedStreamInfo(
        bundle_id=info.bundle_id,
        chunk_size=CS,
        plaintext_size=1,
        plaintext_sha256=sha(b"x"),
        ciphertext_size=info.ciphertext_size,
        ciphertext_sha256=info.ciphertext_sha256,
    )
    assert feed_all(blob, expected)[0] == []


@pytest.mark.parametrize(
    "changes",
    [
        {"bundle_id": bytes(32)},
        {"chunk_size": 2 * CS, "ciphertext_size": INFO.ciphertext_size - 2 * ABYTES},
        {"ciphertext_size": INFO.ciphertext_size + SLOT_SIZE},
    ],
    ids=["bundle_id", "chunk_size", "more recipients"],
)
def test_stream_other_than_the_manifests_is_refused_at_the_header(
    changes: dict[str, object],
) -> None:
    expected = altered_info(**changes)
    reader = SealedStreamReader(priv(SK_A), expected=expected)
    with pytest.raises(DecryptionError, match="manifest"):
        reader.feed(BLOB[:HEADER])
    with pytest.raises(DecryptionError, match="already rejected"):
        reader.feed(BLOB[HEADER:])


def test_stream_shorter_than_the_manifest() -> None:
    expected = altered_info(
        plaintext_size=INFO.plaintext_size + 1, ciphertext_size=INFO.ciphertext_size + 1
    )
    released, error = feed_all(BLOB, expected)
    assert isinstance(error, DecryptionError) and "truncated" in str(error)
    assert b"".join(released) == DATA[: 3 * CS]


def test_stream_with_more_chunks_than_the_manifest() -> None:
    """The manifest says three full chunks; the third is not final: refused there."""
    expected = altered_info(
        plaintext_size=3 * CS, ciphertext_size=INFO.ciphertext_size - 5 - ABYTES
    )
    reader = SealedStreamReader(priv(SK_A), expected=expected)
    assert reader.feed(BLOB[: BOUNDARIES[2]]) == DATA[: 2 * CS]
    with pytest.raises(DecryptionError, match="truncated"):
        reader.feed(BLOB[BOUNDARIES[2] : BOUNDARIES[3]])


def test_stream_longer_than_the_manifest_is_refused_before_anything_is_released() -> None:
    reader = SealedStreamReader(priv(SK_A), expected=INFO)
    assert reader.feed(BLOB[: HEADER + RECORD]) == DATA[:CS]
    with pytest.raises(DecryptionError, match="longer than its manifest"):
        reader.feed(BLOB[HEADER + RECORD :] + b"\x00")


def test_final_tag_in_the_middle_is_refused() -> None:
    """A stream whose third chunk says final, sealed with the right key."""
    pieces = canonical(DATA)
    pieces[2] = (pieces[2][0], TAG_FINAL)
    blob = craft(pieces)
    honest = craft(canonical(DATA))
    info = open_all(honest, None)[1]
    expected = SealedStreamInfo(
        bundle_id=info.bundle_id,
        chunk_size=CS,
        plaintext_size=len(DATA),
        plaintext_sha256=sha(DATA),
        ciphertext_size=len(blob),
        ciphertext_sha256=sha(blob),
    )
    released, error = feed_all(blob, expected)
    assert isinstance(error, DecryptionError) and b"".join(released) == DATA[: 2 * CS]
    released, error = feed_all(blob, None)
    assert isinstance(error, DecryptionError) and b"".join(released) == DATA[: 2 * CS]


def test_manifest_dict_round_trip() -> None:
    as_dict = INFO.to_manifest_dict()
    assert as_dict == {
        "format": "compact-sealed-stream",
        "version": 1,
        "bundle_id": INFO.bundle_id.hex(),
        "chunk_size": CS,
        "plaintext_size": len(DATA),
        "plaintext_sha256": sha(DATA).hex(),
        "ciphertext_size": len(BLOB),
        "ciphertext_sha256": sha(BLOB).hex(),
    }
    assert SealedStreamInfo.from_manifest_dict(json.loads(json.dumps(as_dict))) == INFO


@pytest.mark.parametrize(
    "change",
    [
        {"format": "compact-keystore"},
        {"version": 2},
        {"version": True},
        {"version": "1"},
        {"chunk_size": float(CS)},
        {"chunk_size": CS - 1},
        {"chunk_size": MAX_CHUNK_SIZE + 1},
        {"plaintext_size": -1},
        {"plaintext_size": len(DATA) + 1},
        {"ciphertext_size": len(BLOB) + 1},
        {"ciphertext_size": 0},
        {"bundle_id": INFO.bundle_id.hex().upper()},
        {"bundle_id": INFO.bundle_id.hex()[:-2]},
        {"bundle_id": INFO.bundle_id.hex() + "00"},
        {"plaintext_sha256": " " + sha(DATA).hex()[1:]},
        {"ciphertext_sha256": None},
        {"extra": 1},
    ],
)
def test_manifest_dict_is_parsed_strictly(change: dict[str, object]) -> None:
    as_dict: dict[str, object] = {**INFO.to_manifest_dict(), **change}
    with pytest.raises(EncodingError) as info:
        SealedStreamInfo.from_manifest_dict(as_dict)
    assert info.value.__context__ is None


@pytest.mark.parametrize("missing", sorted(INFO.to_manifest_dict()))
def test_manifest_dict_missing_field(missing: str) -> None:
    as_dict = INFO.to_manifest_dict()
    del as_dict[missing]
    with pytest.raises(EncodingError, match="missing or extra"):
        SealedStreamInfo.from_manifest_dict(as_dict)


def test_manifest_dict_not_a_mapping() -> None:
    with pytest.raises(EncodingError):
        SealedStreamInfo.from_manifest_dict([("format", "x")])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"bundle_id": bytes(32)},
        {"chunk_size": 2 * CS, "ciphertext_size": INFO.ciphertext_size - 2 * ABYTES},
        {"plaintext_size": INFO.plaintext_size + 1, "ciphertext_size": INFO.ciphertext_size + 1},
        {"ciphertext_size": INFO.ciphertext_size + SLOT_SIZE},
        {"plaintext_sha256": bytes(32)},
        {"ciphertext_sha256": bytes(32)},
    ],
)
def test_check_binding(changes: dict[str, object]) -> None:
    check_binding(INFO, altered_info())
    with pytest.raises(DecryptionError, match="manifest"):
        check_binding(INFO, altered_info(**changes))
    with pytest.raises(DecryptionError, match="manifest"):
        check_binding(altered_info(**changes), INFO)
    with pytest.raises(TypeError):
        check_binding(INFO, INFO.to_manifest_dict())  # type: ignore[arg-type]


def test_info_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="bundle_id"):
        altered_info(bundle_id=bytes(16))
    with pytest.raises(TypeError, match="plaintext_sha256"):
        altered_info(plaintext_sha256=sha(DATA).hex())
    with pytest.raises(TypeError, match="plaintext_size"):
        altered_info(plaintext_size=True)
    with pytest.raises(ValueError, match="ciphertext_size"):
        altered_info(ciphertext_size=INFO.ciphertext_size - 1)
    with pytest.raises(ValueError, match="format_version"):
        altered_info(format_version=2)


# --- non-canonical streams made with the right key ---------------------------------------------


def test_crafted_canonical_stream_control() -> None:
    assert open_all(craft(canonical(DATA)), None)[0] == DATA
    assert open_all(craft(canonical(b"")), None)[0] == b""


def test_empty_final_chunk_after_data_is_refused() -> None:
    data = make(CS)
    assert_fails(craft([(data, TAG_MESSAGE), (b"", TAG_FINAL)]), None, match="final chunk is empty")


def test_short_message_chunk_is_refused() -> None:
    data = make(100)
    # Alone at the end: read whole, authentic, but not a full chunk.
    assert_fails(craft([(data, TAG_MESSAGE)]), None, match="truncated")
    # Followed by more: the reader takes the next bytes as part of it, and it fails to verify.
    assert_fails(
        craft([(data[:50], TAG_MESSAGE), (data[50:], TAG_FINAL)]), None, match="authentication"
    )


@pytest.mark.parametrize("tag", [TAG_PUSH, TAG_REKEY])
def test_other_tags_are_refused(tag: int) -> None:
    data = make(CS + 1)
    assert_fails(craft([(data[:CS], tag), (data[CS:], TAG_FINAL)]), None, match="unexpected tag")


def test_stream_with_only_message_chunks_is_truncated() -> None:
    assert_fails(craft([(make(CS), TAG_MESSAGE)]), None, match="truncated")


def test_stream_without_chunks_is_truncated() -> None:
    assert_fails(craft([]), None, match="truncated")


@pytest.mark.parametrize(
    "ad",
    [
        lambda i: bytes(32) + (i + 1).to_bytes(8, "big"),  # index off by one
        lambda i: bytes(32),  # no index
        lambda i: None,  # nothing
        lambda i: b"\x01" * 32 + i.to_bytes(8, "big"),  # another bundle id
    ],
    ids=["index+1", "no-index", "none", "other-bundle-id"],
)
def test_chunks_with_other_associated_data_are_refused(ad: Callable[[int], bytes | None]) -> None:
    assert_fails(craft(canonical(DATA), ad=ad), None, match="authentication")


def test_unsorted_or_repeated_slots_are_refused() -> None:
    ids = sorted([(sha(pk)[:16], pk) for pk in (PK_A, PK_B)])
    reverse = [pk for _, pk in reversed(ids)]
    assert open_all(craft(canonical(DATA), recipients=reverse), None)[0] == DATA
    assert_fails(
        craft(canonical(DATA), recipients=reverse, sort_slots=False), None, match="malformed"
    )
    assert_fails(craft(canonical(DATA), recipients=[PK_A, PK_A]), None, match="malformed")


@pytest.mark.parametrize("chunk_size", [CS - 1, MAX_CHUNK_SIZE + 1, 0])
def test_chunk_size_out_of_bounds_is_refused(chunk_size: int) -> None:
    blob = craft([(b"x", TAG_FINAL)], chunk_size=chunk_size)  # a valid MAC over it
    assert_fails(blob, None, match="malformed")


def test_slot_count_out_of_bounds_is_refused() -> None:
    for count in (0, MAX_RECIPIENTS + 1):
        blob = BLOB[:41] + count.to_bytes(2, "big") + BLOB[43:]
        assert_fails(blob, None, match="malformed")


def test_other_version_or_magic_is_refused() -> None:
    assert_fails(craft(canonical(DATA), version=2), None, match="version")
    assert_fails(b"CPSX" + BLOB[4:], None, match="version")
    assert_fails(b"CPB1" + BLOB[4:], None, match="version")


# --- the reader's API: offsets, resuming, misuse --------------------------------------------


def test_verified_offset_counts_whole_verified_units() -> None:
    reader = SealedStreamReader(priv(SK_A), expected=INFO)
    assert reader.verified_offset == 0
    assert reader.feed(BLOB[: HEADER - 1]) == b""
    assert reader.verified_offset == 0
    assert reader.feed(BLOB[HEADER - 1 : HEADER + 10]) == b""
    assert reader.verified_offset == HEADER
    assert reader.feed(BLOB[HEADER + 10 : BOUNDARIES[2] + 5]) == DATA[: 2 * CS]
    assert reader.verified_offset == BOUNDARIES[2]
    assert reader.feed(BLOB[BOUNDARIES[2] + 5 :]) == DATA[2 * CS :]
    assert reader.verified_offset == len(BLOB)
    assert reader.close() == INFO


@pytest.mark.parametrize("expected", [INFO, None], ids=["manifest", "no-manifest"])
def test_resume_after_a_broken_transfer(expected: SealedStreamInfo | None) -> None:
    reader = SealedStreamReader(priv(SK_A), expected=expected)
    got = [reader.feed(BLOB[: BOUNDARIES[1] + 100])]
    # The connection broke; the last bytes may or may not have been passed on.
    assert reader.rewind() == BOUNDARIES[1]
    got.append(reader.feed(BLOB[BOUNDARIES[1] : BOUNDARIES[1] + 7]))
    assert reader.rewind() == BOUNDARIES[1]
    got.append(reader.feed(BLOB[reader.verified_offset :], eof=True))
    assert reader.close() == INFO
    assert b"".join(got) == DATA


@settings(max_examples=40, deadline=None)
@given(breaks=st.lists(st.tuples(st.integers(1, 3 * RECORD), st.integers(0, 50)), max_size=8))
def test_resume_from_verified_offset_after_any_breaks(breaks: list[tuple[int, int]]) -> None:
    """Each break: some bytes arrive, some of them are lost, the sender resumes."""
    reader = SealedStreamReader(priv(SK_A), expected=INFO)
    got = []
    for sent, lost in breaks:
        start = reader.verified_offset
        delivered = BLOB[start : start + max(0, sent - lost)]
        got.append(reader.feed(delivered))
        if reader.verified_offset == len(BLOB):
            break
        assert reader.rewind() == reader.verified_offset
    if reader.verified_offset < len(BLOB):
        got.append(reader.feed(BLOB[reader.verified_offset :]))
    assert reader.close() == INFO
    assert b"".join(got) == DATA


def test_restart_replays_the_kept_prefix() -> None:
    """The documented alternative to a snapshot: a new reader re-reads what was kept."""
    first = SealedStreamReader(priv(SK_A), expected=INFO)
    first.feed(BLOB[: BOUNDARIES[2] + 300])
    kept = BLOB[: first.verified_offset]  # the receiver stored the verified sealed bytes
    del first  # the process restarts
    second = SealedStreamReader(priv(SK_A), expected=INFO)
    replayed = second.feed(kept)
    assert second.verified_offset == len(kept) == BOUNDARIES[2]
    rest = second.feed(BLOB[len(kept) :])
    assert second.close() == INFO
    assert replayed + rest == DATA


def test_rewind_after_the_end_is_refused() -> None:
    reader = SealedStreamReader(priv(SK_A), expected=INFO)
    reader.feed(BLOB)
    with pytest.raises(RuntimeError):
        reader.rewind()
    reader = SealedStreamReader(priv(SK_A), expected=INFO)
    with pytest.raises(DecryptionError):
        reader.feed(b"XXXX" + BLOB[4:HEADER])
    with pytest.raises(DecryptionError):
        reader.rewind()


def test_close_before_the_end() -> None:
    reader = SealedStreamReader(priv(SK_A), expected=INFO)
    reader.feed(BLOB[:-1])
    with pytest.raises(DecryptionError, match="truncated"):
        reader.close()
    with pytest.raises(DecryptionError, match="already rejected"):
        reader.feed(BLOB[-1:])
    # Without the manifest the reader cannot know the end: the caller must say so.
    reader = SealedStreamReader(priv(SK_A), expected=None)
    assert reader.feed(BLOB) == DATA[: 3 * CS]
    with pytest.raises(RuntimeError, match="eof=True"):
        reader.close()
    assert reader.feed(b"", eof=True) == DATA[3 * CS :]
    assert reader.close() == INFO
    assert reader.close() == INFO
    with pytest.raises(RuntimeError):
        reader.feed(b"")


def test_full_final_chunk_without_manifest_is_withheld_until_eof() -> None:
    data = make(2 * CS, 6)
    blob, info = seal(data)
    reader = SealedStreamReader(priv(SK_A), expected=None)
    assert reader.feed(blob) == data[:CS]
    assert reader.feed(b"", eof=True) == data[CS:]
    assert reader.close() == info


def test_every_call_fails_after_a_failure() -> None:
    altered = bytearray(BLOB)
    altered[BOUNDARIES[1] + 3] ^= 1
    reader = SealedStreamReader(priv(SK_A), expected=None)
    assert reader.feed(bytes(altered[: BOUNDARIES[1]])) == DATA[:CS]
    with pytest.raises(DecryptionError, match="failed authentication"):
        reader.feed(bytes(altered[BOUNDARIES[1] :]))
    for call in (lambda: reader.feed(b""), reader.close, reader.rewind):
        with pytest.raises(DecryptionError, match="already rejected"):
            call()


def test_reader_argument_checks() -> None:
    with pytest.raises(ValueError, match="private key"):
        SealedStreamReader(priv(bytes(31)), expected=None)
    with pytest.raises(TypeError, match="private_key"):
        SealedStreamReader(SK_A.hex(), expected=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected"):
        SealedStreamReader(priv(SK_A), expected=INFO.to_manifest_dict())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SealedStreamReader(priv(SK_A))  # type: ignore[call-arg]
    reader = SealedStreamReader(priv(SK_A), expected=None)
    with pytest.raises(TypeError, match="data"):
        reader.feed("text")  # type: ignore[arg-type]


def test_reader_accepts_bytearray_and_memoryview() -> None:
    reader = SealedStreamReader(priv(SK_A), expected=INFO)
    got = reader.feed(bytearray(BLOB[:1000])) + reader.feed(memoryview(BLOB)[1000:])
    assert got == DATA and reader.close() == INFO


# --- the writer's API ----------------------------------------------------------------------


def test_writer_must_be_used_in_order() -> None:
    writer = SealedStreamWriter([pub(PK_A)])
    calls: list[Callable[[], object]] = [lambda: writer.update(b"x"), writer.finalize]
    for call in calls:
        with pytest.raises(RuntimeError):
            call()
    with pytest.raises(RuntimeError, match="finalize"):
        _ = writer.info
    with pytest.raises(RuntimeError, match="finalize"):
        _ = writer.plaintext_sha256
    writer.header()
    with pytest.raises(RuntimeError):
        writer.header()
    writer.update(b"abc")
    with pytest.raises(RuntimeError, match="finalize"):
        _ = writer.ciphertext_size
    writer.finalize()
    assert writer.plaintext_size == 3 and writer.plaintext_sha256 == sha(b"abc")
    assert writer.ciphertext_size == sealed_size(3, recipients=1)
    for call in [*calls, writer.header]:
        with pytest.raises(RuntimeError):
            call()


def test_writer_properties_describe_its_output() -> None:
    writer = SealedStreamWriter([pub(PK_A), pub(PK_B)], chunk_size=CS)
    blob = writer.header() + writer.update(DATA) + writer.finalize()
    assert writer.bundle_id == blob[5:37] == writer.info.bundle_id
    assert writer.ciphertext_sha256 == sha(blob)
    assert writer.ciphertext_size == len(blob)
    assert writer.plaintext_sha256 == sha(DATA)
    assert writer.plaintext_size == len(DATA)


@pytest.mark.parametrize(
    ("recipients", "error", "match"),
    [
        ([], ValueError, "1 to"),
        ([PK_A] * 2, ValueError, "repeat"),
        ([PK_A, PK_B, PK_A], ValueError, "repeat"),
        ([PK_A[:31]], EncodingError, "32 bytes"),
        ([PK_A.hex()], TypeError, "public_key"),
        (PK_A, TypeError, "sequence"),
        ([bytes(32)], EncodingError, "low-order"),
        ([PK_A[:31] + bytes([PK_A[31] | 0x80])], EncodingError, "canonical"),  # bit 255 set
        ([(2**255 - 19 + 9).to_bytes(32, "little")], EncodingError, "canonical"),  # u = 9 + p
        # A point of order 8 on Curve25519: the shared secret would be known to all.
        (
            [bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")],
            EncodingError,
            "low-order",
        ),
    ],
)
def test_writer_refuses_bad_recipients(
    recipients: object, error: type[Exception], match: str
) -> None:
    def keys() -> object:
        if not isinstance(recipients, list):
            return recipients
        return [pub(r) if isinstance(r, bytes) else r for r in recipients]

    with pytest.raises(error, match=match):
        SealedStreamWriter(keys())  # type: ignore[arg-type]


def test_writer_recipient_limit() -> None:
    keys = [pub(keypair(i)[1]) for i in range(MAX_RECIPIENTS + 1)]
    writer = SealedStreamWriter(keys[:MAX_RECIPIENTS], chunk_size=CS)
    blob = writer.header() + writer.update(b"x") + writer.finalize()
    assert writer.info.recipients == MAX_RECIPIENTS
    assert open_all(blob, writer.info, keypair(MAX_RECIPIENTS - 1)[0])[0] == b"x"
    with pytest.raises(ValueError, match="1 to"):
        SealedStreamWriter(keys)


def test_writer_argument_checks() -> None:
    for bad in (CS - 1, MAX_CHUNK_SIZE + 1, 0):
        with pytest.raises(ValueError, match="chunk_size"):
            SealedStreamWriter([pub(PK_A)], chunk_size=bad)
    with pytest.raises(TypeError, match="chunk_size"):
        SealedStreamWriter([pub(PK_A)], chunk_size=float(CS))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bundle_id"):
        SealedStreamWriter([pub(PK_A)], bundle_id=bytes(16))
    with pytest.raises(TypeError, match="bundle_id"):
        SealedStreamWriter([pub(PK_A)], bundle_id=bytes(32).hex())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stream_key"):
        SealedStreamWriter([pub(PK_A)], stream_key=bytes(16))
    writer = SealedStreamWriter([pub(PK_A)])
    writer.header()
    with pytest.raises(TypeError, match="data"):
        writer.update("text")  # type: ignore[arg-type]


def test_repr_shows_no_key() -> None:
    key = bytes(range(50, 82))
    writer = SealedStreamWriter([pub(PK_A)], stream_key=key)
    reader = SealedStreamReader(priv(SK_A), expected=None)
    assert key.hex() not in repr(writer) and "redacted" in repr(writer)
    assert SK_A.hex() not in repr(reader) and "redacted" in repr(reader)
    assert recipient_key_id(pub(PK_A)).hex() in repr(reader)
