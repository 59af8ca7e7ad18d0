"""Fuzzing the parsers and verifiers of crypto/ and of the federation's signed documents
(issue 9).

Every target gets raw bytes (or arbitrary values) and mutations of a valid object
(tests/fuzz_mutations.py). The property is always the same: the target returns, or raises
only the error classes its module documents (crypto.errors, federation.errors and the
documents' own classes); nothing else escapes, no input hangs (tests/fuzzing.py), no
message holds a secret input, and a verifier never accepts an object whose signed bytes
were changed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crypto import blobs, merkle, oprf, ristretto, sealing, signing, x25519
from crypto.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    add_cosignature,
    cosignature_timestamp,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from crypto.dsse import Envelope, VerificationPolicy, sign_envelope, verify_envelope
from crypto.errors import DecryptionError, EncodingError, KeyFormatError, VerificationError
from crypto.fields import FieldCipher
from crypto.keystore import generate_node_keys, open_keystore, public_info, seal_keystore
from crypto.merkle_tree import MemoryNodeStore, MerkleTree
from crypto.note import Signer, Verifier, open_note, parse_note, parse_signature_line
from crypto.threshold_oprf import split_key
from crypto.tls import certificate_fingerprint, generate_tls_key, self_signed_certificate
from federation import schema
from federation.bundle import (
    BundleDecision,
    BundleFormatError,
    BundleManifest,
    BundleReceipt,
    BundleRequest,
    CustodyRecord,
    LoggedEntry,
    ManifestEvidence,
    check_manifest_proofs,
    sign_custody,
    sign_decision,
    sign_manifest,
    sign_receipt,
    sign_request,
    verify_custody,
    verify_decision,
    verify_manifest,
    verify_receipt,
    verify_request,
)
from federation.encoding import canonical_json, load_json_object
from federation.errors import CeremonyError, RosterError
from federation.index_entry import (
    AgentEntry,
    EntryContent,
    IndexEntry,
    IndexEntryError,
    sign_entry,
    verify_entry,
)
from federation.matter import Matter, MatterExhibit, MatterFormatError, sign_matter, verify_matter
from federation.naming import log_origin, log_signer, witness_signer
from federation.oprf_public import OprfPublic
from federation.roster import (
    Member,
    Roster,
    member_card_file,
    parse_member_card,
    parse_member_card_file,
    verify_initial,
    verify_update,
)
from tests.fuzz_mutations import HUGE_INTS, json_values, mutated_bytes, mutated_json, mutated_text
from tests.fuzzing import Trial, fuzz_settings, trial

R = TypeVar("R")


# --- the one way every input is tried ------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """The target raised one of its documented errors."""

    error: Exception


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def attempt(
    t: Trial,
    call: Callable[[], R],
    errors: type[Exception] | tuple[type[Exception], ...],
    *,
    secrets: tuple[str, ...] = (),
) -> R | Refused:
    """Run `call`: its result, or `Refused` for one of `errors` (anything else fails the
    test). The outcome is recorded; no secret may appear in the error or what it chains."""
    try:
        result = call()
    except errors as e:
        t.outcome(type(e).__name__)
        for link in _chain(e):
            text = f"{link} {link!r}"
            for secret in secrets:
                assert secret not in text, f"{type(link).__name__} shows a secret input"
        return Refused(e)
    t.outcome("accepted")
    return result


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _json(data: bytes) -> Any:
    return json.loads(data)


# --- keys and seeds (deterministic) --------------------------------------------------------

NOW: Final = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)
LATER: Final = NOW + timedelta(days=365)
STATES: Final = ("CA", "IL", "MN")
KEYS: Final = {s: signing.SigningKey.from_seed(bytes([i + 1]) * 32) for i, s in enumerate(STATES)}
ENC: Final = {s: x25519.PrivateKey.from_bytes(bytes([i + 50]) * 32) for i, s in enumerate(STATES)}

# A checkpoint of IL's log, signed by IL's log key and cosigned by MN and CA.
LOG_SIGNER: Final = log_signer("IL", KEYS["IL"])
LOG_VERIFIER: Final = LOG_SIGNER.verifier()
WITNESSES: Final = {s: witness_signer(s, KEYS[s]) for s in ("CA", "MN")}
LEAVES: Final = [f"entry {i}".encode() for i in range(5)]
LEAF_HASHES: Final = [merkle.leaf_hash(x) for x in LEAVES]
CHECKPOINT: Final = Checkpoint(log_origin("IL"), len(LEAVES), merkle.root_hash(LEAF_HASHES))
TIMESTAMPS: Final = {"CA": 1_700_000_000, "MN": 1_700_000_123}


def _cosigned(checkpoint: Checkpoint) -> str:
    note = sign_checkpoint(checkpoint, LOG_SIGNER)
    for state, signer in WITNESSES.items():
        note = add_cosignature(note, signer.cosign(checkpoint, timestamp=TIMESTAMPS[state]))
    return note


NOTE: Final = _cosigned(CHECKPOINT)
NOTE_BYTES: Final = NOTE.encode()
CHECKPOINT_TEXT: Final = CHECKPOINT.to_text()
# Go's private key form of a note signer: its base64 holds the seed, a secret.
SKEY_SEED: Final = bytes(range(32))
SKEY_SIGNER: Final = Signer("compact-test", signing.SigningKey.from_seed(SKEY_SEED))
SKEY: Final = f"PRIVATE+KEY+compact-test+{SKEY_SIGNER.key_hash:08x}+{_b64(bytes([1]) + SKEY_SEED)}"
SKEY_SECRET: Final = _b64(bytes([1]) + SKEY_SEED)


# --- 1. signed notes -----------------------------------------------------------------------

note_inputs = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200),
    mutated_bytes(NOTE_BYTES),
    mutated_text(NOTE),
)


@pytest.mark.fuzz
@fuzz_settings()
@given(note_inputs)
def test_fuzz_parse_note(note: bytes | str) -> None:
    with trial("crypto.note.parse_note") as t:
        parsed = attempt(t, lambda: parse_note(note), EncodingError)
        if not isinstance(parsed, Refused):
            assert parsed.text.endswith("\n")
            assert parsed.signatures
            for sig in parsed.signatures:
                assert parse_signature_line(sig.line) == sig


@pytest.mark.fuzz
@fuzz_settings()
@given(st.one_of(mutated_bytes(NOTE_BYTES), mutated_text(NOTE)))
def test_fuzz_open_note(note: bytes | str) -> None:
    with trial("crypto.note.open_note") as t:
        opened = attempt(
            t, lambda: open_note(note, [LOG_VERIFIER]), (EncodingError, VerificationError)
        )
        if not isinstance(opened, Refused):
            assert opened.text == CHECKPOINT_TEXT, "a note with changed text verified"


VKEYS: Final = (LOG_VERIFIER.vkey, WITNESSES["MN"].verifier().vkey)


@pytest.mark.fuzz
@fuzz_settings()
@given(st.one_of(st.text(max_size=80), *(mutated_text(v) for v in VKEYS)))
def test_fuzz_note_vkeys(vkey: str) -> None:
    with trial("crypto.note.Verifier.from_vkey") as t:
        verifier = attempt(t, lambda: Verifier.from_vkey(vkey), EncodingError)
        if not isinstance(verifier, Refused):
            assert verifier.vkey == vkey, "a vkey in another encoding was accepted"
    with trial("crypto.checkpoint.CosignatureVerifier.from_vkey") as t:
        witness = attempt(t, lambda: CosignatureVerifier.from_vkey(vkey), EncodingError)
        if not isinstance(witness, Refused):
            assert witness.vkey == vkey, "a vkey in another encoding was accepted"


@pytest.mark.fuzz
@fuzz_settings()
@given(st.one_of(st.text(max_size=80), mutated_text(SKEY)))
def test_fuzz_note_skey(skey: str) -> None:
    with trial("crypto.note.Signer.from_skey") as t:
        signer = attempt(t, lambda: Signer.from_skey(skey), EncodingError, secrets=(SKEY_SECRET,))
        if not isinstance(signer, Refused):
            assert signer.verifier() == SKEY_SIGNER.verifier()
            assert SKEY_SECRET not in repr(signer)


SIG_LINES: Final = tuple(NOTE[NOTE.rfind("\n\n") + 2 :].splitlines(keepends=True))


@pytest.mark.fuzz
@fuzz_settings()
@given(st.one_of(st.text(max_size=120), *(mutated_text(line) for line in SIG_LINES)))
def test_fuzz_signature_lines(line: str) -> None:
    with trial("crypto.note.parse_signature_line") as t:
        sig = attempt(t, lambda: parse_signature_line(line), EncodingError)
        if not isinstance(sig, Refused):
            assert sig.line == line
            with trial("crypto.checkpoint.cosignature_timestamp") as t2:
                stamp = attempt(t2, lambda: cosignature_timestamp(sig), EncodingError)
                if not isinstance(stamp, Refused):
                    assert 0 <= stamp < 2**63
    with trial("crypto.checkpoint.add_cosignature") as t:
        added = attempt(t, lambda: add_cosignature(NOTE, line), EncodingError)
        if not isinstance(added, Refused):
            assert parse_note(added).text == CHECKPOINT_TEXT


# --- 2. checkpoints and cosignatures -------------------------------------------------------


@pytest.mark.fuzz
@fuzz_settings()
@given(st.one_of(st.text(max_size=200), mutated_text(CHECKPOINT_TEXT)))
def test_fuzz_parse_checkpoint(text: str) -> None:
    with trial("crypto.checkpoint.parse_checkpoint") as t:
        parsed = attempt(t, lambda: parse_checkpoint(text), EncodingError)
        if not isinstance(parsed, Refused):
            assert parsed.to_text() == text, "a checkpoint in another encoding was accepted"


WITNESS_VERIFIERS: Final = [w.verifier() for w in WITNESSES.values()]


@pytest.mark.fuzz
@fuzz_settings()
@given(st.one_of(mutated_bytes(NOTE_BYTES), mutated_text(NOTE)), st.integers(1, 2))
def test_fuzz_verify_checkpoint(note: bytes | str, threshold: int) -> None:
    with trial("crypto.checkpoint.verify_checkpoint") as t:
        verified = attempt(
            t,
            lambda: verify_checkpoint(
                note,
                log=LOG_VERIFIER,
                witnesses=WITNESS_VERIFIERS,
                threshold=threshold,
                origin=log_origin("IL"),
            ),
            (EncodingError, VerificationError),
        )
        if not isinstance(verified, Refused):
            assert verified.checkpoint == CHECKPOINT, "a changed checkpoint verified"
            for cosig in verified.cosignatures:
                state = cosig.name.rsplit("/", 1)[1]
                assert cosig.timestamp == TIMESTAMPS[state], "a changed timestamp verified"
    with trial("crypto.checkpoint.open_checkpoint") as t:
        opened = attempt(
            t,
            lambda: open_checkpoint(note, log=LOG_VERIFIER, origin=log_origin("IL")),
            (EncodingError, VerificationError),
        )
        if not isinstance(opened, Refused):
            assert opened == CHECKPOINT, "a changed checkpoint opened"


# --- 3. DSSE envelopes ---------------------------------------------------------------------

DSSE_TYPE: Final = "application/vnd.compact.test+json"
DSSE_PAYLOAD: Final = b'{"hello":"world","n":1}'
ENVELOPE: Final = sign_envelope(DSSE_TYPE, DSSE_PAYLOAD, [KEYS["IL"], KEYS["MN"]])
ENVELOPE_JSON: Final = ENVELOPE.to_json()
POLICY: Final = VerificationPolicy([KEYS["IL"].public_key, KEYS["MN"].public_key], 2)


def _envelope_inputs(seed: bytes) -> st.SearchStrategy[bytes]:
    """Raw bytes, the envelope's bytes mutated, its JSON mutated (written two ways)."""
    as_json = st.tuples(mutated_json(_json(seed)), st.booleans()).map(
        lambda case: json.dumps(case[0]).encode() if case[1] else canonical_json(case[0])
    )
    return st.one_of(st.binary(max_size=300), mutated_bytes(seed), as_json)


