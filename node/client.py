"""A NodeService client for the command line (and tests).

It finds the node through its data folder: the endpoint from the
configuration (or the address a running server recorded in run/server.json),
the node's own TLS certificate as the only trusted root (a pin), and the
bearer token from the credential file. Every call has a deadline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import grpc

from compact.v1 import node_pb2 as pb
from compact.v1 import node_pb2_grpc as pb_grpc
from node import serde
from node.config import Config
from node.errors import NodeError
from node.records import EvidenceView, IncidentView, IngestReport, SearchPage, SearchQuery

EVIDENCE_CHUNK = 256 * 1024


class ClientError(NodeError):
    """A call failed; `code` is the gRPC status code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def endpoint_for(config: Config) -> str:
    if config.client.endpoint:
        return config.client.endpoint
    info = config.run_dir / "server.json"
    if info.is_file():
        try:
            data = json.loads(info.read_text(encoding="utf-8"))
            return f"{data['host']}:{int(data['port'])}"
        except (ValueError, KeyError, TypeError):
            pass
    return config.server.listen


def _translate(e: grpc.RpcError, endpoint: str) -> ClientError:
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (e.details() if isinstance(e, grpc.Call) else "") or ""
    if code == grpc.StatusCode.UNAVAILABLE and (
        "connect" in details.lower() or "socket" in details.lower()
    ):
        return ClientError(
            code.name, f"the node at {endpoint} is not reachable (is `compact serve` running?)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClientError(code.name, f"the node at {endpoint} did not answer in time")
    return ClientError(code.name, details or code.name)


class NodeClient:
    def __init__(
        self,
        endpoint: str,
        *,
        root_certificate: bytes,
        token: str,
        deadline: float = 30.0,
    ) -> None:
        self.endpoint = endpoint
        self._deadline = deadline
        creds = grpc.ssl_channel_credentials(root_certificates=root_certificate)
        self._channel = grpc.secure_channel(endpoint, creds)
        self._stub = pb_grpc.NodeServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    @classmethod
    def from_config(cls, config: Config, *, token: str | None = None) -> NodeClient:
        try:
            cert = config.path(config.keys.tls_certificate).read_bytes()
        except OSError:
            raise ClientError(
                "FAILED_PRECONDITION", "the node's TLS certificate cannot be read"
            ) from None
        if token is None:
            try:
                token = (
                    config.path(config.client.credential_file).read_text(encoding="utf-8").strip()
                )
            except OSError:
                raise ClientError(
                    "FAILED_PRECONDITION", "the credential file cannot be read"
                ) from None
        return cls(
            endpoint_for(config),
            root_certificate=cert,
            token=token,
            deadline=config.client.deadline_seconds,
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def get_incident(self, global_id: str) -> IncidentView:
        try:
            response = self._stub.GetIncident(
                pb.GetIncidentRequest(global_id=global_id),
                timeout=self._deadline,
                metadata=self._metadata,
            )
        except grpc.RpcError as e:
            raise _translate(e, self.endpoint) from None
        return serde.incident_from_proto(response.incident)

    def search(self, query: SearchQuery) -> SearchPage:
        try:
            response = self._stub.SearchIncidents(
                serde.query_to_proto(query), timeout=self._deadline, metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise _translate(e, self.endpoint) from None
        return serde.page_from_proto(response)

    def search_all(self, query: SearchQuery, *, limit: int) -> Iterator[SearchPage]:
        """Pages until `limit` results or the end."""
        seen = 0
        token = ""
        while True:
            size = min(500, max(1, limit - seen))
            page = self.search(replace(query, page_size=size, page_token=token))
            seen += len(page.incidents)
            yield page
            if not page.next_page_token or seen >= limit:
                return
            token = page.next_page_token

    def get_evidence(
        self, global_id: str, sha256: str, out: BinaryIO, *, timeout: float
    ) -> EvidenceView:
        """Write the evidence bytes to `out`; checks size and SHA-256 at the end."""
        digest = hashlib.sha256()
        size = 0
        item: EvidenceView | None = None
        try:
            for msg in self._stub.GetEvidence(
                pb.GetEvidenceRequest(global_id=global_id, sha256=sha256),
                timeout=timeout,
                metadata=self._metadata,
            ):
                if msg.HasField("item"):
                    item = serde.evidence_from_proto(msg.item)
                if msg.data:
                    digest.update(msg.data)
                    size += len(msg.data)
                    out.write(msg.data)
        except grpc.RpcError as e:
            raise _translate(e, self.endpoint) from None
        if item is None or digest.hexdigest() != sha256 or size != item.size:
            raise ClientError("DATA_LOSS", "the evidence received does not match its SHA-256")
        return item

    def ingest(
        self,
        lines: list[tuple[int, bytes]],
        evidence: dict[str, Path],
        *,
        skip_invalid: bool = False,
        source_name: str = "",
        timeout: float = 600.0,
    ) -> IngestReport:
        """Stream an import: options, lines, then each evidence file in chunks."""

        def requests() -> Iterator[pb.IngestRequest]:
            yield pb.IngestRequest(
                options=pb.IngestOptions(skip_invalid=skip_invalid, source_name=source_name)
            )
            for number, raw in lines:
                yield pb.IngestRequest(line=pb.IngestLine(line_number=number, json=raw))
            for name, path in evidence.items():
                with path.open("rb") as f:
                    chunk = f.read(EVIDENCE_CHUNK)
                    while True:
                        following = f.read(EVIDENCE_CHUNK)
                        yield pb.IngestRequest(
                            evidence=pb.EvidenceChunk(path=name, data=chunk, last=not following)
                        )
                        if not following:
                            break
                        chunk = following

        try:
            response = self._stub.Ingest(requests(), timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise _translate(e, self.endpoint) from None
        return serde.report_from_proto(response)
