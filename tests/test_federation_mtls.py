"""Pinned mutual TLS over a real grpc.aio server on 127.0.0.1: members in, everyone else out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from crypto import signing, x25519
from crypto.tls import certificate_fingerprint, generate_tls_key, self_signed_certificate
from federation.errors import FederationError
from federation.mtls import (
    PeerRefusedError,
    authorize_peer,
    channel_credentials,
    check_certificates,
    server_credentials,
)
from federation.roster import Member, Roster

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
METHOD = "/compact.test.Who/Who"


@dataclass
class Party:
    state: str
    key_pem: bytes
    cert_pem: bytes

    def member(self) -> Member:
        return Member(
            self.state,
            "127.0.0.1:1",
            certificate_fingerprint(self.cert_pem),
            signing.SigningKey.generate().public_key,
            x25519.PrivateKey.generate().public_key,
        )


def party(state: str) -> Party:
    key = generate_tls_key()
    cert = self_signed_certificate(
        key, common_name=f"compact {state}", hosts=["127.0.0.1", "localhost"]
    )
    return Party(state, key, cert)


IL, MN, CA, TX = party("IL"), party("MN"), party("CA"), party("TX")


def make_roster(version: int, parties: list[Party], expires: datetime) -> Roster:
    members = tuple(sorted((p.member() for p in parties), key=lambda m: m.state))
    return Roster(version=version, expires=expires, threshold=1, members=members)


@dataclass
class Holder:
    roster: Roster
    now: datetime = NOW
    port: int = 0
    ready: threading.Event = field(default_factory=threading.Event)
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None


async def _serve(holder: Holder, trusted: list[bytes]) -> None:
    async def who(_request: bytes, context: Any) -> bytes:
        try:
            member = authorize_peer(context, holder.roster, now=holder.now)
        except PeerRefusedError as e:
            await context.abort(e.code, str(e))
        return member.state.encode()

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "compact.test.Who", {"Who": grpc.unary_unary_rpc_method_handler(who)}
            )
        ]
    )
    holder.port = server.add_secure_port(
        "127.0.0.1:0", server_credentials(IL.key_pem, IL.cert_pem, trusted)
    )
    await server.start()
    holder.stop = asyncio.Event()
    holder.loop = asyncio.get_running_loop()
    holder.ready.set()
    await holder.stop.wait()
    await server.stop(None)


@pytest.fixture
def server() -> Iterator[Holder]:
    # The server's certificate store still holds CA's certificate (CA may have left the roster).
    holder = Holder(make_roster(1, [IL, MN, CA], NOW + timedelta(days=30)))
    trusted = [IL.cert_pem, MN.cert_pem, CA.cert_pem]
    thread = threading.Thread(target=lambda: asyncio.run(_serve(holder, trusted)), daemon=True)
    thread.start()
    assert holder.ready.wait(10)
    yield holder
    assert holder.loop is not None and holder.stop is not None
    holder.loop.call_soon_threadsafe(holder.stop.set)
    thread.join(10)


def call(holder: Holder, creds: grpc.ChannelCredentials) -> bytes:
    with grpc.secure_channel(f"127.0.0.1:{holder.port}", creds) as channel:
        who: Any = channel.unary_unary(METHOD)  # raw bytes in and out: no message types
        result: bytes = who(b"", timeout=5)
        return result


def as_client(p: Party, server_cert: bytes = IL.cert_pem) -> grpc.ChannelCredentials:
    return channel_credentials(p.key_pem, p.cert_pem, server_cert)


def test_a_member_is_recognised(server: Holder) -> None:
    assert call(server, as_client(MN)) == b"MN"
    assert call(server, as_client(CA)) == b"CA"


def test_unknown_client_fails_the_handshake(server: Holder) -> None:
    with pytest.raises(grpc.RpcError) as e:
        call(server, as_client(TX))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_without_a_certificate(server: Holder) -> None:
    with pytest.raises(grpc.RpcError) as e:
        call(server, grpc.ssl_channel_credentials(root_certificates=IL.cert_pem))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_revoked_member_with_a_still_trusted_certificate(server: Holder) -> None:
    server.roster = make_roster(2, [IL, MN], NOW + timedelta(days=30))
    with pytest.raises(grpc.RpcError) as e:
        call(server, as_client(CA))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not pinned in roster version 2" in (e.value.details() or "")


def test_expired_roster_refuses_everyone(server: Holder) -> None:
    server.now = NOW + timedelta(days=31)
    with pytest.raises(grpc.RpcError) as e:
        call(server, as_client(MN))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "expired" in (e.value.details() or "")


def test_tls_pin_mismatch_on_the_client_side(server: Holder) -> None:
    """A client that expects another certificate for this endpoint refuses the server."""
    with pytest.raises(grpc.RpcError) as e:
        call(server, as_client(MN, server_cert=CA.cert_pem))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_certificates_must_match_the_roster_pins() -> None:
    roster = make_roster(1, [IL, MN], NOW + timedelta(days=1))
    assert check_certificates(roster, [MN.cert_pem, IL.cert_pem, TX.cert_pem]) == {
        "IL": IL.cert_pem,
        "MN": MN.cert_pem,
    }
    with pytest.raises(FederationError, match="MN"):
        check_certificates(roster, [IL.cert_pem, TX.cert_pem])
