"""Monitoring: the Prometheus metrics endpoint and the health the gRPC health service
reports (docs/operations.md, "Monitoring", lists every metric and what to alert on).

Two kinds of metric:

- **Calls**, counted as they happen by a gRPC server interceptor on both of the node's
  servers: requests by service, method and status code, and a latency histogram. Only
  methods the server has registered are labelled, so a client cannot grow the label
  set with made-up method names.
- **State**, read from the database when Prometheus scrapes (at most once per
  `SNAPSHOT_TTL` seconds): log size and witnesses, sync lag per peer, OPRF budget used,
  bundle transfer bytes and failures, audit events not yet in the log, alerts. These
  survive a restart because the database holds them.

Nothing here carries personal data: the labels are member states, directions, states
of a request and method names; the values are counts, sizes and times.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final, TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text

from node import models as m
from node.audit import NOT_LOGGED
from node.db import Database
from node.fedstore import current_roster

log = structlog.get_logger("compact.monitor")
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

#: Seconds a database snapshot is reused: scrapes cannot load the database faster.
SNAPSHOT_TTL: Final = 2.0
#: Health service names beside "" and the gRPC services (docs/operations.md).
PEERS_SERVICE: Final = "compact.peers"
PEER_SERVICE_PREFIX: Final = "compact.peer."
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


# --- state read from the database --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerState:
    state: str
    last_attempt: datetime | None
    last_success: datetime | None
    failures: int
    checkpoint_size: int | None  # the peer's newest checkpoint this node accepted
    replica_size: int  # how far this node has verified the peer's log

    @property
    def lag_entries(self) -> int | None:
        if self.checkpoint_size is None:
            return None
        return max(0, self.checkpoint_size - self.replica_size)

    def stale(self, now: datetime, limit_seconds: float) -> bool:
        """No successful sync within `limit_seconds` (or never)."""
        return self.last_success is None or (now - self.last_success).total_seconds() > (
            limit_seconds
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the database says about the node's health at `taken_at`."""

    taken_at: datetime
    log_entries: int
    checkpoint_size: int
    checkpoint_at: datetime | None
    witnessed_sizes: Mapping[str, int]  # witness -> the largest checkpoint it cosigned
    peers: tuple[PeerState, ...]
    oprf_used_today: Mapping[str, int]  # requester -> elements evaluated today (UTC)
    bundle_bytes: Mapping[str, int]  # direction -> bytes sent or verified
    bundle_requests: Mapping[tuple[str, str], int]  # (direction, state) -> requests
    audit_unlogged: int
    alerts: Mapping[str, int] = field(default_factory=dict)  # kind -> alerts


def take_snapshot(db: Database, state: str, *, now: datetime | None = None) -> Snapshot:
    """Read the node's state in one read transaction."""
    now = now or datetime.now(UTC)
    today: date = now.date()
    roster = current_roster(db)
    with db.read() as s:
        last = s.execute(select(func.max(m.LogEntry.index))).scalar()
        checkpoint = s.execute(
            select(m.LogCheckpoint.size, m.LogCheckpoint.created_at)
            .order_by(m.LogCheckpoint.size.desc())
            .limit(1)
        ).first()
        witnessed = {
            str(w): int(size)
            for w, size in s.execute(
                select(m.LogCosignature.witness, func.max(m.LogCosignature.size)).group_by(
                    m.LogCosignature.witness
                )
            )
        }
        status = {row.state: row for row in s.scalars(select(m.PeerStatus))}
        replica = {
            str(st): (int(size), int(checkpoint))
            for st, size, checkpoint in s.execute(
                select(m.ReplicaLog.state, m.ReplicaLog.size, m.ReplicaLog.checkpoint_size)
            )
        }
        oprf = {
            str(r): int(n)
            for r, n in s.execute(
                select(m.OprfUsage.requester, m.OprfUsage.elements).where(m.OprfUsage.day == today)
            )
        }
        bundle_bytes = {
            str(d): int(n or 0)
            for d, n in s.execute(
                select(m.BundleRequestRow.direction, func.sum(m.Bundle.verified_offset))
                .join(m.BundleRequestRow, m.Bundle.request_row_id == m.BundleRequestRow.id)
                .group_by(m.BundleRequestRow.direction)
            )
        }
        requests = {
            (str(d), str(st)): int(n)
            for d, st, n in s.execute(
                select(
                    m.BundleRequestRow.direction, m.BundleRequestRow.state, func.count()
                ).group_by(m.BundleRequestRow.direction, m.BundleRequestRow.state)
            )
        }
        unlogged = int(
            s.execute(
                select(func.count())
                .select_from(m.AuditEvent)
                .where(m.AuditEvent.log_index.is_(None), m.AuditEvent.action.not_in(NOT_LOGGED))
            ).scalar_one()
        )
        alerts = {
            str(k): int(n)
            for k, n in s.execute(select(m.Alert.kind, func.count()).group_by(m.Alert.kind))
        }
    members = [x.state for x in roster.members if x.state != state] if roster else []
    for st in sorted(status):  # a member that left the roster keeps its row; show it too
        if st not in members and st != state:
            members.append(st)
    peers = tuple(
        PeerState(
            state=st,
            last_attempt=status[st].last_attempt if st in status else None,
            last_success=status[st].last_success if st in status else None,
            failures=int(status[st].failures) if st in status else 0,
            checkpoint_size=replica[st][1] if st in replica else None,
            replica_size=replica[st][0] if st in replica else 0,
        )
        for st in members
    )
    return Snapshot(
        taken_at=now,
        log_entries=0 if last is None else int(last) + 1,
        checkpoint_size=int(checkpoint.size) if checkpoint else 0,
        checkpoint_at=checkpoint.created_at if checkpoint else None,
        witnessed_sizes=witnessed,
        peers=peers,
        oprf_used_today=oprf,
        bundle_bytes=bundle_bytes,
        bundle_requests=requests,
        audit_unlogged=unlogged,
        alerts=alerts,
    )


