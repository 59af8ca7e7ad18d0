"""Fuzzing every NodeService and FederationService method of real node processes
(issue 9).

Two real nodes on loopback (IL and MN, from `tests.test_bundle_transfer.Pair`: a compact
formed through the command line, an incident with evidence, IL's log witnessed by MN)
and one bundle that MN asked for and IL sealed. Every method of IL is then called with
generated requests: protobuf messages with any subset of their fields set (edge
integers, hostile strings, any bytes; realistic values mixed in, so that requests get
past the first check: real ids, IL's checkpoint, MN's signed bundle request, valid
group elements, each also slightly mutated), and raw bytes that may not be a message at
all. NodeService is called with an admin's token (every permission, so that requests
reach the deepest code), FederationService over pinned mutual TLS as MN.

For every input: the answer is a status the method documents (README, docs/bundles.md,
docs/federation.md); never UNKNOWN, INTERNAL, DATA_LOSS, UNAVAILABLE or a deadline
(the node must not hang). For every input that is refused, and for every read, IL's
stored data is unchanged: every table of its database but the audit trail (refusals
are audited: `audit_events` and the log they are entered in), and its blob store. At
the end IL still answers.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from compact.v1 import federation_pb2 as fpb
from compact.v1 import node_pb2 as npb
from crypto.ristretto import base_mult, random_scalar
from federation.mtls import channel_credentials
from node import models as m
from node.config import Config
from node.setup import Secret, unlock
from tests.fuzzing import fuzz_settings, messages, mutations, trial
from tests.nodeproc import db_rows, user_env
from tests.test_bundle_transfer import Pair, wait_for

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(900)]

Code = grpc.StatusCode
Metadata = tuple[tuple[str, str | bytes], ...]
#: Seconds one call may take before it counts as a hang (its deadline).
CALL_SECONDS = 20.0
#: Responses of a server stream read at most (a bundle of this test has a few dozen).
MAX_STREAM = 10_000
#: Statuses no input may cause: they mean a bug, a hang or a broken store.
NEVER = {Code.UNKNOWN, Code.INTERNAL, Code.DATA_LOSS, Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED}
#: Tables that a refused request may change: the audit trail (every refusal is an audit
#: event, entered in the node's transparency log and its checkpoints).
TRAIL = {"audit_events", "log_entries", "log_nodes", "log_checkpoints"}
#: Columns of other tables that the trail writes: a custody event (such as "viewed", for
#: an accepted GetEvidence) is signed and entered in the log by the serve loop later.
TRAIL_COLUMNS = {"custody_events": {"envelope", "log_index"}}

# The statuses each method documents (README "Serving", docs/federation.md, docs/bundles.md,
# docs/matters.md). A request that does not parse, or whose field is out of range, is
# INVALID_ARGUMENT everywhere; one larger than the receive limit is RESOURCE_EXHAUSTED.
BASE = {Code.OK, Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED}
NODE_METHODS: dict[str, set[Code]] = {
    "Ingest": BASE,
    "GetIncident": BASE | {Code.NOT_FOUND},
    "SearchIncidents": BASE,
    "GetEvidence": BASE | {Code.NOT_FOUND},
}
FEDERATION_METHODS: dict[str, set[Code]] = {
    "GetRoster": BASE,
    "GetCheckpoint": BASE | {Code.FAILED_PRECONDITION},
    "GetEntries": BASE | {Code.FAILED_PRECONDITION},
    "SubmitCosignature": BASE | {Code.NOT_FOUND, Code.ABORTED},
    "EvaluateOprf": BASE | {Code.FAILED_PRECONDITION},
    "RequestBundle": BASE | {Code.NOT_FOUND, Code.ALREADY_EXISTS},
    "GetBundleStatus": BASE | {Code.NOT_FOUND},
    "FetchBundle": BASE
    | {Code.NOT_FOUND, Code.PERMISSION_DENIED, Code.OUT_OF_RANGE, Code.FAILED_PRECONDITION},
    "AckBundle": BASE | {Code.NOT_FOUND, Code.FAILED_PRECONDITION},
    "ShareMatter": BASE | {Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.PERMISSION_DENIED},
}
#: Methods that change IL's data when they succeed (a valid generated request may).
#: GetEvidence records a custody event "viewed"; FetchBundle, the first time a bundle's
#: last unit is sent, custody events "sent" and the request's new state (docs/bundles.md).
WRITES = {
    "Ingest", "GetEvidence", "SubmitCosignature", "EvaluateOprf", "RequestBundle",
    "FetchBundle", "AckBundle", "ShareMatter",
}  # fmt: skip


def test_every_method_is_fuzzed() -> None:
    """The lists above name every method of both services, so a new method is fuzzed or
    this test fails."""
    services = {s.name: s for s in npb.DESCRIPTOR.services_by_name.values()}
    services |= {s.name: s for s in fpb.DESCRIPTOR.services_by_name.values()}
    assert {m.name for m in services["NodeService"].methods} == set(NODE_METHODS)
    assert {m.name for m in services["FederationService"].methods} == set(FEDERATION_METHODS)
    assert set(FUZZERS) == set(NODE_METHODS) | set(FEDERATION_METHODS)


# --- the two nodes ---------------------------------------------------------------------------


@dataclass
class Hints:
    """Realistic values of IL's, that generated requests mix in."""

    global_ids: list[str]
    evidence_sha256: list[str]
    request_id: str
    bundle_id: str
    sealed_size: int
    log_size: int
    checkpoint: str
    cosignature: str
    request_envelope: bytes
    decision_envelope: bytes
    manifest_envelope: bytes


