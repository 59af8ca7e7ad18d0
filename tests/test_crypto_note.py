"""crypto.note: C2SP signed-note vectors (spec, golang/mod sumdb/note), properties, attacks."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from crypto.errors import CryptoError, EncodingError, PolicyError, VerificationError
from crypto.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    KeyHash,
    Signature,
    Signer,
    Verifier,
    add_signature_lines,
    decode_vkey,
    encode_vkey,
    is_valid_key_name,
    key_hash,
    open_note,
    parse_note,
    parse_signature_line,
    sign_note,
)
from crypto.signing import PublicKey, SigningKey

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "c2sp_signed_note_checkpoint_cosignature.json").read_text(
        encoding="utf-8"
    )
)["vectors"]
SPEC = VECTORS["signed_note_spec_example"]
UNVERIFIABLE = VECTORS["signed_note_spec_format_example_unverifiable"]
GO = VECTORS["go_sumdb_note"]

TEXT: str = GO["text"]
PETER = Verifier.from_vkey(GO["vkey_PeterNeumann"])
ENOCH = Verifier.from_vkey(GO["vkey_EnochRoot"])
PETER_SIG = GO["signed_by_PeterNeumann"][len(TEXT) + 1 :]
ENOCH_SIG = GO["signed_by_both"][len(TEXT) + 1 + len(PETER_SIG) :]


def signer(name: str, n: int) -> Signer:
    return Signer(
        name, SigningKey.from_seed(hashlib.sha256(f"note test key {n}".encode()).digest())
    )


def splice(line: str, at: int, insert: str) -> str:
    """Insert into a line at a UTF-8 byte offset, as Go's string slicing does."""
    raw = line.encode()
    return (raw[:at] + insert.encode() + raw[at:]).decode()


# --- C2SP signed-note spec examples -------------------------------------------------------


def test_spec_example_vkey() -> None:
    v = Verifier.from_vkey(SPEC["vkey"])
    assert v.name == SPEC["key_name"] == "example.com/foo"
    assert v.key_hash == int(SPEC["key_id_hex"], 16) == 0x530D903A
    assert v.key.raw.hex() == SPEC["public_key_hex"]
    assert v.vkey == SPEC["vkey"]
    assert decode_vkey(SPEC["vkey"]) == (
        "example.com/foo",
        1,
        bytes.fromhex(SPEC["public_key_hex"]),
    )
    raw = b"example.com/foo\n\x01" + bytes.fromhex(SPEC["public_key_hex"])
    assert key_hash("example.com/foo", 1, v.key.raw) == int.from_bytes(
        hashlib.sha256(raw).digest()[:4], "big"
    )


def test_spec_example_verifies() -> None:
    opened = open_note(SPEC["note"], [Verifier.from_vkey(SPEC["vkey"])])
    assert SPEC["expect"] == "verifies"
    assert opened.text == SPEC["text"]
    assert [(s.name, s.key_hash) for s in opened.verified] == [("example.com/foo", 0x530D903A)]
    assert opened.unverified == ()


def test_spec_format_example_parses_and_does_not_verify_without_its_key() -> None:
    note = parse_note(UNVERIFIABLE["note"])
    assert note.text == UNVERIFIABLE["expect_text"]
    assert "\n\n" in note.text  # the text's own blank line is not the separator
    (sig,) = note.signatures
    assert sig.name == "quasimodo.example/salvatore"
    assert len(sig.signature) == 64
    assert note.text + "\n" + sig.line == UNVERIFIABLE["note"]
    for verifiers in ([], [PETER], [Verifier.from_vkey(SPEC["vkey"])]):
        with pytest.raises(VerificationError, match=r"^note has no verifiable signatures$"):
            open_note(UNVERIFIABLE["note"], verifiers)


# --- golang/mod sumdb/note ------------------------------------------------------------------


