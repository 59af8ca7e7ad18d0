"""`compact matter create|add-exhibit|hold|list|show` in child processes on a real node.

IL and MN form a compact; IL holds two incidents of its own (one with a file). Nothing
here dials a peer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from node import models as m
from tests.helpers import record, write_jsonl
from tests.nodeproc import db_rows, form_compact, run_compact, user_env

pytestmark = pytest.mark.timeout(240)

FILE = b"bystander video" * 50
SECRET = "Quokka-Zebra-7731"


class Setup:
    def __init__(self, root: Path) -> None:
        self.il = form_compact(root, ("IL", "MN"))["IL"]
        folder = root / "in"
        (folder / "media").mkdir(parents=True)
        (folder / "media" / "clip.mp4").write_bytes(FILE)
        path = write_jsonl(
            folder,
            [
                record("IL-1", evidence=[{"path": "media/clip.mp4", "media_type": "video/mp4"}]),
                record("IL-2"),
            ],
        )
        run_compact("ingest", str(path), "--data-dir", str(self.il.data_dir))
        rows = db_rows(self.il, select(m.Incident.external_id, m.Incident.global_id))
        self.ids = {str(e): str(g) for e, g in rows}

    def run(self, *args: str, ok: bool = True, env: dict[str, str] | None = None) -> Any:
        return run_compact(*args, "--data-dir", str(self.il.data_dir), ok=ok, env=env)

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "--json", env=env).stdout)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("matters"))


def test_a_litigator_opens_a_matter_and_numbers_exhibits(node: Setup) -> None:
    created = node.json(
        "matter", "create", "Doe v. Noem", "--states", "mn", "--bates-prefix", "IL-MN",
        env=user_env(node.il, "atty.chen", "litigator"),
    )  # fmt: skip
    assert (created["matter"], created["states"], created["revision"]) == (
        "IL:DOE-V-NOEM", ["IL", "MN"], 1,
    )  # fmt: skip
    first = node.json(
        "matter", "add-exhibit", "DOE-V-NOEM", "--incident", node.ids["IL-1"],
        "--description", f"Arrest on I-90 {SECRET}",
        env=user_env(node.il, "para.kim", "litigator"),
    )  # fmt: skip
    second = node.json(
        "matter", "add-exhibit", "IL:DOE-V-NOEM", "--incident", node.ids["IL-1"],
        "--evidence", hashlib.sha256(FILE).hexdigest(), "--description", "The video",
    )  # fmt: skip
    assert (first["number"], first["evidence"], first["held"]) == ("IL-MN-000001", None, True)
    assert second["number"] == "IL-MN-000002"
    assert second["evidence"] == {"position": 0, "sha256": hashlib.sha256(FILE).hexdigest()}
    shown = node.json("matter", "show", "doe-v-noem")
    assert [e["number"] for e in shown["exhibits"]] == ["IL-MN-000001", "IL-MN-000002"]
    assert shown["revision"] == 3 and shown["legal_hold"] is False
    assert [(mb["state"], mb["shared_revision"]) for mb in shown["members"]] == [
        ("IL", 3), ("MN", None),
    ]  # fmt: skip
    held = node.json("matter", "hold", "DOE-V-NOEM", "--on")
    assert (held["legal_hold"], held["revision"]) == (True, 4)
    listed = node.json("matter", "list")
    assert [(r["matter"], r["exhibit_count"], r["legal_hold"]) for r in listed] == [
        ("IL:DOE-V-NOEM", 2, True)
    ]
    text = node.run("matter", "show", "DOE-V-NOEM").stderr
    assert "LEGAL HOLD" in text and "IL-MN-000002" in text and "not yet shared with: MN" in text
    actions = db_rows(node.il, select(m.AuditEvent.action, m.AuditEvent.actor))
    assert ("matter.create", "atty.chen") in actions
    assert ("matter.add-exhibit", "para.kim") in actions


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "X", "--states", "NY"), "states: NY is not a member of the compact"),
        (("create", "X", "--states", ","), "expected state codes separated by commas"),
        (("add-exhibit", "IL:NOPE", "--incident", "IL-x", "--description", "d"), "no such matter"),
        (("show", "IL:NOPE"), "matter: no such matter here"),
    ],
)
def test_errors_are_named_and_exit_nonzero(
    node: Setup, args: tuple[str, ...], message: str
) -> None:
    result = node.run("matter", *args, ok=False)
    assert result.returncode != 0
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


def test_a_refused_exhibit_names_the_reason_and_keeps_no_secret(node: Setup) -> None:
    node.run("matter", "create", "Second Case", "--states", "IL")
    result = node.run(
        "matter", "add-exhibit", "SECOND-CASE", "--incident", "MN-" + "0" * 36,
        "--description", SECRET, ok=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "incident: MN is not a member of matter IL:SECOND-CASE" in result.stderr
    assert SECRET not in result.stderr + result.stdout