@dataclass(repr=False)
class Fuzzed:
    pair: Pair
    node: grpc.Channel
    federation: grpc.Channel
    token: str
    hints: Hints

    def __repr__(self) -> str:  # Hypothesis prints it with every failing input
        return "Fuzzed(IL serving, MN calling)"

    @property
    def il(self) -> Config:
        return self.pair.il


def _sqlite_path(config: Config) -> Path:
    url = config.database_url()
    assert url.startswith("sqlite:///"), url
    return Path(url.removeprefix("sqlite:///"))


def stored(config: Config) -> dict[str, str]:
    """A digest of each part of what IL stores but the audit trail: every other table's
    rows (read-only, through the stdlib driver) and the blob store's files."""
    out: dict[str, str] = {}
    con = sqlite3.connect(f"file:{_sqlite_path(config)}?mode=ro", uri=True, timeout=30)
    try:
        tables = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
        ]
        for table in tables:
            if table in TRAIL:
                continue
            skip = TRAIL_COLUMNS.get(table, set())
            columns = [c[1] for c in con.execute(f'PRAGMA table_info("{table}")')]
            wanted = ", ".join(f'"{c}"' for c in columns if c not in skip)
            h = hashlib.sha256()
            for r in sorted(repr(r) for r in con.execute(f'SELECT {wanted} FROM "{table}"')):
                h.update(r.encode("utf-8", "surrogatepass") + b"\n")
            out[table] = h.hexdigest()
    finally:
        con.close()
    h = hashlib.sha256()
    blobs = config.blob_dir
    for path in sorted(blobs.rglob("*")) if blobs.exists() else []:
        h.update(f"{path.relative_to(blobs)}:{path.stat().st_size}\n".encode())
    out["(blob store)"] = h.hexdigest()
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _hints(pair: Pair) -> Hints:
    out = pair.request("IL-T-1")
    request_id = str(out["request_id"])
    wait_for("IL to seal", lambda: pair.incoming_state(request_id) == "sealed")
    il = pair.il
    [(bundle_id, sealed_size, manifest)] = db_rows(
        il, select(m.Bundle.bundle_id, m.Bundle.sealed_size, m.Bundle.manifest_envelope)
    )
    [(envelope, decision)] = db_rows(
        il,
        select(m.BundleRequestRow.request_envelope, m.BundleRequestRow.decision_envelope).where(
            m.BundleRequestRow.request_id == request_id
        ),
    )
    [(size, note)] = db_rows(
        il,
        select(m.LogCheckpoint.size, m.LogCheckpoint.note)
        .order_by(m.LogCheckpoint.size.desc())
        .limit(1),
    )
    cosignatures = db_rows(il, select(m.LogCosignature.signature_line))
    return Hints(
        global_ids=sorted(pair.ids.values()),
        evidence_sha256=[str(s) for (s,) in db_rows(il, select(m.EvidenceItem.sha256))],
        request_id=request_id,
        bundle_id=str(bundle_id),
        sealed_size=int(sealed_size),
        log_size=int(size),
        checkpoint=str(note),
        cosignature=str(cosignatures[0][0]) if cosignatures else "",
        request_envelope=bytes(envelope),
        decision_envelope=bytes(decision or b""),
        manifest_envelope=bytes(manifest),
    )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    pair = Pair(tmp_path_factory.mktemp("fuzz"))
    try:
        hints = _hints(pair)
        il, mn = pair.il, pair.mn
        token = (
            Path(user_env(il, "fuzz.admin", "admin")["COMPACT_TOKEN_FILE"])
            .read_text(encoding="utf-8")
            .strip()
        )
        node = grpc.secure_channel(
            pair.procs[0].endpoint,
            grpc.ssl_channel_credentials(
                root_certificates=il.path(il.keys.tls_certificate).read_bytes()
            ),
        )
        keys = unlock(mn, Secret(key_file_secret=Path(mn.keys.key_file).read_bytes()))
        federation = grpc.secure_channel(
            il.federation.listen,
            channel_credentials(
                keys.tls_key_pem,
                mn.path(mn.keys.tls_certificate).read_bytes(),
                il.path(il.keys.tls_certificate).read_bytes(),
            ),
        )
        yield Fuzzed(pair, node, federation, token, hints)
        node.close()
        federation.close()
    finally:
        pair.stop()