def database_reachable(db: Database) -> bool:
    """One trivial query; False (and a log line) on any error."""
    try:
        with db.read() as s:
            s.execute(text("SELECT 1"))
    except Exception as e:  # noqa: BLE001 - any failure means "not serving"
        log.warning("health.database_unreachable", error=type(e).__name__)
        return False
    return True


# --- Prometheus ---------------------------------------------------------------------------


def _ts(at: datetime | None) -> float:
    return 0.0 if at is None else at.timestamp()


class _StateCollector(Collector):
    """The metrics read from the database, at scrape time."""

    def __init__(
        self, db: Database, state: str, oprf_daily_limit: int, clock: Callable[[], datetime]
    ) -> None:
        self._db, self._state, self._limit, self._clock = db, state, oprf_daily_limit, clock
        self._lock = threading.Lock()
        self._cached: tuple[float, Snapshot | None] = (-SNAPSHOT_TTL, None)

    def _snapshot(self) -> Snapshot | None:
        with self._lock:
            at, snap = self._cached
            if time.monotonic() - at < SNAPSHOT_TTL:
                return snap
            try:
                snap = take_snapshot(self._db, self._state, now=self._clock())
            except Exception as e:  # noqa: BLE001 - a scrape reports the failure as a metric
                log.warning("metrics.snapshot_failed", error=type(e).__name__)
                snap = None
            self._cached = (time.monotonic(), snap)
            return snap

    def collect(self) -> Iterator[Any]:
        snap = self._snapshot()
        yield GaugeMetricFamily(
            "compact_database_up",
            "1 if the node's database answered the last scrape's queries, else 0.",
            value=0 if snap is None else 1,
        )
        if snap is None:
            return
        yield from _state_metrics(snap, self._limit)


