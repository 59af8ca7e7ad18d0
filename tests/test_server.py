"""NodeService over real TLS against a real node process on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from compact.v1 import node_pb2 as pb
from node.client import ClientError, NodeClient
from node.db import Database
from node.ingest import ingest_file
from node.records import SearchQuery
from node.setup import open_storage, read_secret, unlock
from node.users import add_user
from tests.helpers import record
from tests.nodeproc import NodeProcess, init_test_node, start_node

REPO = Path(__file__).resolve().parent.parent
BIG = 3 * 1024 * 1024 + 17


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("server")
    config = init_test_node(root)
    # The shipped sample, plus one incident with a multi-chunk evidence file.
    big = root / "extra" / "media" / "big.bin"
    big.parent.mkdir(parents=True)
    big.write_bytes(bytes(range(256)) * (BIG // 256) + b"x" * (BIG % 256))
    (root / "extra" / "extra.jsonl").write_text(
        json.dumps(
            record(
                "IL-BIG-1",
                location={"county": "Will", "state": "IL", "kind": "transit"},
                conduct=["other"],
                agents=[],
                people=[],
                evidence=[{"path": "media/big.bin", "media_type": "application/octet-stream"}],
            )
        )
        + "\n",
        encoding="utf-8",
    )
    storage = open_storage(config, unlock(config, read_secret(config)))
    for path in (REPO / "examples" / "incidents.jsonl", root / "extra" / "extra.jsonl"):
        report = ingest_file(
            storage,
            path,
            actor="setup",
        )
        assert report.imported > 0
        assert not report.errors
    for name, role in (("ana", "analyst"), ("ivy", "investigator"), ("cle", "clerk")):
        (root / f"{name}.token").write_text(add_user(storage.db, name, role), encoding="utf-8")
    storage.db.dispose()
    proc = start_node(config)
    yield proc
    proc.stop()


def client(node: NodeProcess, user: str | None = None) -> NodeClient:
    token = None
    if user:
        token = (node.config.data_dir.parent / f"{user}.token").read_text(encoding="utf-8")
    c = NodeClient.from_config(node.config, token=token)
    assert c.endpoint == node.endpoint
    return c


def channel(node: NodeProcess) -> grpc.Channel:
    cert = node.config.path(node.config.keys.tls_certificate).read_bytes()
    return grpc.secure_channel(node.endpoint, grpc.ssl_channel_credentials(root_certificates=cert))


def search(node: NodeProcess, user: str | None = None, **filters: object) -> list[str]:
    with client(node, user) as c:
        page = c.search(SearchQuery(**filters))  # type: ignore[arg-type]
    return [s.external_id for s in page.incidents]


def gid(node: NodeProcess, external_id: str) -> str:
    with client(node) as c:
        for page in c.search_all(SearchQuery(), limit=1000):
            for s in page.incidents:
                if s.external_id == external_id:
                    return s.global_id
    raise AssertionError(external_id)


# --- standard services ----------------------------------------------------------------------


def test_health_service_reports_serving(node: NodeProcess) -> None:
    with channel(node) as ch:
        stub: Any = health_pb2_grpc.HealthStub(ch)  # the typeshed stub lists no methods
        for service in ("", "compact.v1.NodeService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_node_service(node: NodeProcess) -> None:
    with channel(node) as ch:
        stub: Any = reflection_pb2_grpc.ServerReflectionStub(ch)  # incomplete stub
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"compact.v1.NodeService", "grpc.health.v1.Health"} <= names


def test_a_client_that_does_not_trust_the_pinned_certificate_is_refused(
    node: NodeProcess, tmp_path: Path
) -> None:
    other = init_test_node(tmp_path / "other", "MN")
    cert = other.path(other.keys.tls_certificate).read_bytes()
    with grpc.secure_channel(node.endpoint, grpc.ssl_channel_credentials(cert)) as ch:
        stub: Any = health_pb2_grpc.HealthStub(ch)  # the typeshed stub lists no methods
        with pytest.raises(grpc.RpcError) as e:
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


# --- authentication and roles ---------------------------------------------------------------


def test_no_token_is_unauthenticated(node: NodeProcess) -> None:
    with channel(node) as ch:
        stub = __import__("compact.v1.node_pb2_grpc", fromlist=["x"]).NodeServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.SearchIncidents(pb.SearchIncidentsRequest(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_wrong_token_is_unauthenticated(node: NodeProcess) -> None:
    c = NodeClient.from_config(node.config, token="cpt_" + "A" * 43)
    with c, pytest.raises(ClientError) as e:
        c.search(SearchQuery())
    assert e.value.code == "UNAUTHENTICATED"


def test_an_analyst_sees_no_personal_data(node: NodeProcess) -> None:
    with client(node, "ana") as c:
        view = c.get_incident(gid(node, "IL-HL-2025-000123"))
    assert view.restricted_withheld
    assert view.people == ()
    assert view.narrative is None
    assert view.location.address is None
    assert view.agents[0].badge == "04471"  # agents are not protected persons


def test_an_investigator_sees_personal_data(node: NodeProcess) -> None:
    with client(node, "ivy") as c:
        view = c.get_incident(gid(node, "IL-HL-2025-000123"))
    assert not view.restricted_withheld
    assert [p.name for p in view.people] == ["Jane Roe", "A. Teacher"]
    assert view.narrative
    assert "school drop-off" in view.narrative
    assert view.location.address == "2700 S Pulaski Rd"
    assert view.occurred_at.isoformat() == "2025-10-04T07:15:00-05:00"


def test_an_analyst_may_not_fetch_evidence(node: NodeProcess) -> None:
    g = gid(node, "IL-HL-2025-000123")
    with client(node) as admin:
        sha = admin.get_incident(g).evidence[0].sha256
    with client(node, "ana") as c, pytest.raises(ClientError) as e:
        c.get_evidence(g, sha, io.BytesIO(), timeout=10)
    assert e.value.code == "PERMISSION_DENIED"


def test_an_analyst_may_not_ingest(node: NodeProcess) -> None:
    with client(node, "ana") as c, pytest.raises(ClientError) as e:
        c.ingest([(1, json.dumps(record("IL-X-1")).encode())], {})
    assert e.value.code == "PERMISSION_DENIED"


# --- search ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            {"occurred_from": "2025-10-12", "occurred_to": "2025-10-15"},
            ["IL-NW-2025-000007", "IL-HL-2025-000140"],
        ),
        ({"county": "lake"}, ["IL-CF-2025-000031"]),
        ({"location_kind": "school"}, ["IL-HL-2025-000123"]),
        (
            {"conduct": ["chemical_agent", "courthouse_arrest"]},
            ["IL-CF-2025-000031", "IL-HL-2025-000124"],
        ),
        ({"agency": "CBP-BORTAC"}, ["IL-HL-2025-000140"]),
        ({"status": "closed"}, ["IL-NW-2025-000007"]),
        (
            {"identifier_key": "badge:ICE-ERO:04471"},
            ["IL-HL-2025-000151", "IL-HL-2025-000124", "IL-HL-2025-000123"],
        ),
        (
            {"identifier_key": "name:Smith, John"},
            ["IL-HL-2025-000151", "IL-HL-2025-000124", "IL-HL-2025-000123"],
        ),
        ({"identifier_key": "plate:il abc-1234"}, ["IL-HL-2025-000140", "IL-HL-2025-000123"]),
        ({"identifier_key": "unit:CBP-USBP:Midway Team 3"}, ["IL-CF-2025-000031"]),
        (
            {"county": "Cook", "conduct": ["masked_agent"], "status": "reported"},
            ["IL-HL-2025-000140"],
        ),
    ],
)
def test_search_filters(node: NodeProcess, filters: dict[str, object], expected: list[str]) -> None:
    assert search(node, "ana", **filters) == expected


def test_search_pages_through_everything_once(node: NodeProcess) -> None:
    seen: list[str] = []
    with client(node) as c:
        query = SearchQuery(page_size=2)
        while True:
            page = c.search(query)
            seen += [s.global_id for s in page.incidents]
            if not page.next_page_token:
                break
            query = SearchQuery(page_size=2, page_token=page.next_page_token)
    with client(node) as c:
        everything = [s.global_id for s in c.search(SearchQuery(page_size=500)).incidents]
    assert len(seen) == len(set(seen)) >= 7
    assert seen == everything


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"occurred_from": "04/10/2025"}, "occurred_from"),
        ({"location_kind": "mall"}, "location_kind"),
        ({"conduct": ["masked_agent", "nope"]}, "conduct[1]"),
        ({"agency": "ice-ero"}, "agency"),
        ({"status": "open"}, "status"),
        ({"identifier_key": "shoe:42"}, "identifier_key"),
        ({"page_size": 501}, "page_size"),
        ({"page_token": "garbage!"}, "page_token"),
    ],
)
def test_invalid_search_arguments_name_the_field(
    node: NodeProcess, filters: dict[str, object], field: str
) -> None:
    with client(node) as c, pytest.raises(ClientError) as e:
        c.search(SearchQuery(**filters))  # type: ignore[arg-type]
    assert e.value.code == "INVALID_ARGUMENT"
    assert str(e.value).startswith(f"{field}:")


@pytest.mark.parametrize("value", ["", "IL-1", "../../etc", "IL-" + "0" * 36 + "'"])
def test_get_incident_validates_the_id(node: NodeProcess, value: str) -> None:
    with client(node) as c, pytest.raises(ClientError) as e:
        c.get_incident(value)
    assert e.value.code == "INVALID_ARGUMENT"
    assert "global_id" in str(e.value)


def test_get_incident_not_found(node: NodeProcess) -> None:
    with client(node) as c, pytest.raises(ClientError) as e:
        c.get_incident("IL-00000000-0000-0000-0000-000000000000")
    assert e.value.code == "NOT_FOUND"


# --- evidence -------------------------------------------------------------------------------


def test_get_evidence_streams_the_decrypted_file_and_records_custody(node: NodeProcess) -> None:
    g = gid(node, "IL-BIG-1")
    expected = (node.config.data_dir.parent / "extra" / "media" / "big.bin").read_bytes()
    sha = hashlib.sha256(expected).hexdigest()
    out = io.BytesIO()
    with client(node, "ivy") as c:
        item = c.get_evidence(g, sha, out, timeout=30)
        assert out.getvalue() == expected
        assert item.size == BIG
        custody = c.get_incident(g).evidence[0].custody
    assert [e.kind for e in custody][-1] == "viewed"
    assert custody[-1].actor == "ivy"


def test_get_evidence_of_another_incident_is_not_found(node: NodeProcess) -> None:
    g = gid(node, "IL-HL-2025-000124")
    sha = hashlib.sha256(
        (node.config.data_dir.parent / "extra" / "media" / "big.bin").read_bytes()
    ).hexdigest()
    with client(node) as c, pytest.raises(ClientError) as e:
        c.get_evidence(g, sha, io.BytesIO(), timeout=10)
    assert e.value.code == "NOT_FOUND"


# --- ingest over gRPC -----------------------------------------------------------------------


def _details(e: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(e)  # type: ignore[arg-type]
    assert status is not None
    out = []
    for d in status.details:
        br = error_details_pb2.BadRequest()
        assert d.Unpack(br)
        out += [(v.field, v.description) for v in br.field_violations]
    return out


def _raw_ingest(node: NodeProcess, requests: list[pb.IngestRequest]) -> pb.IngestResponse:
    from compact.v1 import node_pb2_grpc

    token = node.config.path(node.config.client.credential_file).read_text(encoding="utf-8").strip()
    with channel(node) as ch:
        stub = node_pb2_grpc.NodeServiceStub(ch)
        return stub.Ingest(
            iter(requests), timeout=30, metadata=(("authorization", f"Bearer {token}"),)
        )


def _line(n: int, rec: object) -> pb.IngestRequest:
    return pb.IngestRequest(line=pb.IngestLine(line_number=n, json=json.dumps(rec).encode()))


def test_ingest_over_grpc_with_evidence(node: NodeProcess, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.txt").write_bytes(b"statement " * 100_000)
    lines = [
        (
            1,
            json.dumps(
                record("IL-G-1", evidence=[{"path": "m/a.txt", "media_type": "text/plain"}])
            ).encode(),
        )
    ]
    with client(node, "cle") as c:
        report = c.ingest(lines, {"m/a.txt": tmp_path / "m" / "a.txt"}, source_name="grpc-test")
        assert (report.imported, report.evidence_stored) == (1, 1)
        again = c.ingest(lines, {"m/a.txt": tmp_path / "m" / "a.txt"})
        assert (again.imported, again.unchanged) == (0, 1)


def test_ingest_with_a_bad_line_is_invalid_argument_naming_the_field(node: NodeProcess) -> None:
    before = search(node)
    bad = record("IL-G-2")
    bad["location"]["kind"] = "mall"
    with pytest.raises(grpc.RpcError) as e:
        _raw_ingest(
            node,
            [_line(1, record("IL-G-3")), _line(2, bad), _line(3, record("IL-G-4", status="x"))],
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "line 2: location.kind" in (e.value.details() or "")
    assert _details(e.value) == [
        ("line 2: location.kind", "not one of the allowed values"),
        ("line 3: status", "not one of the allowed values"),
    ]
    assert search(node) == before


def test_ingest_skip_invalid_over_grpc(node: NodeProcess) -> None:
    reply = _raw_ingest(
        node,
        [
            pb.IngestRequest(options=pb.IngestOptions(skip_invalid=True)),
            _line(1, record("IL-G-5")),
            pb.IngestRequest(line=pb.IngestLine(line_number=2, json=b"{broken")),
        ],
    )
    assert (reply.imported, reply.rejected) == (1, 1)
    assert reply.errors[0].line_number == 2


@pytest.mark.parametrize(
    ("requests", "field"),
    [
        (
            [
                _line(1, record("IL-G-6")),
                pb.IngestRequest(evidence=pb.EvidenceChunk(path="../x", data=b"1", last=True)),
            ],
            "evidence.path",
        ),
        (
            [
                _line(1, record("IL-G-6")),
                pb.IngestRequest(
                    evidence=pb.EvidenceChunk(path="/etc/passwd", data=b"1", last=True)
                ),
            ],
            "evidence.path",
        ),
        (
            [
                _line(1, record("IL-G-6")),
                pb.IngestRequest(evidence=pb.EvidenceChunk(path="a.txt", data=b"1")),
            ],
            "evidence.last",
        ),
        ([_line(1, record("IL-G-6")), pb.IngestRequest(options=pb.IngestOptions())], "options"),
        ([pb.IngestRequest(options=pb.IngestOptions())], "line"),
        ([pb.IngestRequest(line=pb.IngestLine(line_number=0, json=b"{}"))], "line.line_number"),
        ([pb.IngestRequest()], "item"),
    ],
)
def test_malformed_ingest_streams_are_invalid_argument(
    node: NodeProcess, requests: list[pb.IngestRequest], field: str
) -> None:
    before = search(node)
    with pytest.raises(grpc.RpcError) as e:
        _raw_ingest(node, requests)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (e.value.details() or "").startswith(f"{field}:")
    assert search(node) == before


def test_ingest_naming_evidence_that_was_not_sent(node: NodeProcess) -> None:
    rec = record("IL-G-7", evidence=[{"path": "m/missing.mp4", "media_type": "video/mp4"}])
    with pytest.raises(grpc.RpcError) as e:
        _raw_ingest(node, [_line(1, rec)])
    assert _details(e.value) == [("line 1: evidence[0].path", "file was not sent with the import")]


@pytest.mark.parametrize(
    ("method", "kind", "type_name"),
    [
        ("Ingest", "stream_unary", "IngestRequest"),
        ("GetIncident", "unary_unary", "GetIncidentRequest"),
        ("SearchIncidents", "unary_unary", "SearchIncidentsRequest"),
        ("GetEvidence", "unary_stream", "GetEvidenceRequest"),
    ],
)
def test_bytes_that_are_no_message_are_invalid_argument(
    node: NodeProcess, method: str, kind: str, type_name: str
) -> None:
    """Found by tests/test_fuzz_grpc.py: gRPC's own parsing answered UNKNOWN or INTERNAL."""
    token = node.config.path(node.config.client.credential_file).read_text(encoding="utf-8").strip()
    metadata = (("authorization", f"Bearer {token}"),)
    garbage = b"\x0a\xff\xff\xff\xff\x0f"
    with channel(node) as ch:
        call = getattr(ch, kind)(f"/compact.v1.NodeService/{method}")

        def send() -> object:
            if kind == "stream_unary":
                return call(iter([garbage]), timeout=30, metadata=metadata)
            if kind == "unary_stream":
                return list(call(garbage, timeout=30, metadata=metadata))
            return call(garbage, timeout=30, metadata=metadata)

        with pytest.raises(grpc.RpcError) as e:
            send()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == f"request: not a valid {type_name} message"


