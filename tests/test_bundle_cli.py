"""`compact bundle request|list|show|approve|deny|refresh` between two real node processes.

IL holds incidents and runs `compact serve`; MN asks from the command line. Loopback
only, ports from the OS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from node import models as m
from node.config import Config
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    NodeProcess,
    db_rows,
    form_compact,
    run_compact,
    start_node,
    user_env,
)

pytestmark = pytest.mark.timeout(240)


def run_json(config: Config, *args: str, ok: bool = True, env: dict[str, str] | None = None) -> Any:
    result = run_compact(*args, "--json", "--data-dir", str(config.data_dir), ok=ok, env=env)
    return json.loads(result.stdout)


class Pair:
    def __init__(self, root: Path) -> None:
        self.configs = form_compact(root, ("IL", "MN"))
        self.il, self.mn = self.configs["IL"], self.configs["MN"]
        records = [
            record("IL-B-compact", sharing="compact"),
            record("IL-B-index-1"),
            record("IL-B-index-2"),
            record("IL-B-sealed", sharing="sealed"),
        ]
        path = write_jsonl(root / "in", records)
        run_compact("ingest", str(path), "--data-dir", str(self.il.data_dir))
        rows = db_rows(self.il, select(m.Incident.external_id, m.Incident.global_id))
        self.ids = {str(e): str(g) for e, g in rows}
        self.proc: NodeProcess | None = start_node(self.il)

    def request(self, external_id: str, *, ok: bool = True) -> Any:
        return run_json(
            self.mn,
            "bundle", "request", "--state", "IL", "--incident", self.ids[external_id],
            "--purpose", "Doe v. Noem: the same agent in two states",
            ok=ok, env=user_env(self.mn, "analyst.ortiz", "analyst"),
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None:
            assert self.proc.stop() == 0
            self.proc = None


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("bundles"))
    try:
        yield p
    finally:
        p.stop()


def test_a_compact_incident_is_approved_at_once(pair: Pair) -> None:
    out = pair.request("IL-B-compact")
    assert (out["state"], out["decided_by"], out["holder"]) == ("approved", "policy:compact", "IL")
    assert out["requested_by"] == "analyst.ortiz" and len(out["bundle_id"]) == 64
    incoming = run_json(pair.il, "bundle", "list", "--incoming")
    mine = [r for r in incoming if r["request_id"] == out["request_id"]]
    assert [(r["requester"], r["state"]) for r in mine] == [("MN", "approved")]


def test_a_reviewer_approves_with_redactions_and_the_requester_learns_it(pair: Pair) -> None:
    out = pair.request("IL-B-index-1")
    assert out["state"] == "pending" and out["sent_at"] is not None
    request_id = out["request_id"]
    pending = run_json(pair.il, "bundle", "list", "--incoming", "--state", "pending")
    [listed] = [r for r in pending if r["request_id"] == request_id]
    # nothing sealed yet: no transfer to tell of
    assert (listed["sealed_bytes"], listed["received_bytes"], listed["sent_in_full"]) == (
        None, None, None,
    )  # fmt: skip
    approved = run_json(
        pair.il, "bundle", "approve", request_id, "--redact", "people",
        env=user_env(pair.il, "reviewer.kim", "reviewer"),
    )  # fmt: skip
    assert (approved["state"], approved["redactions"]) == ("approved", ["people"])
    refreshed = run_json(pair.mn, "bundle", "refresh")
    assert {"request_id": request_id, "holder": "IL", "state": "approved", "error": None} in (
        refreshed
    )
    shown = run_json(pair.mn, "bundle", "show", request_id)
    assert (shown["state"], shown["decided_by"], shown["redactions"]) == (
        "approved",
        "reviewer.kim",
        ["people"],
    )
    assert shown["bundle_id"] == approved["bundle_id"]
    # Decided once: a second decision is refused with a clear message.
    il_dir = str(pair.il.data_dir)
    again = run_compact(
        "bundle", "deny", request_id, "--reason", "no", "--data-dir", il_dir, ok=False
    )
    assert again.returncode == 1 and "already approved" in again.stderr


def test_a_denial_reaches_the_requester_with_its_reason(pair: Pair) -> None:
    request_id = pair.request("IL-B-index-2")["request_id"]
    no_reason = run_compact(
        "bundle", "deny", request_id, "--data-dir", str(pair.il.data_dir), ok=False
    )
    assert no_reason.returncode != 0 and "--reason" in no_reason.stderr
    run_json(pair.il, "bundle", "deny", request_id, "--reason", "open investigation")
    run_json(pair.mn, "bundle", "refresh")
    shown = run_json(pair.mn, "bundle", "show", request_id)
    assert (shown["state"], shown["reason"], shown["bundle_id"]) == (
        "denied",
        "open investigation",
        None,
    )
    outgoing = run_json(pair.mn, "bundle", "list", "--outgoing", "--state", "denied")
    assert [r["request_id"] for r in outgoing] == [request_id]


def test_a_sealed_incident_fails_as_not_found(pair: Pair) -> None:
    out = pair.request("IL-B-sealed", ok=False)
    assert out["state"] == "failed" and "NOT_FOUND" in out["reason"]
    assert "no such incident" in out["reason"]


def test_bad_input_is_refused_before_anything_is_stored(pair: Pair) -> None:
    before = run_json(pair.mn, "bundle", "list")
    for args, message in (
        (["--state", "MN", "--incident", pair.ids["IL-B-compact"]], "own incidents"),
        (["--state", "TX", "--incident", "TX-00000000-0000-4000-8000-000000000000"], "member"),
        (["--state", "IL", "--incident", "not-an-id"], "incident"),
    ):
        result = run_compact(
            "bundle", "request", *args, "--purpose", "p", "--data-dir", str(pair.mn.data_dir),
            ok=False,
        )  # fmt: skip
        assert result.returncode == 1 and message in result.stderr, result.stderr
    mn_dir = str(pair.mn.data_dir)
    bad_state = run_compact("bundle", "list", "--state", "lost", "--data-dir", mn_dir, ok=False)
    assert bad_state.returncode == 1 and "--state" in bad_state.stderr
    assert run_json(pair.mn, "bundle", "list") == before


def test_a_request_waits_for_an_unreachable_holder(pair: Pair) -> None:
    pair.stop()
    try:
        out = pair.request("IL-B-compact")
        assert (out["state"], out["sent_at"]) == ("pending", None)
        refreshed = run_json(pair.mn, "bundle", "refresh")
        mine = [r for r in refreshed if r["request_id"] == out["request_id"]]
        assert mine[0]["state"] is None and mine[0]["error"]
    finally:
        pair.proc = start_node(pair.il)
    refreshed = run_json(pair.mn, "bundle", "refresh")
    mine = [r for r in refreshed if r["request_id"] == out["request_id"]]
    assert mine[0]["state"] == "approved"
    shown = run_json(pair.mn, "bundle", "show", out["request_id"])
    assert shown["sent_at"] is not None and shown["decided_by"] == "policy:compact"
