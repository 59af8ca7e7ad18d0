"""crypto.fields: round trips, token format, tokens moved or altered fail."""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import DecryptionError
from crypto.fields import TOKEN_OVERHEAD, FieldCipher

DATA_KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CONTEXT = b"incidents.narrative|IL-1234"

cipher = FieldCipher(DATA_KEY)


def assert_fails(token: bytes, context: bytes = CONTEXT, fc: FieldCipher = cipher) -> None:
    with pytest.raises(DecryptionError) as info:
        fc.open(token, context=context)
    assert str(info.value) == "field could not be decrypted"
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


@pytest.mark.parametrize(
    "text",
    ["", "a", "Maria Pérez", "línea 1\nlínea 2\x00", "移民局", "🚓" * 100, "x" * 100_000],
)
def test_round_trip(text: str) -> None:
    token = cipher.seal(text, context=CONTEXT)
    assert cipher.open(token, context=CONTEXT) == text
    assert len(token) == TOKEN_OVERHEAD + len(text.encode("utf-8"))


@given(text=st.text(), context=st.binary(min_size=1, max_size=200))
def test_round_trip_any_text(text: str, context: bytes) -> None:
    assert cipher.open(cipher.seal(text, context=context), context=context) == text


def test_a_new_cipher_with_the_same_key_opens_tokens() -> None:
    token = cipher.seal("Maria Pérez", context=CONTEXT)
    assert FieldCipher(bytes(DATA_KEY)).open(token, context=CONTEXT) == "Maria Pérez"


def test_empty_string_is_sealed() -> None:
    token = cipher.seal("", context=CONTEXT)
    assert len(token) == TOKEN_OVERHEAD == 41
    assert cipher.open(token, context=CONTEXT) == ""
    assert_fails(token, b"incidents.narrative|IL-1235")


def test_token_layout_and_independent_decryption() -> None:
    """Token = 0x01 || nonce || XChaCha20-Poly1305(key = HKDF(data_key, "compact field v1"))."""
    token = cipher.seal("Maria Pérez", context=CONTEXT)
    assert token[0] == 0x01
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"compact field v1").derive(
        DATA_KEY
    )
    plaintext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        token[25:], b"\x01" + CONTEXT, token[1:25], key
    )
    assert plaintext == "Maria Pérez".encode()


def test_the_data_key_itself_is_not_the_field_key() -> None:
    token = cipher.seal("Maria Pérez", context=CONTEXT)
    with pytest.raises(nacl.exceptions.CryptoError):
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            token[25:], b"\x01" + CONTEXT, token[1:25], DATA_KEY
        )


def test_sealing_is_randomized() -> None:
    a = cipher.seal("same", context=CONTEXT)
    b = cipher.seal("same", context=CONTEXT)
    assert a != b
    assert a[1:25] != b[1:25]
    assert cipher.open(a, context=CONTEXT) == cipher.open(b, context=CONTEXT) == "same"


@pytest.mark.parametrize(
    "other_context",
    [
        b"incidents.narrative|IL-1235",  # another row
        b"incidents.address|IL-1234",  # another column
        b"incidents.narrative|IL-1234 ",
        b"incidents.narrative|IL-123",
        b"\x01incidents.narrative|IL-1234",
        b"INCIDENTS.NARRATIVE|IL-1234",
    ],
)
def test_token_moved_to_another_context_fails(other_context: bytes) -> None:
    token = cipher.seal("Maria Pérez", context=CONTEXT)
    assert cipher.open(token, context=CONTEXT) == "Maria Pérez"
    assert_fails(token, other_context)


def test_other_data_key_fails() -> None:
    token = cipher.seal("Maria Pérez", context=CONTEXT)
    assert_fails(token, fc=FieldCipher(OTHER_KEY))


def test_every_flipped_bit_fails() -> None:
    token = cipher.seal("Maria", context=CONTEXT)
    for i in range(len(token)):
        for bit in range(8):
            altered = bytearray(token)
            altered[i] ^= 1 << bit
            assert_fails(bytes(altered))


def test_every_truncation_fails() -> None:
    token = cipher.seal("Maria", context=CONTEXT)
    for n in range(len(token)):
        assert_fails(token[:n])


@pytest.mark.parametrize("suffix", [b"\x00", b"x" * 16])
def test_extension_fails(suffix: bytes) -> None:
    assert_fails(cipher.seal("Maria", context=CONTEXT) + suffix)


@pytest.mark.parametrize("version", [0x00, 0x02, 0xFF])
def test_other_version_byte_fails(version: int) -> None:
    token = cipher.seal("Maria", context=CONTEXT)
    assert_fails(bytes([version]) + token[1:])


def test_token_sealed_as_another_version_fails() -> None:
    """A well-formed token whose AAD names version 2 does not open as version 1."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"compact field v1").derive(
        DATA_KEY
    )
    nonce = bytes(24)
    body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        b"Maria", b"\x02" + CONTEXT, nonce, key
    )
    assert_fails(b"\x01" + nonce + body)
    control = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        b"Maria", b"\x01" + CONTEXT, nonce, key
    )
    assert cipher.open(b"\x01" + nonce + control, context=CONTEXT) == "Maria"


def test_authentic_non_utf8_plaintext_fails() -> None:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"compact field v1").derive(
        DATA_KEY
    )
    nonce = bytes(24)
    body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        b"\xff\xfe", b"\x01" + CONTEXT, nonce, key
    )
    assert_fails(b"\x01" + nonce + body)


def test_caller_mistakes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher(bytes(31))
    with pytest.raises(TypeError):
        FieldCipher("k" * 32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="context"):
        cipher.seal("x", context=b"")
    with pytest.raises(ValueError, match="context"):
        cipher.open(cipher.seal("x", context=CONTEXT), context=b"")
    with pytest.raises(TypeError):
        cipher.seal("x", context="incidents.narrative|IL-1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cipher.seal(b"x", context=CONTEXT)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cipher.open("token", context=CONTEXT)  # type: ignore[arg-type]


def test_unencodable_text_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="UTF-8") as info:
        cipher.seal("secret\ud800name", context=CONTEXT)
    assert "secret" not in str(info.value)
    assert info.value.__context__ is None


def test_repr_shows_no_key() -> None:
    text = repr(cipher)
    assert DATA_KEY.hex() not in text
    assert repr(DATA_KEY) not in text
    assert not hasattr(cipher, "__dict__")
