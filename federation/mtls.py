"""Pinned mutual TLS between member nodes.

gRPC in Python has no certificate-verification callback (grpc/grpc#32635), so
pinning works in two steps:

1. **Handshake.** Each side trusts exactly the TLS certificates of the
   current roster's members (self-signed ECDSA P-256, kept beside the roster,
   each matching its member's `tls_pin`): a server requires a client
   certificate issued by one of them, and a client dials a peer trusting only
   that peer's certificate. Anyone else fails the handshake.
2. **Handler.** `authorize_peer` maps the verified peer certificate to a
   roster member by its SHA-256 pin, and refuses a certificate the roster
   does not pin (a member that left, a stale certificate) and an expired
   roster. It is called at the start of every FederationService handler, so
   the identity is bound inside the handler (STYLE habit 13).

Refusals raise `PeerRefusedError`, which the service maps to UNAUTHENTICATED
(no certificate) or PERMISSION_DENIED (not a member now, roster expired).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import grpc

from crypto.tls import certificate_fingerprint
from federation.errors import FederationError, RosterExpiredError
from federation.roster import Member, Roster, check_in_force


class PeerRefusedError(FederationError):
    """The caller is not a current member; `code` is the gRPC status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_certificates(roster: Roster, certificates: Sequence[bytes]) -> dict[str, bytes]:
    """Members' certificates by state; FederationError unless each matches its member's pin."""
    by_pin = {certificate_fingerprint(pem): pem for pem in certificates}
    out: dict[str, bytes] = {}
    for member in roster.members:
        pem = by_pin.get(member.tls_pin)
        if pem is None:
            raise FederationError(f"no certificate matches the TLS pin of {member.state}")
        out[member.state] = pem
    return out


def server_credentials(
    key_pem: bytes, cert_pem: bytes, member_certificates: Sequence[bytes]
) -> grpc.ServerCredentials:
    """Server side: present our certificate, require a client certificate of a member."""
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=b"".join(member_certificates),
        require_client_auth=True,
    )


def channel_credentials(
    key_pem: bytes, cert_pem: bytes, peer_certificate: bytes
) -> grpc.ChannelCredentials:
    """Client side: trust only the peer's own certificate, present ours."""
    return grpc.ssl_channel_credentials(
        root_certificates=peer_certificate, private_key=key_pem, certificate_chain=cert_pem
    )


def peer_pin(context: Any) -> str | None:
    """The SHA-256 pin of the verified client certificate of this call, if any."""
    auth = context.auth_context() or {}
    certs = auth.get("x509_pem_cert") or []
    if not certs:
        return None
    return certificate_fingerprint(bytes(certs[0]))


def authorize_peer(context: Any, roster: Roster, *, now: datetime) -> Member:
    """The roster member making this call; PeerRefusedError if there is none."""
    try:
        check_in_force(roster, now=now)
    except RosterExpiredError as e:
        raise PeerRefusedError(grpc.StatusCode.PERMISSION_DENIED, str(e)) from None
    pin = peer_pin(context)
    if pin is None:
        raise PeerRefusedError(
            grpc.StatusCode.UNAUTHENTICATED, "a member's client certificate is required"
        )
    member = roster.member_by_pin(pin)
    if member is None or not hmac.compare_digest(member.tls_pin, pin):
        raise PeerRefusedError(
            grpc.StatusCode.PERMISSION_DENIED,
            f"the client certificate is not pinned in roster version {roster.version}",
        )
    return member