def _from_json(data: bytes) -> Callable[[], Envelope]:
    return lambda: Envelope.from_json(data)


def _document_inputs(payload: bytes) -> st.SearchStrategy[bytes]:
    """Raw bytes, the canonical payload mutated as bytes, and as JSON (re-encoded)."""
    return st.one_of(
        st.binary(max_size=200),
        mutated_bytes(payload),
        mutated_json(_json(payload)).map(canonical_json),
    )


def _changed(payload: bytes, path: tuple[Any, ...], value: Any) -> bytes:
    """`payload` (canonical JSON) with the value at `path` replaced, re-encoded."""
    doc = _json(payload)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return canonical_json(doc)


@dataclass(frozen=True)
class Signed:
    """An envelope to verify; `resigned`: its payload was changed and signed again by the
    keys that signed it (a member signing a malformed document), not just changed."""

    data: bytes
    resigned: bool = False


@st.composite
def _signed_inputs(draw: st.DrawFn, seed: bytes, signers: tuple[str, ...]) -> Signed:
    """`_envelope_inputs`, and the envelope with its payload mutated (`_document_inputs`):
    under the old signatures, or signed again by `signers`."""
    kind = draw(st.sampled_from(("envelope", "payload", "resigned")))
    if kind == "envelope":
        return Signed(draw(_envelope_inputs(seed)))
    original = Envelope.from_json(seed)
    payload = draw(_document_inputs(original.payload))
    if kind == "payload":
        doc = _json(seed)
        doc["payload"] = _b64(payload)
        return Signed(canonical_json(doc))
    keys = [KEYS[s] for s in signers]
    return Signed(sign_envelope(original.payload_type, payload, keys).to_json(), resigned=True)