def test_go_signer_key_and_verifier_key_match() -> None:
    s = Signer.from_skey(GO["skey_PeterNeumann"])
    assert (s.name, s.key_hash) == ("PeterNeumann", 0xC74F20A3)
    assert s.verifier() == PETER
    assert s.verifier().vkey == GO["vkey_PeterNeumann"]
    assert ENOCH.key_hash == 0xAF0CFE78


def test_go_sign_reproduces_signed_note_byte_for_byte() -> None:
    """Check 1: Sign(text, PeterNeumann) is deterministic and equals Go's output."""
    assert (
        sign_note(TEXT, [Signer.from_skey(GO["skey_PeterNeumann"])])
        == (GO["signed_by_PeterNeumann"])
    )


def test_go_open_one_known_one_unknown() -> None:
    """Check 2: Open(signed_by_both, [PeterNeumann]) verifies Peter, leaves Enoch unverified."""
    opened = open_note(GO["signed_by_both"], [PETER])
    assert opened.text == TEXT
    assert [(s.name, s.key_hash) for s in opened.verified] == [("PeterNeumann", 0xC74F20A3)]
    assert [(s.name, s.key_hash) for s in opened.unverified] == [("EnochRoot", 0xAF0CFE78)]
    assert opened.verified_by(PETER)
    assert not opened.verified_by(ENOCH)
    assert opened.verified[0].line == PETER_SIG
    assert opened.unverified[0].line == ENOCH_SIG


def test_go_open_both_known() -> None:
    opened = open_note(GO["signed_by_both"], [PETER, ENOCH])
    assert [s.name for s in opened.verified] == ["PeterNeumann", "EnochRoot"]
    assert opened.unverified == ()
    assert opened.verified_by(PETER) and opened.verified_by(ENOCH)


def test_go_open_with_no_verifiers() -> None:
    """Check 3: Open(signed_by_both, []) -> 'note has no verifiable signatures'."""
    with pytest.raises(VerificationError) as info:
        open_note(GO["signed_by_both"], [])
    assert str(info.value) == "note has no verifiable signatures"


def test_go_ambiguous_verifier_list() -> None:
    """Check 4: a list naming EnochRoot twice -> 'ambiguous key EnochRoot+af0cfe78'.

    Go reports this only when it looks up a signature from that key; we refuse the
    list before verifying anything, so a list that Go would accept (the duplicate
    unused) is refused too.
    """
    enoch_note = TEXT + "\n" + ENOCH_SIG
    with pytest.raises(PolicyError) as info:
        open_note(enoch_note, [ENOCH, PETER, ENOCH])
    assert str(info.value) == "ambiguous key EnochRoot+af0cfe78"
    with pytest.raises(PolicyError, match=r"^ambiguous key EnochRoot\+af0cfe78$"):
        open_note(GO["signed_by_PeterNeumann"], [ENOCH, PETER, ENOCH])


def test_go_too_many_signatures() -> None:
    """Check 5: 101 copies of a signature -> malformed note (Go's limit is 100)."""
    with pytest.raises(EncodingError, match=r"^malformed note"):
        open_note(TEXT + "\n" + PETER_SIG * 101, [PETER])
    opened = open_note(TEXT + "\n" + PETER_SIG * 100, [PETER])
    assert opened.verified == (parse_signature_line(PETER_SIG),)
    assert MAX_SIGNATURES == 100


def test_go_corrupted_signature() -> None:
    """Check 6: corrupted PeterNeumann sig -> 'invalid signature for key PeterNeumann+c74f20a3'."""
    bad = TEXT + "\n" + splice(PETER_SIG, 60, "ABCD")
    assert parse_note(bad).signatures[0].key_hash == 0xC74F20A3
    with pytest.raises(VerificationError) as info:
        open_note(bad, [PETER])
    assert str(info.value) == "invalid signature for key PeterNeumann+c74f20a3"


