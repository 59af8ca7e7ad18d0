"""A real node process on 127.0.0.1 with an OS-chosen port, for integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from crypto.keystore import generate_key_file_secret
from node.config import Config
from node.setup import Secret, init_node

REPO = Path(__file__).resolve().parent.parent


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS chose it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


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
        federation_listen=federation_listen or f"127.0.0.1:{free_loopback_port()}",
        kdf_strength="interactive",
    )


def compact(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `compact` command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        capture_output=True,
        text=True,
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
