"""The compact's cryptography: pure functions and small typed values (docs/crypto.md).

Keys and key ids, DSSE envelopes, RFC 9162 Merkle trees, C2SP checkpoints and
cosignatures, RFC 9497 OPRF and its threshold form, bundle sealing, and the
node's keystore, field and blob encryption and TLS certificates. Only this
package touches PyNaCl, pysodium (through ``crypto.ristretto``) and
``cryptography.hazmat``, and within it only the recipe modules do
(tests/test_crypto_layering.py). No database, no logging, no imports from the
``node`` or ``federation`` packages. Every error it raises on purpose derives
from :class:`crypto.errors.CryptoError`.
"""