def _state_metrics(snap: Snapshot, oprf_daily_limit: int) -> Iterator[Any]:
    now = snap.taken_at
    yield GaugeMetricFamily(
        "compact_log_entries", "Entries in this node's transparency log.", value=snap.log_entries
    )
    yield GaugeMetricFamily(
        "compact_log_checkpoint_size",
        "Size of this node's newest signed checkpoint.",
        value=snap.checkpoint_size,
    )
    yield GaugeMetricFamily(
        "compact_log_checkpoint_timestamp_seconds",
        "When the newest checkpoint was signed (Unix time; 0: none yet).",
        value=_ts(snap.checkpoint_at),
    )
    yield GaugeMetricFamily(
        "compact_log_witnesses",
        "Witnesses that cosigned this node's newest checkpoint.",
        value=sum(1 for size in snap.witnessed_sizes.values() if size >= snap.checkpoint_size),
    )
    lag = GaugeMetricFamily(
        "compact_log_witness_lag_entries",
        "Entries of this node's newest checkpoint that a witness has not cosigned yet.",
        labels=["witness"],
    )
    for peer in snap.peers:
        cosigned = snap.witnessed_sizes.get(peer.state, 0)
        lag.add_metric([peer.state], max(0, snap.checkpoint_size - cosigned))
    yield lag
    entries = GaugeMetricFamily(
        "compact_sync_lag_entries",
        "Entries of the peer's newest checkpoint this node accepted but has not verified yet.",
        labels=["peer"],
    )
    seconds = GaugeMetricFamily(
        "compact_sync_lag_seconds",
        "Seconds since this node last synced with a peer successfully (absent: never).",
        labels=["peer"],
    )
    success = GaugeMetricFamily(
        "compact_sync_last_success_timestamp_seconds",
        "When this node last synced with a peer successfully (Unix time; 0: never).",
        labels=["peer"],
    )
    failures = GaugeMetricFamily(
        "compact_sync_consecutive_failures",
        "Failed sync attempts with a peer since the last success.",
        labels=["peer"],
    )
    up = GaugeMetricFamily(
        "compact_peer_up", "1 if the last sync attempt with a peer succeeded.", labels=["peer"]
    )
    for peer in snap.peers:
        if peer.lag_entries is not None:
            entries.add_metric([peer.state], peer.lag_entries)
        if peer.last_success is not None:
            seconds.add_metric([peer.state], max(0.0, (now - peer.last_success).total_seconds()))
        success.add_metric([peer.state], _ts(peer.last_success))
        failures.add_metric([peer.state], peer.failures)
        up.add_metric([peer.state], 1 if peer.last_attempt and peer.failures == 0 else 0)
    yield from (entries, seconds, success, failures, up)
    used = GaugeMetricFamily(
        "compact_oprf_elements_used",
        "Identifier keys this node evaluated for a member today (UTC) with its OPRF share.",
        labels=["requester"],
    )
    for requester, n in sorted(snap.oprf_used_today.items()):
        used.add_metric([requester], n)
    yield used
    yield GaugeMetricFamily(
        "compact_oprf_daily_limit",
        "Identifier keys each member may have evaluated per UTC day (federation.oprf_daily_limit).",
        value=oprf_daily_limit,
    )
    sent = CounterMetricFamily(
        "compact_bundle_transfer_bytes",
        "Sealed bundle bytes served (outgoing: this node holds) or received and verified "
        "(incoming: this node asked).",
        labels=["direction"],
    )
    for direction in ("incoming", "outgoing"):
        sent.add_metric([_bundle_direction(direction)], snap.bundle_bytes.get(direction, 0))
    yield sent
    requests = GaugeMetricFamily(
        "compact_bundle_requests",
        "Bundle requests by direction and state; failed and quarantined are transfer failures.",
        labels=["direction", "state"],
    )
    for (direction, st), n in sorted(snap.bundle_requests.items()):
        requests.add_metric([_bundle_direction(direction), st], n)
    yield requests
    yield GaugeMetricFamily(
        "compact_audit_events_unlogged",
        "Audit events not yet entered in the transparency log (entered within a sync cycle).",
        value=snap.audit_unlogged,
    )
    alerts = GaugeMetricFamily(
        "compact_alerts", "Federation alerts recorded (compact alerts), by kind.", labels=["kind"]
    )
    for kind, n in sorted(snap.alerts.items()):
        alerts.add_metric([kind], n)
    yield alerts


def _bundle_direction(direction: str) -> str:
    """The request row's direction, said from the bytes' side: an incoming request is
    one a peer sent this node, so its bundle's bytes go out."""
    return {"incoming": "sent", "outgoing": "received"}.get(direction, direction)


