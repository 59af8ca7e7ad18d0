"""A real node process on 127.0.0.1 with an OS-chosen port, for integration tests."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from crypto.keystore import generate_key_file_secret
from node import models as m
from node.config import Config
from node.config import set_setting as set_config_setting
from node.db import Database
from node.demo import PortReservations
from node.setup import Secret, init_node
from node.users import add_user

REPO = Path(__file__).resolve().parent.parent
#: Federation ports chosen by init_test_node, held until start_node starts that node.
PORTS = PortReservations()


def init_test_node(
    root: Path,
    state: str = "IL",
    *,
    database_url: str = "",
    federation_listen: str | None = None,
) -> Config:
    """A node folder under `root`, its keys sealed under a key file beside (not in) it.

    FederationService gets a free loopback port unless `federation_listen` is given.
    """
    root.mkdir(parents=True, exist_ok=True)
    key_file = root / f"{state.lower()}.key"
    key_file.write_bytes(generate_key_file_secret())
    return init_node(
        root / state.lower(),
        state=state,
        secret=Secret(key_file_secret=key_file.read_bytes()),
        key_file=key_file,
        database_url=database_url,
        listen="127.0.0.1:0",
        federation_listen=federation_listen or f"127.0.0.1:{PORTS.reserve()}",
        kdf_strength="interactive",
    )


def compact(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the `compact` command line in a child process, `input` on its stdin (by default
    an empty stdin: a prompt sees its end, it never waits on the test's terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


@dataclass
class NodeProcess:
    config: Config
    proc: subprocess.Popen[str]
    endpoint: str
    log_path: Path

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def logs(self) -> list[dict[str, object]]:
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def raw_logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8")


def start_node(config: Config, *, timeout: float = 30) -> NodeProcess:
    PORTS.release(int(config.federation.listen.rsplit(":", 1)[1]))  # the node binds it now
    info = config.run_dir / "server.json"
    info.unlink(missing_ok=True)
    log_path = config.data_dir / "serve.log"
    log = log_path.open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "serve", "--data-dir", str(config.data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if info.is_file():
            data = json.loads(info.read_text(encoding="utf-8"))
            return NodeProcess(config, proc, f"{data['host']}:{data['port']}", log_path)
        if proc.poll() is not None:
            raise RuntimeError(f"the node exited: {log_path.read_text(encoding='utf-8')}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the node did not start in time")


def run_compact(
    *args: str, timeout: float = 600, ok: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`compact ...` in a child process; a failure raises with its output (unless `ok` is
    false: then the result is returned whatever it is)."""
    result = compact(*args, timeout=timeout, env=env)
    if ok and result.returncode != 0:
        raise RuntimeError(f"compact {' '.join(args)} failed: {result.stderr}{result.stdout}")
    return result


def user_env(config: Config, name: str, role: str) -> dict[str, str]:
    """The environment that makes `compact` act as user `name` of the node (created with
    `role` the first time, its token kept beside the data folder): {"COMPACT_TOKEN_FILE": ...}."""
    token_file = config.data_dir.parent / f"{config.data_dir.name}-{name}.token"
    if not token_file.exists():
        db = Database.from_url(config.database_url())
        try:
            token = add_user(db, name, role, actor="test")
        finally:
            db.dispose()
        token_file.write_text(token + "\n", encoding="utf-8")
        token_file.chmod(0o600)
    return {"COMPACT_TOKEN_FILE": str(token_file)}


def set_setting(config: Config, key: str, value: object) -> None:
    """Change one `key = value` line of the node's compact.toml (it must be there)."""
    set_config_setting(config.data_dir / "compact.toml", key, value)


def db_rows(config: Config, query: Any) -> list[tuple[Any, ...]]:
    """The rows of a query on a node's database (opened and closed around it)."""
    db = Database.from_url(config.database_url())
    try:
        with db.read() as s:
            return [tuple(r) for r in s.execute(query)]
    finally:
        db.dispose()


def published_index(config: Config) -> list[tuple[str, int, bytes]]:
    """(global id, revision, envelope) of each incident the node has published, sorted."""
    return sorted(
        (g, r, bytes(p))
        for g, r, p in db_rows(
            config,
            select(m.PublishedEntry.global_id, m.PublishedEntry.revision, m.LogEntry.payload).join(
                m.LogEntry, m.LogEntry.index == m.PublishedEntry.log_index
            ),
        )
    )


def replica_index(config: Config, state: str) -> list[tuple[str, int, bytes]]:
    """(global id, revision, envelope) of each current entry of the node's replica of `state`."""
    return sorted(
        (g, r, bytes(e))
        for g, r, e in db_rows(
            config,
            select(
                m.ReplicaEntry.global_id, m.ReplicaEntry.revision, m.ReplicaEntry.envelope
            ).where(m.ReplicaEntry.state == state, m.ReplicaEntry.current.is_(True)),
        )
    )


def form_compact(
    root: Path,
    states: tuple[str, ...] = ("CA", "IL", "MN"),
    *,
    threshold: int = 2,
    sync_interval_seconds: float = 3600.0,
    expires: str = "2030-01-01",
) -> dict[str, Config]:
    """Node folders for `states` under `root` that form a compact through the command line.

    Member cards, a roster proposed by the first state (sorted) with the OPRF key
    ceremony (t = `threshold`), signed by as many members as the threshold, applied
    on every node with the out-of-band pin, and every sealed share imported. The
    nodes are not started.
    """
    order = sorted(states)
    configs = {s: init_test_node(root / s, s) for s in order}
    for c in configs.values():
        set_setting(c, "sync_interval_seconds", float(sync_interval_seconds))
    cards: list[str] = []
    for s, c in configs.items():
        card = root / f"card-{s}.json"
        run_compact("roster", "card", "--data-dir", str(c.data_dir), "--out", str(card))
        cards += ["--card", str(card)]
    first = str(configs[order[0]].data_dir)
    proposal = root / "proposal.json"
    run_compact(
        "roster", "propose", *cards, "--threshold", str(threshold), "--expires", expires,
        "--out", str(proposal), "--data-dir", first,
    )  # fmt: skip
    ceremony = root / "ceremony"
    run_compact("oprf", "ceremony", str(proposal), "--threshold", str(threshold),
                "--out-dir", str(ceremony), "--data-dir", first)  # fmt: skip
    signed = ceremony / "proposal.json"
    for s in order[1:threshold]:
        run_compact("roster", "sign", str(signed), "--data-dir", str(configs[s].data_dir))
    envelope = json.loads(signed.read_text(encoding="utf-8"))["envelope"]
    pin = hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()
    for s, c in configs.items():
        run_compact("roster", "apply", str(signed), "--pin", pin, "--data-dir", str(c.data_dir))
        run_compact("oprf", "import-share", str(ceremony / f"share-{s}.sealed"),
                    "--data-dir", str(c.data_dir))  # fmt: skip
    return configs


@contextlib.contextmanager
def running_compact(root: Path) -> Iterator[dict[str, Any]]:
    """`form_compact` under `root` (syncing every second) with every node serving:
    {"root", "configs", "nodes"}; the nodes are stopped after (the test may replace one)."""
    configs = form_compact(root, sync_interval_seconds=1.0)
    nodes: dict[str, NodeProcess] = {}
    try:
        for state, config in configs.items():
            nodes[state] = start_node(config)
        yield {"root": root, "configs": configs, "nodes": nodes}
    finally:
        for n in nodes.values():
            n.stop()
