"""Matters between three real node processes: IL owns a matter with MN and CA.

MN and CA run `compact serve`; IL works from the command line, which offers each new
revision to the members at once. A member that is down gets the newest revision later
(`compact matter share`). Loopback only, ports from the OS.
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
from tests.nodeproc import NodeProcess, db_rows, form_compact, run_compact, start_node

pytestmark = pytest.mark.timeout(300)


class Three:
    def __init__(self, root: Path) -> None:
        self.configs = form_compact(root, ("CA", "IL", "MN"))
        self.il = self.configs["IL"]
        path = write_jsonl(root / "in", [record("IL-1")])
        run_compact("ingest", str(path), "--data-dir", str(self.il.data_dir))
        (gid,) = db_rows(self.il, select(m.Incident.global_id))
        self.gid = str(gid[0])
        self.procs: dict[str, NodeProcess] = {s: start_node(self.configs[s]) for s in ("CA", "MN")}

    def il_run(self, *args: str, ok: bool = True) -> Any:
        return run_compact(*args, "--data-dir", str(self.il.data_dir), ok=ok)

    def held(self, state: str) -> list[tuple[int, int]]:
        """(revision, exhibit count) of the matter at `state`, from its database."""
        config: Config = self.configs[state]
        rows = db_rows(config, select(m.Matter.revision, m.Matter.id))
        return [
            (int(rev), len(db_rows(config, select(m.Exhibit.id).where(m.Exhibit.matter_id == i))))
            for rev, i in rows
        ]

    def stop(self, state: str) -> None:
        assert self.procs.pop(state).stop() == 0

    def stop_all(self) -> None:
        for state in list(self.procs):
            self.stop(state)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Three]:
    t = Three(tmp_path_factory.mktemp("matters3"))
    try:
        yield t
    finally:
        t.stop_all()


def test_revisions_reach_every_member_and_a_member_that_was_down_catches_up(
    three: Three,
) -> None:
    created = json.loads(
        three.il_run(
            "matter", "create", "Doe v. Noem", "--states", "MN,CA", "--bates-prefix", "IL-MN",
            "--json",
        ).stdout
    )  # fmt: skip
    assert created["members"] == [
        {"state": s, "shared_revision": 1, "shared_at": created["members"][i]["shared_at"]}
        for i, s in enumerate(("CA", "IL", "MN"))
    ]
    assert three.held("MN") == [(1, 0)] and three.held("CA") == [(1, 0)]
    three.il_run(
        "matter", "add-exhibit", "DOE-V-NOEM", "--incident", three.gid, "--description", "Stop"
    )
    assert three.held("MN") == [(2, 1)] and three.held("CA") == [(2, 1)]
    # Each member logged both revisions and audited them as received from IL.
    for state in ("MN", "CA"):
        kinds = db_rows(three.configs[state], select(m.LogEntry.kind))
        assert [k for (k,) in kinds].count("matter") == 2
        actions = db_rows(three.configs[state], select(m.AuditEvent.action, m.AuditEvent.actor))
        assert actions.count(("matter.receive", "member:IL")) == 2

    three.stop("CA")
    hold = three.il_run("matter", "hold", "DOE-V-NOEM", "--on")
    assert "not yet shared with CA" in hold.stderr and "not yet shared with MN" not in hold.stderr
    assert three.held("MN") == [(3, 1)] and three.held("CA") == [(2, 1)]
    pending = three.il_run("matter", "share", ok=False)
    assert pending.returncode == 1 and "IL:DOE-V-NOEM → CA: not shared" in pending.stderr
    shown = json.loads(three.il_run("matter", "show", "DOE-V-NOEM", "--json").stdout)
    assert {mb["state"]: mb["shared_revision"] for mb in shown["members"]} == {
        "CA": 2, "IL": 3, "MN": 3,
    }  # fmt: skip

    three.procs["CA"] = start_node(three.configs["CA"])
    done = json.loads(three.il_run("matter", "share", "--json").stdout)
    assert [(d["state"], d["held"]) for d in done] == [("CA", 3)]
    assert three.held("CA") == [(3, 1)]
    (hold_flag,) = db_rows(three.configs["CA"], select(m.Matter.legal_hold))
    assert hold_flag == (True,)
    assert "every member holds" in three.il_run("matter", "share").stderr
