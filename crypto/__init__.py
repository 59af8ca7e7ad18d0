"""Cryptography of a compact node: keystore, field and blob encryption, TLS.

Only this package touches PyNaCl and ``cryptography.hazmat``. Its modules are
pure functions and small types: no database, no logging, no imports from the
``node`` or ``federation`` packages. Every error it raises on purpose derives
from :class:`crypto.errors.CryptoError`.
"""