def test_go_duplicated_verified_and_unverified_signatures() -> None:
    enoch_abcd = splice(ENOCH_SIG, 28, "ABCD")
    note = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = open_note(note, [PETER])
    assert [s.line for s in opened.verified] == [PETER_SIG]
    assert [s.line for s in opened.unverified] == [ENOCH_SIG, enoch_abcd]
    # Enoch's corrupted line is a bad signature from a known key once Enoch is known.
    with pytest.raises(VerificationError, match=r"EnochRoot\+af0cfe78"):
        open_note(note, [PETER, ENOCH])


@pytest.mark.parametrize("note", GO["malformed_notes"])
def test_go_malformed_notes(note: str) -> None:
    with pytest.raises(EncodingError, match=r"^malformed note"):
        parse_note(note)
    with pytest.raises(EncodingError, match=r"^malformed note"):
        open_note(note, [PETER])
    with pytest.raises(EncodingError, match=r"^malformed note"):
        open_note(note.encode(), [PETER])


def test_go_malformed_note_invalid_utf8() -> None:
    """The Go case the JSON cannot hold: 0xff followed by a correctly signed note."""
    assert GO["malformed_notes_note"].startswith("the Go test also includes")
    with pytest.raises(EncodingError, match=r"^malformed note: not valid UTF-8$"):
        open_note(b"\xff" + GO["signed_by_PeterNeumann"].encode(), [PETER])
    open_note(GO["signed_by_PeterNeumann"].encode(), [PETER])  # the rest of it is fine


@pytest.mark.parametrize("vkey", GO["bad_vkeys"])
def test_go_bad_vkeys(vkey: str) -> None:
    with pytest.raises(EncodingError):
        Verifier.from_vkey(vkey)
    with pytest.raises(EncodingError):
        decode_vkey(vkey)


def test_go_bad_vkeys_fail_for_the_stated_reason() -> None:
    """The hashes in the vectors are adjusted, so only the length or type is wrong.

    The wrong-length key also ends in non-canonical base64 ("EY==" has unused bits
    set), which Go decodes and we refuse first; with the bits cleared ("EQ==") it
    decodes and is refused for its length.
    """
    wrong_length, unknown_type = GO["bad_vkeys"]
    assert len(base64.b64decode(wrong_length.split("+", 2)[2])) == 1 + 32 + 4
    with pytest.raises(EncodingError, match=r"^malformed verifier key$"):
        decode_vkey(wrong_length)
    with pytest.raises(EncodingError, match="wrong key length"):
        decode_vkey(wrong_length.replace("EY==", "EQ=="))
    with pytest.raises(EncodingError, match="unsupported verifier key type"):
        decode_vkey(unknown_type)


def test_go_every_substring_and_every_incremented_byte_of_a_vkey_is_refused() -> None:
    """As Go's TestNewVerifier: no proper substring and no single-byte increment parses."""
    vkey = GO["vkey_PeterNeumann"]
    assert Verifier.from_vkey(vkey) == PETER
    refused = 0
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(EncodingError):
                    Verifier.from_vkey(vkey[i:j])
                refused += 1
    for i in range(len(vkey)):
        changed = vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :]
        with pytest.raises(EncodingError):
            Verifier.from_vkey(changed)
        refused += 1
    assert refused == (len(vkey) + 1) * len(vkey) // 2 - 1 + len(vkey)


# --- vkeys, skeys, names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "+",
        "++",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a3+",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # uppercase hex
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+0c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW\n",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        " PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        # the same key with its signature type changed to 0x04: a cosignature key
        encode_vkey("PeterNeumann", 0x04, PETER.key.raw),
        # an all-zero key (not a valid point) with a correct hash
        encode_vkey("zero", 0x01, bytes(32)),
        # a small-order point (the identity) with a correct hash
        encode_vkey("identity", 0x01, bytes([1]) + bytes(31)),
    ],
)
def test_malformed_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(EncodingError) as info:
        Verifier.from_vkey(vkey)
    assert "ARpc" not in str(info.value)


