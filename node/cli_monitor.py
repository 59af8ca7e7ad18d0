"""`compact health`: what the running node's gRPC health service reports
(docs/operations.md, "Monitoring"). The container image's HEALTHCHECK runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from node.cli import _load, data_dir_option, json_option
from node.cli_auth import Access, declare

#: Exit status when the node cannot be reached at all (1: reached, not serving).
EXIT_UNREACHABLE = 2


def register(main: click.Group) -> None:
    main.add_command(health_cmd)


@click.command("health")
@data_dir_option
@click.option(
    "--service",
    default="",
    show_default="the node itself",
    help="The health service name whose status sets the exit status: compact.peers "
    "(every member synced lately), compact.peer.XX, compact.v1.NodeService.",
)
@json_option
@declare(Access.SERVER)
def health_cmd(data_dir: Path, service: str, as_json: bool) -> None:
    """Ask the running node how it is: exit 0 if SERVICE is serving, 1 if not, 2 if the
    node cannot be reached. Needs no token: the health service says only serving or not."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from node.client import endpoint_for

    config = _load(data_dir)
    endpoint = endpoint_for(config)
    error = ""
    statuses: dict[str, str] = {}
    try:
        cert = config.path(config.keys.tls_certificate).read_bytes()
    except OSError:
        cert, error = b"", "the node's TLS certificate cannot be read"
    if cert:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert)
        with grpc.secure_channel(endpoint, credentials) as channel:
            # The type stubs predate Health.List.
            stub: Any = health_pb2_grpc.HealthStub(channel)
            messages: Any = health_pb2
            try:
                response = stub.List(
                    messages.HealthListRequest(), timeout=config.client.deadline_seconds
                )
                statuses = {
                    name: health_pb2.HealthCheckResponse.ServingStatus.Name(value.status)
                    for name, value in sorted(response.statuses.items())
                }
            except grpc.RpcError as e:
                code = e.code() if isinstance(e, grpc.Call) else None
                error = (
                    f"the node at {endpoint} did not answer in time"
                    if code == grpc.StatusCode.DEADLINE_EXCEEDED
                    else f"the node at {endpoint} is not reachable (is `compact serve` running?)"
                )
    status = statuses.get(service, "SERVICE_UNKNOWN") if not error else "UNREACHABLE"
    if as_json:
        out: dict[str, object] = {"endpoint": endpoint, "service": service, "status": status}
        if error:
            out["error"] = error
        else:
            out["services"] = statuses
        click.echo(json.dumps(out, indent=2))
    elif error:
        click.echo(f"error: {error}", err=True)
    else:
        for name, value in statuses.items():
            click.echo(f"{name or '(node)'}: {value}")
    if error:
        raise SystemExit(EXIT_UNREACHABLE)
    if status != "SERVING":
        raise SystemExit(1)
