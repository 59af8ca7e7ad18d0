"""The node's gRPC server: `compact.v1.NodeService`, health and reflection (grpc.aio).

Authentication and error mapping happen here, at the boundary: every handler
authenticates the bearer token and checks the permission the method needs;
every exception is mapped to a status code and a message that holds no
secrets and no personal data. Database and file work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from compact.v1 import node_pb2 as pb
from compact.v1 import node_pb2_grpc as pb_grpc
from crypto.errors import CryptoError
from crypto.keystore import NodeKeys
from node import queries, serde
from node.blobstore import BlobMissingError
from node.config import Config, parse_host_port
from node.errors import (
    AuthenticationError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)
from node.evidence import ResolvedEvidence, StagedEvidence
from node.importfile import Decoded
from node.importformat import decode_line, evidence_path_problem
from node.ingest import NodeStorage, ingest
from node.monitor import HealthServicer, Metrics, MetricsEndpoint, watch_health
from node.normalize import KeyQueryError, parse_query_key
from node.records import IngestReport, LineError, SearchFilters, SearchQuery
from node.roles import PERMISSION_TEXT, Permission
from node.setup import clear_server_info, write_server_info
from node.users import Principal, authenticate
from node.vocab import AGENCY, CONDUCT, LOCATION_KIND, STATUS

if TYPE_CHECKING:
    from node.fednode import FederationNode

log = structlog.get_logger("compact.server")
SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["NodeService"].full_name
_GLOBAL_ID: Final = re.compile(r"^[A-Z]{2}-[0-9a-f-]{36}$")
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_MAX_REPORTED_ERRORS: Final = 1000
#: The permission each NodeService method needs (docs/roles.md; tests/test_roles.py).
#: GetIncident returns people, narrative and street address only to READ_PERSONAL.
METHOD_PERMISSIONS: Final = {
    "Ingest": Permission.INGEST,
    "GetIncident": Permission.READ,
    "SearchIncidents": Permission.READ,
    "GetEvidence": Permission.READ_EVIDENCE,
}

T = TypeVar("T")


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _status_for(e: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(e, _Abort):
        return e.code, e.message
    if isinstance(e, InvalidArgumentError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(e)
    if isinstance(e, NotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(e)
    if isinstance(e, PermissionDeniedError):
        return grpc.StatusCode.PERMISSION_DENIED, str(e)
    if isinstance(e, AuthenticationError):
        return grpc.StatusCode.UNAUTHENTICATED, str(e)
    if isinstance(e, CryptoError):
        return grpc.StatusCode.DATA_LOSS, "stored data failed its integrity check"
    if isinstance(e, BlobMissingError):
        return grpc.StatusCode.DATA_LOSS, str(e)
    if isinstance(e, StorageError):
        return grpc.StatusCode.UNAVAILABLE, str(e)
    return grpc.StatusCode.INTERNAL, "internal error"


def _bind(context: grpc.aio.ServicerContext[Any, Any], method: str) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(rpc=method, request_id=secrets.token_hex(6))
    del context


@dataclass(frozen=True)
class Unparsable:
    """What NodeService's request parser gives for bytes that are no message of the type:
    the method's boundary answers it with INVALID_ARGUMENT (gRPC's own parsing would
    answer UNKNOWN or INTERNAL, as if the node were broken)."""

    type_name: str

    def error(self) -> InvalidArgumentError:
        return InvalidArgumentError("request", f"not a valid {self.type_name} message")


def _tolerant(request_type: Any) -> Callable[[bytes], Any]:
    def parse(raw: bytes) -> Any:
        try:
            return request_type.FromString(raw)
        except DecodeError:
            return Unparsable(request_type.__name__)

    return parse


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Unparsable):
            raise request.error()
        yield request


def _parsed(request: Any) -> Any:
    """A parsed request as it is, a request stream checked message by message; bytes that
    do not parse raise InvalidArgumentError (inside the boundary, so it becomes a status)."""
    if isinstance(request, Unparsable):
        raise request.error()
    if hasattr(request, "__aiter__"):
        return _checked_stream(request)
    return request


def node_service_handler(servicer: NodeServicer) -> grpc.GenericRpcHandler:
    """NodeService's methods, with requests parsed by `_tolerant` instead of gRPC."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Ingest": grpc.stream_unary_rpc_method_handler(
            servicer.Ingest,
            request_deserializer=_tolerant(pb.IngestRequest),
            response_serializer=pb.IngestResponse.SerializeToString,
        ),
        "GetIncident": grpc.unary_unary_rpc_method_handler(
            servicer.GetIncident,
            request_deserializer=_tolerant(pb.GetIncidentRequest),
            response_serializer=pb.GetIncidentResponse.SerializeToString,
        ),
        "SearchIncidents": grpc.unary_unary_rpc_method_handler(
            servicer.SearchIncidents,
            request_deserializer=_tolerant(pb.SearchIncidentsRequest),
            response_serializer=pb.SearchIncidentsResponse.SerializeToString,
        ),
        "GetEvidence": grpc.unary_stream_rpc_method_handler(
            servicer.GetEvidence,
            request_deserializer=_tolerant(pb.GetEvidenceRequest),
            response_serializer=pb.GetEvidenceResponse.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def boundary(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Map every exception of a unary or client-streaming handler to a status."""

    @functools.wraps(method)
    async def wrapper(
        self: NodeServicer, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> T:
        _bind(context, method.__name__)
        started = time.monotonic()
        try:
            result = await method(self, _parsed(request), context)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the boundary: every error becomes a status
            code, message = _status_for(e)
            _log_failure(code, e, started)
            await context.abort(code, message)
        log.info("rpc.ok", duration_ms=_ms(started))
        return result

    return wrapper


def streaming_boundary(
    method: Callable[..., AsyncIterator[T]],
) -> Callable[..., AsyncIterator[T]]:
    """The same for server-streaming handlers."""

    @functools.wraps(method)
    async def wrapper(
        self: NodeServicer, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[T]:
        _bind(context, method.__name__)
        started = time.monotonic()
        try:
            async for item in method(self, _parsed(request), context):
                yield item
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            code, message = _status_for(e)
            _log_failure(code, e, started)
            await context.abort(code, message)
        log.info("rpc.ok", duration_ms=_ms(started))

    return wrapper


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _log_failure(code: grpc.StatusCode, e: BaseException, started: float) -> None:
    fields = {"code": code.name, "error": type(e).__name__, "duration_ms": _ms(started)}
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS):
        log.error("rpc.failed", **fields, exc_info=e)
    else:
        log.info("rpc.refused", **fields)


class _Spool:
    """One evidence file arriving in an Ingest stream, written to disk and hashed."""

    def __init__(self, path: str, target: Path) -> None:
        self.path = path
        self.target = target
        self.size = 0
        self._hash = hashlib.sha256()
        self._f = target.open("xb")

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.size += len(data)

    def finish(self) -> ResolvedEvidence:
        self._f.close()
        return ResolvedEvidence(self.target, self._hash.hexdigest(), self.size)

    def close(self) -> None:
        self._f.close()


class NodeServicer(pb_grpc.NodeServiceServicer):
    def __init__(self, config: Config, storage: NodeStorage) -> None:
        self.config = config
        self.storage = storage

    async def _principal(
        self, context: grpc.aio.ServicerContext[Any, Any], permission: Permission
    ) -> Principal:
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value.removeprefix("Bearer ").strip()
        principal = await asyncio.to_thread(authenticate, self.storage.db, token) if token else None
        if principal is None:
            raise AuthenticationError("a valid bearer token is required")
        structlog.contextvars.bind_contextvars(user=principal.name)
        if not principal.may(permission):
            # A refusal of a known user is audited (so are its successful reads of
            # personal data and evidence); an unknown caller is only logged, so that
            # a flood of bad tokens cannot grow the audit trail.
            await asyncio.to_thread(self._audit_denied, principal, permission)
            raise PermissionDeniedError(
                f"the role {principal.role!r} may not {PERMISSION_TEXT[permission]}"
            )
        return principal

    def _audit_denied(self, principal: Principal, permission: Permission) -> None:
        method = structlog.contextvars.get_contextvars().get("rpc", "")
        with self.storage.db.write() as s:
            queries.audit(
                s,
                actor=principal.name,
                action="denied",
                target=f"NodeService.{method}",
                outcome="refused",
                detail={"role": principal.role, "permission": permission.value},
            )

    @boundary
    async def Ingest(
        self,
        request_iterator: AsyncIterator[pb.IngestRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.IngestResponse:
        principal = await self._principal(context, METHOD_PERMISSIONS["Ingest"])
        staging = self.config.blob_dir / ".staging" / f"ingest-{secrets.token_hex(8)}"
        try:
            options, lines, files = await self._receive(request_iterator, staging)
            report = await asyncio.to_thread(
                ingest,
                self.storage,
                lines,
                StagedEvidence(files),
                actor=principal.name,
                source_name=options.source_name[:200] or "grpc",
                skip_invalid=options.skip_invalid,
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        log.info(
            "ingest.done",
            imported=report.imported,
            unchanged=report.unchanged,
            rejected=report.rejected,
        )
        if report.errors and not options.skip_invalid:
            await _abort_invalid_import(context, report)
        return serde.report_to_proto(report)

    async def _receive(
        self, requests: AsyncIterator[pb.IngestRequest], staging: Path
    ) -> tuple[pb.IngestOptions, list[Decoded], dict[str, ResolvedEvidence]]:
        """Read an Ingest stream: options, lines, then evidence spooled to `staging`."""
        limits = self.config.limits
        options = pb.IngestOptions()
        lines: list[Decoded] = []
        files: dict[str, ResolvedEvidence] = {}
        spool: _Spool | None = None
        first = True
        try:
            async for msg in requests:
                kind = msg.WhichOneof("item")
                if kind == "options":
                    if not first:
                        raise InvalidArgumentError("options", "must be the first message")
                    options = msg.options
                elif kind == "line":
                    if len(lines) >= limits.max_import_lines:
                        raise InvalidArgumentError(
                            "line", f"more than {limits.max_import_lines} lines"
                        )
                    n = msg.line.line_number
                    if n == 0:
                        raise InvalidArgumentError("line.line_number", "must be 1 or more")
                    decoded = decode_line(n, msg.line.json, limits)
                    lines.append(decoded if isinstance(decoded, LineError) else (n, decoded))
                elif kind == "evidence":
                    chunk = msg.evidence
                    if spool is None:
                        if chunk.path in files:
                            raise InvalidArgumentError(
                                "evidence.path", "the same file was sent twice"
                            )
                        if problem := evidence_path_problem(chunk.path):
                            raise InvalidArgumentError("evidence.path", problem)
                        staging.mkdir(parents=True, exist_ok=True)
                        spool = _Spool(chunk.path, staging / f"{len(files)}.part")
                    elif spool.path != chunk.path:
                        raise InvalidArgumentError(
                            "evidence.path", "a file's chunks must be contiguous and end with last"
                        )
                    if spool.size + len(chunk.data) > limits.max_evidence_file_bytes:
                        raise InvalidArgumentError(
                            "evidence.data",
                            f"a file is over the limit of {limits.max_evidence_file_bytes} bytes",
                        )
                    await asyncio.to_thread(spool.write, chunk.data)
                    if chunk.last:
                        files[spool.path] = spool.finish()
                        spool = None
                else:
                    raise InvalidArgumentError("item", "empty message")
                first = False
            if spool is not None:
                raise InvalidArgumentError("evidence.last", "the stream ended inside a file")
        finally:
            if spool is not None:
                spool.close()
        if not lines:
            raise InvalidArgumentError("line", "the import holds no records")
        return options, lines, files

    @boundary
    async def GetIncident(
        self, request: pb.GetIncidentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetIncidentResponse:
        principal = await self._principal(context, METHOD_PERMISSIONS["GetIncident"])
        _check_global_id(request.global_id)
        view = await asyncio.to_thread(
            queries.get_incident,
            self.storage.db,
            self.storage.fields,
            request.global_id,
            actor=principal.name,
            personal=principal.may(Permission.READ_PERSONAL),
        )
        return pb.GetIncidentResponse(incident=serde.incident_to_proto(view))

    @boundary
    async def SearchIncidents(
        self, request: pb.SearchIncidentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SearchIncidentsResponse:
        await self._principal(context, METHOD_PERMISSIONS["SearchIncidents"])
        query = serde.query_from_proto(request)
        filters = search_filters(query, default_state=self.config.node.state)
        page = await asyncio.to_thread(
            queries.search,
            self.storage.db,
            filters,
            page_size=query.page_size,
            page_token=query.page_token,
        )
        return serde.page_to_proto(page)

    @streaming_boundary
    async def GetEvidence(
        self, request: pb.GetEvidenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.GetEvidenceResponse]:
        principal = await self._principal(context, METHOD_PERMISSIONS["GetEvidence"])
        _check_global_id(request.global_id)
        if not _HEX64.match(request.sha256):
            raise InvalidArgumentError("sha256", "expected 64 lowercase hex digits")
        evidence_id, view = await asyncio.to_thread(
            queries.evidence_item, self.storage.db, request.global_id, request.sha256
        )
        await asyncio.to_thread(
            queries.record_custody,
            self.storage.db,
            evidence_id,
            kind="viewed",
            actor=principal.name,
            detail={"incident": request.global_id, "sha256": request.sha256, "via": "GetEvidence"},
            target=request.global_id,
        )
        yield pb.GetEvidenceResponse(item=serde.evidence_to_proto(view))
        chunks: Iterator[bytes] = self.storage.blobs.read(
            request.sha256, chunk_size=self.config.server.evidence_chunk_bytes
        )
        while (data := await asyncio.to_thread(next, chunks, None)) is not None:
            yield pb.GetEvidenceResponse(data=data)


def _check_global_id(value: str) -> None:
    if not _GLOBAL_ID.match(value):
        raise InvalidArgumentError("global_id", "expected a global incident id such as IL-<uuid>")


def search_filters(request: SearchQuery, *, default_state: str) -> SearchFilters:
    """Validate a search request's filters; errors name the field."""

    def vocab(field: str, value: str, allowed: frozenset[str]) -> str | None:
        if value and value not in allowed:
            raise InvalidArgumentError(field, "not one of the allowed values")
        return value or None

    for i, c in enumerate(request.conduct):
        vocab(f"conduct[{i}]", c, CONDUCT)
    key = None
    if request.identifier_key:
        try:
            key = parse_query_key(request.identifier_key, default_state=default_state)
        except KeyQueryError as e:
            raise InvalidArgumentError("identifier_key", str(e)) from None
    if len(request.county) > 1000:
        raise InvalidArgumentError("county", "too long")
    return SearchFilters(
        occurred_from=queries.parse_date("occurred_from", request.occurred_from),
        occurred_to=queries.parse_date("occurred_to", request.occurred_to),
        county=request.county or None,
        location_kind=vocab("location_kind", request.location_kind, LOCATION_KIND),
        conduct=tuple(request.conduct),
        agency=vocab("agency", request.agency, AGENCY),
        status=vocab("status", request.status, STATUS),
        identifier_key=key,
    )


async def _abort_invalid_import(
    context: grpc.aio.ServicerContext[Any, Any], report: IngestReport
) -> None:
    """INVALID_ARGUMENT naming the first bad fields, with every one in the details."""
    shown = "; ".join(str(e) for e in report.errors[:5])
    more = f" (and {len(report.errors) - 5} more)" if len(report.errors) > 5 else ""
    message = f"{report.rejected} line(s) rejected, nothing imported: {shown}{more}"
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=f"line {e.line_number}: {e.field}" if e.field else f"line {e.line_number}",
                description=e.reason,
            )
            for e in report.errors[:_MAX_REPORTED_ERRORS]
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad_request)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])
    await context.abort_with_status(rpc_status.to_status(status))


