"""crypto.checkpoint: C2SP tlog-checkpoint and tlog-cosignature vectors, policy, attacks."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.checkpoint import (
    MAX_TIMESTAMP,
    MAX_TREE_SIZE,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    VerifiedCheckpoint,
    WitnessCosignature,
    add_cosignature,
    cosignature_message,
    cosignature_timestamp,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from crypto.errors import (
    CryptoError,
    EncodingError,
    PolicyError,
    ThresholdError,
    VerificationError,
)
from crypto.note import (
    KeyHash,
    Signature,
    Signer,
    Verifier,
    encode_vkey,
    parse_note,
    parse_signature_line,
    sign_note,
)
from crypto.signing import SigningKey

HERE = Path(__file__).parent / "vectors"
VECTORS: dict[str, Any] = json.loads(
    (HERE / "c2sp_signed_note_checkpoint_cosignature.json").read_text(encoding="utf-8")
)["vectors"]
MERKLE: dict[str, Any] = json.loads(
    (HERE / "rfc6962_merkle_transparency-dev.json").read_text(encoding="utf-8")
)
SPEC = VECTORS["checkpoint_and_cosignature_spec_example"]
TDEV = VECTORS["transparency_dev_formats_cosig"]
E2E = VECTORS["derived_end_to_end"]

LOG = Signer(E2E["log"]["origin"], SigningKey.from_seed(bytes.fromhex(E2E["log"]["seed_hex"])))
WITNESS = CosignatureSigner(
    E2E["witness"]["name"], SigningKey.from_seed(bytes.fromhex(E2E["witness"]["seed_hex"]))
)
CHECKPOINT = Checkpoint(
    E2E["log"]["origin"], 8, bytes.fromhex(MERKLE["root_hashes_by_tree_size"]["8"])
)


def key(n: int) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(f"checkpoint test key {n}".encode()).digest())


def witnesses(count: int) -> list[CosignatureSigner]:
    return [CosignatureSigner(f"witness.example/w{i}", key(100 + i)) for i in range(count)]


def cosigned(
    checkpoint: Checkpoint, cosigners: list[CosignatureSigner], timestamp: int = 1_700_000_000
) -> str:
    note = sign_checkpoint(checkpoint, LOG)
    for i, w in enumerate(cosigners):
        note = add_cosignature(note, w.cosign(checkpoint, timestamp=timestamp + i))
    return note


# --- C2SP spec example (no keys published: framing and messages) ---------------------------


def test_spec_example_checkpoint_body() -> None:
    note = parse_note(SPEC["note"])
    assert note.text == SPEC["checkpoint_text"]
    cp = parse_checkpoint(note.text)
    assert cp.origin == SPEC["origin"] == "example.com/behind-the-sofa"
    assert cp.size == SPEC["tree_size"] == 20852163
    assert cp.root_hash.hex() == SPEC["root_hash_hex"]
    assert cp.extensions == ()
    assert cp.to_text() == SPEC["checkpoint_text"]


def test_spec_example_signature_lines() -> None:
    log_sig, cosig = parse_note(SPEC["note"]).signatures
    assert (log_sig.name, f"{log_sig.key_hash:08x}") == (
        SPEC["origin"],
        SPEC["log_sig"]["key_id_hex"],
    )
    assert len(log_sig.signature) == SPEC["log_sig"]["sig_len"] == 64
    assert cosig.name == "witness.example.com/w1"
    assert f"{cosig.key_hash:08x}" == SPEC["cosig"]["key_id_hex"]
    assert cosignature_timestamp(cosig) == SPEC["cosig"]["timestamp"] == 1679315147
    assert len(cosig.signature) == 8 + SPEC["cosig"]["sig_len"]
    with pytest.raises(EncodingError):
        cosignature_timestamp(log_sig)  # a 64-byte note signature is not a cosignature


def test_spec_example_cosignature_message() -> None:
    message = cosignature_message(SPEC["checkpoint_text"], SPEC["cosig"]["timestamp"])
    assert message == SPEC["cosignature_v1_signed_message"].encode()


def test_spec_example_does_not_verify_with_other_keys() -> None:
    with pytest.raises(VerificationError, match=r"^note has no verifiable signatures$"):
        verify_checkpoint(
            SPEC["note"], log=LOG.verifier(), witnesses=[WITNESS.verifier()], threshold=1
        )


# --- transparency-dev/formats ---------------------------------------------------------------


def test_type_01_vkey_with_plus_in_base64() -> None:
    vkey = TDEV["vkey_type01_with_plus_in_base64"]
    assert vkey.count("+") == 3
    v = Verifier.from_vkey(vkey)
    assert TDEV["key_ids_verified"] is True
    assert (v.name, v.key_hash, v.vkey) == ("TEST", 0x7997405C, vkey)
    # transparency-dev converts a 0x01 key into a cosignature key; we refuse it.
    with pytest.raises(EncodingError, match="type 0x04"):
        CosignatureVerifier.from_vkey(vkey)


def test_type_04_vkey() -> None:
    vkey = TDEV["vkey_type04"]
    w = CosignatureVerifier.from_vkey(vkey)
    assert (w.name, w.key_hash, w.vkey) == ("remora.n621.de", 0xDA77ADE7, vkey)
    assert repr(w) == "CosignatureVerifier(remora.n621.de+da77ade7)"
    with pytest.raises(EncodingError, match="type 0x01"):
        Verifier.from_vkey(vkey)


def test_cosignature_timestamp_vector() -> None:
    case = TDEV["cosig_timestamp_vector"]
    sig = parse_signature_line(f"\u2014 remora.n621.de {case['sig_base64']}\n")
    assert cosignature_timestamp(sig) == case["want_timestamp"] == 1727964367


def test_not_a_cosignature_vector() -> None:
    case = TDEV["not_a_cosig_vector"]
    raw = base64.b64decode(case["sig_base64"])
    assert len(raw) == 68
    sig = parse_signature_line(f"\u2014 x {case['sig_base64']}\n")
    with pytest.raises(EncodingError, match="wrong signature length"):
        cosignature_timestamp(sig)


def test_gibberish_signature_line() -> None:
    """transparency-dev's third timestamp case: base64 that is not base64."""
    with pytest.raises(EncodingError):
        parse_signature_line("\u2014 x 5%/$!\n 2\n")


