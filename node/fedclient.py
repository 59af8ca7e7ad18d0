"""A typed FederationService client for one member, over pinned mutual TLS.

`PeerClient` dials the member's endpoint trusting only the certificate the
roster pins for it (its self-signed certificate is the single root) and
presents ours. Every call has a deadline, every answer is checked for shape
before it is returned (sizes, counts, 32-byte hashes, no more than was asked),
and every failure becomes one of three errors:

- `PeerUnavailableError`: not reachable, no answer in time, the TLS handshake
  failed (its certificate is not the pinned one, or it does not trust ours);
- `PeerRefusedByError`: the peer answered with a refusal (`code` says which);
- `PeerProtocolError`: the peer answered something malformed.

Shape is all that is checked here: signatures, proofs and consistency are
verified by the caller (federation sync, witnessing, threshold_oprf.combine).
Messages name the peer's state and the field, never key material.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import grpc
from cryptography import x509

from compact.v1 import federation_pb2 as pb
from compact.v1 import federation_pb2_grpc as pb_grpc
from crypto.checkpoint import parse_checkpoint
from crypto.errors import CryptoError, EncodingError
from crypto.merkle import leaf_hash
from crypto.note import MAX_NOTE_BYTES, parse_note
from crypto.ristretto import ELEMENT_SIZE, Element
from crypto.threshold_oprf import MAX_SHARES, ShareEvaluation
from federation.errors import FederationError
from federation.mtls import channel_credentials
from federation.roster import MAX_MEMBERS, Member
from node.bundles import STATES as BUNDLE_STATES
from node.bundles import RequestStatus

DEFAULT_MAX_MESSAGE_BYTES: Final = 8 * 1024 * 1024
MAX_ENTRIES: Final = 1000
MAX_OPRF_ELEMENTS: Final = 1000
#: A consistency proof of a tree of at most 2**64 leaves has at most 2 * 64 hashes.
MAX_PROOF_HASHES: Final = 128
MAX_ROSTER_VERSIONS: Final = 10_000
MAX_CERTIFICATE_BYTES: Final = 16 * 1024
MAX_DECISION_ENVELOPE_BYTES: Final = 64 * 1024
# One unit of a sealed stream: a chunk of at most 4 MiB - 1024 bytes and its tag.
MAX_BUNDLE_UNIT_BYTES: Final = 4 * 1024 * 1024
MAX_KIND_LENGTH: Final = 40
HASH_SIZE: Final = 32
PROOF_SIZE: Final = 64

_REFUSALS: Final = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_UNAVAILABLE: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
    }
)
_UNPRINTABLE: Final = re.compile(r"[^\x20-\x7e]")
_MAX_DETAILS: Final = 300


class PeerCallError(FederationError):
    """A call to another member failed; `state` names it, `code` is the gRPC status if any."""

    def __init__(self, state: str, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.state = state
        self.code = code


class PeerUnavailableError(PeerCallError):
    """Not reachable, no answer within the deadline, or the TLS handshake failed."""


class PeerRefusedByError(PeerCallError):
    """The peer refused the call (`code`: PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...)."""

    code: grpc.StatusCode

    def __init__(self, state: str, message: str, code: grpc.StatusCode) -> None:
        super().__init__(state, message, code)


class PeerProtocolError(PeerCallError):
    """The peer's answer is malformed (wrong sizes, counts or indexes)."""


@dataclass(frozen=True, slots=True)
class WireEntry:
    """One log entry as received: its payload (public kinds) or only its leaf hash."""

    index: int
    kind: str
    payload: bytes | None
    leaf_hash: bytes


def _details(e: grpc.aio.AioRpcError) -> str:
    """The peer's status message, made printable and short (it is untrusted text)."""
    text = _UNPRINTABLE.sub("?", e.details() or "")
    return text if len(text) <= _MAX_DETAILS else text[:_MAX_DETAILS] + "..."