def test_vkey_hash_is_checked() -> None:
    name, rest = GO["vkey_PeterNeumann"].split("+", 1)
    with pytest.raises(EncodingError, match=r"^verifier key hash does not match the key$"):
        Verifier.from_vkey("PeterNeumann+00000000+" + rest.split("+", 1)[1])
    with pytest.raises(EncodingError, match=r"^verifier key hash does not match the key$"):
        Verifier.from_vkey("PeterNeumanN+" + rest)
    assert name == "PeterNeumann"


@pytest.mark.parametrize(
    "skey",
    [
        "",
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
        "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEZ+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF",
        "PRIVATE+KEY+Peter Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    ],
)
def test_malformed_skeys_are_refused_without_echoing_the_key(skey: str) -> None:
    with pytest.raises(EncodingError) as info:
        Signer.from_skey(skey)
    assert "AYEK" not in str(info.value)
    assert "FALV" not in str(info.value)


def test_signer_repr_redacts_the_key() -> None:
    s = Signer.from_skey(GO["skey_PeterNeumann"])
    assert repr(s) == "Signer(PeterNeumann+c74f20a3, <key redacted>)"
    assert repr(PETER) == "Verifier(PeterNeumann+c74f20a3)"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("example.com/foo", True),
        ("été", True),
        ("", False),
        ("a b", False),
        ("a+b", False),
        ("a\tb", False),
        ("a\u00a0b", False),  # no-break space
        ("a\u2028b", False),  # line separator
        ("a\u3000b", False),  # ideographic space
        ("a\x00b", False),
        ("a\x1fb", False),
        ("a\ud800b", False),
        ("a\u200bb", True),  # zero-width space is not a Unicode space (Go agrees)
    ],
)
def test_key_names(name: str, valid: bool) -> None:
    assert is_valid_key_name(name) is valid
    key = SigningKey.from_seed(bytes(32))
    if valid:
        Signer(name, key)
    else:
        with pytest.raises(ValueError, match="invalid key name"):
            Signer(name, key)


def test_constructors_check_key_types() -> None:
    with pytest.raises(TypeError):
        Signer("a", bytes(32))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Verifier("a", PETER.key.raw)  # type: ignore[arg-type]
    with pytest.raises(EncodingError, match="not a valid Ed25519 public key"):
        Verifier("a", PublicKey.from_bytes(bytes(32)))


# --- parsing details ------------------------------------------------------------------------

PETER_B64 = PETER_SIG.split(" ")[2].rstrip("\n")


@pytest.mark.parametrize(
    "note",
    [
        TEXT + "\n" + "\u2014 PeterNeumann\n",  # no signature
        TEXT + "\n" + "\u2014 PeterNeumann \n",  # empty signature
        TEXT + "\n" + "\u2014 PeterNeumann  " + PETER_B64 + "\n",  # two spaces
        TEXT + "\n" + "\u2014  PeterNeumann " + PETER_B64 + "\n",  # empty name
        TEXT + "\n" + "\u2014 Peter+Neumann " + PETER_B64 + "\n",
        TEXT + "\n" + "- PeterNeumann " + PETER_B64 + "\n",  # hyphen, not em dash
        TEXT + "\n" + "\u2013 PeterNeumann " + PETER_B64 + "\n",  # en dash
        TEXT + "\n" + "\u2014PeterNeumann " + PETER_B64 + "\n",
        TEXT + "\n" + "\u2014 PeterNeumann " + PETER_B64.rstrip("=") + "\n",  # no padding
        TEXT + "\n" + "\u2014 PeterNeumann " + PETER_B64[:-2] + "N=\n",  # unused bits set
        TEXT + "\n" + "\u2014 PeterNeumann " + PETER_B64.replace("/", "_") + "\n",  # base64url
        TEXT + "\n" + "\u2014 PeterNeumann " + PETER_B64 + " \n",  # trailing space
        TEXT + "\n" + "\u2014 PeterNeumann " + PETER_B64 + "\r\n",  # CRLF
        TEXT + "\n" + "\u2014 PeterNeumann AAAAAA==\n",  # 4 bytes: a key hash, no signature
        TEXT + "\n" + PETER_SIG + "\n",  # ends with a blank line
        TEXT.replace("\n", "\r\n") + "\r\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG[:-1],
        TEXT[:-1] + "\t\n\n" + PETER_SIG,
        "",
        "\n",
        "\n\n",
    ],
)
def test_malformed_signature_blocks(note: str) -> None:
    with pytest.raises(EncodingError, match=r"^malformed note"):
        open_note(note, [PETER])