# --- derived end-to-end vector ------------------------------------------------------------


def test_derived_keys() -> None:
    for who, label in (("log", b"research/log seed"), ("witness", b"research/witness seed")):
        assert hashlib.sha256(label).hexdigest() == E2E[who]["seed_hex"]
    assert LOG.verifier().vkey == E2E["log"]["vkey"]
    assert WITNESS.verifier().vkey == E2E["witness"]["vkey_type04"]
    assert Verifier.from_vkey(E2E["log"]["vkey"]) == LOG.verifier()
    assert CosignatureVerifier.from_vkey(E2E["witness"]["vkey_type04"]) == WITNESS.verifier()


def test_derived_checkpoint_text_and_root() -> None:
    assert E2E["tree"].endswith("root_hashes_by_tree_size['8'])")
    assert CHECKPOINT.to_text() == E2E["checkpoint_text"]
    assert parse_checkpoint(E2E["checkpoint_text"]) == CHECKPOINT


def test_derived_signed_checkpoint_byte_for_byte() -> None:
    assert sign_checkpoint(CHECKPOINT, LOG) == E2E["signed_checkpoint"]
    assert open_checkpoint(E2E["signed_checkpoint"], log=LOG.verifier()) == CHECKPOINT


def test_derived_cosignature_byte_for_byte() -> None:
    timestamp = E2E["cosignature_timestamp"]
    assert cosignature_message(CHECKPOINT.to_text(), timestamp) == (
        E2E["cosignature_signed_message"].encode()
    )
    line = WITNESS.cosign(CHECKPOINT, timestamp=timestamp)
    assert WITNESS.cosign(E2E["checkpoint_text"], timestamp=timestamp) == line
    assert add_cosignature(E2E["signed_checkpoint"], line) == E2E["cosigned_checkpoint"]
    assert E2E["cosigned_checkpoint"].endswith(line)


