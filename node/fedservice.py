"""`compact.v1.FederationService`, the server side: what this node answers other members.

Every handler first maps the caller's verified TLS client certificate to a
member of the roster in force (`federation.mtls.authorize_peer`), inside the
handler, so that the identity is bound to the call (STYLE habit 13). Refusals
are audited (actor ``peer:<first 16 hex of the certificate pin>``). Requests
are validated field by field (INVALID_ARGUMENT naming the field); every other
exception becomes INTERNAL with a message that holds nothing of the request
or of this node's data. Database and CPU work runs off the event loop.

The transport (`start_federation_server`) is mutual TLS whose trusted client
certificates are the current roster members' own self-signed certificates.
The roster can change while the server runs, so the server credentials are
dynamic: before each handshake gRPC asks for the configuration, which is
rebuilt only when the roster version (and then the set of certificates)
changed.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar

import grpc
import structlog
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy import case, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from compact.v1 import federation_pb2 as pb
from compact.v1 import federation_pb2_grpc as pb_grpc
from crypto import threshold_oprf
from crypto.checkpoint import add_cosignature, cosignature_timestamp, parse_checkpoint
from crypto.dsse import Envelope
from crypto.errors import CryptoError, EncodingError, VerificationError
from crypto.note import parse_note, parse_signature_line
from crypto.ristretto import ELEMENT_SIZE, Element
from federation.errors import CeremonyError
from federation.mtls import PeerRefusedError, authorize_peer, peer_pin
from federation.naming import log_origin, witness_verifier
from federation.roster import Member, Roster
from node import models as m
from node.bundle_seal import BundleSealer, StreamSlice, iter_units
from node.bundles import BundleDesk, RequestStatus
from node.config import FederationSettings, parse_host_port
from node.db import Database
from node.errors import Refusal, Refused, StorageError
from node.fedstore import FederationStore
from node.matters import MatterDesk
from node.translog import TransparencyLog, cosignature_lines

log = structlog.get_logger("compact.federation.server")

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["FederationService"].full_name
#: Kinds of log entry whose payload other members receive; every other kind (custody
#: events, audit) is sent as its leaf hash only.
PUBLIC_ENTRY_KINDS: Final = frozenset({"index-entry"})
MAX_ENTRIES_PER_REQUEST: Final = 1000
MAX_OPRF_ELEMENTS: Final = 1000
#: GetEntries stops adding payloads past this many bytes (the answer must stay far
#: below the peer's receive limit; a single entry is at most 1 MiB).
MAX_ENTRIES_RESPONSE_BYTES: Final = 3 * 1024 * 1024
MAX_CHECKPOINT_TEXT: Final = 16 * 1024
MAX_BUNDLE_REQUEST_BYTES: Final = 96 * 1024  # a request payload is at most 64 KiB
MAX_COSIGNATURE_LINE: Final = 1024
MAX_CLOCK_SKEW_SECONDS: Final = 600  # between a witness's clock and this node's
DEFAULT_MAX_RECEIVE_BYTES: Final = 4 * 1024 * 1024
#: Cosignature lines appended to a served checkpoint (a note holds at most 100 lines).

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


class _Abort(Exception):
    """Answer the call with this status and message (safe to send to the peer)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(field: str, reason: str) -> _Abort:
    return _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {reason}")


#: The largest integer the database stores (a signed 64-bit column, in SQLite and
#: PostgreSQL alike). A uint64 field above it can name nothing that exists.
MAX_STORED_INTEGER = 2**63 - 1


def _check_integers(message: Message, prefix: str = "") -> None:
    """INVALID_ARGUMENT naming the first integer field of `message` (nested messages
    included) above MAX_STORED_INTEGER: a size, index or offset that large would otherwise
    reach the database and fail there, as an internal error."""
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if is_repeated(field) else [value]:
                _check_integers(item, f"{name}.")
        elif field.type in _UNSIGNED_64:
            for item in value if is_repeated(field) else [value]:
                if item > MAX_STORED_INTEGER:
                    raise _invalid(name, f"out of range (at most {MAX_STORED_INTEGER})")


_UNSIGNED_64 = frozenset({FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64})


def is_repeated(field: FieldDescriptor) -> bool:
    """Whether a protobuf field is repeated, on every protobuf version this runs on."""
    flag = getattr(field, "is_repeated", None)  # protobuf 6.31+; `label` before it
    if isinstance(flag, bool):
        return flag
    return bool(getattr(field, "label") == FieldDescriptor.LABEL_REPEATED)  # noqa: B009


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _audit(
    db: Database,
    *,
    at: datetime,
    actor: str,
    action: str,
    outcome: str,
    detail: dict[str, Any],
    target: str | None = None,
) -> None:
    with db.write() as s:
        _audit_in(
            s, at=at, actor=actor, action=action, outcome=outcome, detail=detail, target=target
        )


