"""Monitoring (issue 8): the Prometheus endpoint and the gRPC health service.

In-process: the interceptor counts calls by method and status code and labels no method
the server does not serve; the health report follows the database and each peer. With
three real nodes: the endpoint serves the metrics docs/operations.md lists, with the
values the node's own commands report, and `compact health` follows a peer that stops.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from node.config import Config
from node.db import Database
from node.monitor import (
    PEERS_SERVICE,
    Metrics,
    PeerState,
    Snapshot,
    health_report,
    take_snapshot,
)
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    NodeProcess,
    compact,
    form_compact,
    init_test_node,
    run_compact,
    set_setting,
    start_node,
)
from tests.test_bundle_transfer import wait_for as _wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def wait_for(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    _wait_for(what, check, timeout)


def _samples(registry_text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(registry_text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


# --- the interceptor, in process ----------------------------------------------------------


@pytest.fixture
def metrics_server(tmp_path: Path) -> Iterator[tuple[Metrics, str]]:
    """A plain-text loopback server with the metrics interceptor and a health servicer."""
    import asyncio
    import threading

    config = init_test_node(tmp_path, "IL")
    db = Database.from_url(config.database_url())
    metrics = Metrics(db, "IL", oprf_daily_limit=10)
    ready = threading.Event()
    stop: dict[str, Any] = {}
    port: list[int] = []

    async def run() -> None:
        server = grpc.aio.server(interceptors=(metrics.interceptor(),))
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        await servicer.set("known", SERVING)
        port.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        stop["event"] = asyncio.Event()
        stop["loop"] = asyncio.get_running_loop()
        ready.set()
        await stop["event"].wait()
        await server.stop(0)

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield metrics, f"127.0.0.1:{port[0]}"
    finally:
        stop["loop"].call_soon_threadsafe(stop["event"].set)
        thread.join(10)
        db.dispose()


def test_calls_are_counted_by_method_and_status_code(metrics_server: tuple[Metrics, str]) -> None:
    metrics, address = metrics_server
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the type stubs lack its methods
        for _ in range(3):
            assert stub.Check(health_pb2.HealthCheckRequest(service="known")).status == SERVING
        with pytest.raises(grpc.RpcError) as refused:
            stub.Check(health_pb2.HealthCheckRequest(service="unknown"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        watch = stub.Watch(health_pb2.HealthCheckRequest(service="known"), timeout=0.5)
        with pytest.raises(grpc.RpcError):
            for _ in watch:  # a stream that never ends: ended by its deadline
                pass
        # A method the server does not have: UNIMPLEMENTED, and no label is made for it.
        bogus: Any = channel.unary_unary("/compact.v1.Made/Up")
        with pytest.raises(grpc.RpcError) as unknown:
            bogus(b"")
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    samples = _samples(_exposition(metrics))
    service = "grpc.health.v1.Health"
    assert (
        _value(samples, "compact_rpc_requests_total", service=service, method="Check", code="OK")
        == 3
    )
    assert (
        _value(
            samples, "compact_rpc_requests_total", service=service, method="Check", code="NOT_FOUND"
        )
        == 1
    )
    # The deadline ends the stream; the server records the call however it ended.
    wait_for(
        lambda: any(
            dict(labels).get("method") == "Watch"
            for (name, labels) in _samples(_exposition(metrics))
            if name == "compact_rpc_requests_total"
        ),
        timeout=10,
        what="the ended Watch stream to be counted",
    )
    assert (
        _value(samples, "compact_rpc_duration_seconds_count", service=service, method="Check") == 4
    )
    assert not any("Made" in str(labels) for _, labels in samples)


def _exposition(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


# --- state and health, in process ---------------------------------------------------------


def _snapshot(**overrides: Any) -> Snapshot:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "taken_at": now,
        "log_entries": 10,
        "checkpoint_size": 10,
        "checkpoint_at": now,
        "witnessed_sizes": {"MN": 10, "CA": 8},
        "peers": (
            PeerState("CA", now, now - timedelta(seconds=30), 0, 20, 20),
            PeerState("MN", now, now - timedelta(seconds=30), 0, 5, 3),
        ),
        "oprf_used_today": {},
        "bundle_bytes": {},
        "bundle_requests": {},
        "audit_unlogged": 0,
    }
    return Snapshot(**(values | overrides))


def test_health_follows_the_database_and_each_peer() -> None:
    services = ("compact.v1.NodeService",)
    fresh = health_report(
        database_ok=True, snapshot=_snapshot(), services=services, peer_stale_seconds=60
    )
    assert fresh.statuses == {
        "": SERVING,
        "compact.v1.NodeService": SERVING,
        "compact.peer.CA": SERVING,
        "compact.peer.MN": SERVING,
        PEERS_SERVICE: SERVING,
    }
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    stale_mn = _snapshot(
        peers=(
            PeerState("CA", now, now, 0, 20, 20),
            PeerState("MN", now, now - timedelta(seconds=61), 3, 5, 3),
        )
    )
    stale = health_report(
        database_ok=True, snapshot=stale_mn, services=services, peer_stale_seconds=60
    )
    assert stale.statuses["compact.peer.MN"] == NOT_SERVING
    assert stale.statuses["compact.peer.CA"] == SERVING
    assert stale.statuses[PEERS_SERVICE] == NOT_SERVING
    assert stale.statuses[""] == SERVING  # the node still serves its own users
    never = _snapshot(peers=(PeerState("CA", None, None, 0, None, 0),))
    assert (
        health_report(
            database_ok=True, snapshot=never, services=services, peer_stale_seconds=60
        ).statuses["compact.peer.CA"]
        == NOT_SERVING
    )
    down = health_report(database_ok=False, snapshot=None, services=services, peer_stale_seconds=60)
    assert set(down.statuses.values()) == {NOT_SERVING}
    assert set(down.statuses) == {"", "compact.v1.NodeService", PEERS_SERVICE}


def test_state_metrics_from_a_snapshot() -> None:
    from node.monitor import _state_metrics

    snap = _snapshot(
        oprf_used_today={"MN": 7},
        bundle_bytes={"incoming": 1000, "outgoing": 250},
        bundle_requests={("incoming", "delivered"): 2, ("outgoing", "failed"): 1},
        audit_unlogged=4,
        alerts={"fork": 1},
    )
    samples: dict[Any, float] = {}
    for family in _state_metrics(snap, 10):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert _value(samples, "compact_log_witnesses") == 1  # MN cosigned 10, CA only 8
    assert _value(samples, "compact_log_witness_lag_entries", witness="CA") == 2
    assert _value(samples, "compact_log_witness_lag_entries", witness="MN") == 0
    assert _value(samples, "compact_sync_lag_entries", peer="MN") == 2
    assert _value(samples, "compact_sync_lag_entries", peer="CA") == 0
    assert _value(samples, "compact_sync_lag_seconds", peer="MN") == 30
    assert _value(samples, "compact_peer_up", peer="MN") == 1
    assert _value(samples, "compact_oprf_elements_used", requester="MN") == 7
    assert _value(samples, "compact_oprf_daily_limit") == 10
    # A request a peer sent this node (incoming) has its bundle's bytes going out.
    assert _value(samples, "compact_bundle_transfer_bytes_total", direction="sent") == 1000
    assert _value(samples, "compact_bundle_transfer_bytes_total", direction="received") == 250
    assert _value(samples, "compact_bundle_requests", direction="received", state="failed") == 1
    assert _value(samples, "compact_audit_events_unlogged") == 4
    assert _value(samples, "compact_alerts", kind="fork") == 1


def test_every_metric_is_documented() -> None:
    """docs/operations.md names every metric the node exports, and nothing else."""
    import re

    from node.monitor import _state_metrics

    names = {"compact_database_up", "compact_rpc_requests_total", "compact_rpc_duration_seconds"}
    snap = _snapshot(
        oprf_used_today={"MN": 1},
        bundle_requests={("incoming", "delivered"): 1},
        alerts={"fork": 1},
    )
    for family in _state_metrics(snap, 10):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("<!-- metrics:begin -->")[1].split("<!-- metrics:end -->")[0]
    documented = set(re.findall(r"^\| `(compact_[a-z_]+)`", section, flags=re.MULTILINE))
    assert documented == names


def test_a_fresh_node_snapshot_is_empty_not_an_error(tmp_path: Path) -> None:
    config = init_test_node(tmp_path, "IL")
    db = Database.from_url(config.database_url())
    try:
        snap = take_snapshot(db, "IL")
    finally:
        db.dispose()
    assert snap.peers == ()
    assert snap.checkpoint_size == 0
    assert snap.audit_unlogged >= 1  # init's user.add, logged once the node publishes


# --- three real nodes ---------------------------------------------------------------------


def _scrape(config: Config) -> dict[Any, float]:
    info = json.loads((config.run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert info["host"] == "127.0.0.1"
    url = f"http://127.0.0.1:{int(info['port'])}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
        return _samples(response.read().decode())


def _health(config: Config, *args: str) -> tuple[int, dict[str, Any]]:
    result = compact("health", "--json", *args, "--data-dir", str(config.data_dir))
    return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("monitored")
    configs = form_compact(root, sync_interval_seconds=1.0)
    for c in configs.values():
        set_setting(c, "metrics_listen", '"127.0.0.1:0"')
        set_setting(c, "health_interval_seconds", 0.5)
        set_setting(c, "peer_stale_seconds", 4.0)
    nodes: dict[str, NodeProcess] = {s: start_node(c) for s, c in configs.items()}
    try:
        rec = record("MN-MON-1")
        rec["location"] = {"county": "Hennepin", "state": "MN", "kind": "street"}
        path = write_jsonl(root / "in-MN", [rec])
        run_compact("ingest", str(path), "--data-dir", str(configs["MN"].data_dir))
        yield {"configs": configs, "nodes": nodes}
    finally:
        for n in nodes.values():
            n.stop()


def test_the_endpoint_serves_what_the_node_reports(monitored: dict[str, Any]) -> None:
    il: Config = monitored["configs"]["IL"]

    def witnessed() -> bool:
        samples = _scrape(il)
        return (_value(samples, "compact_log_witnesses") or 0) == 2 and all(
            _value(samples, "compact_sync_last_success_timestamp_seconds", peer=p)
            for p in ("CA", "MN")
        )

    wait_for(witnessed, timeout=90, what="IL's checkpoint witnessed by CA and MN, both synced")
    samples = _scrape(il)
    status = json.loads(
        run_compact("log", "status", "--json", "--data-dir", str(il.data_dir)).stdout
    )
    assert _value(samples, "compact_database_up") == 1
    # The log only grows: the scrape came first, so it holds at most what status saw.
    assert 0 < (_value(samples, "compact_log_entries") or 0) <= status["size"]
    for peer in ("CA", "MN"):
        assert _value(samples, "compact_peer_up", peer=peer) == 1
        assert (_value(samples, "compact_sync_lag_seconds", peer=peer) or 1e9) < 60
    federation_calls = {
        dict(labels)["method"]
        for (name, labels), value in samples.items()
        if name == "compact_rpc_requests_total"
        and dict(labels)["service"] == "compact.v1.FederationService"
        and dict(labels)["code"] == "OK"
        and value > 0
    }
    assert {"GetCheckpoint", "SubmitCosignature"} <= federation_calls
    assert _value(samples, "compact_oprf_daily_limit") == 200_000


def test_oprf_budget_used_is_counted_by_the_share_holders(monitored: dict[str, Any]) -> None:
    """MN's record was published: its agents' identifier keys were evaluated by share
    holders (the threshold is two, so by CA or IL or both), each counting them for MN."""
    configs = monitored["configs"]

    def evaluated() -> float:
        return sum(
            _value(_scrape(configs[s]), "compact_oprf_elements_used", requester="MN") or 0
            for s in ("CA", "IL")
        )

    wait_for(lambda: evaluated() > 0, timeout=90, what="MN's identifier keys evaluated")


def test_health_reports_serving_then_a_stopped_peer(monitored: dict[str, Any]) -> None:
    il: Config = monitored["configs"]["IL"]
    wait_for(
        lambda: _health(il)[0] == 0 and _health(il)[1]["services"].get(PEERS_SERVICE) == "SERVING",
        timeout=60,
        what="IL healthy with both peers fresh",
    )
    code, report = _health(il)
    assert code == 0
    assert report["services"][""] == "SERVING"
    assert report["services"]["compact.peer.MN"] == "SERVING"
    monitored["nodes"]["MN"].stop()
    wait_for(
        lambda: _health(il)[1]["services"].get("compact.peer.MN") == "NOT_SERVING",
        timeout=60,
        what="IL to report MN stale",
    )
    code, report = _health(il)
    assert code == 0  # the node itself still serves
    assert report["services"]["compact.peer.CA"] == "SERVING"
    assert report["services"][PEERS_SERVICE] == "NOT_SERVING"
    peers_code, _ = _health(il, "--service", PEERS_SERVICE)
    assert peers_code == 1
    samples = _scrape(il)
    assert _value(samples, "compact_peer_up", peer="MN") == 0
    assert (_value(samples, "compact_sync_consecutive_failures", peer="MN") or 0) >= 1


def test_health_of_a_node_that_is_not_running(tmp_path: Path) -> None:
    config = init_test_node(tmp_path, "IL")
    result = compact("health", "--json", "--data-dir", str(config.data_dir))
    assert result.returncode == 2, result.stderr
    assert "not reachable" in json.loads(result.stdout)["error"]


def test_metrics_listen_is_validated(tmp_path: Path) -> None:
    config = init_test_node(tmp_path, "IL")
    set_setting(config, "metrics_listen", '"nowhere"')
    result = compact("serve", "--data-dir", str(config.data_dir), timeout=60)
    assert result.returncode != 0
    assert "monitoring.metrics_listen" in result.stderr + result.stdout