def test_derived_cosigned_checkpoint_verifies() -> None:
    result = verify_checkpoint(
        E2E["cosigned_checkpoint"],
        log=Verifier.from_vkey(E2E["log"]["vkey"]),
        witnesses=[CosignatureVerifier.from_vkey(E2E["witness"]["vkey_type04"])],
        threshold=1,
        origin=E2E["log"]["origin"],
    )
    assert result == VerifiedCheckpoint(
        CHECKPOINT,
        (WitnessCosignature(WITNESS.name, WITNESS.key_hash, E2E["cosignature_timestamp"]),),
    )


def test_derived_add_checkpoint_request_body() -> None:
    """The witness request: 'old 6', the 6 -> 8 consistency proof, a blank line, the note.

    Checking the proof itself is the Merkle module's job; here the framing, the
    proof against the published RFC 6962 vectors, and the embedded signed checkpoint.
    """
    head, signed = E2E["add_checkpoint_request_body_old6"].split("\n\n", 1)
    assert signed == E2E["signed_checkpoint"]
    assert open_checkpoint(signed, log=LOG.verifier(), origin=LOG.name) == CHECKPOINT
    old, *proof = head.split("\n")
    assert old == "old 6"
    (published,) = [p for p in MERKLE["consistency_proofs"] if (p["size1"], p["size2"]) == (6, 8)]
    assert [base64.b64decode(line).hex() for line in proof] == published["proof"]
    assert published["root1"] == E2E["old_root_size6_hex"]
    assert MERKLE["root_hashes_by_tree_size"]["6"] == E2E["old_root_size6_hex"]


# --- checkpoint bodies ----------------------------------------------------------------------

