"""`compact demo`: the whole product end to end, as the README's first command runs it.

Three real nodes on 127.0.0.1 (ports from the OS), every step a `compact` command. The
demo is run once with `--keep`: it must exit 0, leave the nodes running and queryable,
and leave a package that verifies again; a failing step must exit 1 and stop the nodes.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from rich.console import Console

from node import demo
from tests.nodeproc import run_compact

pytestmark = pytest.mark.timeout(600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def _stop(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def test_the_demo_runs_every_step_and_keeps_the_nodes(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    result = run_compact("demo", "--dir", str(root), "--keep", timeout=540, ok=False)
    text = result.stderr + result.stdout
    assert result.returncode == 0, text[-4000:]
    found = re.search(r"Stop them with: kill ([\d ]+)", text)
    assert found is not None, text[-2000:]
    pids = [int(p) for p in found.group(1).split()]
    try:
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        for step in range(1, 9):
            assert f"{step}/8" in text
            assert f"{step - 1} of 8 steps done" in text  # the bar under the step's title
        pin = re.search(r"roster pin +([0-9a-f]{64})", text)
        assert pin is not None
        assert "MN-IL-000001: VERIFIED" in text
        matched = re.search(r"agents +(\d+) matched across states", text)
        assert matched is not None and int(matched.group(1)) >= 6  # the planted travellers
        # the nodes still serve: IL's peers were reached, and the package verifies again
        peers = json.loads(run_compact("peers", "--json", "--data-dir", str(root / "il")).stdout)[
            "peers"
        ]
        assert {p["state"] for p in peers} == {"CA", "MN"} and all(p["reachable"] for p in peers)
        package = root / "exhibits" / "doe-v-noem"
        again = run_compact("verify", str(package), "--roster-pin", pin.group(1), ok=False)
        assert again.returncode == 0, again.stdout
        assert (root / "exhibits" / "doe-v-noem.zip").is_file()
        delivered = json.loads(
            run_compact("bundle", "list", "--json", "--data-dir", str(root / "mn")).stdout
        )
        assert [r["state"] for r in delivered] == ["delivered"]
        assert delivered[0]["requested_by"] == "analyst.ortiz"  # the token's user, not a label
        assert delivered[0]["decided_by"] == "reviewer.king"
        assert "may not approve or deny other members' bundle requests" in text
        logged = re.search(r"audit trail +IL: (\d+) events in its log", text)
        assert logged is not None and int(logged.group(1)) > 0
        # IL's audit trail verifies (as its admin), now with the nodes still running
        trail = run_compact("audit", "verify", "--json", "--data-dir", str(root / "il"))
        report = json.loads(trail.stdout)
        assert report["ok"] is True and report["witnesses"], report
        # Monitoring: each node's metrics endpoint, as printed, answers; IL is healthy.
        urls = re.findall(r"curl -s (http://127\.0\.0\.1:\d+/metrics)", text)
        assert len(urls) == 3, text[-2000:]
        import urllib.request

        with urllib.request.urlopen(urls[0], timeout=10) as response:  # loopback only
            assert b"compact_log_entries" in response.read()
        health = run_compact("health", "--json", "--data-dir", str(root / "il"))
        assert json.loads(health.stdout)["status"] == "SERVING"
    finally:
        _stop(pids)


def test_a_failing_step_exits_1_and_stops_the_nodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[demo.Demo] = []

    def fail(self: demo.Demo) -> None:
        started.append(self)
        raise demo.DemoFailed("analysis", "planted failure")

    monkeypatch.setattr(demo.Demo, "analyse", fail)
    out = io.StringIO()
    console = Console(file=out, width=120)
    assert demo.run_demo(tmp_path / "demo", keep=True, console=console) == 1
    assert len(started) == 1, out.getvalue()[-4000:]  # it failed where planted, not before
    [ran] = started
    assert len(ran.nodes) == 3 and all(n.proc is None for n in ran.nodes.values())
    logs = [n.log_path.read_text(encoding="utf-8") for n in ran.nodes.values()]
    assert all(log for log in logs)  # each node had served before it was stopped


def test_a_folder_that_is_not_empty_is_refused(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x", encoding="utf-8")
    result = run_compact("demo", "--dir", str(tmp_path), ok=False)
    assert result.returncode == 1
    assert "is not empty" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something"]


def test_a_wait_counts_up_to_its_total_and_a_yes_no_wait_ends_when_it_holds(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    d = demo.Demo(tmp_path, console=Console(file=out, width=120, force_terminal=True))
    counts = iter([(0, 10), (4, 10), (10, 12), (12, 12), (13, 12)])
    seen: list[tuple[int, int]] = []

    def measured() -> tuple[int, int]:
        seen.append(next(counts))
        return seen[-1]

    d.wait("entries", measured, timeout=30)
    assert seen == [(0, 10), (4, 10), (10, 12), (12, 12)]  # done once done reached total
    answers = iter([False, False, True])
    d.wait("a yes", lambda: next(answers), timeout=30)
    assert next(answers, None) is None
    with pytest.raises(demo.DemoFailed, match="timed out after 0 s waiting for never"):
        d.wait("never", lambda: (0, 1), timeout=0)


def test_a_reserved_port_cannot_be_taken_until_it_is_released() -> None:
    ports = demo.PortReservations(limit=2)
    first = ports.reserve()

    def bind(port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC's listener
            s.bind(("127.0.0.1", port))
            s.listen()

    with pytest.raises(OSError, match="Address already in use"):
        bind(first)
    ports.release(first)
    bind(first)  # the node's turn
    second, third = ports.reserve(), ports.reserve()
    fourth = ports.reserve()  # over the limit: the oldest held (second) is let go
    bind(second)
    for held in (third, fourth):
        with pytest.raises(OSError, match="Address already in use"):
            bind(held)
    ports.release_all()
    bind(third)
    bind(fourth)
