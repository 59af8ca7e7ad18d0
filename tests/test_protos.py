"""The protos and their generated code: current, lint-clean, and the service shape we rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
BUF = ROOT / "tools" / "node_modules" / ".bin" / "buf"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _generated(tree: Path) -> dict[str, bytes]:
    """Generated files under tree/compact by path relative to tree (forward slashes)."""
    return {
        p.relative_to(tree).as_posix(): p.read_bytes()
        for p in sorted((tree / "compact").rglob("*"))
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def test_generated_code_is_current(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"gen_protos.py failed:\n{result.stdout}{result.stderr}"
    fresh = _generated(tmp_path)
    committed = _generated(PROTOS)
    assert fresh, "gen_protos.py generated nothing"
    differing = sorted(
        f"protos/{name}"
        + (" (missing)" if name not in committed else " (stale)" if name not in fresh else "")
        for name in fresh.keys() | committed.keys()
        if fresh.get(name) != committed.get(name)
    )
    assert not differing, (
        "generated protobuf code is not current: "
        + ", ".join(differing)
        + "; run: python scripts/gen_protos.py"
    )


def test_buf_lint() -> None:
    if not BUF.is_file():
        pytest.skip(
            "buf is not installed (tools/node_modules/.bin/buf); install it with "
            "`npm ci --prefix tools` (scripts/lint.sh runs buf lint anyway)"
        )
    result = subprocess.run(
        [str(BUF), "lint", "protos"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"buf lint protos:\n{result.stdout}{result.stderr}"


def test_node_service_methods() -> None:
    from compact.v1 import node_pb2, node_pb2_grpc

    service = node_pb2.DESCRIPTOR.services_by_name["NodeService"]
    assert service.full_name == "compact.v1.NodeService"
    shapes = {
        m.name: (m.client_streaming, m.server_streaming, m.input_type.name, m.output_type.name)
        for m in service.methods
    }
    assert shapes == {
        "Ingest": (True, False, "IngestRequest", "IngestResponse"),
        "GetIncident": (False, False, "GetIncidentRequest", "GetIncidentResponse"),
        "SearchIncidents": (False, False, "SearchIncidentsRequest", "SearchIncidentsResponse"),
        "GetEvidence": (False, True, "GetEvidenceRequest", "GetEvidenceResponse"),
    }
    assert hasattr(node_pb2_grpc, "NodeServiceStub")
    assert hasattr(node_pb2_grpc, "add_NodeServiceServicer_to_server")