ROOT = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        f"origin\n8\n{ROOT}",  # missing final newline
        "origin\n8\n",  # two lines
        f"\n8\n{ROOT}\n",  # empty origin
        f"origin\n08\n{ROOT}\n",  # leading zero
        f"origin\n00\n{ROOT}\n",
        f"origin\n-1\n{ROOT}\n",
        f"origin\n+8\n{ROOT}\n",
        f"origin\n 8\n{ROOT}\n",
        f"origin\n8 \n{ROOT}\n",
        f"origin\n\n{ROOT}\n",
        f"origin\n1e3\n{ROOT}\n",
        f"origin\n0x8\n{ROOT}\n",
        f"origin\n\u0668\n{ROOT}\n",  # ARABIC-INDIC DIGIT EIGHT: int() would take it
        f"origin\n{2**64}\n{ROOT}\n",
        f"origin\n{'9' * 5000}\n{ROOT}\n",
        "origin\n8\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "origin\n8\n" + base64.b64encode(bytes(33)).decode() + "\n",
        "origin\n8\n" + ROOT.rstrip("=") + "\n",  # no padding
        "origin\n8\n" + ROOT[:-2] + "9=\n",  # unused bits set
        "origin\n8\n" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode() + "\n",
        "origin\n8\n" + bytes(range(32)).hex() + "\n",  # hex, not base64
        f"origin\n8\n{ROOT} \n",
        f"origin\n8\n\n{ROOT}\n",
        f"origin\n8\n{ROOT}\n\n",  # empty extension line
        f"origin\n8\n{ROOT}\next\n\n",
        f"origin\r\n8\r\n{ROOT}\r\n",
        f"ori\tgin\n8\n{ROOT}\n",
        f"origin\n8\n{ROOT}\nex\x00t\n",
        f"or\ud800igin\n8\n{ROOT}\n",
    ],
)
def test_malformed_checkpoint_bodies(text: str) -> None:
    with pytest.raises(EncodingError, match=r"^malformed checkpoint: ") as info:
        parse_checkpoint(text)
    assert len(str(info.value)) < 80


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"origin\n0\n{ROOT}\n", Checkpoint("origin", 0, bytes(range(32)))),
        (f"o\n{2**64 - 1}\n{ROOT}\n", Checkpoint("o", MAX_TREE_SIZE, bytes(range(32)))),
        (
            f"example.com/log 42 + x\n1\n{ROOT}\next one\n\u2014 two\n",
            Checkpoint("example.com/log 42 + x", 1, bytes(range(32)), ("ext one", "\u2014 two")),
        ),
    ],
)
def test_valid_checkpoint_bodies(text: str, expected: Checkpoint) -> None:
    """Origins need not be URLs (spaces and '+' are allowed); extensions are opaque."""
    assert parse_checkpoint(text) == expected
    assert expected.to_text() == text


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (("", 1, bytes(32)), ValueError),
        (("a\nb", 1, bytes(32)), ValueError),
        (("a", -1, bytes(32)), ValueError),
        (("a", 2**64, bytes(32)), ValueError),
        (("a", True, bytes(32)), TypeError),
        (("a", 1.0, bytes(32)), TypeError),
        (("a", 1, bytes(31)), ValueError),
        (("a", 1, "00" * 32), ValueError),
        (("a", 1, bytes(32), ("",)), ValueError),
        (("a", 1, bytes(32), ("x\ny",)), ValueError),
        (("a", 1, bytes(32), ["x"]), TypeError),
    ],
)
def test_checkpoint_fields_are_checked(fields: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        Checkpoint(*fields)


_LINE = st.text(
    st.characters(codec="utf-8", exclude_characters=[chr(i) for i in range(32)]),
    min_size=1,
    max_size=40,
)
checkpoints = st.builds(
    Checkpoint,
    origin=_LINE,
    size=st.integers(0, MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(_LINE, max_size=3).map(tuple),
)


@given(cp=checkpoints)
def test_checkpoint_text_round_trip(cp: Checkpoint) -> None:
    text = cp.to_text()
    assert parse_checkpoint(text) == cp
    assert text.count("\n") == 3 + len(cp.extensions)


@given(cp=checkpoints, zeros=st.integers(1, 3))
def test_leading_zeros_are_refused(cp: Checkpoint, zeros: int) -> None:
    lines = cp.to_text().split("\n")
    lines[1] = "0" * zeros + lines[1]
    with pytest.raises(EncodingError, match="tree size"):
        parse_checkpoint("\n".join(lines))


@given(cp=checkpoints, cut=st.integers(1, 44))
def test_truncated_root_hash_is_refused(cp: Checkpoint, cut: int) -> None:
    lines = cp.to_text().split("\n")
    lines[2] = lines[2][:-cut]
    with pytest.raises(EncodingError):
        parse_checkpoint("\n".join(lines))


@given(cp=checkpoints)
def test_body_without_final_newline_is_refused(cp: Checkpoint) -> None:
    with pytest.raises(EncodingError, match="newline"):
        parse_checkpoint(cp.to_text()[:-1])


# --- cosigning ----------------------------------------------------------------------------


def test_cosign_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        WITNESS.cosign(CHECKPOINT, timestamp=-1)
    with pytest.raises(ValueError, match="timestamp"):
        WITNESS.cosign(CHECKPOINT, timestamp=MAX_TIMESTAMP + 1)
    with pytest.raises(TypeError):
        WITNESS.cosign(CHECKPOINT, timestamp=True)
    with pytest.raises(EncodingError):
        WITNESS.cosign("not a checkpoint\n", timestamp=1)
    with pytest.raises(TypeError):
        WITNESS.cosign(b"x", timestamp=1)  # type: ignore[arg-type]
    line = WITNESS.cosign(CHECKPOINT, timestamp=MAX_TIMESTAMP)
    assert cosignature_timestamp(parse_signature_line(line)) == MAX_TIMESTAMP


def test_cosigner_repr_redacts_the_key() -> None:
    assert (
        repr(WITNESS) == f"CosignatureSigner({WITNESS.name}+{WITNESS.key_hash:08x}, <key redacted>)"
    )


def test_add_cosignature_replaces_an_older_line_from_the_same_witness() -> None:
    older = add_cosignature(E2E["signed_checkpoint"], WITNESS.cosign(CHECKPOINT, timestamp=1))
    newer = add_cosignature(older, WITNESS.cosign(CHECKPOINT, timestamp=2))
    assert len(parse_note(newer).signatures) == 2
    result = verify_checkpoint(
        newer, log=LOG.verifier(), witnesses=[WITNESS.verifier()], threshold=1
    )
    assert [c.timestamp for c in result.cosignatures] == [2]


def test_add_cosignature_checks_framing() -> None:
    log_line = E2E["signed_checkpoint"].split("\n\n")[1]
    with pytest.raises(EncodingError, match="cosignature"):
        add_cosignature(E2E["signed_checkpoint"], log_line)  # 64-byte note signature
    with pytest.raises(EncodingError):
        add_cosignature(E2E["checkpoint_text"], WITNESS.cosign(CHECKPOINT, timestamp=1))


def test_extension_lines_are_covered_by_both_signatures() -> None:
    cp = Checkpoint(CHECKPOINT.origin, 8, CHECKPOINT.root_hash, ("ext",))
    note = cosigned(cp, [WITNESS])
    w = WITNESS.verifier()
    assert verify_checkpoint(note, log=LOG.verifier(), witnesses=[w], threshold=1).checkpoint == cp
    changed = note.replace("\next\n", "\nexu\n")
    with pytest.raises(VerificationError, match=r"^invalid signature for key "):
        verify_checkpoint(changed, log=LOG.verifier(), witnesses=[w], threshold=1)
    # the witness's line alone over the changed text: also refused
    relogged = sign_checkpoint(Checkpoint(cp.origin, 8, cp.root_hash, ("exu",)), LOG)
    witness_line = note.split("\n\n")[1].split("\n", 1)[1]
    with pytest.raises(VerificationError, match=rf"^invalid signature for key {WITNESS.name}"):
        verify_checkpoint(
            add_cosignature(relogged, witness_line), log=LOG.verifier(), witnesses=[w], threshold=1
        )


# --- verify_checkpoint: policy ------------------------------------------------------------

W3 = witnesses(3)
V3 = [w.verifier() for w in W3]


@pytest.mark.parametrize("threshold", [0, -1, 4])
def test_threshold_out_of_range_is_a_policy_error(threshold: int) -> None:
    with pytest.raises(PolicyError, match="threshold"):
        verify_checkpoint(
            cosigned(CHECKPOINT, W3), log=LOG.verifier(), witnesses=V3, threshold=threshold
        )


def test_threshold_must_be_an_int() -> None:
    for bad in (True, 1.0, "1"):
        with pytest.raises(TypeError):
            verify_checkpoint(
                cosigned(CHECKPOINT, W3),
                log=LOG.verifier(),
                witnesses=V3,
                threshold=bad,  # type: ignore[arg-type]
            )


def test_no_witnesses_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        verify_checkpoint(E2E["signed_checkpoint"], log=LOG.verifier(), witnesses=[], threshold=1)


def test_policy_is_checked_before_the_note_is_parsed() -> None:
    with pytest.raises(PolicyError):
        verify_checkpoint("garbage", log=LOG.verifier(), witnesses=V3, threshold=0)
    with pytest.raises(PolicyError):
        verify_checkpoint("garbage", log=LOG.verifier(), witnesses=[V3[0], V3[0]], threshold=1)


def test_duplicate_witness_is_a_policy_error() -> None:
    with pytest.raises(PolicyError):
        verify_checkpoint(
            cosigned(CHECKPOINT, W3), log=LOG.verifier(), witnesses=[*V3, V3[0]], threshold=4
        )


def test_one_witness_key_under_two_names_is_a_policy_error() -> None:
    """A v1 cosignature does not sign the witness name: relabelled, it would count twice."""
    alias = CosignatureVerifier("witness.example/alias", V3[0].key)
    assert alias.key_hash != V3[0].key_hash
    with pytest.raises(PolicyError):
        verify_checkpoint(
            cosigned(CHECKPOINT, W3), log=LOG.verifier(), witnesses=[V3[0], alias], threshold=2
        )


def test_log_key_as_witness_is_a_policy_error() -> None:
    self_witness = CosignatureVerifier(LOG.name, LOG.verifier().key)
    with pytest.raises(PolicyError):
        verify_checkpoint(
            cosigned(CHECKPOINT, W3), log=LOG.verifier(), witnesses=[*V3, self_witness], threshold=1
        )


def test_wrong_key_kinds_are_type_errors() -> None:
    note = cosigned(CHECKPOINT, W3)
    with pytest.raises(TypeError):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=[LOG.verifier()], threshold=1)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        verify_checkpoint(note, log=V3[0], witnesses=V3[1:], threshold=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_checkpoint(note, log=V3[0])  # type: ignore[arg-type]


# --- verify_checkpoint: attacks -----------------------------------------------------------


def test_threshold_not_met() -> None:
    note = cosigned(CHECKPOINT, W3[:1])
    with pytest.raises(ThresholdError) as info:
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=2)
    assert str(info.value) == "1 distinct witness cosignatures verified, 2 required"
    assert isinstance(info.value, VerificationError)
    assert W3[0].name not in str(info.value)


def test_log_signature_alone_does_not_meet_a_threshold() -> None:
    with pytest.raises(ThresholdError, match=r"^0 distinct"):
        verify_checkpoint(E2E["signed_checkpoint"], log=LOG.verifier(), witnesses=V3, threshold=1)


def test_checkpoint_without_the_log_signature_is_refused() -> None:
    note = cosigned(CHECKPOINT, W3)
    text, block = note.split("\n\n")
    witness_lines = block.split("\n", 1)[1]
    with pytest.raises(VerificationError, match=r"^checkpoint is not signed by the log$"):
        verify_checkpoint(
            text + "\n\n" + witness_lines, log=LOG.verifier(), witnesses=V3, threshold=1
        )


def test_checkpoint_signed_by_another_log_key_is_refused() -> None:
    impostor = Signer(LOG.name, key(1))
    note = sign_checkpoint(CHECKPOINT, impostor)
    for w in W3:
        note = add_cosignature(note, w.cosign(CHECKPOINT, timestamp=1))
    with pytest.raises(VerificationError, match=r"^checkpoint is not signed by the log$"):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=3)


