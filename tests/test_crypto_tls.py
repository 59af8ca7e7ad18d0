"""crypto.tls: the key, the self-signed certificate, its fingerprint, and a real gRPC handshake."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import grpc
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.tls import (
    BACKDATE,
    certificate_fingerprint,
    generate_tls_key,
    load_tls_key,
    self_signed_certificate,
)

NOW = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
HOSTS = ["node.il.example", "LOCALHOST", "127.0.0.1", "::1", "10.0.0.7", "*.il.example"]


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return generate_tls_key()


@pytest.fixture(scope="module")
def cert_pem(key_pem: bytes) -> bytes:
    return self_signed_certificate(key_pem, common_name="compact node IL", hosts=HOSTS, now=NOW)


@pytest.fixture(scope="module")
def cert(cert_pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert_pem)


def pem_of(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# --- the key -------------------------------------------------------------------------------


def test_generated_key_is_unencrypted_pkcs8_p256(key_pem: bytes) -> None:
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert generate_tls_key() != key_pem


@pytest.mark.parametrize(
    ("make_pem", "message"),
    [
        pytest.param(lambda: pem_of(ec.generate_private_key(ec.SECP384R1())), "P-256", id="P-384"),
        pytest.param(
            lambda: pem_of(ed25519.Ed25519PrivateKey.generate()), "not an ECDSA", id="Ed25519"
        ),
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            ),
            "unencrypted",
            id="encrypted",
        ),
        pytest.param(lambda: b"-----BEGIN PRIVATE KEY-----\nAAAA\n", "unencrypted", id="garbage"),
        pytest.param(lambda: b"", "unencrypted", id="empty"),
    ],
)
def test_other_keys_are_refused(make_pem: Callable[[], bytes], message: str) -> None:
    pem = make_pem()
    with pytest.raises(ValueError, match=message) as info:
        load_tls_key(pem)
    assert info.value.__context__ is None
    with pytest.raises(ValueError, match=message):
        self_signed_certificate(pem, common_name="x", hosts=["localhost"])


def test_load_tls_key_returns_the_key(key_pem: bytes) -> None:
    key = load_tls_key(key_pem)
    assert pem_of(key) == key_pem


# --- the certificate -------------------------------------------------------------------------


def test_certificate_parses_as_v3_pem(cert_pem: bytes, cert: x509.Certificate) -> None:
    assert cert_pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert cert.version is x509.Version.v3
    assert x509.load_der_x509_certificate(cert.public_bytes(serialization.Encoding.DER)) == cert


def test_subject_and_issuer(cert: x509.Certificate) -> None:
    expected = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "compact node IL")])
    assert cert.subject == expected
    assert cert.issuer == expected


def test_subject_alternative_names(cert: x509.Certificate) -> None:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == [
        "node.il.example",
        "localhost",
        "*.il.example",
    ]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.0.0.7"),
    ]


def test_duplicate_hosts_are_listed_once(key_pem: bytes) -> None:
    pem = self_signed_certificate(
        key_pem,
        common_name="x",
        hosts=["localhost", "LocalHost.", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1"],
    )
    san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert len(san.value) == 3


def test_ca_and_key_usage_extensions(cert: x509.Certificate) -> None:
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca is True
    assert bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert ku.value.key_cert_sign
    assert not ku.value.key_encipherment
    assert not ku.value.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier == ski.value.digest


def test_self_signed_with_the_key(key_pem: bytes, cert: x509.Certificate) -> None:
    key = load_tls_key(key_pem)
    assert cert.public_key() == key.public_key()
    assert cert.signature_hash_algorithm is not None
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    cert.verify_directly_issued_by(cert)
    other = x509.load_pem_x509_certificate(
        self_signed_certificate(generate_tls_key(), common_name="compact node IL", hosts=HOSTS)
    )
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(other)


def test_validity_period(cert: x509.Certificate) -> None:
    start = NOW.replace(microsecond=0)
    assert cert.not_valid_before_utc == start - BACKDATE
    assert cert.not_valid_after_utc == start + timedelta(days=825)


def test_validity_with_other_timezone_and_days(key_pem: bytes) -> None:
    now = datetime(2026, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5)))
    pem = self_signed_certificate(
        key_pem, common_name="x", hosts=["a.example"], now=now, valid_days=1
    )
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.not_valid_after_utc == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_default_now_is_current_time(key_pem: bytes) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    cert = x509.load_pem_x509_certificate(
        self_signed_certificate(key_pem, common_name="x", hosts=["localhost"])
    )
    after = datetime.now(UTC)
    assert before - BACKDATE <= cert.not_valid_before_utc <= after - BACKDATE


def test_serial_numbers_are_random_and_positive(key_pem: bytes) -> None:
    serials = {
        x509.load_pem_x509_certificate(
            self_signed_certificate(key_pem, common_name="x", hosts=["localhost"], now=NOW)
        ).serial_number
        for _ in range(5)
    }
    assert len(serials) == 5
    assert all(0 < s < 2**159 for s in serials)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"hosts": []}, ValueError),
        ({"hosts": "localhost"}, TypeError),
        ({"hosts": [b"localhost"]}, TypeError),
        ({"hosts": ["bad host"]}, ValueError),
        ({"hosts": ["[::1]"]}, ValueError),
        ({"hosts": ["-bad.example"]}, ValueError),
        ({"hosts": ["a" * 64 + ".example"]}, ValueError),
        ({"hosts": ["fe80::1%eth0"]}, ValueError),
        ({"hosts": [""]}, ValueError),
        ({"hosts": ["münchen.example"]}, ValueError),
        ({"common_name": ""}, ValueError),
        ({"common_name": "x" * 65}, ValueError),
        ({"valid_days": 0}, ValueError),
        ({"valid_days": 3651}, ValueError),
        ({"valid_days": True}, ValueError),
        ({"now": datetime(2026, 1, 1)}, ValueError),  # naive on purpose
    ],
)
def test_bad_arguments(key_pem: bytes, kwargs: dict[str, object], error: type[Exception]) -> None:
    args: dict[str, object] = {"common_name": "x", "hosts": ["localhost"], **kwargs}
    with pytest.raises(error):
        self_signed_certificate(key_pem, **args)  # type: ignore[arg-type]


# --- fingerprints -----------------------------------------------------------------------------


def test_fingerprint(cert_pem: bytes, cert: x509.Certificate) -> None:
    fingerprint = certificate_fingerprint(cert_pem)
    assert fingerprint == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert len(fingerprint) == 64
    assert fingerprint == fingerprint.lower()


def test_fingerprints_differ_between_certificates(key_pem: bytes, cert_pem: bytes) -> None:
    again = self_signed_certificate(key_pem, common_name="compact node IL", hosts=HOSTS, now=NOW)
    assert certificate_fingerprint(again) != certificate_fingerprint(cert_pem)


def test_fingerprint_needs_exactly_one_certificate(cert_pem: bytes) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        certificate_fingerprint(cert_pem + cert_pem)
    with pytest.raises(ValueError, match="exactly one"):
        certificate_fingerprint(b"not a certificate")
    with pytest.raises(TypeError):
        certificate_fingerprint(cert_pem.decode())  # type: ignore[arg-type]


# --- gRPC: the certificate works as its own pinned root, both ways --------------------


@dataclass(frozen=True)
class Node:
    key_pem: bytes
    cert_pem: bytes


def make_node(hosts: list[str]) -> Node:
    key = generate_tls_key()
    return Node(key, self_signed_certificate(key, common_name="compact node", hosts=hosts))


@pytest.fixture(scope="module")
def server_node() -> Node:
    return make_node(["node.il.example", "127.0.0.1"])


@pytest.fixture(scope="module")
def client_node() -> Node:
    return make_node(["node.mn.example"])


@pytest.fixture(scope="module")
def grpc_port(server_node: Node, client_node: Node) -> Iterator[int]:
    """A mutual-TLS gRPC server that pins the client node's certificate as its only root."""

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(server_node.key_pem, server_node.cert_pem)],
        root_certificates=client_node.cert_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