def server_credentials(key_pem: bytes, cert_pem: bytes) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(key_pem, cert_pem)])


async def serve(
    config: Config,
    storage: NodeStorage,
    *,
    tls_key_pem: bytes,
    keys: NodeKeys | None = None,
    retired: Sequence[NodeKeys] = (),
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str, int], None] | None = None,
) -> bool:
    """Run until SIGTERM/SIGINT (or `stop` is set), then shut down gracefully.

    With `keys`, FederationService runs beside NodeService (mutual TLS, members only,
    `federation.listen`) and the federation loop publishes, syncs and witnesses in the
    background (node.fednode); `retired` are the node's keys before a rotation.

    Returns True if it stopped because the roster in force made rotated keys current
    (node.keyrotation): the caller unlocks them and serves again.
    """
    s = config.server
    metrics = Metrics(
        storage.db, config.node.state, oprf_daily_limit=config.federation.oprf_daily_limit
    )
    server = grpc.aio.server(
        interceptors=(metrics.interceptor(),),
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", s.max_receive_message_bytes),
            ("grpc.max_send_message_length", s.max_receive_message_bytes),
        ],
        maximum_concurrent_rpcs=s.max_concurrent_rpcs,
    )
    server.add_generic_rpc_handlers((node_service_handler(NodeServicer(config, storage)),))
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    host, port = parse_host_port(s.listen, setting="server.listen")
    cert_pem = config.path(config.keys.tls_certificate).read_bytes()
    bound = server.add_secure_port(f"{host}:{port}", server_credentials(tls_key_pem, cert_pem))
    if bound == 0:
        raise StorageError(f"cannot listen on {s.listen}")
    stop = stop or asyncio.Event()
    # The handlers go in before anything can tell a client that the node is up
    # (server.json, on_ready): a Ctrl-C that arrives during start-up then takes the
    # same graceful path as one that arrives later, instead of a KeyboardInterrupt.
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    federation: _Federation | None = None
    endpoint: MetricsEndpoint | None = None
    watching: asyncio.Task[None] | None = None
    try:
        await server.start()
        await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        if config.monitoring.metrics_listen:
            mhost, mport = parse_host_port(
                config.monitoring.metrics_listen, setting="monitoring.metrics_listen"
            )
            try:
                endpoint = MetricsEndpoint(metrics, mhost, mport)
            except OSError:
                raise StorageError(f"cannot listen on {config.monitoring.metrics_listen}") from None
            write_server_info(config, mhost, endpoint.port, name="metrics.json")
            log.info("metrics.started", host=mhost, port=endpoint.port)
        write_server_info(config, host, bound)
        log.info("server.started", host=host, port=bound, state=config.node.state)
        if keys:
            federation = await _start_federation(config, storage, keys, retired, stop, metrics)
        watching = asyncio.create_task(
            watch_health(
                storage.db,
                config.node.state,
                node=health_servicer,
                node_services=(SERVICE_NAME,),
                federation=(federation.health, federation.service) if federation else None,
                interval_seconds=config.monitoring.health_interval_seconds,
                peer_stale_seconds=config.monitoring.peer_stale_seconds,
                stop=stop,
            ),
            name="health",
        )
        if on_ready:
            on_ready(host, bound)
        await stop.wait()
        log.info("server.stopping", grace_seconds=s.shutdown_grace_seconds)
        await watching
        await health_servicer.enter_graceful_shutdown()
        if federation is not None:
            await federation.health.enter_graceful_shutdown()
        await server.stop(s.shutdown_grace_seconds)
        if federation is not None:
            await federation.server.stop(s.shutdown_grace_seconds)
            await asyncio.wait_for(federation.loop, timeout=s.shutdown_grace_seconds + 5)
    except BaseException:
        # A failed start (say, the federation port is taken) must not leave the
        # NodeService port open behind it.
        await server.stop(0)
        if watching is not None:
            watching.cancel()
        if federation is not None:
            await federation.server.stop(0)
            federation.loop.cancel()
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if endpoint is not None:
            endpoint.close()
        clear_server_info(config)
        clear_server_info(config, name="federation.json")
        clear_server_info(config, name="metrics.json")
        storage.db.dispose()
        log.info("server.stopped")
    return federation is not None and federation.node.rotated