# --- calling a method with raw bytes ---------------------------------------------------------


def _code(call: Callable[[], object]) -> Code:
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return Code.OK


def unary(channel: grpc.Channel, path: str, body: bytes, metadata: Metadata) -> Code:
    call: Any = channel.unary_unary(path)  # no serializers: bytes in, bytes out
    return _code(lambda: call(body, timeout=CALL_SECONDS, metadata=metadata))


def server_stream(channel: grpc.Channel, path: str, body: bytes, metadata: Metadata) -> Code:
    call: Any = channel.unary_stream(path)

    def read() -> None:
        for n, _ in enumerate(call(body, timeout=CALL_SECONDS, metadata=metadata)):
            assert n < MAX_STREAM, f"{path} streamed more than {MAX_STREAM} responses"

    return _code(read)


def client_stream(
    channel: grpc.Channel, path: str, bodies: Sequence[bytes], metadata: Metadata
) -> Code:
    call: Any = channel.stream_unary(path)
    return _code(lambda: call(iter(bodies), timeout=CALL_SECONDS, metadata=metadata))


def check(fuzzed: Fuzzed, service: str, method: str, send: Callable[[], Code]) -> None:
    """Send one input; its status must be one `method` documents, and IL's data must be
    as before unless a writing method accepted it."""
    allowed = (NODE_METHODS if service == "NodeService" else FEDERATION_METHODS)[method]
    before = stored(fuzzed.il)
    with trial(f"{service}/{method}") as t:
        code = send()
        t.outcome(code.name)
    assert code not in NEVER, f"{method}: {code.name}"
    assert code in allowed, f"{method}: {code.name} is not one of the documented statuses"
    if code != Code.OK or method not in WRITES:
        diff = changed(before, stored(fuzzed.il))
        assert not diff, f"{method} ({code.name}) changed IL's {', '.join(diff)}"


# --- what each method is sent ----------------------------------------------------------------