@pytest.mark.fuzz
@fuzz_settings()
@given(_envelope_inputs(ENVELOPE_JSON))
def test_fuzz_dsse_envelope(data: bytes) -> None:
    with trial("crypto.dsse.Envelope.from_json") as t:
        envelope = attempt(t, _from_json(data), EncodingError)
    if isinstance(envelope, Refused):
        return
    assert Envelope.from_json(envelope.to_json()) == envelope
    with trial("crypto.dsse.verify_envelope") as t:
        verified = attempt(
            t,
            lambda: verify_envelope(envelope, POLICY, payload_type=DSSE_TYPE),
            VerificationError,
        )
        if not isinstance(verified, Refused):
            assert verified.payload == DSSE_PAYLOAD, "a changed payload verified"
            assert verified.payload_type == DSSE_TYPE


# --- 4. Merkle proofs ----------------------------------------------------------------------

sizes = st.one_of(st.integers(-3, 70), st.sampled_from(HUGE_INTS))
hashes = st.binary(min_size=0, max_size=40) | st.binary(min_size=32, max_size=32)


@pytest.mark.fuzz
@fuzz_settings()
@given(hashes, sizes, sizes, st.lists(hashes, max_size=8), hashes)
def test_fuzz_merkle_arbitrary(
    leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes
) -> None:
    with trial("crypto.merkle.verify_inclusion") as t:
        attempt(
            t, lambda: merkle.verify_inclusion(leaf, index, size, proof, root), VerificationError
        )
    with trial("crypto.merkle.verify_consistency") as t:
        attempt(
            t, lambda: merkle.verify_consistency(index, size, leaf, root, proof), VerificationError
        )


@st.composite
def _mutated_proof(draw: st.DrawFn, proof: list[bytes]) -> list[bytes]:
    out = list(proof)
    kind = draw(st.sampled_from(("same", "flip", "drop", "dup", "insert", "swap", "empty")))
    if kind == "flip" and out:
        i = draw(st.integers(0, len(out) - 1))
        out[i] = draw(mutated_bytes(out[i], max_edits=1))
    elif kind == "drop" and out:
        del out[draw(st.integers(0, len(out) - 1))]
    elif kind == "dup" and out:
        i = draw(st.integers(0, len(out) - 1))
        out.insert(i, out[i])
    elif kind == "insert":
        out.insert(draw(st.integers(0, len(out))), draw(st.binary(min_size=32, max_size=32)))
    elif kind == "swap" and len(out) >= 2:
        i, j = draw(st.integers(0, len(out) - 1)), draw(st.integers(0, len(out) - 1))
        out[i], out[j] = out[j], out[i]
    elif kind == "empty":
        out = []
    return out


def _nudge(value: int) -> st.SearchStrategy[int]:
    return st.sampled_from((value, value, value - 1, value + 1, 0, 2**64, -1, 2 * value))