@dataclass(frozen=True)
class _Federation:
    server: grpc.aio.Server
    loop: asyncio.Task[None]
    health: HealthServicer
    service: str
    node: FederationNode


async def _start_federation(
    config: Config,
    storage: NodeStorage,
    keys: NodeKeys,
    retired: Sequence[NodeKeys],
    stop: asyncio.Event,
    metrics: Metrics,
) -> _Federation:
    from node.fednode import FederationNode
    from node.fedservice import SERVICE_NAME as FEDERATION_SERVICE
    from node.fedservice import FederationServicer, start_federation_server

    node = FederationNode(config, keys, storage, retired=retired)
    servicer = FederationServicer(
        state=config.node.state,
        store=node.store,
        log=node.log,
        db=storage.db,
        settings=config.federation,
        bundles=node.bundles,
        sealer=node.sealer,
        matters=node.matters,
    )
    fed_health = HealthServicer()
    fed_server, port = await start_federation_server(
        servicer=servicer,
        store=node.store,
        listen=config.federation.listen,
        tls_key_pem=keys.tls_key_pem,
        tls_cert_pem=config.path(config.keys.tls_certificate).read_bytes(),
        max_receive_message_bytes=config.server.max_receive_message_bytes,
        interceptors=(metrics.interceptor(),),
        health_servicer=fed_health,
    )
    host, _ = parse_host_port(config.federation.listen, setting="federation.listen")
    write_server_info(config, host, port, name="federation.json")
    log.info("federation.started", host=host, port=port)
    task = asyncio.create_task(node.run_forever(stop), name="federation-loop")
    return _Federation(fed_server, task, fed_health, FEDERATION_SERVICE, node)