def _either(message: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A generated message's bytes (mostly), or raw bytes that may be no message at all."""
    return st.one_of(message, message, message, st.binary(max_size=512))


def _serialized(strategy: st.SearchStrategy[Message]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda msg: msg.SerializeToString())


def _text_hint(values: Sequence[str]) -> st.SearchStrategy[str]:
    """The values, or one of them changed a little."""
    return st.sampled_from(list(values)).flatmap(
        lambda v: st.one_of(
            st.just(v),
            mutations(v.encode()).map(lambda b: b.decode("utf-8", "replace")),
        )
    )


def _node_admin(fuzzed: Fuzzed) -> Metadata:
    return (("authorization", f"Bearer {fuzzed.token}"),)


def _record_line(n: int) -> bytes:
    import json

    from tests.helpers import record

    return json.dumps(record(f"IL-FUZZ-{n}")).encode()


# Each fuzzer draws one input for its method and sends it.
Fuzzer = Callable[[Fuzzed, st.DataObject], None]


def fuzz_ingest(f: Fuzzed, data: st.DataObject) -> None:
    hints = {
        "json": st.one_of(mutations(_record_line(1)), st.just(_record_line(2))),
        "line_number": st.integers(0, 5),
        "path": st.sampled_from(["media/a.bin", "../a.bin", "/etc/passwd", "a\x00b", ""]),
    }
    bodies = data.draw(
        st.lists(_either(_serialized(messages(npb.IngestRequest, hints))), max_size=5)
    )
    check(f, "NodeService", "Ingest", lambda: client_stream(
        f.node, "/compact.v1.NodeService/Ingest", bodies, _node_admin(f)))  # fmt: skip


def fuzz_get_incident(f: Fuzzed, data: st.DataObject) -> None:
    hints = {"global_id": _text_hint(f.hints.global_ids)}
    body = data.draw(_either(_serialized(messages(npb.GetIncidentRequest, hints))))
    check(f, "NodeService", "GetIncident", lambda: unary(
        f.node, "/compact.v1.NodeService/GetIncident", body, _node_admin(f)))  # fmt: skip


def fuzz_search_incidents(f: Fuzzed, data: st.DataObject) -> None:
    hints = {
        "occurred_from": st.sampled_from(["2025-01-01", "2025-13-40", "2025-01-01T00:00:00Z"]),
        "occurred_to": st.sampled_from(["2030-01-01", "0000-00-00", "9999-12-31"]),
        "conduct": st.sampled_from(["force", "masked", "other"]),
        "identifier_key": st.sampled_from(["badge:ICE-ERO:4471", "badge:", ":", "name:x"]),
        "page_size": st.integers(0, 1001),
    }
    body = data.draw(_either(_serialized(messages(npb.SearchIncidentsRequest, hints))))
    check(f, "NodeService", "SearchIncidents", lambda: unary(
        f.node, "/compact.v1.NodeService/SearchIncidents", body, _node_admin(f)))  # fmt: skip


def fuzz_get_evidence(f: Fuzzed, data: st.DataObject) -> None:
    hints = {
        "global_id": _text_hint(f.hints.global_ids),
        "sha256": _text_hint(f.hints.evidence_sha256),
    }
    body = data.draw(_either(_serialized(messages(npb.GetEvidenceRequest, hints))))
    check(f, "NodeService", "GetEvidence", lambda: server_stream(
        f.node, "/compact.v1.NodeService/GetEvidence", body, _node_admin(f)))  # fmt: skip


def _federation(
    method: str, cls: type[Message], hints: dict[str, st.SearchStrategy[Any]], stream: bool = False
) -> Fuzzer:
    def fuzz(f: Fuzzed, data: st.DataObject) -> None:
        body = data.draw(_either(_serialized(messages(cls, hints))))
        path = f"/compact.v1.FederationService/{method}"
        send = server_stream if stream else unary
        check(f, "FederationService", method, lambda: send(f.federation, path, body, ()))

    return fuzz


def _points() -> st.SearchStrategy[bytes]:
    return st.builds(lambda: base_mult(random_scalar()).to_bytes())


def federation_fuzzers(h: Hints) -> dict[str, Fuzzer]:
    envelope = st.one_of(mutations(h.request_envelope), st.just(h.request_envelope))
    size = st.integers(0, h.log_size + 2)
    return {
        "GetRoster": _federation(
            "GetRoster", fpb.GetRosterRequest, {"after_version": st.integers(0, 3)}
        ),
        "GetCheckpoint": _federation("GetCheckpoint", fpb.GetCheckpointRequest, {"old_size": size}),
        "GetEntries": _federation(
            "GetEntries",
            fpb.GetEntriesRequest,
            {"start": size, "tree_size": size, "max_entries": st.integers(0, 1001)},
        ),
        "SubmitCosignature": _federation(
            "SubmitCosignature",
            fpb.SubmitCosignatureRequest,
            {
                "checkpoint": _text_hint([h.checkpoint]),
                "cosignature": _text_hint([h.cosignature or "x"]),
            },
        ),
        "EvaluateOprf": _federation(
            "EvaluateOprf",
            fpb.EvaluateOprfRequest,
            {
                "blinded_elements": st.one_of(
                    _points(), st.just(bytes(32)), st.binary(min_size=32, max_size=32)
                )
            },
        ),
        "RequestBundle": _federation(
            "RequestBundle", fpb.RequestBundleRequest, {"envelope": envelope}
        ),
        "GetBundleStatus": _federation(
            "GetBundleStatus",
            fpb.GetBundleStatusRequest,
            {"request_id": _text_hint([h.request_id])},
        ),
        "FetchBundle": _federation(
            "FetchBundle",
            fpb.FetchBundleRequest,
            {"bundle_id": _text_hint([h.bundle_id]), "offset": st.integers(0, h.sealed_size + 1)},
            stream=True,
        ),
        "AckBundle": _federation(
            "AckBundle",
            fpb.AckBundleRequest,
            {
                "bundle_id": _text_hint([h.bundle_id]),
                "receipt": st.one_of(
                    mutations(h.decision_envelope), mutations(h.manifest_envelope)
                ),
            },
        ),
        "ShareMatter": _federation("ShareMatter", fpb.ShareMatterRequest, {"envelope": envelope}),
    }


def _federation_fuzzer(name: str, f: Fuzzed) -> Fuzzer:
    return federation_fuzzers(f.hints)[name]


FUZZERS: dict[str, Callable[[Fuzzed], Fuzzer]] = {
    "Ingest": lambda f: fuzz_ingest,
    "GetIncident": lambda f: fuzz_get_incident,
    "SearchIncidents": lambda f: fuzz_search_incidents,
    "GetEvidence": lambda f: fuzz_get_evidence,
    **{name: partial(_federation_fuzzer, name) for name in FEDERATION_METHODS},
}


@pytest.mark.parametrize("method", sorted(FUZZERS))
@fuzz_settings(scale=0.5)
@given(data=st.data())
def test_fuzz_method(fuzzed: Fuzzed, method: str, data: st.DataObject) -> None:
    FUZZERS[method](fuzzed)(fuzzed, data)


#: What a client can put in a metadata value: printable ASCII.
_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@fuzz_settings(scale=0.5)
@given(
    value=st.one_of(
        st.text(_ASCII, max_size=120).map(lambda t: f"Bearer {t}"),
        st.text(_ASCII, max_size=120),
        st.binary(max_size=64).map(lambda b: f"Bearer {b.hex()}"),
    )
)
def test_fuzz_bearer_token(fuzzed: Fuzzed, value: str) -> None:
    """Any authorization but a user's token is UNAUTHENTICATED, and changes nothing but
    the audit trail."""
    body = npb.SearchIncidentsRequest().SerializeToString()
    before = stored(fuzzed.il)
    with trial("NodeService/authorization") as t:
        code = unary(
            fuzzed.node,
            "/compact.v1.NodeService/SearchIncidents",
            body,
            (("authorization", value.strip()),),
        )
        t.outcome(code.name)
    assert code == Code.UNAUTHENTICATED
    assert not changed(before, stored(fuzzed.il))


def test_the_node_answers_after_the_fuzzing(fuzzed: Fuzzed) -> None:
    """Run last in this file (pytest keeps the order): IL still serves both services and
    its process is alive."""
    assert fuzzed.pair.procs[0].proc.poll() is None
    body = npb.SearchIncidentsRequest().SerializeToString()
    assert (
        unary(fuzzed.node, "/compact.v1.NodeService/SearchIncidents", body, _node_admin(fuzzed))
        == Code.OK
    )
    body = fpb.GetRosterRequest().SerializeToString()
    assert unary(fuzzed.federation, "/compact.v1.FederationService/GetRoster", body, ()) == Code.OK