def test_wrong_origin_is_refused() -> None:
    note = cosigned(CHECKPOINT, W3)
    with pytest.raises(VerificationError, match=r"^checkpoint is for another origin$"):
        verify_checkpoint(
            note, log=LOG.verifier(), witnesses=V3, threshold=3, origin="other.org/log"
        )
    with pytest.raises(VerificationError, match="another origin"):
        open_checkpoint(note, log=LOG.verifier(), origin="other.org/log")
    verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=3, origin=LOG.name)


def test_cosignature_replayed_onto_another_checkpoint_is_refused() -> None:
    """A witness's cosignature of size 8 pasted under the log's checkpoint of size 9."""
    other = Checkpoint(CHECKPOINT.origin, 9, bytes(32))
    stale_line = W3[0].cosign(CHECKPOINT, timestamp=1)
    note = add_cosignature(sign_checkpoint(other, LOG), stale_line)
    with pytest.raises(VerificationError, match=rf"^invalid signature for key {W3[0].name}"):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=1)


def test_cosignature_with_an_altered_timestamp_is_refused() -> None:
    line = parse_signature_line(W3[0].cosign(CHECKPOINT, timestamp=1000))
    later = (2000).to_bytes(8, "big") + line.signature[8:]
    note = add_cosignature(
        sign_checkpoint(CHECKPOINT, LOG), Signature(line.name, line.key_hash, later).line
    )
    with pytest.raises(VerificationError, match=r"^invalid signature for key "):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=1)