def _target_name_override(certificate_pem: bytes, host: str) -> str | None:
    """A name the pinned certificate carries, when `host` is not one of them.

    The certificate is the only trusted root (the pin), so the name check adds
    nothing; without the override gRPC refuses an endpoint the certificate does
    not name (a node reached through another address than it was made for).
    """
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    dns = [name.lower() for name in sans.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    try:
        canonical = str(ipaddress.ip_address(host))
        if canonical in ips:
            return None
    except ValueError:
        if host.lower().rstrip(".") in dns:
            return None
    return dns[0] if dns else (ips[0] if ips else None)


class PeerClient:
    """FederationService calls to one member (an async context manager; make it in a loop)."""

    def __init__(
        self,
        member: Member,
        peer_certificate_pem: bytes,
        *,
        tls_key_pem: bytes,
        tls_cert_pem: bytes,
        deadline_seconds: float,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if deadline_seconds <= 0:
            raise ValueError("deadline_seconds must be positive")
        self.member = member
        self.state = member.state
        self._deadline = deadline_seconds
        options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        host = member.endpoint.rpartition(":")[0].strip("[]")
        override = _target_name_override(peer_certificate_pem, host)
        if override is not None:
            options.append(("grpc.ssl_target_name_override", override))
        credentials = channel_credentials(tls_key_pem, tls_cert_pem, peer_certificate_pem)
        self._channel = grpc.aio.secure_channel(member.endpoint, credentials, options=options)
        self._stub = pb_grpc.FederationServiceStub(self._channel)

    async def __aenter__(self) -> PeerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    # --- calls --------------------------------------------------------------------------

    async def get_roster(self, after_version: int) -> tuple[list[bytes], list[bytes]]:
        """Signed roster envelopes after `after_version` (oldest first), and the
        certificates of the newest version's members. Nothing is verified here."""
        _check_uint(after_version, "after_version", 2**32 - 1)
        try:
            response = await self._stub.GetRoster(
                pb.GetRosterRequest(after_version=after_version), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as e:
            raise self._translate("GetRoster", e) from None
        envelopes, certificates = list(response.envelopes), list(response.certificates)
        if len(envelopes) > MAX_ROSTER_VERSIONS:
            raise self._malformed("envelopes", f"more than {MAX_ROSTER_VERSIONS}")
        if any(not envelope for envelope in envelopes):
            raise self._malformed("envelopes", "an empty envelope")
        if len(certificates) > MAX_MEMBERS:
            raise self._malformed("certificates", f"more than {MAX_MEMBERS}")
        if any(not 0 < len(c) <= MAX_CERTIFICATE_BYTES for c in certificates):
            raise self._malformed("certificates", "a certificate is empty or too large")
        return envelopes, certificates

    async def get_checkpoint(self, old_size: int) -> tuple[str, list[bytes]]:
        """The peer's newest signed checkpoint note and a consistency proof from `old_size`.

        The note is not verified here (the caller checks the log's signature and the
        proof); only its size is read, to check the answer's shape.
        """
        _check_uint(old_size, "old_size", 2**64 - 1)
        try:
            response = await self._stub.GetCheckpoint(
                pb.GetCheckpointRequest(old_size=old_size), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as e:
            raise self._translate("GetCheckpoint", e) from None
        note = response.checkpoint
        if not note or len(note.encode()) > MAX_NOTE_BYTES:
            raise self._malformed("checkpoint", "empty or too large")
        try:
            size = parse_checkpoint(parse_note(note).text).size
        except EncodingError:
            raise self._malformed("checkpoint", "not a signed checkpoint note") from None
        if size < old_size:
            raise self._malformed("checkpoint", f"size {size} is below old_size {old_size}")
        proof = self._proof(response.consistency_proof)
        if (old_size in (0, size)) != (not proof):
            raise self._malformed("consistency_proof", f"wrong for sizes {old_size} to {size}")
        return note, proof

    async def get_entries(
        self, start: int, max_entries: int, tree_size: int
    ) -> tuple[list[WireEntry], list[bytes]]:
        """Entries [start, ...) below `tree_size`, at most `max_entries` (1 to 1,000), and
        the consistency proof from the end of the batch to `tree_size`."""
        _check_uint(tree_size, "tree_size", 2**64 - 1)
        _check_uint(start, "start", tree_size - 1)
        if not 1 <= max_entries <= MAX_ENTRIES:
            raise ValueError(f"max_entries must be between 1 and {MAX_ENTRIES}")
        request = pb.GetEntriesRequest(start=start, max_entries=max_entries, tree_size=tree_size)
        try:
            response = await self._stub.GetEntries(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as e:
            raise self._translate("GetEntries", e) from None
        if not response.entries:
            raise self._malformed("entries", "no entries below tree_size")
        if len(response.entries) > max_entries:
            raise self._malformed("entries", f"more than the {max_entries} asked for")
        entries = [
            self._entry(e, start + i, tree_size, f"entries[{i}]")
            for i, e in enumerate(response.entries)
        ]
        proof = self._proof(response.consistency_proof)
        if start + len(entries) == tree_size and proof:
            raise self._malformed("consistency_proof", "must be empty at the end of the tree")
        if start + len(entries) < tree_size and not proof:
            raise self._malformed("consistency_proof", "missing")
        return entries, proof

    async def submit_cosignature(self, checkpoint_text: str, cosignature_line: str) -> None:
        """Give the peer our cosignature of its checkpoint (the checkpoint text, not the note)."""
        request = pb.SubmitCosignatureRequest(
            checkpoint=checkpoint_text, cosignature=cosignature_line
        )
        try:
            await self._stub.SubmitCosignature(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as e:
            raise self._translate("SubmitCosignature", e) from None

    async def evaluate_oprf(self, blinded: Sequence[Element]) -> ShareEvaluation:
        """The peer's share evaluation of `blinded` (1 to 1,000 elements).

        The DLEQ proof is checked by the caller, with threshold_oprf.combine and the
        commitments of the roster.
        """
        if not 1 <= len(blinded) <= MAX_OPRF_ELEMENTS:
            raise ValueError(f"between 1 and {MAX_OPRF_ELEMENTS} blinded elements per request")
        request = pb.EvaluateOprfRequest(blinded_elements=[e.to_bytes() for e in blinded])
        try:
            response = await self._stub.EvaluateOprf(request, timeout=self._deadline)
        except grpc.aio.AioRpcError as e:
            raise self._translate("EvaluateOprf", e) from None
        if not 1 <= response.share_index <= MAX_SHARES:
            raise self._malformed("share_index", f"not between 1 and {MAX_SHARES}")
        if len(response.evaluated_elements) != len(blinded):
            raise self._malformed(
                "evaluated_elements", f"{len(response.evaluated_elements)} for {len(blinded)}"
            )
        evaluated: list[Element] = []
        for i, raw in enumerate(response.evaluated_elements):
            if len(raw) != ELEMENT_SIZE:
                raise self._malformed(f"evaluated_elements[{i}]", f"not {ELEMENT_SIZE} bytes")
            try:
                evaluated.append(Element.from_bytes(raw))
            except CryptoError:
                raise self._malformed(
                    f"evaluated_elements[{i}]", "not a valid ristretto255 element"
                ) from None
        if len(response.proof) != PROOF_SIZE:
            raise self._malformed("proof", f"not {PROOF_SIZE} bytes")
        return ShareEvaluation(response.share_index, tuple(evaluated), response.proof)

    # --- checks and errors --------------------------------------------------------------

    def _entry(self, e: pb.LogEntry, index: int, tree_size: int, field: str) -> WireEntry:
        if e.index != index:
            raise self._malformed(f"{field}.index", f"{e.index}, expected {index}")
        if e.index >= tree_size:
            raise self._malformed(f"{field}.index", "not below tree_size")
        if not 0 < len(e.kind) <= MAX_KIND_LENGTH or _UNPRINTABLE.search(e.kind):
            raise self._malformed(f"{field}.kind", "empty, too long or not printable")
        if e.payload:
            computed = leaf_hash(e.payload)
            if e.leaf_hash and e.leaf_hash != computed:
                raise self._malformed(f"{field}.leaf_hash", "does not match the payload")
            return WireEntry(e.index, e.kind, e.payload, computed)
        if len(e.leaf_hash) != HASH_SIZE:
            raise self._malformed(f"{field}.leaf_hash", f"not {HASH_SIZE} bytes")
        return WireEntry(e.index, e.kind, None, e.leaf_hash)

    def _proof(self, hashes: Sequence[bytes]) -> list[bytes]:
        if len(hashes) > MAX_PROOF_HASHES:
            raise self._malformed("consistency_proof", f"more than {MAX_PROOF_HASHES} hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise self._malformed("consistency_proof", f"a hash is not {HASH_SIZE} bytes")
        return list(hashes)

    async def request_bundle(self, envelope: bytes) -> RequestStatus:
        """Send a signed bundle request; the holder's answer (its decision not verified)."""
        try:
            response = await self._stub.RequestBundle(
                pb.RequestBundleRequest(envelope=envelope), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as e:
            raise self._translate("RequestBundle", e) from None
        return self._bundle_status(response.status)

    async def share_matter(self, envelope: bytes) -> int:
        """Send a signed matter revision; the newest revision the member holds after it."""
        try:
            response = await self._stub.ShareMatter(
                pb.ShareMatterRequest(envelope=envelope), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as e:
            raise self._translate("ShareMatter", e) from None
        return int(response.revision)

    async def get_bundle_status(self, request_id: str) -> RequestStatus:
        """The holder's answer about one of this node's requests (nothing verified here)."""
        try:
            response = await self._stub.GetBundleStatus(
                pb.GetBundleStatusRequest(request_id=request_id), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as e:
            raise self._translate("GetBundleStatus", e) from None
        return self._bundle_status(response.status)

    async def fetch_bundle(self, bundle_id: str, offset: int) -> AsyncGenerator[tuple[int, bytes]]:
        """The units of a bundle's sealed stream from `offset`: (offset, data) as the holder
        sent them (nothing verified here). Each unit must arrive within the deadline; the
        stream as a whole has none."""
        call = self._stub.FetchBundle(pb.FetchBundleRequest(bundle_id=bundle_id, offset=offset))
        try:
            while True:
                try:
                    response = await asyncio.wait_for(call.read(), timeout=self._deadline)
                except TimeoutError:
                    raise PeerUnavailableError(
                        self.state,
                        f"{self.state} ({self.member.endpoint}) sent nothing for "
                        f"{self._deadline:g} seconds during FetchBundle",
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ) from None
                except grpc.aio.AioRpcError as e:
                    raise self._translate("FetchBundle", e) from None
                if response is grpc.aio.EOF:
                    return
                assert isinstance(response, pb.FetchBundleResponse)
                if len(response.data) > MAX_BUNDLE_UNIT_BYTES or not response.data:
                    raise self._malformed("data", "not the size of a unit of a sealed stream")
                yield response.offset, bytes(response.data)
        finally:
            call.cancel()

    async def ack_bundle(self, bundle_id: str, receipt: bytes) -> None:
        """Send the signed receipt of a bundle received in full."""
        try:
            await self._stub.AckBundle(
                pb.AckBundleRequest(bundle_id=bundle_id, receipt=receipt), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as e:
            raise self._translate("AckBundle", e) from None

    def _bundle_status(self, response: pb.BundleStatus) -> RequestStatus:
        if response.state not in BUNDLE_STATES:
            raise self._malformed("state", "not a bundle request state")
        if len(response.decision) > MAX_DECISION_ENVELOPE_BYTES:
            raise self._malformed("decision", "too large")
        return RequestStatus(
            request_id=response.request_id,
            state=response.state,
            decision=bytes(response.decision) or None,
            manifest=bytes(response.manifest) or None,
        )

    def _malformed(self, field: str, reason: str) -> PeerProtocolError:
        return PeerProtocolError(self.state, f"{self.state} sent a malformed {field}: {reason}")

    def _translate(self, method: str, e: grpc.aio.AioRpcError) -> PeerCallError:
        code, details = e.code(), _details(e)
        if code in _UNAVAILABLE:
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                what = "did not answer in time"
            elif "stream removed" in details.lower() or "socket closed" in details.lower():
                what = "closed the connection during the call"
            else:
                what = (
                    "is unreachable or the TLS handshake failed (its certificate is not the one "
                    "the roster pins, or it does not trust ours)"
                )
            return PeerUnavailableError(
                self.state, f"{self.state} ({self.member.endpoint}) {what}: {details}", code
            )
        if code in _REFUSALS:
            return PeerRefusedByError(
                self.state, f"{self.state} refused {method}: {code.name}: {details}", code
            )
        if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and (
            "deserializ" not in details.lower()
        ):
            return PeerUnavailableError(
                self.state, f"{self.state} failed {method}: {code.name}: {details}", code
            )
        return PeerProtocolError(
            self.state, f"{self.state} answered {method} with {code.name}: {details}", code
        )


def _check_uint(value: int, name: str, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{name} must be an integer from 0 to {maximum}")