def call(port: int, *, pinned: bytes, client: Node, name: str | None = None) -> bytes:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pinned, private_key=client.key_pem, certificate_chain=client.cert_pem
    )
    options = [("grpc.ssl_target_name_override", name)] if name else []
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        echo: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Echo/Echo")
        reply = echo(b"ping", timeout=10)
        assert isinstance(reply, bytes)
        return reply


def test_grpc_mutual_tls_by_ip_address(
    grpc_port: int, server_node: Node, client_node: Node
) -> None:
    assert call(grpc_port, pinned=server_node.cert_pem, client=client_node) == b"ping"


def test_grpc_mutual_tls_by_dns_name(grpc_port: int, server_node: Node, client_node: Node) -> None:
    reply = call(grpc_port, pinned=server_node.cert_pem, client=client_node, name="node.il.example")
    assert reply == b"ping"


def test_grpc_refuses_a_name_not_in_the_certificate(
    grpc_port: int, server_node: Node, client_node: Node
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(grpc_port, pinned=server_node.cert_pem, client=client_node, name="node.mn.example")
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


def test_grpc_refuses_a_server_not_pinned(grpc_port: int, client_node: Node) -> None:
    impostor = make_node(["node.il.example", "127.0.0.1"])
    with pytest.raises(grpc.RpcError) as info:
        call(grpc_port, pinned=impostor.cert_pem, client=client_node)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


def test_grpc_refuses_a_client_not_pinned(grpc_port: int, server_node: Node) -> None:
    stranger = make_node(["node.mn.example"])
    with pytest.raises(grpc.RpcError) as info:
        call(grpc_port, pinned=server_node.cert_pem, client=stranger)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