class Metrics:
    """The node's metrics: one registry, the call counters and the state collector."""

    def __init__(
        self,
        db: Database,
        state: str,
        *,
        oprf_daily_limit: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "compact_rpc_requests",
            "gRPC calls served, by service, method and status code.",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "compact_rpc_duration_seconds",
            "Time to serve a gRPC call, by service and method.",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(db, state, oprf_daily_limit, clock))

    def observe(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        self.requests.labels(service, method, code.name).inc()
        self.latency.labels(service, method).observe(seconds)

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return _MetricsInterceptor(self)


# --- the interceptor ----------------------------------------------------------------------


def _code_of(
    context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


@contextlib.contextmanager
def _observed(
    observe: Callable[[str, grpc.StatusCode, float], None],
    name: str,
    context: grpc.aio.ServicerContext[Any, Any],
) -> Iterator[None]:
    """Observe one call of `name`: its status code (however it ended) and its duration."""
    started, error = time.monotonic(), None
    try:
        yield
    except BaseException as e:
        error = e
        raise
    finally:
        observe(name, _code_of(context, error), time.monotonic() - started)


class _MetricsInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        found = await continuation(handler_call_details)
        if found is None:  # an unknown method: not labelled (see the module's doc)
            return None
        handler: Any = found
        name = handler_call_details.method
        observe = self._metrics.observe
        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                with _observed(observe, name, context):
                    result = inner(request, context)
                    return await result if inspect.isawaitable(result) else result

            make: Any = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
            wrapped: grpc.RpcMethodHandler[_Req, _Resp] = make(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            return wrapped
        inner_stream = handler.unary_stream or handler.stream_stream
        behaviour: Callable[..., Any]
        if inspect.isasyncgenfunction(inner_stream):

            async def streaming(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                with _observed(observe, name, context):
                    async for item in inner_stream(request, context):
                        yield item

            behaviour = streaming
        else:  # a coroutine that answers with context.write() (the health service's Watch)

            async def writing(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
                with _observed(observe, name, context):
                    await inner_stream(request, context)

            behaviour = writing

        make_stream: Any = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        streamed: grpc.RpcMethodHandler[_Req, _Resp] = make_stream(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        return streamed


# --- the HTTP endpoint --------------------------------------------------------------------


class MetricsEndpoint:
    """prometheus_client's HTTP server (GET /metrics) on a thread; `port` is the bound one."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(port, addr=host, registry=metrics.registry)
        self.host = host
        self.port = int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- health -------------------------------------------------------------------------------


ServingStatus = int


class HealthServicer(health.aio.HealthServicer):
    """grpcio's asyncio health servicer, plus `List` (which it leaves unimplemented):
    every service name and its status, for `compact health`."""

    def __init__(self) -> None:
        super().__init__()
        self._statuses: dict[str, ServingStatus] = {"": health_pb2.HealthCheckResponse.SERVING}
        self._closing = False

    async def set(self, service: str, status: ServingStatus) -> None:
        if self._closing:
            return
        self._statuses[service] = status
        await super().set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        self._closing = True
        for name in self._statuses:
            self._statuses[name] = health_pb2.HealthCheckResponse.NOT_SERVING
        await super().enter_graceful_shutdown()

    async def List(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        del request, context
        messages: Any = health_pb2  # the type stubs predate List
        return messages.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._statuses.items()
            }
        )


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What the health service says: one status per service name."""

    statuses: Mapping[str, ServingStatus]


def health_report(
    *,
    database_ok: bool,
    snapshot: Snapshot | None,
    services: tuple[str, ...],
    peer_stale_seconds: float,
) -> HealthReport:
    """Every service is SERVING while the database answers. `compact.peers` is SERVING
    while every peer synced within `peer_stale_seconds`; `compact.peer.XX` says so of
    peer XX."""
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        (health_pb2.HealthCheckResponse.NOT_SERVING),
    )
    statuses: dict[str, ServingStatus] = {
        name: serving if database_ok else not_serving for name in ("", *services)
    }
    if snapshot is None:
        statuses[PEERS_SERVICE] = not_serving
        return HealthReport(statuses)
    fresh = True
    for peer in snapshot.peers:
        ok = not peer.stale(snapshot.taken_at, peer_stale_seconds)
        fresh = fresh and ok
        statuses[PEER_SERVICE_PREFIX + peer.state] = serving if ok else not_serving
    statuses[PEERS_SERVICE] = serving if fresh and database_ok else not_serving
    return HealthReport(statuses)


async def watch_health(
    db: Database,
    state: str,
    *,
    node: HealthServicer,
    node_services: tuple[str, ...],
    federation: tuple[HealthServicer, str] | None,
    interval_seconds: float,
    peer_stale_seconds: float,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Set the health statuses every `interval_seconds` until `stop` is set: all of them
    on the NodeService port; on the federation port (members see it) only "" and
    FederationService, which follow the database."""
    previous: Mapping[str, ServingStatus] = {}
    while not stop.is_set():
        ok = await asyncio.to_thread(database_reachable, db)
        snapshot: Snapshot | None = None
        if ok:
            try:
                snapshot = await asyncio.to_thread(take_snapshot, db, state, now=clock())
            except Exception as e:  # noqa: BLE001
                log.warning("health.snapshot_failed", error=type(e).__name__)
        report = health_report(
            database_ok=ok,
            snapshot=snapshot,
            services=node_services,
            peer_stale_seconds=peer_stale_seconds,
        )
        for name, status in report.statuses.items():
            if previous.get(name) != status:
                log.info(
                    "health.changed",
                    service=name or "(overall)",
                    status=health_pb2.HealthCheckResponse.ServingStatus.Name(status),
                )
            await node.set(name, status)
        if federation is not None:
            servicer, service = federation
            for name in ("", service):
                await servicer.set(name, report.statuses[""])
        previous = report.statuses
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