def _tree(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@pytest.mark.fuzz
@fuzz_settings()
@given(st.data(), st.integers(1, 40))
def test_fuzz_merkle_inclusion_mutated(data: st.DataObject, n: int) -> None:
    leaves = _tree(n)
    index = data.draw(st.integers(0, n - 1))
    root = merkle.root_hash(leaves)
    proof = merkle.inclusion_proof(leaves, index)
    m_leaf = data.draw(st.sampled_from((leaves[index], leaves[(index + 1) % n])))
    m_index, m_size = data.draw(_nudge(index)), data.draw(_nudge(n))
    m_proof = data.draw(_mutated_proof(proof))
    m_root = data.draw(st.just(root) | mutated_bytes(root, max_edits=1))
    with trial("crypto.merkle.verify_inclusion") as t:
        result = attempt(
            t,
            lambda: merkle.verify_inclusion(m_leaf, m_index, m_size, m_proof, m_root),
            VerificationError,
        )
        if not isinstance(result, Refused):
            assert (m_leaf, m_proof, m_root) == (leaves[index], proof, root)
            # A proof alone binds neither the size nor, with a size that is not the root's,
            # the index (crypto.merkle's docstring): leaf 1 of 2 is also leaf 2 of 3.
            if m_size == n:
                assert m_index == index


@pytest.mark.fuzz
@fuzz_settings()
@given(st.data(), st.integers(2, 40))
def test_fuzz_merkle_consistency_mutated(data: st.DataObject, n: int) -> None:
    leaves = _tree(n)
    old = data.draw(st.integers(1, n))
    old_root, new_root = merkle.root_hash(leaves[:old]), merkle.root_hash(leaves)
    proof = merkle.consistency_proof(leaves, old)
    m_old, m_new = data.draw(_nudge(old)), data.draw(_nudge(n))
    m_proof = data.draw(_mutated_proof(proof))
    m_old_root = data.draw(st.just(old_root) | mutated_bytes(old_root, max_edits=1))
    m_new_root = data.draw(st.just(new_root) | mutated_bytes(new_root, max_edits=1))
    with trial("crypto.merkle.verify_consistency") as t:
        result = attempt(
            t,
            lambda: merkle.verify_consistency(m_old, m_new, m_old_root, m_new_root, m_proof),
            VerificationError,
        )
        if not isinstance(result, Refused):
            if m_old == m_new:  # no proof: the roots must be the same bytes (the docstring)
                assert (m_old_root, m_proof) == (m_new_root, [])
            else:
                assert (m_old_root, m_new_root, m_proof) == (old_root, new_root, proof)


@pytest.mark.fuzz
@fuzz_settings(scale=0.5)
@given(st.integers(1, 300), st.data())
def test_fuzz_merkle_tree_agrees_with_the_reference(n: int, data: st.DataObject) -> None:
    """crypto.merkle_tree parses nothing untrusted: its proofs, for any size, are the
    reference's and verify; the same proof with one byte changed does not."""
    leaves = _tree(n)
    with trial("crypto.merkle_tree.MerkleTree") as t:
        tree = MerkleTree(MemoryNodeStore())
        tree.append_many(leaves)
        size = data.draw(st.integers(1, n))
        index = data.draw(st.integers(0, size - 1))
        old = data.draw(st.integers(1, size))
        proof = tree.inclusion_proof(index, size)
        assert tree.root_at(size) == merkle.root_hash(leaves[:size])
        assert proof == merkle.inclusion_proof(leaves[:size], index)
        assert tree.consistency_proof(old, size) == merkle.consistency_proof(leaves[:size], old)
        merkle.verify_inclusion(leaves[index], index, size, proof, tree.root_at(size))
        if proof:
            bad = [*proof]
            bad[-1] = bytes([bad[-1][0] ^ 1]) + bad[-1][1:]
            with pytest.raises(VerificationError):
                merkle.verify_inclusion(leaves[index], index, size, bad, tree.root_at(size))
        t.outcome("agreed")


# --- 5. sealed streams ---------------------------------------------------------------------

PLAINTEXT: Final = bytes(range(256)) * 10  # 2,560 bytes: three chunks of 1 KiB
READER_KEY: Final = ENC["MN"]


def _seal() -> tuple[bytes, sealing.SealedStreamInfo]:
    out = io.BytesIO()
    info = sealing.seal_stream(
        io.BytesIO(PLAINTEXT),
        out,
        [ENC["MN"].public_key, ENC["CA"].public_key],
        chunk_size=sealing.MIN_CHUNK_SIZE,
        bundle_id=bytes(range(32)),
    )
    return out.getvalue(), info


SEALED, SEALED_INFO = _seal()
SEALED_HEADER: Final = sealing.header_size(2)


@st.composite
def _sealed_inputs(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(("raw", "whole", "header", "chunks")))
    if kind == "raw":
        return draw(st.binary(max_size=600))
    if kind == "header":
        return draw(mutated_bytes(SEALED[:SEALED_HEADER])) + SEALED[SEALED_HEADER:]
    if kind == "chunks":
        return SEALED[:SEALED_HEADER] + draw(mutated_bytes(SEALED[SEALED_HEADER:]))
    return draw(mutated_bytes(SEALED))


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _read(data: bytes, cuts: list[int], expected: sealing.SealedStreamInfo | None) -> bytes:
    reader = sealing.SealedStreamReader(READER_KEY, expected=expected)
    out = bytearray()
    for piece in _pieces(data, cuts):
        out += reader.feed(piece)
    out += reader.feed(b"", eof=True)
    reader.close()
    return bytes(out)


@pytest.mark.fuzz
@fuzz_settings()
@given(_sealed_inputs(), st.lists(st.integers(0, 4000), max_size=5), st.booleans())
def test_fuzz_sealed_stream_reader(data: bytes, cuts: list[int], with_manifest: bool) -> None:
    expected = SEALED_INFO if with_manifest else None
    with trial("crypto.sealing.SealedStreamReader") as t:
        plaintext = attempt(t, lambda: _read(data, cuts, expected), DecryptionError)
        if not isinstance(plaintext, Refused):
            assert data == SEALED, "a changed sealed stream opened"
            assert plaintext == PLAINTEXT
    with trial("crypto.sealing.open_stream") as t:
        dst = io.BytesIO()
        info = attempt(
            t,
            lambda: sealing.open_stream(io.BytesIO(data), dst, READER_KEY, expected=expected),
            DecryptionError,
        )
        if not isinstance(info, Refused):
            assert data == SEALED, "a changed sealed stream opened"
            assert dst.getvalue() == PLAINTEXT
            assert info == SEALED_INFO


@pytest.mark.fuzz
@fuzz_settings()
@given(mutated_json(SEALED_INFO.to_manifest_dict()))
def test_fuzz_sealed_stream_info(entry: Any) -> None:
    with trial("crypto.sealing.SealedStreamInfo.from_manifest_dict") as t:
        info = attempt(t, lambda: sealing.SealedStreamInfo.from_manifest_dict(entry), EncodingError)
        if not isinstance(info, Refused):
            assert info.to_manifest_dict() == entry


# --- 6. key files --------------------------------------------------------------------------

NODE_KEYS: Final = generate_node_keys()
KEY_FILE_SECRET: Final = bytes(range(100, 132))
PASSPHRASE: Final = b"Quokka-Zebra-7731 passphrase"
KEYSTORE: Final = seal_keystore(NODE_KEYS, key_file_secret=KEY_FILE_SECRET)
PASS_KEYSTORE: Final = seal_keystore(NODE_KEYS, passphrase=PASSPHRASE, strength="interactive")


def _keystore_inputs(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        mutated_bytes(seed),
        mutated_json(_json(seed)).map(lambda o: json.dumps(o, indent=2).encode()),
    )


@pytest.mark.fuzz
@fuzz_settings()
@given(_keystore_inputs(KEYSTORE))
def test_fuzz_keystore_key_file(data: bytes) -> None:
    with trial("crypto.keystore.open_keystore") as t:
        keys = attempt(
            t,
            lambda: open_keystore(data, key_file_secret=KEY_FILE_SECRET),
            (KeyFormatError, DecryptionError),
            secrets=(KEY_FILE_SECRET.hex(), _b64(KEY_FILE_SECRET)),
        )
        if not isinstance(keys, Refused):
            assert keys == NODE_KEYS, "a changed keystore opened to other keys"
    with trial("crypto.keystore.public_info") as t:
        info = attempt(t, lambda: public_info(data), KeyFormatError)
        if not isinstance(info, Refused):
            assert set(info) == {"ed25519", "x25519"}


@pytest.mark.fuzz
@fuzz_settings(scale=0.25)  # an accepted header costs one Argon2id derivation
@given(_keystore_inputs(PASS_KEYSTORE))
def test_fuzz_keystore_passphrase(data: bytes) -> None:
    with trial("crypto.keystore.open_keystore") as t:
        keys = attempt(
            t,
            lambda: open_keystore(data, passphrase=PASSPHRASE),
            (KeyFormatError, DecryptionError),
            secrets=(PASSPHRASE.decode(), _b64(PASSPHRASE)),
        )
        if not isinstance(keys, Refused):
            assert keys == NODE_KEYS, "a changed keystore opened to other keys"


def _reseal(plaintext: bytes) -> bytes:
    """A key file keystore whose authenticated contents are `plaintext` (we hold the
    secret): the parser of what decrypts is fuzzed too."""
    import nacl.bindings

    from crypto import keystore

    doc = _json(KEYSTORE)
    header, _ = keystore._parse(KEYSTORE)
    key = keystore._wrapping_key(header, KEY_FILE_SECRET)
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, header.aad(), header.nonce, key
    )
    doc["ciphertext"] = _b64(sealed)
    return json.dumps(doc).encode()


SECRET_FIELDS: Final = {
    "data_key": _b64(NODE_KEYS.data_key),
    "ed25519_seed": _b64(NODE_KEYS.signing_key.encode()),
    "tls_key_pem": _b64(NODE_KEYS.tls_key_pem),
    "x25519_private": _b64(NODE_KEYS.encryption_key.encode()),
}


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(
        st.binary(max_size=200),
        mutated_json(SECRET_FIELDS).map(canonical_json),
        mutated_bytes(canonical_json(SECRET_FIELDS)),
    )
)
def test_fuzz_keystore_contents(plaintext: bytes) -> None:
    data = _reseal(plaintext)
    with trial("crypto.keystore.open_keystore") as t:
        keys = attempt(
            t,
            lambda: open_keystore(data, key_file_secret=KEY_FILE_SECRET),
            (KeyFormatError, DecryptionError),
            secrets=(SECRET_FIELDS["ed25519_seed"], SECRET_FIELDS["data_key"]),
        )
        if not isinstance(keys, Refused):
            # The contents are ours to choose (we hold the secret); the clear public keys
            # are what opening checks them against.
            assert keys.signing_key.verify_key == NODE_KEYS.signing_key.verify_key
            assert keys.encryption_key.public_key == NODE_KEYS.encryption_key.public_key


# --- 7. encrypted blobs and fields ---------------------------------------------------------

DATA_KEY: Final = bytes(range(32))
BLOB_PLAINTEXT: Final = bytes(range(251)) * 280  # 70,280 bytes: two chunks
BLOB_DIGEST: Final = hashlib.sha256(BLOB_PLAINTEXT).digest()


def _blob() -> bytes:
    out = io.BytesIO()
    blobs.encrypt_file(
        io.BytesIO(BLOB_PLAINTEXT), out, data_key=DATA_KEY, sha256_digest=BLOB_DIGEST
    )
    return out.getvalue()