def test_non_canonical_base64_is_refused_although_it_decodes_to_a_valid_signature() -> None:
    """Go accepts non-zero unused bits; we do not: one signed note, one encoding."""
    changed = PETER_B64[:-2] + chr(ord(PETER_B64[-2]) + 1) + "="
    assert base64.b64decode(changed) == base64.b64decode(PETER_B64)
    with pytest.raises(EncodingError, match=r"^malformed note: invalid signature encoding$"):
        open_note(TEXT + "\n\u2014 PeterNeumann " + changed + "\n", [PETER])


def test_minimal_note_text_is_one_newline() -> None:
    s = signer("n", 1)
    note = sign_note("\n", [s])
    assert note.startswith("\n\n\u2014 n ")
    assert open_note(note, [s.verifier()]).text == "\n"


def test_text_may_contain_blank_lines_and_signature_like_lines() -> None:
    s = signer("n", 1)
    text = "a\n\n\u2014 n AAAAAAA=\n\nb\n"
    opened = open_note(sign_note(text, [s]), [s.verifier()])
    assert opened.text == text


def test_size_limits_are_keyword_parameters() -> None:
    note = GO["signed_by_both"]
    size = len(note.encode())
    assert parse_note(note, max_bytes=size).text == TEXT
    for given_note in (note, note.encode()):
        with pytest.raises(EncodingError, match=f"^malformed note: larger than {size - 1} bytes$"):
            parse_note(given_note, max_bytes=size - 1)
    with pytest.raises(EncodingError, match="more than 1 signatures"):
        open_note(note, [PETER], max_signatures=1)
    assert len(open_note(note, [PETER], max_signatures=2).verified) == 1
    # a string shorter than the limit in characters but not in UTF-8 bytes
    wide = "\u00e9" * 80 + "\n\n" + PETER_SIG
    assert len(wide) < 200 < len(wide.encode())
    with pytest.raises(EncodingError, match="larger than 200 bytes"):
        parse_note(wide, max_bytes=200)