def test_one_bad_cosignature_rejects_the_checkpoint_even_above_threshold() -> None:
    """The spec's SHOULD, taken: a known key's bad signature makes the note unusable."""
    good = cosigned(CHECKPOINT, W3[:2])
    bad_line = parse_signature_line(W3[2].cosign(CHECKPOINT, timestamp=1))
    corrupted = bad_line.signature[:-1] + bytes([bad_line.signature[-1] ^ 1])
    note = add_cosignature(good, Signature(bad_line.name, bad_line.key_hash, corrupted).line)
    with pytest.raises(VerificationError, match=rf"^invalid signature for key {W3[2].name}"):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=2)


def test_cosignature_timestamp_above_2_63_is_refused_even_if_signed() -> None:
    signing_key = key(100)  # W3[0]'s key
    timestamp = MAX_TIMESTAMP + 1
    message = f"cosignature/v1\ntime {timestamp}\n{CHECKPOINT.to_text()}".encode()
    blob = timestamp.to_bytes(8, "big") + signing_key.sign(message)
    line = Signature(W3[0].name, W3[0].key_hash, blob)
    with pytest.raises(EncodingError, match="timestamp out of range"):
        cosignature_timestamp(line)
    note = sign_checkpoint(CHECKPOINT, LOG) + line.line
    with pytest.raises(VerificationError, match=rf"^invalid signature for key {W3[0].name}"):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=1)