BLOB: Final = _blob()


def _decrypt(data: bytes, expected: bytes | None) -> bytes:
    stream = blobs.decrypt_stream(io.BytesIO(data), data_key=DATA_KEY, expected_sha256=expected)
    return b"".join(stream)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(st.binary(max_size=300), mutated_bytes(BLOB), mutated_bytes(BLOB[:200])),
    st.booleans(),
)
def test_fuzz_blob(data: bytes, with_digest: bool) -> None:
    with trial("crypto.blobs.decrypt_stream") as t:
        plaintext = attempt(
            t, lambda: _decrypt(data, BLOB_DIGEST if with_digest else None), DecryptionError
        )
        if not isinstance(plaintext, Refused):
            assert data == BLOB, "a changed blob decrypted"
            assert plaintext == BLOB_PLAINTEXT


FIELD_SECRET: Final = "Jane Roe, +1 312 555 0100"
FIELDS: Final = FieldCipher(DATA_KEY)
CONTEXT: Final = b"people.name|IL-1"
TOKEN: Final = FIELDS.seal(FIELD_SECRET, context=CONTEXT)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(st.binary(max_size=100), mutated_bytes(TOKEN)),
    st.just(CONTEXT) | mutated_bytes(CONTEXT).filter(bool),
)
def test_fuzz_field_token(token: bytes, context: bytes) -> None:
    with trial("crypto.fields.FieldCipher.open") as t:
        text = attempt(
            t,
            lambda: FIELDS.open(token, context=context),
            DecryptionError,
            secrets=(FIELD_SECRET,),
        )
        if not isinstance(text, Refused):
            assert (token, context) == (TOKEN, CONTEXT), "a changed token decrypted"
            assert text == FIELD_SECRET


# --- 8. ristretto255, OPRF, X25519 and Ed25519 keys ----------------------------------------

_P25519: Final = 2**255 - 19
EDGE_ENCODINGS: Final = (
    bytes(32),
    b"\xff" * 32,
    _P25519.to_bytes(32, "little"),
    (_P25519 - 1).to_bytes(32, "little"),
    (_P25519 + 1).to_bytes(32, "little"),
    ristretto.L.to_bytes(32, "little"),
    (ristretto.L - 1).to_bytes(32, "little"),
    (1).to_bytes(32, "little"),
    ristretto.GENERATOR.to_bytes(),
)
OPRF_SK, OPRF_PK = oprf.derive_key_pair(bytes(32), b"fuzz", oprf.Mode.VOPRF)
OPRF_INPUT: Final = b"badge:ICE-ERO:04471"
OPRF_BLIND, OPRF_BLINDED = oprf.blind(OPRF_INPUT, mode=oprf.Mode.VOPRF)
(OPRF_EVALUATED,), OPRF_PROOF = oprf.blind_evaluate(OPRF_SK, [OPRF_BLINDED], mode=oprf.Mode.VOPRF)
OPRF_OUTPUT: Final = oprf.evaluate(OPRF_SK, OPRF_INPUT, mode=oprf.Mode.VOPRF)


def _encodings(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=40),
        st.binary(min_size=32, max_size=32),
        st.sampled_from(EDGE_ENCODINGS),
        mutated_bytes(seed, max_edits=2),
    )


@pytest.mark.fuzz
@fuzz_settings()
@given(_encodings(OPRF_BLINDED.to_bytes()), _encodings(OPRF_BLIND.to_bytes()))
def test_fuzz_ristretto_decoding(element: bytes, scalar: bytes) -> None:
    with trial("crypto.ristretto.Element.from_bytes") as t:
        e = attempt(t, lambda: ristretto.Element.from_bytes(element), EncodingError)
        if not isinstance(e, Refused):
            assert e.to_bytes() == element
            assert element != bytes(32)
    with trial("crypto.ristretto.Scalar.from_bytes") as t:
        s = attempt(t, lambda: ristretto.Scalar.from_bytes(scalar), EncodingError)
        if not isinstance(s, Refused):
            assert s.to_bytes() == scalar
            assert s.to_int() < ristretto.L


def _voprf_finalize(evaluated: bytes, proof: bytes) -> bytes:
    return oprf.finalize(
        OPRF_INPUT,
        OPRF_BLIND,
        ristretto.Element.from_bytes(evaluated),
        mode=oprf.Mode.VOPRF,
        blinded_element=OPRF_BLINDED,
        proof=proof,
        server_public_key=OPRF_PK,
    )


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.just(OPRF_EVALUATED.to_bytes()) | _encodings(OPRF_EVALUATED.to_bytes()),
    st.just(OPRF_PROOF) | st.binary(max_size=70) | mutated_bytes(OPRF_PROOF, max_edits=2),
)
def test_fuzz_oprf_proof(evaluated: bytes, proof: bytes) -> None:
    with trial("crypto.oprf.verify_proof") as t:

        def verify() -> None:
            oprf.verify_proof(
                ristretto.GENERATOR,
                OPRF_PK,
                [OPRF_BLINDED],
                [ristretto.Element.from_bytes(evaluated)],
                proof,
                context=oprf.context_string(oprf.Mode.VOPRF),
            )

        ok = attempt(t, verify, (EncodingError, VerificationError))
        if not isinstance(ok, Refused):
            assert evaluated == OPRF_EVALUATED.to_bytes(), "a changed evaluation verified"
    with trial("crypto.oprf.finalize") as t:
        output = attempt(
            t, lambda: _voprf_finalize(evaluated, proof), (EncodingError, VerificationError)
        )
        if not isinstance(output, Refused):
            assert evaluated == OPRF_EVALUATED.to_bytes()
            assert output == OPRF_OUTPUT


X_SEALED: Final = x25519.seal(ENC["IL"].public_key, b"stream key and bundle id")


@pytest.mark.fuzz
@fuzz_settings()
@given(
    _encodings(ENC["IL"].public_key.raw),
    _encodings(KEYS["IL"].public_key.raw),
    st.one_of(st.binary(max_size=100), mutated_bytes(X_SEALED)),
)
def test_fuzz_key_decoding(x_raw: bytes, ed_raw: bytes, sealed: bytes) -> None:
    with trial("crypto.x25519.PublicKey.from_bytes") as t:
        xk = attempt(t, lambda: x25519.PublicKey.from_bytes(x_raw), EncodingError)
        if not isinstance(xk, Refused):
            u = int.from_bytes(x_raw, "little")
            assert u < _P25519
            assert u not in (0, 1, _P25519 - 1)
    with trial("crypto.signing.PublicKey.from_bytes") as t:
        ek = attempt(t, lambda: signing.PublicKey.from_bytes(ed_raw), EncodingError)
        if not isinstance(ek, Refused):
            assert ek.raw == ed_raw
    with trial("crypto.x25519.open_sealed") as t:
        opened = attempt(t, lambda: x25519.open_sealed(ENC["IL"], sealed), DecryptionError)
        if not isinstance(opened, Refused):
            assert sealed == X_SEALED, "a changed sealed box opened"