def test_huge_hostile_note_is_refused_with_a_short_message() -> None:
    hostile = "A" * (MAX_NOTE_BYTES + 1)
    with pytest.raises(EncodingError) as info:
        open_note(hostile, [PETER])
    assert len(str(info.value)) < 100
    with pytest.raises(EncodingError) as info:
        open_note("A" * 100_000 + "\n\n\u2014 x " + "!" * 100_000 + "\n", [PETER])
    assert len(str(info.value)) < 100
    assert "AAAA" not in str(info.value)
    with pytest.raises(VerificationError) as vinfo:  # well-formed, 75 kB from an unknown key
        open_note("A" * 100_000 + "\n\n\u2014 x " + "A" * 100_000 + "\n", [PETER])
    assert str(vinfo.value) == "note has no verifiable signatures"


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(EncodingError, match="not valid Unicode"):
        parse_note("\ud800" + GO["signed_by_PeterNeumann"])
    with pytest.raises(ValueError, match="not valid Unicode"):
        sign_note("\udfff\n", [signer("n", 1)])


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_note(bytearray(b"x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        decode_vkey(b"x")  # type: ignore[arg-type]


def test_signature_fields_are_checked() -> None:
    for fields in (("a b", 1, b"x"), ("a", -1, b"x"), ("a", 2**32, b"x"), ("a", 1, b"")):
        with pytest.raises(ValueError, match=r"key name|key_hash|signature"):
            Signature(*fields)  # type: ignore[arg-type]


def test_parse_signature_line() -> None:
    sig = parse_signature_line(PETER_SIG)
    assert sig == Signature("PeterNeumann", KeyHash(0xC74F20A3), sig.signature)
    assert len(sig.signature) == 64
    assert sig.line == PETER_SIG
    for bad in (PETER_SIG[:-1], PETER_SIG + PETER_SIG, "\n", PETER_SIG.replace("\u2014", "-")):
        with pytest.raises(EncodingError):
            parse_signature_line(bad)


# --- opening: attacks ---------------------------------------------------------------------


def test_signature_from_a_known_name_with_another_key_hash_is_ignored() -> None:
    """The spec: ignore unknown keys even if they share a name or a key hash (not both)."""
    impostor = Signer("PeterNeumann", SigningKey.from_seed(bytes(range(32))))
    assert impostor.key_hash != PETER.key_hash
    note = sign_note(TEXT, [impostor])
    with pytest.raises(VerificationError, match=r"^note has no verifiable signatures$"):
        open_note(note, [PETER])
    both = add_signature_lines(note, [PETER_SIG])
    opened = open_note(both, [PETER])
    assert [s.key_hash for s in opened.verified] == [PETER.key_hash]
    assert [s.key_hash for s in opened.unverified] == [impostor.key_hash]


def test_signature_with_a_known_key_hash_under_another_name_is_ignored() -> None:
    relabelled = PETER_SIG.replace("PeterNeumann", "PeterNeumann2")
    with pytest.raises(VerificationError, match=r"^note has no verifiable signatures$"):
        open_note(TEXT + "\n" + relabelled, [PETER])


def test_signature_copied_onto_another_text_fails() -> None:
    with pytest.raises(VerificationError, match=r"^invalid signature for key PeterNeumann"):
        open_note("Something else.\n\n" + PETER_SIG, [PETER])


def test_a_bad_known_signature_rejects_the_note_even_if_another_verifies() -> None:
    bad = splice(ENOCH_SIG, 28, "ABCD")
    with pytest.raises(VerificationError, match=r"^invalid signature for key EnochRoot"):
        open_note(TEXT + "\n" + PETER_SIG + bad, [PETER, ENOCH])


def test_a_second_different_line_from_a_known_key_is_verified_not_skipped() -> None:
    """Go skips every line after the first from the same key; a bad second line passes there."""
    bad = splice(PETER_SIG, 60, "ABCD")
    with pytest.raises(VerificationError, match=r"^invalid signature for key PeterNeumann"):
        open_note(TEXT + "\n" + PETER_SIG + bad, [PETER])


def test_note_key_cannot_verify_a_cosignature_key_line() -> None:
    """A type 0x01 key and a type 0x04 key with the same name and key have different hashes."""
    cosig_vkey = encode_vkey("PeterNeumann", 0x04, PETER.key.raw)
    assert cosig_vkey.split("+")[1] != f"{PETER.key_hash:08x}"


# --- signing ------------------------------------------------------------------------------


def test_sign_with_several_signers_keeps_their_order() -> None:
    a, b = signer("a.example/1", 1), signer("b.example/2", 2)
    note = sign_note("hello\n", [a, b])
    assert [s.name for s in parse_note(note).signatures] == ["a.example/1", "b.example/2"]
    assert open_note(note, [b.verifier(), a.verifier()]).text == "hello\n"


@pytest.mark.parametrize("text", ["", "no newline", "tab\there\n", "cr\r\n", "nul\x00\n"])
def test_sign_refuses_invalid_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"^note text"):
        sign_note(text, [signer("n", 1)])


def test_sign_refuses_bad_signer_lists() -> None:
    s = signer("n", 1)
    with pytest.raises(ValueError, match="signers"):
        sign_note("x\n", [])
    with pytest.raises(ValueError, match="given twice"):
        sign_note("x\n", [s, signer("n", 1)])
    with pytest.raises(TypeError):
        sign_note("x\n", [s.verifier()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="signers"):
        sign_note("x\n", [signer(f"n{i}", i) for i in range(MAX_SIGNATURES + 1)])
    with pytest.raises(ValueError, match="larger than"):
        sign_note("x" * MAX_NOTE_BYTES + "\n", [s])


def test_add_signature_lines_appends_and_replaces_like_go_sign() -> None:
    peter_only = GO["signed_by_PeterNeumann"]
    assert add_signature_lines(peter_only, [ENOCH_SIG]) == GO["signed_by_both"]
    assert add_signature_lines(GO["signed_by_both"], [PETER_SIG]) == (
        TEXT + "\n" + ENOCH_SIG + PETER_SIG
    )
    with pytest.raises(EncodingError):
        add_signature_lines(peter_only, [ENOCH_SIG, ENOCH_SIG])
    with pytest.raises(EncodingError):
        add_signature_lines(peter_only, [ENOCH_SIG.rstrip("\n")])
    with pytest.raises(EncodingError):
        add_signature_lines(TEXT, [ENOCH_SIG])
    full = sign_note(TEXT, [signer(f"k{i}", i) for i in range(MAX_SIGNATURES)])
    with pytest.raises(EncodingError, match="more than 100 signatures"):
        add_signature_lines(full, [ENOCH_SIG])


# --- properties ---------------------------------------------------------------------------

_TEXT_CHARS = st.characters(
    codec="utf-8", exclude_characters=[chr(i) for i in range(32) if i != 10]
)
note_texts = st.text(_TEXT_CHARS, max_size=200).map(lambda t: t + "\n")
key_names = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), exclude_characters="+"),
    min_size=1,
    max_size=30,
).filter(is_valid_key_name)