def test_an_oversized_message_is_refused(node: NodeProcess) -> None:
    with pytest.raises(grpc.RpcError) as e:
        _raw_ingest(
            node,
            [pb.IngestRequest(line=pb.IngestLine(line_number=1, json=b"x" * (5 * 1024 * 1024)))],
        )
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- logs -----------------------------------------------------------------------------------


def test_logs_are_json_lines_without_personal_data(node: NodeProcess) -> None:
    test_an_investigator_sees_personal_data(node)
    raw = node.raw_logs()
    entries = node.logs()
    assert entries
    assert all("event" in e and "timestamp" in e for e in entries)
    assert any(e["event"] == "server.started" for e in entries)
    for secret in ("Jane Roe", "555 0100", "Pulaski", "school drop-off", "cpt_"):
        assert secret not in raw


# --- shutdown -------------------------------------------------------------------------------


def test_sigterm_finishes_an_in_flight_stream_and_exits_cleanly(tmp_path: Path) -> None:
    config = init_test_node(tmp_path)
    data = (bytes(range(256)) * 4096) * 24  # 24 MiB: many chunks
    (tmp_path / "imp" / "m").mkdir(parents=True)
    (tmp_path / "imp" / "m" / "v.bin").write_bytes(data)
    path = tmp_path / "imp" / "i.jsonl"
    path.write_text(
        json.dumps(record(evidence=[{"path": "m/v.bin", "media_type": "video/mp4"}])) + "\n"
    )
    storage = open_storage(config, unlock(config, read_secret(config)))
    ingest_file(
        storage,
        path,
        actor="t",
    )
    storage.db.dispose()
    proc = start_node(config)
    received = io.BytesIO()
    errors: list[BaseException] = []
    started = threading.Event()

    class Out(io.BytesIO):
        def write(self, b: bytes) -> int:  # type: ignore[override]
            started.set()
            time.sleep(0.02)  # a slow reader keeps the stream in flight across SIGTERM
            return received.write(b)

    def fetch() -> None:
        try:
            with NodeClient.from_config(config) as c:
                g = c.search(SearchQuery()).incidents[0].global_id
                c.get_evidence(g, hashlib.sha256(data).hexdigest(), Out(), timeout=60)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=fetch)
    t.start()
    assert started.wait(30)
    code = proc.stop()
    t.join(60)
    assert code == 0
    assert errors == []
    assert received.getvalue() == data
    events = [e["event"] for e in proc.logs()]
    assert "server.stopping" in events
    assert events[-1] == "server.stopped"
    assert not (config.run_dir / "server.json").exists()
    # After shutdown, new calls are refused.
    with NodeClient.from_config(config) as c, pytest.raises(ClientError) as e:
        c.search(SearchQuery())
    assert e.value.code == "UNAVAILABLE"


