"""The node's TLS key and its self-signed certificate.

The TLS key is ECDSA P-256, kept as an unencrypted PKCS#8 PEM inside the
sealed keystore (see :mod:`crypto.keystore`). The certificate is self-signed
and marked as a CA (``BasicConstraints CA=true, pathlen=0``) so that a peer can
pin it as the single trusted root for gRPC: the same certificate is both the
server's (and client's) end-entity certificate and the root the other side
trusts. It carries the node's DNS names and IP addresses as subjectAltNames,
``KeyUsage digitalSignature+keyCertSign`` and ``ExtendedKeyUsage
serverAuth+clientAuth``, a random 159-bit serial, and an ECDSA-SHA256
signature.

Its fingerprint (:func:`certificate_fingerprint`) is the lowercase hex SHA-256
of the certificate's DER encoding, the form used to pin it out of band.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "BACKDATE",
    "MAX_VALID_DAYS",
    "certificate_fingerprint",
    "generate_tls_key",
    "load_tls_key",
    "self_signed_certificate",
]

#: The upper bound on ``valid_days`` (ten years).
MAX_VALID_DAYS = 3650
#: notBefore is set this far before ``now`` to tolerate clock skew between nodes.
BACKDATE = timedelta(hours=1)

# A DNS name: LDH labels of 1-63 characters, optionally a leading "*." wildcard.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?")
_MAX_DNS_NAME = 253
_MAX_COMMON_NAME = 64  # ub-common-name, RFC 5280


def generate_tls_key() -> bytes:
    """A new ECDSA P-256 private key as an unencrypted PKCS#8 PEM.

    It is unencrypted because it is stored inside the sealed keystore.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_tls_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM private key, checking that it is ECDSA P-256.

    Raises ``ValueError`` for anything else (not PEM, encrypted, another
    algorithm or curve). The message never contains the key.
    """
    if not isinstance(key_pem, bytes):
        raise TypeError("key_pem must be bytes")
    key: object = None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    # Raised outside the except block: the parser's exception is not chained.
    if key is None:
        raise ValueError("the TLS key is not an unencrypted PEM private key")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the TLS key is not an ECDSA key")
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the TLS key is not on curve P-256")
    return key


def _san_entries(hosts: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hosts, str | bytes):
        raise TypeError("hosts must be a sequence of host names, not a single string")
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in hosts:
        if not isinstance(host, str):
            raise TypeError("every host must be a str")
        entry: x509.GeneralName
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
                raise ValueError(f"a scoped IPv6 address cannot be a certificate name: {host!r}")
            canonical = str(ip)
            entry = x509.IPAddress(ip)
        else:
            if len(host) > _MAX_DNS_NAME or not _DNS_NAME.fullmatch(host):
                raise ValueError(f"not a DNS name or IP address: {host!r}")
            canonical = host.lower().rstrip(".")
            entry = x509.DNSName(canonical)
        if canonical not in seen:
            seen.add(canonical)
            entries.append(entry)
    if not entries:
        raise ValueError("hosts must name at least one DNS name or IP address")
    return entries


def self_signed_certificate(
    key_pem: bytes,
    *,
    common_name: str,
    hosts: Sequence[str],
    valid_days: int = 825,
    now: datetime | None = None,
) -> bytes:
    """A self-signed X.509 v3 certificate (PEM) for the P-256 key ``key_pem``.

    ``hosts``: each entry that parses as an IP address becomes an IPAddress
    subjectAltName, every other entry a DNSName (validated, lowercased;
    duplicates dropped). At least one is required. ``common_name`` becomes the
    subject's and issuer's CN (1 to 64 characters). The certificate is valid
    from ``now - BACKDATE`` to ``now + valid_days`` (``now`` must be
    timezone-aware; default: the current time), ``1 <= valid_days <=
    MAX_VALID_DAYS``.
    """
    key = load_tls_key(key_pem)
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= _MAX_COMMON_NAME:
        raise ValueError(f"common_name must be 1 to {_MAX_COMMON_NAME} characters")
    if (
        isinstance(valid_days, bool)
        or not isinstance(valid_days, int)
        or not 1 <= valid_days <= MAX_VALID_DAYS
    ):
        raise ValueError(f"valid_days must be an integer from 1 to {MAX_VALID_DAYS}")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    now = now.astimezone(UTC).replace(microsecond=0)
    sans = _san_entries(hosts)

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
    )
    cert = builder.sign(private_key=key, algorithm=hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_fingerprint(cert_pem: bytes) -> str:
    """Lowercase hex SHA-256 of the DER encoding of the one certificate in ``cert_pem``.

    Raises ``ValueError`` unless ``cert_pem`` holds exactly one PEM certificate.
    """
    if not isinstance(cert_pem, bytes):
        raise TypeError("cert_pem must be bytes")
    certs: list[x509.Certificate] = []
    with contextlib.suppress(ValueError):
        certs = x509.load_pem_x509_certificates(cert_pem)
    if len(certs) != 1:
        raise ValueError("cert_pem must hold exactly one PEM certificate")
    return hashlib.sha256(certs[0].public_bytes(serialization.Encoding.DER)).hexdigest()