@settings(max_examples=150, deadline=None)
@given(text=note_texts, names=st.lists(key_names, min_size=1, max_size=4, unique=True))
@example(text="\n", names=["a"])
@example(text="\n\n\n", names=["a"])
@example(text="\u2014 a AAAA\n", names=["a"])
def test_sign_then_open_round_trip(text: str, names: list[str]) -> None:
    signers = [signer(name, i) for i, name in enumerate(names)]
    note = sign_note(text, signers)
    parsed = parse_note(note)
    assert parsed.text == text
    assert [(s.name, s.key_hash) for s in parsed.signatures] == [
        (s.name, s.key_hash) for s in signers
    ]
    assert parsed.text + "\n" + "".join(s.line for s in parsed.signatures) == note
    for known in (signers, signers[:1], signers[-1:]):
        opened = open_note(note.encode(), [s.verifier() for s in known])
        assert opened.text == text
        assert all(opened.verified_by(s.verifier()) for s in known)
        assert len(opened.verified) == len(known)
        assert len(opened.unverified) == len(signers) - len(known)


@settings(max_examples=100, deadline=None)
@given(name=key_names, seed=st.binary(min_size=32, max_size=32))
def test_vkey_round_trip(name: str, seed: bytes) -> None:
    v = Signer(name, SigningKey.from_seed(seed)).verifier()
    assert Verifier.from_vkey(v.vkey) == v
    assert decode_vkey(v.vkey) == (name, 1, v.key.raw)


def _regions(note: bytes) -> list[tuple[int, int, str]]:
    """(start, end, kind) byte ranges: the text with the blank line, then each signature line."""
    split = note.rfind(b"\n\n") + 2
    regions = [(0, split, "text")]
    start = split
    while start < len(note):
        end = note.index(b"\n", start) + 1
        regions.append((start, end, "line"))
        start = end
    return regions