def test_ctrl_c_shuts_down_cleanly(tmp_path: Path) -> None:
    config = init_test_node(tmp_path)
    proc = start_node(config)
    with NodeClient.from_config(config) as c:
        assert c.search(SearchQuery()).incidents == ()
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=30) == 0
    assert [e["event"] for e in proc.logs()][-1] == "server.stopped"


def test_ctrl_c_as_soon_as_the_node_is_up_shuts_down_cleanly(tmp_path: Path) -> None:
    # server.json appears before the federation side has started; a Ctrl-C at that
    # moment must take the graceful path too (it used to end in KeyboardInterrupt).
    config = init_test_node(tmp_path)
    proc = start_node(config)
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(timeout=30) == 0
    assert [e["event"] for e in proc.logs()][-1] == "server.stopped"
    assert not (config.run_dir / "server.json").exists()


def test_a_missing_evidence_blob_is_data_loss(tmp_path: Path) -> None:
    config = init_test_node(tmp_path)
    (tmp_path / "imp" / "m").mkdir(parents=True)
    (tmp_path / "imp" / "m" / "v.bin").write_bytes(b"evidence")
    path = tmp_path / "imp" / "i.jsonl"
    path.write_text(json.dumps(record(evidence=[{"path": "m/v.bin"}])) + "\n")
    storage = open_storage(config, unlock(config, read_secret(config)))
    ingest_file(
        storage,
        path,
        actor="t",
    )
    sha = hashlib.sha256(b"evidence").hexdigest()
    storage.blobs.remove(sha)
    storage.db.dispose()
    proc = start_node(config)
    try:
        with NodeClient.from_config(config) as c:
            g = c.search(SearchQuery()).incidents[0].global_id
            with pytest.raises(ClientError) as e:
                c.get_evidence(g, sha, io.BytesIO(), timeout=10)
        assert e.value.code == "DATA_LOSS"
        assert any(x.get("code") == "DATA_LOSS" and x["level"] == "error" for x in proc.logs())
    finally:
        proc.stop()


def test_users_table_only_holds_token_hashes(node: NodeProcess) -> None:
    token = (node.config.data_dir.parent / "ana.token").read_text(encoding="utf-8")
    db = Database.from_url(node.config.database_url())
    with db.read() as s:
        dump = json.dumps(
            [list(r) for r in s.execute(__import__("sqlalchemy").text("SELECT * FROM users"))],
            default=str,
        )
    db.dispose()
    assert token not in dump
    assert hashlib.sha256(token.encode()).hexdigest() in dump