ED_MESSAGE: Final = b"DSSEv1 4 test 5 hello"
ED_SIGNATURE: Final = KEYS["IL"].sign(ED_MESSAGE)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.just(ED_MESSAGE) | mutated_bytes(ED_MESSAGE, max_edits=2),
    st.binary(max_size=70) | mutated_bytes(ED_SIGNATURE, max_edits=2),
)
def test_fuzz_ed25519_verify(message: bytes, signature: bytes) -> None:
    with trial("crypto.signing.PublicKey.verify") as t:
        ok = attempt(t, lambda: KEYS["IL"].public_key.verify(message, signature), VerificationError)
        if not isinstance(ok, Refused):
            assert (message, signature) == (ED_MESSAGE, ED_SIGNATURE)


# --- 9. federation: the encoding and the field rules ---------------------------------------

LOAD_MESSAGES: Final = ("not valid JSON", "expected a JSON object")


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(
        st.binary(max_size=200), mutated_bytes(DSSE_PAYLOAD), json_values().map(canonical_json)
    )
)
def test_fuzz_load_json_object(data: bytes) -> None:
    with trial("federation.encoding.load_json_object") as t:
        # ValueError is this function's documented error: callers wrap it.
        obj = attempt(t, lambda: load_json_object(data, limit=1000), ValueError)
        if isinstance(obj, Refused):
            message = str(obj.error)
            assert message in LOAD_MESSAGES or message.startswith("not bytes, or larger")
        else:
            assert isinstance(obj, dict)


FIELD_SEEDS: Final = ("2026-11-21T12:00:05Z", "AAECAwQ=", "Doe v. Noem\tsecond line\n")


@pytest.mark.fuzz
@fuzz_settings()
@given(st.one_of(json_values(), st.sampled_from(FIELD_SEEDS).flatmap(mutated_text)))
def test_fuzz_schema_rules(value: Any) -> None:
    with trial("federation.schema.parse_time") as t:
        when = attempt(t, lambda: schema.parse_time(value, "at"), schema.Invalid)
        if not isinstance(when, Refused):
            assert schema.format_time(when) == value
    with trial("federation.schema.b64") as t:
        raw = attempt(t, lambda: schema.b64(value, "payload"), schema.Invalid)
        if not isinstance(raw, Refused):
            assert _b64(raw) == value
    with trial("federation.schema.json_object") as t:
        obj = attempt(t, lambda: schema.json_object(value, "detail"), schema.Invalid)
        if not isinstance(obj, Refused):
            assert obj == value
    with trial("federation.schema.text") as t:
        text = attempt(t, lambda: schema.text(value, "purpose"), schema.Invalid)
        if not isinstance(text, Refused):
            assert isinstance(value, str)
            value.encode("utf-8")  # no lone surrogate
            assert not schema.CONTROL_TEXT.search(value)


# --- 10. federation: documents from peers --------------------------------------------------

OPRF_SPLIT: Final = split_key(ristretto.Scalar.from_int(12345), t=2, n=3)
OPRF_PUBLIC: Final = OprfPublic(
    threshold=2,
    public_key=OPRF_SPLIT.public_key,
    commitments=dict(zip(STATES, OPRF_SPLIT.commitments, strict=True)),
)


def _member(state: str, pin: str | None = None) -> Member:
    return Member(
        state,
        f"{state.lower()}.compact.test:7401",
        pin or hashlib.sha256(f"cert of {state}".encode()).hexdigest(),
        KEYS[state].public_key,
        ENC[state].public_key,
    )


ROSTER: Final = Roster(
    version=1,
    expires=LATER,
    threshold=2,
    members=tuple(_member(s) for s in STATES),
    oprf=OPRF_PUBLIC,
)
ROSTER_V2: Final = Roster(
    version=2, expires=LATER, threshold=2, members=ROSTER.members, oprf=OPRF_PUBLIC
)


def _signed(payload_type: str, payload: bytes, *states: str) -> bytes:
    return sign_envelope(payload_type, payload, [KEYS[s] for s in states]).to_json()


ROSTER_ENVELOPE: Final = _signed(
    "application/vnd.compact.roster.v1+json", ROSTER.payload(), "IL", "MN"
)
ROSTER_V2_ENVELOPE: Final = _signed(
    "application/vnd.compact.roster.v1+json", ROSTER_V2.payload(), "IL", "MN", "CA"
)
TLS_KEY: Final = generate_tls_key()
CERT: Final = self_signed_certificate(
    TLS_KEY, common_name="il.compact.test", hosts=["il.compact.test"], now=NOW
)


@pytest.mark.fuzz
@fuzz_settings()
@given(_document_inputs(ROSTER.payload()))
# Each was accepted before federation/roster.py was fixed ($ matched before "\n"):
@example(_changed(ROSTER.payload(), ("members", 0, "endpoint"), "ca.compact.test:7401\n"))
@example(_changed(ROSTER.payload(), ("members", 0, "tls_pin"), "ab" * 32 + "\n"))
def test_fuzz_roster_payload(data: bytes) -> None:
    with trial("federation.roster.Roster.from_payload") as t:
        roster = attempt(t, lambda: Roster.from_payload(data), RosterError)
        if not isinstance(roster, Refused):
            assert roster.payload() == data
            _check_roster_fields(roster)


@pytest.mark.fuzz
@fuzz_settings()
@given(_document_inputs(OPRF_PUBLIC.to_json()))
def test_fuzz_oprf_public(data: bytes) -> None:
    with trial("federation.oprf_public.OprfPublic.from_json") as t:
        public = attempt(t, lambda: OprfPublic.from_json(data), CeremonyError)
        if not isinstance(public, Refused):
            assert OprfPublic.from_json(public.to_json()) == public


CARD: Final = _member("IL").card()
CARD_FILE: Final = member_card_file(_member("IL", certificate_fingerprint(CERT)), CERT)


@pytest.mark.fuzz
@fuzz_settings()
@given(_document_inputs(CARD), _document_inputs(CARD_FILE))
def test_fuzz_member_cards(card: bytes, card_file: bytes) -> None:
    with trial("federation.roster.parse_member_card") as t:
        member = attempt(t, lambda: parse_member_card(card), RosterError)
        if not isinstance(member, Refused):
            _check_member_fields(member)
    with trial("federation.roster.parse_member_card_file") as t:
        found = attempt(t, lambda: parse_member_card_file(card_file), RosterError)
        if not isinstance(found, Refused):
            _check_member_fields(found[0])
            assert certificate_fingerprint(found[1]) == found[0].tls_pin


def _check_member_fields(member: Member) -> None:
    """What the roster's field rules promise of an accepted member, checked strictly."""
    assert re.fullmatch(
        r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}|\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5}", member.endpoint
    ), "an endpoint that breaks the rule was accepted"
    assert re.fullmatch("[0-9a-f]{64}", member.tls_pin), "a TLS pin that breaks the rule"


def _check_roster_fields(roster: Roster) -> None:
    for member in roster.members:
        _check_member_fields(member)