KNOWN_A, KNOWN_B, UNKNOWN = signer("a.example/log", 1), signer("b.example/w", 2), signer("c", 3)


def _check_mutation(note: bytes, mutated: bytes, verifiers: list[Verifier]) -> None:
    """The single-change property.

    Let ``note`` verify with result R. After one byte changes at offset i:
    * i in the text or the blank line: opening raises (EncodingError or VerificationError);
    * i in a line from a known key: opening raises, or returns R's text with that key
      missing from the verified lines (the line now names an unknown key);
    * i in a line from an unknown key: opening raises EncodingError, or returns exactly R.
    So no change ever yields a different verified text or an extra verified signature.
    """
    original = open_note(note, verifiers)
    index = next(i for i, (x, y) in enumerate(zip(note, mutated, strict=True)) if x != y)
    regions = _regions(note)
    start, end, kind = next(r for r in regions if r[0] <= index < r[1])
    line_sig = None if kind == "text" else parse_signature_line(note[start:end].decode())
    error: CryptoError | None = None
    try:
        result = open_note(mutated, verifiers)
    except (EncodingError, VerificationError) as e:
        error = e
    if error is not None:
        if line_sig is not None and line_sig in original.unverified:
            assert isinstance(error, EncodingError)
        return
    assert kind == "line" and line_sig is not None
    assert result.text == original.text
    if line_sig in original.unverified:
        assert (result.text, result.verified) == (original.text, original.verified)
    else:
        assert set(result.verified) == set(original.verified) - {line_sig}


def _cosigned_fixture() -> tuple[bytes, list[Verifier]]:
    text = "example.org/log\n42\n" + base64.b64encode(bytes(range(32))).decode() + "\n"
    note = sign_note(text, [KNOWN_A, UNKNOWN, KNOWN_B])
    return note.encode(), [KNOWN_A.verifier(), KNOWN_B.verifier()]


def test_every_single_byte_change_is_rejected_or_harmless_exhaustive() -> None:
    note, verifiers = _cosigned_fixture()
    for i in range(len(note)):
        for delta in (0x01, 0x20, 0x80, 0xFF):
            mutated = note[:i] + bytes([note[i] ^ delta]) + note[i + 1 :]
            _check_mutation(note, mutated, verifiers)


def test_every_single_byte_change_with_one_known_signer_is_rejected() -> None:
    note = sign_note(TEXT, [Signer.from_skey(GO["skey_PeterNeumann"])]).encode()
    for i in range(len(note)):
        for delta in (0x01, 0x02, 0x40, 0x80):
            mutated = note[:i] + bytes([note[i] ^ delta]) + note[i + 1 :]
            with pytest.raises((EncodingError, VerificationError)):
                open_note(mutated, [PETER])


@settings(max_examples=300, deadline=None)
@given(data=st.data(), text=note_texts)
def test_any_single_byte_change_is_rejected_or_harmless(data: st.DataObject, text: str) -> None:
    note = sign_note(text, [KNOWN_A, UNKNOWN, KNOWN_B]).encode()
    verifiers = [KNOWN_A.verifier(), KNOWN_B.verifier()]
    index = data.draw(st.integers(0, len(note) - 1), label="index")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != note[index]), label="value")
    _check_mutation(note, note[:index] + bytes([value]) + note[index + 1 :], verifiers)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_truncation_or_insertion_is_rejected(data: st.DataObject) -> None:
    note = GO["signed_by_PeterNeumann"].encode()
    cut = data.draw(st.integers(0, len(note) - 1))
    inserted = data.draw(st.binary(min_size=1, max_size=3))
    for changed in (note[:cut], note[:cut] + inserted + note[cut:]):
        with pytest.raises(CryptoError):
            open_note(changed, [PETER])
