"""A bundle end to end between two real node processes: IL seals, MN receives and stores.

IL runs `compact serve` (which publishes, seals approved bundles once a checkpoint
covering them is cosigned, and serves FetchBundle); so does MN (IL needs its OPRF share
to publish). MN witnesses IL's log with `compact sync`, asks with
`compact bundle request` and receives with `compact bundle refresh`. Loopback only,
ports from the OS.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from node import models as m
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    NodeProcess,
    db_rows,
    form_compact,
    run_compact,
    set_setting,
    start_node,
    user_env,
)
from tests.test_bundle_cli import run_json

pytestmark = pytest.mark.timeout(300)

CHUNK = 4096


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Pair:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.configs = form_compact(root, ("IL", "MN"))
        self.il, self.mn = self.configs["IL"], self.configs["MN"]
        set_setting(self.il, "poll_seconds", 0.5)
        set_setting(self.il, "chunk_bytes", CHUNK)
        # MN serves too (IL needs MN's OPRF share to publish), but leaves receiving to
        # `compact bundle refresh` in these tests.
        set_setting(self.mn, "poll_seconds", 3600)
        media = root / "in" / "media"
        media.mkdir(parents=True)
        self.files = {
            "clip.mp4": os.urandom(10 * CHUNK + 123),  # eleven chunks, the last one short
            "note.txt": b"written statement of the witness\n",
            "photo.jpg": os.urandom(CHUNK),  # exactly one chunk
        }
        for name, data in self.files.items():
            (media / name).write_bytes(data)
        evidence = [
            {"path": f"media/{name}", "media_type": media_type, "captured_by": "bystander"}
            for name, media_type in (
                ("clip.mp4", "video/mp4"),
                ("note.txt", "text/plain"),
                ("photo.jpg", "image/jpeg"),
            )
        ]
        evidence[0]["captured_at"] = "2025-10-04T07:16:02-05:00"
        records = [
            record("IL-T-1", sharing="compact", evidence=evidence),
            record("IL-T-2", sharing="compact"),
        ]
        path = write_jsonl(root / "in", records)
        run_compact("ingest", str(path), "--data-dir", str(self.il.data_dir))
        rows = db_rows(self.il, select(m.Incident.external_id, m.Incident.global_id))
        self.ids = {str(e): str(g) for e, g in rows}
        self.procs: list[NodeProcess] = []
        try:
            self.procs += [start_node(self.il), start_node(self.mn)]
            self.witness()
        except BaseException:
            self.stop()
            raise

    def witness(self) -> None:
        """MN syncs with IL until it has cosigned a checkpoint holding everything IL
        published and logged (its serve loop publishes within seconds)."""

        def cosigned() -> bool:
            run_compact("sync", "--data-dir", str(self.mn.data_dir), ok=False)
            size = db_rows(self.il, select(m.LogCosignature.size))
            published = db_rows(self.il, select(m.PublishedEntry.log_index))
            custody = db_rows(
                self.il, select(m.CustodyEvent.log_index).where(m.CustodyEvent.origin.is_(None))
            )
            indexes = [int(i) for (i,) in published + custody if i is not None]
            unlogged = any(i is None for (i,) in custody)
            return (
                len(published) == 2
                and not unlogged
                and bool(size)
                and max(int(s) for (s,) in size) > max(indexes)
            )

        wait_for("MN to cosign IL's checkpoint", cosigned, timeout=90)

    def request(self, external_id: str) -> Any:
        return run_json(
            self.mn,
            "bundle", "request", "--state", "IL", "--incident", self.ids[external_id],
            "--purpose", "Doe v. Noem: the same agent in two states",
            env=user_env(self.mn, "analyst.ortiz", "analyst"),
        )  # fmt: skip

    def incoming_state(self, request_id: str) -> str:
        rows = run_json(self.il, "bundle", "list", "--incoming")
        return str(next(r["state"] for r in rows if r["request_id"] == request_id))

    def stop(self) -> None:
        while self.procs:
            assert self.procs.pop().stop() == 0


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("transfer"))
    try:
        yield p
    finally:
        p.stop()


def test_a_bundle_is_sealed_streamed_verified_and_stored(pair: Pair) -> None:
    gid = pair.ids["IL-T-1"]
    out = pair.request("IL-T-1")
    request_id = out["request_id"]
    assert out["state"] == "approved"
    wait_for("IL to seal", lambda: pair.incoming_state(request_id) == "sealed")
    # Nothing of the incident is visible at MN before the bundle is received.
    assert db_rows(pair.mn, select(m.Incident.id).where(m.Incident.global_id == gid)) == []

    # MN's matter under legal hold names the incident before its bundle arrives: nothing
    # to keep yet.
    mn_dir = str(pair.mn.data_dir)
    run_compact("matter", "create", "Doe v. Noem", "--states", "IL", "--legal-hold",
                "--data-dir", mn_dir)  # fmt: skip
    run_compact("matter", "add-exhibit", "DOE-V-NOEM", "--incident", gid,
                "--description", "IL's stop", "--data-dir", mn_dir)  # fmt: skip
    assert db_rows(pair.mn, select(m.LegalHold.id)) == []

    refreshed = run_json(pair.mn, "bundle", "refresh")
    assert {"request_id": request_id, "holder": "IL", "state": "delivered", "error": None} in (
        refreshed
    )
    shown = run_json(pair.mn, "bundle", "show", request_id)
    assert shown["state"] == "delivered"
    assert shown["received_bytes"] == shown["sealed_bytes"] > 0
    assert shown["sent_in_full"] is None  # only the holder's side says that
    wait_for("IL to take the receipt", lambda: pair.incoming_state(request_id) == "delivered")
    [incoming] = [
        r
        for r in run_json(pair.il, "bundle", "list", "--incoming")
        if r["request_id"] == request_id
    ]
    assert incoming["sent_in_full"] is True and incoming["received_bytes"] is None
    assert incoming["sealed_bytes"] == shown["sealed_bytes"]

    # The incident is stored under IL, with its provenance and every file.
    [(state, incident_id)] = db_rows(
        pair.mn, select(m.Incident.state, m.Incident.id).where(m.Incident.global_id == gid)
    )
    assert state == "IL"
    [(origin, bundle_id)] = db_rows(
        pair.mn,
        select(m.IncidentProvenance.origin, m.IncidentProvenance.bundle_id).where(
            m.IncidentProvenance.incident_id == incident_id
        ),
    )
    assert (origin, bundle_id) == ("IL", shown["bundle_id"])
    items = db_rows(
        pair.mn,
        select(m.EvidenceItem.file_name, m.EvidenceItem.sha256, m.EvidenceItem.size)
        .where(m.EvidenceItem.incident_id == incident_id)
        .order_by(m.EvidenceItem.position),
    )
    assert [(n, s, z) for n, s, z in items] == [
        (name, hashlib.sha256(data).hexdigest(), len(data)) for name, data in pair.files.items()
    ]
    # The hold keeps the incident and its files from the moment they were stored.
    kept = db_rows(pair.mn, select(m.LegalHold.incident_id, m.LegalHold.blob_sha256))
    assert sorted(kept, key=lambda r: r[1] or "") == sorted(
        [(incident_id, None)] + [(incident_id, s) for _, s, _ in items], key=lambda r: r[1] or ""
    )
    # Custody: IL's signed events (origin IL) and MN's own `received`, for each file.
    custody = db_rows(
        pair.mn,
        select(m.CustodyEvent.kind, m.CustodyEvent.origin)
        .join(m.EvidenceItem)
        .where(m.EvidenceItem.incident_id == incident_id)
        .order_by(m.CustodyEvent.id),
    )
    assert ("collected", "IL") in custody and ("received", "IL") in custody
    assert sum(1 for c in custody if c == ("received", None)) == 3
    # At IL: `sent` for each file, and the receipt kept.
    sent = db_rows(
        pair.il,
        select(m.CustodyEvent.kind).where(m.CustodyEvent.kind == "sent"),
    )
    assert len(sent) == 3
    [(receipt,)] = db_rows(
        pair.il, select(m.Bundle.receipt_envelope).where(m.Bundle.bundle_id == bundle_id)
    )
    assert receipt is not None
    # Searches at MN show the received incident under its origin state, and its files
    # stream to a user like any other (a custody event `viewed` at MN).
    found = run_json(pair.mn, "incidents", "search")
    assert {"global_id": gid, "state": "IL"} in [
        {"global_id": r["global_id"], "state": r["state"]} for r in found
    ]
    out = pair.root / "got-clip.mp4"
    sha = hashlib.sha256(pair.files["clip.mp4"]).hexdigest()
    run_compact("evidence", "get", gid, sha, "-o", str(out), "--data-dir", str(pair.mn.data_dir))
    assert out.read_bytes() == pair.files["clip.mp4"]
    # Spools are gone on both sides once delivered and acknowledged.
    wait_for(
        "MN's receipt to be confirmed",
        lambda: (
            db_rows(
                pair.mn, select(m.Bundle.acknowledged_at).where(m.Bundle.bundle_id == bundle_id)
            )
            != [(None,)]
        ),
    )
    assert list(pair.il.bundle_dir.glob("*.sealed")) == []
    assert list(pair.mn.bundle_dir.glob("*.sealed")) == []