def _verify_roster_envelope(data: bytes, update: bool) -> Roster:
    envelope = Envelope.from_json(data)
    if update:
        return verify_update(ROSTER, envelope, now=NOW)
    pin = hashlib.sha256(ROSTER.payload()).hexdigest()
    return verify_initial(envelope, pinned_sha256=pin, now=NOW)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(
        _signed_inputs(ROSTER_ENVELOPE, ("IL", "MN")).map(lambda d: (d, False)),
        _signed_inputs(ROSTER_V2_ENVELOPE, STATES).map(lambda d: (d, True)),
    )
)
def test_fuzz_roster_envelopes(case: tuple[Signed, bool]) -> None:
    signed, update = case
    target = "verify_update" if update else "verify_initial"
    with trial(f"federation.roster.{target}") as t:
        roster = attempt(
            t, lambda: _verify_roster_envelope(signed.data, update), (EncodingError, RosterError)
        )
        if not isinstance(roster, Refused):
            _check_roster_fields(roster)
            if not signed.resigned:
                assert roster == (ROSTER_V2 if update else ROSTER), "a changed roster verified"


# Index entries.
GID: Final = "IL-44717613-8a84-4971-a218-2ebd1ba3d81e"
CONTENT: Final = EntryContent(
    day="2025-10-04",
    county="Cook",
    location_kind="school",
    conduct=("masked_agent", "warrantless_arrest"),
    status="substantiated",
    agents=(AgentEntry("ICE-ERO", "primary", True, None, False, {"badge": "ab" * 64}),),
    evidence={"image/jpeg": 1, "video/mp4": 2},
)
ENTRY: Final = IndexEntry("IL", GID, 1, CONTENT)
ENTRY_ENVELOPE: Final = sign_entry(ENTRY, KEYS["IL"]).to_json()
# The media type rule of the federation (federation.bundle, federation.index_entry).
MEDIA_TYPE: Final = re.compile(r"[a-z0-9][a-z0-9!#$&^.+_-]{0,63}/[a-z0-9][a-z0-9!#$&^.+_-]{0,126}")


def _check_entry_fields(entry: IndexEntry) -> None:
    """What an accepted entry promises a replica (which stores it and reads it back: the
    day as a date, in PostgreSQL text columns), checked strictly."""
    assert schema.GLOBAL_ID.fullmatch(entry.global_id), "a global id that breaks the rule"
    c = entry.content
    if c is None:
        return
    assert date.fromisoformat(c.day).isoformat() == c.day, "a day that is not a date"
    assert not schema.CONTROL_IMPORT.search(c.county), "a county with a control character"
    for media_type in c.evidence:
        assert MEDIA_TYPE.fullmatch(media_type), "a media type that breaks the rule"
    for agent in c.agents:
        for pseudonym in agent.pseudonyms.values():
            assert re.fullmatch("[0-9a-f]{128}", pseudonym), "a pseudonym that breaks the rule"


@pytest.mark.fuzz
@fuzz_settings()
@given(_document_inputs(ENTRY.payload()))
# Each was accepted before federation/index_entry.py was fixed:
@example(_changed(ENTRY.payload(), ("global_id",), GID + "\n"))  # $ matched before "\n"
@example(_changed(ENTRY.payload(), ("content", "evidence"), {"image/jpeg\n": 1}))
@example(_changed(ENTRY.payload(), ("content", "day"), "2025-00-04"))  # not a date
@example(_changed(ENTRY.payload(), ("content", "county"), "Cook\x00"))  # NUL for PostgreSQL
@example(_changed(ENTRY.payload(), ("content", "agents"), {}))  # not the canonical []
def test_fuzz_index_entry_payload(data: bytes) -> None:
    with trial("federation.index_entry.IndexEntry.from_payload") as t:
        entry = attempt(t, lambda: IndexEntry.from_payload(data), IndexEntryError)
        if not isinstance(entry, Refused):
            assert entry.payload() == data
            _check_entry_fields(entry)


@pytest.mark.fuzz
@fuzz_settings()
@given(_signed_inputs(ENTRY_ENVELOPE, ("IL",)))
def test_fuzz_index_entry_envelope(signed: Signed) -> None:
    with trial("federation.index_entry.verify_entry") as t:
        entry = attempt(
            t,
            lambda: verify_entry(Envelope.from_json(signed.data), ROSTER, state="IL"),
            (EncodingError, IndexEntryError),
        )
        if not isinstance(entry, Refused):
            _check_entry_fields(entry)
            if not signed.resigned:
                assert entry == ENTRY, "a changed index entry verified"


# Matters.
MN_GID: Final = "MN-5d0c8a4e-1f3b-4c2d-9e8f-0a1b2c3d4e5f"
MATTER: Final = Matter(
    matter_id="IL:DOE-V-NOEM",
    owner="IL",
    revision=2,
    title="Doe v. Noem",
    states=STATES,
    bates_prefix="IL-MN",
    legal_hold=True,
    exhibits=(
        MatterExhibit("IL-MN-000001", GID, None, "Stop on I-90", NOW),
        MatterExhibit("IL-MN-000002", MN_GID, None, "Bystander video\nfull", NOW),
    ),
    updated_at=NOW,
)
MATTER_ENVELOPE: Final = sign_matter(MATTER, KEYS["IL"]).to_json()


@pytest.mark.fuzz
@fuzz_settings()
@given(_document_inputs(MATTER.payload()), _signed_inputs(MATTER_ENVELOPE, ("IL",)))
def test_fuzz_matter(data: bytes, envelope: Signed) -> None:
    with trial("federation.matter.Matter.from_payload") as t:
        matter = attempt(t, lambda: Matter.from_payload(data), MatterFormatError)
        if not isinstance(matter, Refused):
            assert matter.payload() == data
    with trial("federation.matter.verify_matter") as t:
        verified = attempt(
            t,
            lambda: verify_matter(Envelope.from_json(envelope.data), ROSTER, owner="IL"),
            (EncodingError, MatterFormatError),
        )
        if not isinstance(verified, Refused) and not envelope.resigned:
            assert verified == MATTER, "a changed matter verified"


# Bundle documents, with a manifest whose proofs are real: IL's log holds the index entry
# and two custody events, under a checkpoint cosigned by MN and CA.
REQUEST_ID: Final = "3f2b8c1e-9a4d-4e6f-b1c2-d3e4f5a6b7c8"
BUNDLE_RAW: Final = bytes(range(32))
F0: Final = b"first file: a phone video"
SHA0: Final = hashlib.sha256(F0).hexdigest()
SHA1: Final = hashlib.sha256(b"held").hexdigest()
REQUEST: Final = BundleRequest(
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    incident=GID,
    purpose="Investigation\twith a tab, and non-ASCII: é ✓",
    matter="MN-2026:joint.case_1",
    requested_by="analyst.one",
    requested_at=NOW,
    held_evidence=(SHA1,),
)
DECISION: Final = BundleDecision(
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    decision="approved",
    reason=None,
    redactions=("people",),
    decided_by="policy:compact_auto",
    decided_at=NOW,
    bundle_id=BUNDLE_RAW.hex(),
)
RECEIPT: Final = BundleReceipt(
    bundle_id=BUNDLE_RAW.hex(),
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    manifest_sha256=SHA0,
    sealed_sha256=SHA1,
    received_at=NOW,
)