def _audit_in(
    s: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    outcome: str,
    detail: dict[str, Any],
    target: str | None = None,
) -> None:
    s.add(
        m.AuditEvent(
            at=at, actor=actor, action=action, target=target, outcome=outcome, detail=detail
        )
    )


def _member_actor(member: Member) -> str:
    return f"member:{member.state}"


class FederationServicer(pb_grpc.FederationServiceServicer):
    """Answers other members: roster, checkpoints, log entries, cosignatures, OPRF shares."""

    def __init__(
        self,
        *,
        state: str,
        store: FederationStore,
        log: TransparencyLog,
        db: Database,
        settings: FederationSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        bundles: BundleDesk | None = None,
        sealer: BundleSealer | None = None,
        matters: MatterDesk | None = None,
    ) -> None:
        self._bundles = bundles
        self._matters = matters
        self._sealer = sealer
        self._state = state
        self._store = store
        self._log = log
        self._db = db
        self._settings = settings
        self._clock = clock

    # --- the boundary -------------------------------------------------------------------

    async def _serve(
        self,
        method: str,
        context: Context,
        handler: Callable[[Member, Roster], Awaitable[T]],
        request: Message | None = None,
    ) -> T:
        """Authorize the caller, check `request`'s integers, run `handler`, map every
        failure to a status."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            rpc=f"federation.{method}", request_id=secrets.token_hex(6)
        )
        started = time.monotonic()
        try:
            caller, roster = await self._authorize(method, context)
            structlog.contextvars.bind_contextvars(peer=caller.state)
            if request is not None:
                _check_integers(request)
            result = await handler(caller, roster)
        except asyncio.CancelledError:
            raise
        except _Abort as e:
            log.info("rpc.refused", code=e.code.name, duration_ms=_ms(started))
            await context.abort(e.code, e.message)
        except Exception as e:  # the boundary: every error becomes a status
            log.error("rpc.failed", error=type(e).__name__, duration_ms=_ms(started), exc_info=e)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        log.info("rpc.ok", duration_ms=_ms(started))
        return result

    async def _authorize(self, method: str, context: Context) -> tuple[Member, Roster]:
        roster = await asyncio.to_thread(self._store.roster)
        if roster is None:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, "this node is not part of a compact")
        now = self._clock()
        try:
            return authorize_peer(context, roster, now=now), roster
        except PeerRefusedError as e:
            if method == "GetRoster":
                rotating = await asyncio.to_thread(_rotating_member, self._store, roster, context)
                if rotating is not None:
                    return rotating, roster
            pin = peer_pin(context)
            await asyncio.to_thread(
                _audit,
                self._db,
                at=now,
                actor=f"peer:{pin[:16]}" if pin else "peer:unknown",
                action=f"federation.{method}",
                outcome="refused",
                detail={"reason": str(e)},
            )
            raise _Abort(e.code, str(e)) from None

    async def reject_unparsable(self, method: str, type_name: str, context: Context) -> Any:
        """Answer a request that is not a protobuf message (after authorizing the caller)."""

        async def handle(_caller: Member, _roster: Roster) -> Any:
            raise _invalid("request", f"not a valid {type_name} message")

        return await self._serve(method, context, handle)

    # --- GetRoster ----------------------------------------------------------------------

    async def GetRoster(
        self, request: pb.GetRosterRequest, context: Context
    ) -> pb.GetRosterResponse:
        async def handle(_caller: Member, roster: Roster) -> pb.GetRosterResponse:
            if request.after_version > roster.version:
                raise _invalid(
                    "after_version", f"this node's newest roster is version {roster.version}"
                )
            envelopes = await asyncio.to_thread(
                self._store.roster_envelopes, after_version=request.after_version
            )
            certificates = await asyncio.to_thread(self._store.certificates, roster)
            return pb.GetRosterResponse(
                envelopes=envelopes,
                certificates=[certificates[state] for state in sorted(certificates)],
            )

        return await self._serve("GetRoster", context, handle, request)

    # --- GetCheckpoint ------------------------------------------------------------------

    async def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: Context
    ) -> pb.GetCheckpointResponse:
        async def handle(_caller: Member, _roster: Roster) -> pb.GetCheckpointResponse:
            note = await asyncio.to_thread(self._log.latest_checkpoint)
            if note is None:
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, "no checkpoint yet")
            size = parse_checkpoint(parse_note(note).text).size
            old_size = request.old_size
            if old_size > size:
                raise _invalid(
                    "old_size", f"{old_size} is larger than the newest checkpoint ({size})"
                )
            lines = await asyncio.to_thread(_cosignature_lines, self._db, size)
            for line in lines:
                try:
                    note = add_cosignature(note, line)
                except EncodingError:  # stored only after it verified: never expected
                    log.warning("checkpoint.cosignature_unusable", size=size)
            proof: list[bytes] = []
            if 0 < old_size < size:
                proof = await asyncio.to_thread(self._log.consistency_proof, old_size, size)
            return pb.GetCheckpointResponse(checkpoint=note, consistency_proof=proof)

        return await self._serve("GetCheckpoint", context, handle, request)

    # --- GetEntries ---------------------------------------------------------------------

    async def GetEntries(
        self, request: pb.GetEntriesRequest, context: Context
    ) -> pb.GetEntriesResponse:
        async def handle(_caller: Member, _roster: Roster) -> pb.GetEntriesResponse:
            tree_size, start = request.tree_size, request.start
            if not await asyncio.to_thread(_has_checkpoint, self._db, tree_size):
                raise _invalid("tree_size", f"this log has no checkpoint of size {tree_size}")
            if start >= tree_size:
                raise _invalid("start", f"must be below tree_size ({tree_size})")
            wanted = request.max_entries or MAX_ENTRIES_PER_REQUEST
            if wanted > MAX_ENTRIES_PER_REQUEST:
                raise _invalid("max_entries", f"at most {MAX_ENTRIES_PER_REQUEST}")
            end = min(start + wanted, tree_size)
            entries = await asyncio.to_thread(_entries, self._db, start, end)
            if not entries:  # the checkpoint exists, so its entries do
                raise StorageError("log entries below a stored checkpoint are missing")
            end = start + len(entries)
            proof: list[bytes] = []
            if end < tree_size:
                proof = await asyncio.to_thread(self._log.consistency_proof, end, tree_size)
            return pb.GetEntriesResponse(entries=entries, consistency_proof=proof)

        return await self._serve("GetEntries", context, handle, request)

    # --- SubmitCosignature --------------------------------------------------------------

    async def SubmitCosignature(
        self, request: pb.SubmitCosignatureRequest, context: Context
    ) -> pb.SubmitCosignatureResponse:
        async def handle(caller: Member, _roster: Roster) -> pb.SubmitCosignatureResponse:
            try:
                size, timestamp = await self._check_cosignature(caller, request)
            except _Abort as e:
                await self._audit_call(
                    caller, "SubmitCosignature", "refused", {"reason": e.message}
                )
                raise
            stored = await asyncio.to_thread(
                _store_cosignature,
                self._db,
                size=size,
                witness=caller.state,
                line=request.cosignature,
                timestamp=timestamp,
                now=self._clock(),
            )
            log.info("cosignature.received", size=size, witness=caller.state, stored=stored)
            return pb.SubmitCosignatureResponse()

        return await self._serve("SubmitCosignature", context, handle, request)

    async def _check_cosignature(
        self, caller: Member, request: pb.SubmitCosignatureRequest
    ) -> tuple[int, int]:
        """The checkpoint size and cosignature timestamp of a valid submission."""
        text, line = request.checkpoint, request.cosignature
        if caller.state == self._state:
            raise _Abort(grpc.StatusCode.PERMISSION_DENIED, "a log cannot witness itself")
        if not text:
            raise _invalid("checkpoint", "required")
        if len(text) > MAX_CHECKPOINT_TEXT:
            raise _invalid("checkpoint", f"longer than {MAX_CHECKPOINT_TEXT} characters")
        try:
            checkpoint = parse_checkpoint(text)
        except EncodingError:
            raise _invalid("checkpoint", "not a C2SP checkpoint") from None
        if checkpoint.origin != log_origin(self._state):
            raise _invalid("checkpoint", "not a checkpoint of this node's log")
        if not line:
            raise _invalid("cosignature", "required")
        if len(line) > MAX_COSIGNATURE_LINE:
            raise _invalid("cosignature", f"longer than {MAX_COSIGNATURE_LINE} characters")
        try:
            signature = parse_signature_line(line)
            timestamp = cosignature_timestamp(signature)
        except EncodingError:
            raise _invalid("cosignature", "not a cosignature/v1 line") from None
        stored = await asyncio.to_thread(_checkpoint_text, self._db, checkpoint.size)
        if stored is None or stored[0] != text:
            raise _Abort(
                grpc.StatusCode.NOT_FOUND,
                f"checkpoint: this log has no checkpoint of size {checkpoint.size} with that root",
            )
        verifier = witness_verifier(caller.state, caller.signing_key)
        if (signature.name, signature.key_hash) != (verifier.name, verifier.key_hash):
            raise _invalid("cosignature", f"not signed with the witness key of {caller.state}")
        try:
            verifier.verify(text.encode(), signature.signature)
        except VerificationError:
            raise _invalid("cosignature", "does not verify") from None
        # A cosignature says when the witness saw the checkpoint: not before it was signed,
        # not after now (each within the allowed clock skew).
        signed_at = int(stored[1].timestamp())
        now = int(self._clock().timestamp())
        if timestamp < signed_at - MAX_CLOCK_SKEW_SECONDS:
            raise _invalid("cosignature", "its timestamp is before the checkpoint was signed")
        if timestamp > now + MAX_CLOCK_SKEW_SECONDS:
            raise _invalid("cosignature", "its timestamp is in the future")
        return checkpoint.size, timestamp

    # --- bundles (node.bundles) -----------------------------------------------------------

    async def RequestBundle(
        self, request: pb.RequestBundleRequest, context: Context
    ) -> pb.RequestBundleResponse:
        async def handle(caller: Member, roster: Roster) -> pb.RequestBundleResponse:
            desk = self._desk()
            if not request.envelope:
                raise _invalid("envelope", "required")
            if len(request.envelope) > MAX_BUNDLE_REQUEST_BYTES:
                raise _invalid("envelope", f"larger than {MAX_BUNDLE_REQUEST_BYTES} bytes")
            status = await _bundle_call(
                desk.receive_request, caller.state, bytes(request.envelope), roster
            )
            return pb.RequestBundleResponse(status=_bundle_status(status))

        return await self._serve("RequestBundle", context, handle, request)

    async def GetBundleStatus(
        self, request: pb.GetBundleStatusRequest, context: Context
    ) -> pb.GetBundleStatusResponse:
        async def handle(caller: Member, _roster: Roster) -> pb.GetBundleStatusResponse:
            desk = self._desk()
            if not _REQUEST_ID.fullmatch(request.request_id):
                raise _invalid("request_id", "not a UUID in lowercase")
            status = await _bundle_call(desk.status_for, caller.state, request.request_id)
            return pb.GetBundleStatusResponse(status=_bundle_status(status))

        return await self._serve("GetBundleStatus", context, handle, request)

    async def FetchBundle(
        self, request: pb.FetchBundleRequest, context: Context
    ) -> AsyncIterator[pb.FetchBundleResponse]:
        sealer = self._sealer

        async def handle(caller: Member, _roster: Roster) -> StreamSlice:
            if sealer is None:
                raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "this node does not serve bundles")
            if not _HEX64.fullmatch(request.bundle_id):
                raise _invalid("bundle_id", "expected 64 lowercase hex digits")
            return await _bundle_call(
                sealer.open_stream, caller.state, request.bundle_id, request.offset
            )

        stream = await self._serve("FetchBundle", context, handle, request)
        assert sealer is not None
        if stream.offset == stream.sealed_size:  # everything was received: nothing to send
            await asyncio.to_thread(sealer.served_to_end, stream)
            return
        units = iter_units(stream.path, stream.offset, stream.sealed_size, stream.chunk_size)
        offset = stream.offset
        try:
            while True:
                try:
                    data = await asyncio.to_thread(next, units, None)
                except (OSError, StorageError) as e:
                    log.error("bundle.spool_unreadable", error=type(e).__name__)
                    await context.abort(
                        grpc.StatusCode.DATA_LOSS, "the bundle's spool cannot be read"
                    )
                    return
                if data is None:
                    return
                if offset + len(data) == stream.sealed_size:
                    await asyncio.to_thread(sealer.served_to_end, stream)
                yield pb.FetchBundleResponse(offset=offset, data=data)
                offset += len(data)
        finally:
            units.close()

    async def AckBundle(
        self, request: pb.AckBundleRequest, context: Context
    ) -> pb.AckBundleResponse:
        async def handle(caller: Member, roster: Roster) -> pb.AckBundleResponse:
            if self._sealer is None:
                raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "this node does not serve bundles")
            if not _HEX64.fullmatch(request.bundle_id):
                raise _invalid("bundle_id", "expected 64 lowercase hex digits")
            if not request.receipt:
                raise _invalid("receipt", "required")
            if len(request.receipt) > MAX_RECEIPT_ENVELOPE_BYTES:
                raise _invalid("receipt", f"larger than {MAX_RECEIPT_ENVELOPE_BYTES} bytes")
            await _bundle_call(
                self._sealer.acknowledge,
                caller.state,
                request.bundle_id,
                bytes(request.receipt),
                roster,
            )
            return pb.AckBundleResponse()

        return await self._serve("AckBundle", context, handle, request)

    # --- matters (node.matters) -----------------------------------------------------------

    async def ShareMatter(
        self, request: pb.ShareMatterRequest, context: Context
    ) -> pb.ShareMatterResponse:
        async def handle(caller: Member, roster: Roster) -> pb.ShareMatterResponse:
            if self._matters is None:
                raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "this node does not keep matters")
            if not request.envelope:
                raise _invalid("envelope", "required")
            if len(request.envelope) > MAX_MATTER_ENVELOPE_BYTES:
                raise _invalid("envelope", f"larger than {MAX_MATTER_ENVELOPE_BYTES} bytes")
            revision = await _bundle_call(
                self._matters.receive, caller.state, bytes(request.envelope), roster
            )
            return pb.ShareMatterResponse(revision=revision)

        return await self._serve("ShareMatter", context, handle, request)

    def _desk(self) -> BundleDesk:
        if self._bundles is None:
            raise _Abort(grpc.StatusCode.UNIMPLEMENTED, "this node does not serve bundles")
        return self._bundles

    # --- EvaluateOprf -------------------------------------------------------------------

    async def EvaluateOprf(
        self, request: pb.EvaluateOprfRequest, context: Context
    ) -> pb.EvaluateOprfResponse:
        async def handle(caller: Member, roster: Roster) -> pb.EvaluateOprfResponse:
            try:
                share = await self._share(roster)
                elements = await asyncio.to_thread(_elements, request.blinded_elements)
            except _Abort as e:
                detail = {"elements": len(request.blinded_elements), "reason": e.message}
                await self._audit_call(caller, "EvaluateOprf", "refused", detail)
                raise
            await asyncio.to_thread(self._count_usage, caller, len(elements))
            evaluation = await asyncio.to_thread(threshold_oprf.evaluate_share, share, elements)
            return pb.EvaluateOprfResponse(
                share_index=evaluation.index,
                evaluated_elements=[e.to_bytes() for e in evaluation.evaluated_elements],
                proof=evaluation.proof,
            )

        return await self._serve("EvaluateOprf", context, handle, request)

    async def _share(self, roster: Roster) -> threshold_oprf.KeyShare:
        if roster.oprf is None:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, "the compact has no OPRF key yet")
        try:
            share = await asyncio.to_thread(self._store.share, roster)
        except CeremonyError as e:
            raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
        if share is None:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this node holds no share of the compact's OPRF key",
            )
        return share

    def _count_usage(self, caller: Member, n: int) -> None:
        """Add `n` to the caller's usage today, or refuse (RESOURCE_EXHAUSTED) past the limit.

        One write transaction: the row is created if missing, then locked (PostgreSQL;
        SQLite's BEGIN IMMEDIATE already serialises writers), read and updated.
        """
        now = self._clock()
        day = now.astimezone(UTC).date()
        limit = self._settings.oprf_daily_limit
        action = "federation.EvaluateOprf"
        with self._db.write() as s:
            s.execute(
                _insert_ignoring_duplicates(s, m.OprfUsage).values(
                    requester=caller.state, day=day, elements=0
                )
            )
            used = int(
                s.scalar(
                    select(m.OprfUsage.elements)
                    .where(m.OprfUsage.requester == caller.state, m.OprfUsage.day == day)
                    .with_for_update()
                )
                or 0
            )
            refused = used + n > limit
            if not refused:
                s.execute(
                    update(m.OprfUsage)
                    .where(m.OprfUsage.requester == caller.state, m.OprfUsage.day == day)
                    .values(elements=m.OprfUsage.elements + n)
                )
            message = _limit_message(limit, used, day) if refused else ""
            _audit_in(
                s,
                at=now,
                actor=_member_actor(caller),
                action=action,
                outcome="refused" if refused else "ok",
                detail={"elements": n, "reason": message} if refused else {"elements": n},
            )
        if refused:
            raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

    async def _audit_call(
        self, caller: Member, method: str, outcome: str, detail: dict[str, Any]
    ) -> None:
        await asyncio.to_thread(
            _audit,
            self._db,
            at=self._clock(),
            actor=_member_actor(caller),
            action=f"federation.{method}",
            outcome=outcome,
            detail=detail,
        )


# --- bundles ------------------------------------------------------------------------------

_REFUSAL_CODES: Final = {
    Refusal.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Refusal.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Refusal.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Refusal.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
}
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
MAX_RECEIPT_ENVELOPE_BYTES: Final = 16 * 1024
# A matter is at most 700 KiB (federation.matter.MAX_MATTER_BYTES): its envelope's base64
# payload and signatures stay below 1 MiB.
MAX_MATTER_ENVELOPE_BYTES: Final = 1024 * 1024
_REQUEST_ID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def _bundle_call(fn: Callable[..., T], *args: Any) -> T:
    """Run a BundleDesk method in a thread; its refusals become statuses."""
    try:
        return await asyncio.to_thread(fn, *args)
    except Refused as e:
        raise _Abort(_REFUSAL_CODES[e.kind], e.message) from None


def _bundle_status(status: RequestStatus) -> pb.BundleStatus:
    return pb.BundleStatus(
        request_id=status.request_id,
        state=status.state,
        decision=status.decision or b"",
        manifest=status.manifest or b"",
    )


# --- database work (run in a thread) ------------------------------------------------------


def _cosignature_lines(db: Database, size: int) -> list[str]:
    with db.read() as s:
        return cosignature_lines(s, size)


def _has_checkpoint(db: Database, size: int) -> bool:
    with db.read() as s:
        return s.get(m.LogCheckpoint, size) is not None


def _checkpoint_text(db: Database, size: int) -> tuple[str, datetime] | None:
    """The body (checkpoint text) of this log's stored checkpoint of `size` and when it was
    signed, if there is one."""
    with db.read() as s:
        row = s.get(m.LogCheckpoint, size)
        if row is None:
            return None
        return parse_note(row.note).text, row.created_at


def _entries(db: Database, start: int, end: int) -> list[pb.LogEntry]:
    """Entries [start, end): payloads of public kinds only, within the response budget."""
    public = m.LogEntry.kind.in_(sorted(PUBLIC_ENTRY_KINDS))
    query = (
        select(
            m.LogEntry.index,
            m.LogEntry.kind,
            m.LogEntry.leaf_hash,
            case((public, m.LogEntry.payload), else_=literal(None)),
        )
        .where(m.LogEntry.index >= start, m.LogEntry.index < end)
        .order_by(m.LogEntry.index)
    )
    out: list[pb.LogEntry] = []
    budget = MAX_ENTRIES_RESPONSE_BYTES
    with db.read() as s:
        for index, kind, leaf, payload in s.execute(query):
            entry = _wire_entry(index, kind, leaf, payload)
            if out and len(entry.payload) > budget:
                break
            if int(entry.index) != start + len(out):
                raise StorageError("the log has a gap")
            budget -= len(entry.payload)
            out.append(entry)
    return out


def _wire_entry(index: int, kind: str, leaf: bytes, payload: bytes | None) -> pb.LogEntry:
    if kind in PUBLIC_ENTRY_KINDS and payload is not None:
        return pb.LogEntry(index=index, kind=kind, payload=bytes(payload))
    return pb.LogEntry(index=index, kind=kind, leaf_hash=bytes(leaf))


def _store_cosignature(
    db: Database, *, size: int, witness: str, line: str, timestamp: int, now: datetime
) -> bool:
    """Keep the newest line per witness and size; False if an equal or newer one is kept."""
    try:
        with db.write() as s:
            row = s.get(m.LogCosignature, (size, witness))
            if row is None:
                s.add(
                    m.LogCosignature(
                        size=size, witness=witness, signature_line=line, received_at=now
                    )
                )
            else:
                held = cosignature_timestamp(parse_signature_line(row.signature_line))
                if timestamp <= held:
                    _audit_in(
                        s,
                        at=now,
                        actor=f"member:{witness}",
                        action="federation.SubmitCosignature",
                        outcome="ok",
                        detail={"size": size, "stored": False},
                    )
                    return False
                row.signature_line, row.received_at = line, now
            _audit_in(
                s,
                at=now,
                actor=f"member:{witness}",
                action="federation.SubmitCosignature",
                outcome="ok",
                detail={"size": size, "stored": True},
            )
            return True
    except IntegrityError:  # the same witness submitted twice at once (PostgreSQL)
        raise _Abort(
            grpc.StatusCode.ABORTED, "cosignature: a concurrent submission won; retry"
        ) from None


def _insert_ignoring_duplicates(s: Session, model: Any) -> Any:
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model).on_conflict_do_nothing()


def _elements(values: Sequence[bytes]) -> list[Element]:
    """Validate blinded elements: 1 to 1,000, each a canonical non-identity encoding."""
    if not values:
        raise _invalid("blinded_elements", "at least one element is required")
    if len(values) > MAX_OPRF_ELEMENTS:
        raise _invalid("blinded_elements", f"at most {MAX_OPRF_ELEMENTS} elements per request")
    out: list[Element] = []
    for i, value in enumerate(values):
        if len(value) != ELEMENT_SIZE:
            raise _invalid(f"blinded_elements[{i}]", f"expected {ELEMENT_SIZE} bytes")
        if value == bytes(ELEMENT_SIZE):
            raise _invalid(f"blinded_elements[{i}]", "the identity element is not accepted")
        try:
            out.append(Element.from_bytes(value))
        except CryptoError:
            raise _invalid(f"blinded_elements[{i}]", "not a valid ristretto255 element") from None
    return out


def _limit_message(limit: int, used: int, day: date) -> str:
    resets = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return (
        f"the daily limit of {limit} OPRF elements is reached ({used} used today); "
        f"it resets at {resets.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )


# --- the server ---------------------------------------------------------------------------


def _method_handlers(servicer: FederationServicer) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """The service's handlers, parsing requests themselves.

    The generated code lets gRPC parse requests, and a message that does not parse
    then ends as UNKNOWN with the parser's exception text. Here it is an
    INVALID_ARGUMENT for an authorized caller, like any other bad request.
    """
    methods: dict[str, tuple[Any, Any, Callable[[Any, Context], Awaitable[Any]]]] = {
        "GetRoster": (pb.GetRosterRequest, pb.GetRosterResponse, servicer.GetRoster),
        "GetCheckpoint": (
            pb.GetCheckpointRequest,
            pb.GetCheckpointResponse,
            servicer.GetCheckpoint,
        ),
        "GetEntries": (pb.GetEntriesRequest, pb.GetEntriesResponse, servicer.GetEntries),
        "SubmitCosignature": (
            pb.SubmitCosignatureRequest,
            pb.SubmitCosignatureResponse,
            servicer.SubmitCosignature,
        ),
        "EvaluateOprf": (pb.EvaluateOprfRequest, pb.EvaluateOprfResponse, servicer.EvaluateOprf),
        "RequestBundle": (
            pb.RequestBundleRequest,
            pb.RequestBundleResponse,
            servicer.RequestBundle,
        ),
        "GetBundleStatus": (
            pb.GetBundleStatusRequest,
            pb.GetBundleStatusResponse,
            servicer.GetBundleStatus,
        ),
        "AckBundle": (pb.AckBundleRequest, pb.AckBundleResponse, servicer.AckBundle),
        "ShareMatter": (pb.ShareMatterRequest, pb.ShareMatterResponse, servicer.ShareMatter),
    }

    def parsing(
        name: str, request_type: Any, method: Callable[[Any, Context], Awaitable[Any]]
    ) -> Callable[[bytes, Context], Awaitable[Any]]:
        async def handle(raw: bytes, context: Context) -> Any:
            try:
                request = request_type.FromString(raw)
            except DecodeError:
                return await servicer.reject_unparsable(name, request_type.__name__, context)
            return await method(request, context)

        return handle

    def parsing_stream(
        name: str, request_type: Any, method: Callable[[Any, Context], AsyncIterator[Any]]
    ) -> Callable[[bytes, Context], AsyncIterator[Any]]:
        async def handle(raw: bytes, context: Context) -> AsyncIterator[Any]:
            try:
                request = request_type.FromString(raw)
            except DecodeError:
                await servicer.reject_unparsable(name, request_type.__name__, context)
                return
            async for response in method(request, context):
                yield response

        return handle

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        name: grpc.unary_unary_rpc_method_handler(
            parsing(name, request_type, method),
            response_serializer=response_type.SerializeToString,
        )
        for name, (request_type, response_type, method) in methods.items()
    }
    handlers["FetchBundle"] = grpc.unary_stream_rpc_method_handler(
        parsing_stream("FetchBundle", pb.FetchBundleRequest, servicer.FetchBundle),
        response_serializer=pb.FetchBundleResponse.SerializeToString,
    )
    return handlers


class _TrustedClients:
    """The server's certificate configuration: our key pair, the current members' certificates.

    `fetch` runs on a gRPC thread before every handshake. It reads only the newest
    roster version (one small query) and rebuilds the configuration when the
    version and then the set of certificates changed; it never raises (None keeps
    the configuration in use).
    """

    def __init__(self, store: FederationStore, key_pem: bytes, cert_pem: bytes) -> None:
        self._store = store
        self._key_pem = key_pem
        self._cert_pem = cert_pem
        self._lock = threading.Lock()
        self._version: int | None = None
        self._roots = b""

    def initial(self) -> grpc.ServerCertificateConfiguration:
        version, roots = self._load()
        with self._lock:
            self._version, self._roots = version, roots
        return self._configuration(roots)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            version = self._roster_version()
            with self._lock:
                if version == self._version:
                    return None
            version, roots = self._load()
            with self._lock:
                changed = roots != self._roots
                self._version, self._roots = version, roots
            if not changed:
                return None
            log.info("federation.trusted_certificates_changed", roster_version=version)
            return self._configuration(roots)
        except Exception as e:  # noqa: BLE001 - must never raise into gRPC
            log.error("federation.certificate_fetch_failed", error=type(e).__name__)
            return None

    def _roster_version(self) -> int | None:
        with self._store.db.read() as s:
            return s.scalar(select(func.max(m.RosterVersion.version)))

    def _load(self) -> tuple[int | None, bytes]:
        version = self._roster_version()
        roster = self._store.roster()
        if roster is None:
            return version, self._cert_pem  # nobody else can connect
        certificates = self._store.certificates(roster)
        roots = [certificates[state] for state in sorted(certificates)]
        # A member whose TLS key the roster in force rotated still presents its old
        # certificate until it has this version: it may fetch it (GetRoster only).
        previous = _previous_roster(self._store, roster)
        if previous is not None:
            earlier = self._store.certificates(previous)
            for member in previous.members:
                now = roster.member(member.state)
                if now is not None and now.tls_pin != member.tls_pin and member.state in earlier:
                    roots.append(earlier[member.state])
        return version, b"".join(roots)

    def _configuration(self, roots: bytes) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self._key_pem, self._cert_pem)], root_certificates=roots
        )


def _previous_roster(store: FederationStore, roster: Roster) -> Roster | None:
    """The version before `roster`, if this node applied it (stored after verification)."""
    if roster.version < 2:
        return None
    envelopes = store.roster_envelopes(after_version=roster.version - 2)
    if len(envelopes) < 2:
        return None
    return Roster.from_payload(Envelope.from_json(envelopes[0]).payload)


def _rotating_member(store: FederationStore, roster: Roster, context: Any) -> Member | None:
    """The member calling with the TLS certificate the previous roster version pinned for
    it, when the version in force rotated it (the member has not switched yet): allowed to
    fetch the roster that names its new keys, nothing else."""
    pin = peer_pin(context)
    previous = _previous_roster(store, roster)
    if pin is None or previous is None:
        return None
    before = previous.member_by_pin(pin)
    now = roster.member(before.state) if before is not None else None
    if before is None or now is None or now.tls_pin == before.tls_pin:
        return None
    return now


async def start_federation_server(
    *,
    servicer: FederationServicer,
    store: FederationStore,
    listen: str,
    tls_key_pem: bytes,
    tls_cert_pem: bytes,
    max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_BYTES,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    health_servicer: health.aio.HealthServicer | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Serve FederationService (and gRPC health) with mutual TLS; returns the server and port.

    Only the current roster members' certificates are trusted as clients (our own
    alone before the first roster). The caller stops the server; it may pass the health
    servicer to keep setting its statuses (node.monitor.watch_health).
    """
    host, port = parse_host_port(listen, setting="federation.listen")
    trusted = _TrustedClients(store, tls_key_pem, tls_cert_pem)
    initial = await asyncio.to_thread(trusted.initial)
    credentials = grpc.dynamic_ssl_server_credentials(
        initial,
        trusted.fetch,  # type: ignore[arg-type]  # None keeps the configuration (grpc docs)
        require_client_authentication=True,
    )
    server = grpc.aio.server(
        interceptors=tuple(interceptors),
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_receive_message_bytes),
        ],
    )
    handlers = _method_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
    health_servicer = health_servicer or health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_secure_port(address, credentials)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise StorageError(f"cannot listen on {listen}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("federation.started", host=host, port=bound)
    return server, bound
