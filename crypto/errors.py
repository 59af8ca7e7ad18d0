"""Errors raised by the ``crypto`` package.

All of them derive from :class:`CryptoError`. None of them derives from
``ValueError``: a generic ``except ValueError`` around unrelated code must not
swallow a failed integrity check by accident. (Plain ``ValueError`` and
``TypeError`` are still raised, for caller mistakes such as a key of the wrong
length, never for bad *untrusted* input.)

Messages never contain key material, passphrases or plaintext, and the
failures of the underlying libraries are not chained to them (they are raised
``from None`` or outside the ``except`` block that saw the failure).
"""

from __future__ import annotations

__all__ = [
    "CryptoError",
    "DecryptionError",
    "EncodingError",
    "KeyFormatError",
    "PolicyError",
    "ThresholdError",
    "VerificationError",
]


class CryptoError(Exception):
    """Root of every error the ``crypto`` package raises on purpose."""


class DecryptionError(CryptoError):
    """Ciphertext could not be opened: wrong key or passphrase, altered or truncated.

    This is the one error for every way authenticated decryption of untrusted
    input can fail; callers must treat all of them alike (the data is not
    usable) and must not try to tell them apart from the message.
    """


class KeyFormatError(CryptoError):
    """A keystore file that is not a well-formed keystore of ours.

    Bad JSON, an unknown format or version, missing or extra fields, fields of
    the wrong type or size, or key-derivation parameters outside the accepted
    bounds.
    """


class VerificationError(CryptoError):
    """A signature or proof did not verify."""


class ThresholdError(VerificationError):
    """Fewer distinct authorised signers (or valid shares) than the threshold requires.

    Raised after every signature or share was checked: the message says how many
    distinct authorised keys verified and how many were required, never which.
    """


class EncodingError(CryptoError):
    """Untrusted input that is not a well-formed encoding of what it claims to be.

    A note, checkpoint or envelope that does not parse; a group element or scalar
    that is not canonical, is the identity, or has the wrong length; a proof of
    the wrong size; a sealed stream whose framing is broken.
    """


class PolicyError(CryptoError):
    """A verification policy that must not be used: it would fail open.

    A threshold below 1 or above the number of keys, duplicate key ids, an empty
    key set. Raised when the policy is built, before anything is verified.
    """