def test_note_signature_by_a_witness_key_is_not_a_cosignature() -> None:
    """Type confusion: the witness key signing the text as a plain 0x01 note."""
    as_note_key = Signer(W3[0].name, key(100))
    note = sign_note(CHECKPOINT.to_text(), [LOG, as_note_key])
    with pytest.raises(ThresholdError):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=1)
    # the same bytes relabelled with the 0x04 key hash do not verify as a cosignature
    sig = parse_note(note).signatures[1]
    forged = Signature(sig.name, V3[0].key_hash, sig.signature)
    with pytest.raises(VerificationError, match=rf"^invalid signature for key {W3[0].name}"):
        verify_checkpoint(
            sign_checkpoint(CHECKPOINT, LOG) + forged.line,
            log=LOG.verifier(),
            witnesses=V3,
            threshold=1,
        )


def test_unknown_witnesses_are_ignored() -> None:
    strangers = witnesses(6)[3:]
    note = cosigned(CHECKPOINT, [*strangers, W3[1]])
    result = verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=1)
    assert [c.name for c in result.cosignatures] == [W3[1].name]
    with pytest.raises(ThresholdError, match=r"^1 distinct"):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=2)


def test_a_witness_cosigning_twice_counts_once_with_its_latest_timestamp() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG)
    note += W3[0].cosign(CHECKPOINT, timestamp=50) + W3[0].cosign(CHECKPOINT, timestamp=70)
    note += W3[0].cosign(CHECKPOINT, timestamp=60)
    result = verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=1)
    assert result.cosignatures == (WitnessCosignature(W3[0].name, W3[0].key_hash, 70),)
    with pytest.raises(ThresholdError):
        verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=2)


def test_malformed_body_signed_by_the_log_is_an_encoding_error_after_verification() -> None:
    note = sign_note("not\na checkpoint\n", [LOG])
    with pytest.raises(EncodingError, match=r"^malformed checkpoint"):
        open_checkpoint(note, log=LOG.verifier())
    with pytest.raises(VerificationError):  # an unsigned malformed body fails verification first
        open_checkpoint(
            "not\na checkpoint\n\n" + note.split("\n\n")[1].replace("A", "B", 1), log=LOG.verifier()
        )