def _custody(event_id: int, kind: str) -> CustodyRecord:
    return CustodyRecord(
        state="IL",
        global_id=GID,
        evidence_sha256=SHA0,
        evidence_position=0,
        event_id=event_id,
        kind=kind,
        at=NOW,
        actor="import",
        detail={"source": "hotline", "count": 2, "nested": {"list": [1, None, True, "x"]}},
    )


CUSTODY: Final = _custody(1, "collected")
IL_LOG: Final = [
    ENTRY_ENVELOPE,
    sign_custody(CUSTODY, KEYS["IL"]).to_json(),
    sign_custody(_custody(2, "viewed"), KEYS["IL"]).to_json(),
]
IL_HASHES: Final = [merkle.leaf_hash(x) for x in IL_LOG]
IL_CHECKPOINT: Final = Checkpoint(log_origin("IL"), len(IL_LOG), merkle.root_hash(IL_HASHES))
IL_NOTE: Final = _cosigned(IL_CHECKPOINT)


def _logged(index: int) -> LoggedEntry:
    return LoggedEntry(index, IL_LOG[index], tuple(merkle.inclusion_proof(IL_HASHES, index)))


def _sealed_info() -> sealing.SealedStreamInfo:
    out = io.BytesIO()
    return sealing.seal_stream(
        io.BytesIO(F0), out, [ENC["MN"].public_key], chunk_size=1024, bundle_id=BUNDLE_RAW
    )


MANIFEST: Final = BundleManifest(
    bundle_id=BUNDLE_RAW.hex(),
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    global_id=GID,
    incident={"external_id": "IL-HL-1", "status": "substantiated", "people": []},
    redactions=("people",),
    evidence=(
        ManifestEvidence(
            position=0,
            sha256=SHA0,
            size=len(F0),
            media_type="video/mp4",
            file_name="clip.mp4",
            captured_at="2025-10-04T07:15:00-05:00",
            captured_by="bystander",
            description="phone video\r\n",
            delivery="included",
            offset=0,
            custody=(_logged(1), _logged(2)),
        ),
        ManifestEvidence(
            position=2,
            sha256=SHA1,
            size=4,
            media_type="application/pdf",
            file_name="report.pdf",
            captured_at=None,
            captured_by=None,
            description=None,
            delivery="held",
            offset=None,
            custody=(),
        ),
    ),
    index_entry=_logged(0),
    checkpoint=IL_NOTE,
    sealed_stream=_sealed_info(),
    created_at=NOW,
)

Parse = Callable[[bytes], Any]
Verify = Callable[[Envelope], Any]
BUNDLE_DOCS: Final[dict[str, tuple[Any, Parse, bytes, Verify]]] = {
    "BundleRequest": (
        REQUEST,
        BundleRequest.from_payload,
        sign_request(REQUEST, KEYS["MN"]).to_json(),
        lambda e: verify_request(e, ROSTER, requester="MN"),
    ),
    "BundleDecision": (
        DECISION,
        BundleDecision.from_payload,
        sign_decision(DECISION, KEYS["IL"]).to_json(),
        lambda e: verify_decision(e, ROSTER, holder="IL"),
    ),
    "CustodyRecord": (
        CUSTODY,
        CustodyRecord.from_payload,
        sign_custody(CUSTODY, KEYS["IL"]).to_json(),
        lambda e: verify_custody(e, ROSTER, state="IL"),
    ),
    "BundleManifest": (
        MANIFEST,
        BundleManifest.from_payload,
        sign_manifest(MANIFEST, KEYS["IL"]).to_json(),
        lambda e: verify_manifest(e, ROSTER, holder="IL", requester="MN"),
    ),
    "BundleReceipt": (
        RECEIPT,
        BundleReceipt.from_payload,
        sign_receipt(RECEIPT, KEYS["MN"]).to_json(),
        lambda e: verify_receipt(e, ROSTER, requester="MN"),
    ),
}
VERIFY_NAMES: Final = {
    "BundleRequest": "verify_request",
    "BundleDecision": "verify_decision",
    "CustodyRecord": "verify_custody",
    "BundleManifest": "verify_manifest",
    "BundleReceipt": "verify_receipt",
}


SIGNERS: Final = {"BundleRequest": "MN", "BundleReceipt": "MN"}


@st.composite
def _bundle_document(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(BUNDLE_DOCS)))
    return name, draw(_document_inputs(BUNDLE_DOCS[name][0].payload()))


@st.composite
def _bundle_envelope(draw: st.DrawFn) -> tuple[str, Signed]:
    name = draw(st.sampled_from(sorted(BUNDLE_DOCS)))
    signer = SIGNERS.get(name, "IL")
    return name, draw(_signed_inputs(BUNDLE_DOCS[name][2], (signer,)))


@pytest.mark.fuzz
@fuzz_settings()
@given(_bundle_document())
def test_fuzz_bundle_documents(case: tuple[str, bytes]) -> None:
    name, data = case
    _doc, parse, _envelope, _verify = BUNDLE_DOCS[name]
    with trial(f"federation.bundle.{name}.from_payload") as t:
        parsed = attempt(t, lambda: parse(data), BundleFormatError)
        if not isinstance(parsed, Refused):
            assert parsed.payload() == data


@pytest.mark.fuzz
@fuzz_settings()
@given(_bundle_envelope())
def test_fuzz_bundle_envelopes(case: tuple[str, Signed]) -> None:
    name, signed = case
    doc, parse, _envelope, verify = BUNDLE_DOCS[name]
    with trial(f"federation.bundle.{VERIFY_NAMES[name]}") as t:
        verified = attempt(
            t, lambda: verify(Envelope.from_json(signed.data)), (EncodingError, BundleFormatError)
        )
        if not isinstance(verified, Refused):
            assert parse(verified.payload()) == verified
            if not signed.resigned:
                assert verified == doc, "a changed bundle document verified"


LOGGED: Final = (MANIFEST.index_entry, *(c for item in MANIFEST.evidence for c in item.custody))


def _check_proofs(data: bytes) -> tuple[BundleManifest, Any]:
    manifest = BundleManifest.from_payload(data)
    return manifest, check_manifest_proofs(manifest, ROSTER)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(
        mutated_json(_json(MANIFEST.payload())).map(canonical_json),
        mutated_bytes(MANIFEST.payload()),
    )
)
def test_fuzz_manifest_proofs(data: bytes) -> None:
    with trial("federation.bundle.check_manifest_proofs") as t:
        checked = attempt(t, lambda: _check_proofs(data), BundleFormatError)
        if not isinstance(checked, Refused):
            # A manifest may list fewer custody events (the holder signs it), but every
            # entry it proves must be one the log holds, and the checkpoint the log's.
            manifest, proofs = checked
            assert manifest.index_entry == MANIFEST.index_entry, "a changed proof verified"
            for item in manifest.evidence:
                for logged in item.custody:
                    assert logged in LOGGED, "a changed proof verified"
            assert parse_note(manifest.checkpoint).text == IL_CHECKPOINT.to_text()
            assert proofs.checkpoint_size == IL_CHECKPOINT.size