def test_open_checkpoint_ignores_cosignatures() -> None:
    note = cosigned(CHECKPOINT, W3)
    assert open_checkpoint(note, log=LOG.verifier()) == CHECKPOINT
    with pytest.raises(VerificationError, match=r"^note has no verifiable signatures$"):
        open_checkpoint(note, log=Signer("x", key(9)).verifier())


# --- properties ---------------------------------------------------------------------------

W5 = witnesses(5)
V5 = [w.verifier() for w in W5]


@settings(max_examples=60, deadline=None)
@given(
    cp=checkpoints,
    signing=st.sets(st.integers(0, 4)),
    threshold=st.integers(1, 5),
    timestamp=st.integers(0, MAX_TIMESTAMP - 10),
    as_bytes=st.booleans(),
)
def test_cosign_then_verify_counts_exactly_the_cosigners(
    cp: Checkpoint, signing: set[int], threshold: int, timestamp: int, as_bytes: bool
) -> None:
    cosigners = [W5[i] for i in sorted(signing)]
    note = cosigned(cp, cosigners, timestamp)
    given_note: str | bytes = note.encode() if as_bytes else note
    if len(cosigners) < threshold:
        with pytest.raises(ThresholdError):
            verify_checkpoint(given_note, log=LOG.verifier(), witnesses=V5, threshold=threshold)
        return
    result = verify_checkpoint(
        given_note, log=LOG.verifier(), witnesses=V5, threshold=threshold, origin=cp.origin
    )
    assert result.checkpoint == cp
    assert result.cosignatures == tuple(
        WitnessCosignature(w.name, KeyHash(w.key_hash), timestamp + i)
        for i, w in enumerate(cosigners)
    )


def _mutations(note: bytes) -> list[bytes]:
    return [
        note[:i] + bytes([note[i] ^ delta]) + note[i + 1 :]
        for i in range(len(note))
        for delta in (0x01, 0x10, 0x80)
    ]


def test_every_single_byte_change_in_a_cosigned_checkpoint_is_rejected() -> None:
    """With threshold = all witnesses, no byte of the note can change without an error.

    A change in a witness's name or key hash makes its line unknown (ThresholdError),
    anywhere else it breaks the encoding or a signature. An unknown signer's line may
    change harmlessly: the result is then identical.
    """
    stranger = CosignatureSigner("stranger.example/w", key(999))
    note = cosigned(CHECKPOINT, [W3[0], stranger, W3[1], W3[2]]).encode()
    original = verify_checkpoint(note, log=LOG.verifier(), witnesses=V3, threshold=3)
    stranger_line = stranger.cosign(CHECKPOINT, timestamp=1_700_000_001).encode()
    start = note.index(stranger_line)
    for i, mutated in enumerate(_mutations(note)):
        in_stranger_line = start <= i // 3 < start + len(stranger_line)
        error: CryptoError | None = None
        try:
            result = verify_checkpoint(mutated, log=LOG.verifier(), witnesses=V3, threshold=3)
        except CryptoError as e:
            error = e
        if error is not None:
            assert not isinstance(error, PolicyError)
            assert isinstance(error, EncodingError) or not in_stranger_line
            continue
        assert in_stranger_line, f"change at byte {i // 3} was accepted"
        assert result == original


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_outside_unknown_lines_is_rejected(data: st.DataObject) -> None:
    note = cosigned(CHECKPOINT, W3).encode()
    index = data.draw(st.integers(0, len(note) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != note[index]))
    with pytest.raises((EncodingError, VerificationError)):
        verify_checkpoint(
            note[:index] + bytes([value]) + note[index + 1 :],
            log=LOG.verifier(),
            witnesses=V3,
            threshold=3,
        )


def test_vkey_of_a_cosignature_key_uses_type_04() -> None:
    w = W3[0].verifier()
    assert w.vkey == encode_vkey(w.name, 0x04, w.key.raw)
    assert base64.b64decode(w.vkey.split("+", 2)[2])[0] == 0x04
    assert CosignatureVerifier.from_vkey(w.vkey) == w
