"""A bundle transfer survives a SIGKILL of either side mid-stream (two real node processes).

IL holds two incidents, each with a ~96 MiB video and a short note, and seals bundles in
64 KiB chunks (about 1,500 units a stream). MN receives with `compact bundle refresh`,
run here as a child process so that it, or IL's `compact serve`, can be killed with
SIGKILL while MN's spool is growing (past MN's first progress record, every
`SYNC_BYTES`). After each kill:

* the right outcome: a killed requester just stops; with the holder killed, the refresh
  ends normally and reports the request not done (state null, the holder unreachable);
* no partial data visible: MN's request stays `transferring`, and MN has no incident row,
  no evidence row, no blob row and no blob file of it, and its API does not list it;
* no data lost: MN's recorded progress is past zero and its spool holds at least that
  much; IL's spool is still there, whole (the holder case);
* the transfer completes once the fault is gone (IL restarted, refresh run again):
  `delivered` at both ends, the incident stored under IL, every file read back through
  MN's API with its original SHA-256, spools and staged files gone.

That MN *resumed* rather than starting over is shown from outside the processes in two
ways: (1) the test keeps MN's spool open from before the last refresh; when the refresh
has delivered (and removed the spool's name), that same open file holds the whole sealed
stream, whose SHA-256 is the manifest's: the transfer was completed in the file that held
the recorded bytes, not in a new one (the damaged-spool path unlinks it and starts
again). (2) On Linux, IL's serve process read (/proc/PID/io `rchar`) at least the part of
the stream after MN's recorded progress and much less than the whole stream during that
last refresh: IL served from MN's offset, not from zero. Loopback only, ports from the OS.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from crypto.dsse import Envelope
from federation.bundle import BundleManifest
from node import models as m
from node.bundle_receive import SYNC_BYTES
from node.config import Config
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    REPO,
    NodeProcess,
    compact,
    db_rows,
    form_compact,
    run_compact,
    set_setting,
    start_node,
)
from tests.test_bundle_cli import run_json
from tests.test_bundle_transfer import Pair, wait_for

pytestmark = pytest.mark.timeout(300)

MiB = 1024 * 1024
CHUNK = 64 * 1024
BIG = 96 * MiB + 12345  # the video of each incident: three progress records' worth
KILL_AT = SYNC_BYTES + 8 * MiB  # MN's spool holds this much when a side is killed


class KillPair(Pair):
    """Pair (tests.test_bundle_transfer) with two incidents of big evidence, IL-K-1 and
    IL-K-2, sealed in CHUNK-sized chunks; `evidence` is (file name, sha256, size) of each
    file of each incident, in order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[NodeProcess] = []
        self.configs = form_compact(root, ("IL", "MN"))
        self.il, self.mn = self.configs["IL"], self.configs["MN"]
        set_setting(self.il, "poll_seconds", 0.5)
        set_setting(self.il, "chunk_bytes", CHUNK)
        set_setting(self.mn, "poll_seconds", 3600)  # MN receives with `bundle refresh` only
        self.evidence: dict[str, list[tuple[str, str, int]]] = {}
        records = []
        for external_id in ("IL-K-1", "IL-K-2"):
            media = root / "in" / external_id
            media.mkdir(parents=True)
            files = {
                "clip.mp4": os.urandom(BIG),
                "note.txt": f"statement for {external_id}\n".encode(),
            }
            for name, data in files.items():
                (media / name).write_bytes(data)
            self.evidence[external_id] = [
                (name, hashlib.sha256(data).hexdigest(), len(data)) for name, data in files.items()
            ]
            del files
            evidence = [
                {"path": f"{external_id}/clip.mp4", "media_type": "video/mp4"},
                {"path": f"{external_id}/note.txt", "media_type": "text/plain"},
            ]
            records.append(record(external_id, sharing="compact", evidence=evidence))
        path = write_jsonl(root / "in", records)
        run_compact("ingest", str(path), "--data-dir", str(self.il.data_dir))
        rows = db_rows(self.il, select(m.Incident.external_id, m.Incident.global_id))
        self.ids = {str(e): str(g) for e, g in rows}
        try:
            for config in (self.il, self.mn):
                self.procs.append(start_node(config))
            self.witness()
        except BaseException:
            self.stop()
            raise

    def holder(self) -> NodeProcess:
        return next(p for p in self.procs if p.config is self.il)

    def stop(self) -> None:
        """Stop every node process, even when one of them does not stop cleanly."""
        codes: list[int] = []
        while self.procs:
            p = self.procs.pop()
            try:
                codes.append(p.stop())
            except subprocess.TimeoutExpired:
                p.proc.kill()
                codes.append(p.proc.wait())
        assert codes == [0] * len(codes), f"node processes ended with {codes}"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillPair]:
    p = KillPair(tmp_path_factory.mktemp("kill"))
    try:
        yield p
    finally:
        p.stop()


class Refresh:
    """`compact bundle refresh --json` of a node in a child process (the command line and
    environment of tests.nodeproc.compact), its output in files."""

    def __init__(self, config: Config, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout, self.stderr = folder / "stdout", folder / "stderr"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "bundle", "refresh", "--json",
                 "--data-dir", str(config.data_dir)],
                stdout=out, stderr=err, cwd=REPO, env=dict(os.environ),
            )  # fmt: skip

    def output(self) -> str:
        return (
            f"exit {self.proc.returncode}\nstdout: {self.stdout.read_text(encoding='utf-8')}\n"
            f"stderr: {self.stderr.read_text(encoding='utf-8')}"
        )

    def wait_for_spool(self, spool: Path, size: int, timeout: float = 120) -> int:
        """Wait until `spool` holds at least `size` bytes while the child runs; its size."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                now = spool.stat().st_size
            except FileNotFoundError:
                now = 0
            if now >= size:
                return now
            if self.proc.poll() is not None:
                raise AssertionError(f"the refresh ended with {now} bytes: {self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the spool has {now} bytes after {timeout} s")
            time.sleep(0.005)

    def end(self) -> None:
        """Kill the child if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def outgoing_row(pair: Pair, request_id: str) -> int:
    [(row_id,)] = db_rows(
        pair.mn,
        select(m.BundleRequestRow.id).where(
            m.BundleRequestRow.request_id == request_id,
            m.BundleRequestRow.direction == "outgoing",
        ),
    )
    return int(row_id)


def progress(pair: Pair, row_id: int) -> tuple[int, int]:
    """(verified offset, sealed size) of MN's bundle for request row `row_id`."""
    [(verified, size)] = db_rows(
        pair.mn,
        select(m.Bundle.verified_offset, m.Bundle.sealed_size).where(
            m.Bundle.request_row_id == row_id
        ),
    )
    return int(verified), int(size)


def manifest(pair: Pair, row_id: int) -> BundleManifest:
    [(envelope,)] = db_rows(
        pair.mn, select(m.Bundle.manifest_envelope).where(m.Bundle.request_row_id == row_id)
    )
    return BundleManifest.from_payload(Envelope.from_json(envelope).payload)


def bytes_read(node: NodeProcess) -> int | None:
    """What the node process has read through read(2) and the like so far (Linux only)."""
    try:
        text = Path(f"/proc/{node.proc.pid}/io").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("rchar:"))


def assert_nothing_visible(pair: KillPair, external_id: str, request_id: str) -> None:
    """MN's request is `transferring` and nothing of the incident is stored at MN."""
    gid = pair.ids[external_id]
    assert run_json(pair.mn, "bundle", "show", request_id)["state"] == "transferring"
    assert db_rows(pair.mn, select(m.Incident.id).where(m.Incident.global_id == gid)) == []
    digests = [sha for _n, sha, _z in pair.evidence[external_id]]
    assert (
        db_rows(pair.mn, select(m.EvidenceItem.id).where(m.EvidenceItem.sha256.in_(digests))) == []
    )
    assert db_rows(pair.mn, select(m.Blob.sha256).where(m.Blob.sha256.in_(digests))) == []
    for sha in digests:
        assert not (pair.mn.blob_dir / sha[:2] / sha[2:4] / sha).exists()
    listed = run_json(pair.mn, "incidents", "list")
    assert gid not in [i["global_id"] for i in listed]
    assert pair.incoming_state(request_id) == "transferring"


def resume(pair: KillPair, row_id: int, request_id: str, tries: int = 1) -> None:
    """Run `compact bundle refresh` until the bundle is delivered (at most `tries` runs),
    and check that the transfer went on from MN's recorded progress (module docstring)."""
    verified, sealed_size = progress(pair, row_id)
    spool = pair.mn.bundle_dir / f"{row_id}.sealed"
    assert SYNC_BYTES <= verified < sealed_size
    # `compact bundle show|list` tell how far the transfer has gone.
    shown = run_json(pair.mn, "bundle", "show", request_id)
    assert (shown["received_bytes"], shown["sealed_bytes"]) == (verified, sealed_size)
    listed = compact(
        "bundle", "list", "--outgoing", "--data-dir", str(pair.mn.data_dir),
        env={"COLUMNS": "250"},  # the table on one line a row
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    percent = 100 * verified // sealed_size
    assert f"{verified / 1e6:,.1f} MB of {sealed_size / 1e6:,.1f} MB ({percent}%)" in (
        " ".join(listed.stderr.split())
    )
    assert spool.stat().st_size >= verified  # the recorded bytes are on disk
    holder = pair.holder()
    with spool.open("rb") as held:
        read_before = bytes_read(holder)
        for _ in range(tries):
            refreshed = run_json(pair.mn, "bundle", "refresh")
            [mine] = [r for r in refreshed if r["request_id"] == request_id]
            if mine["state"] == "delivered":
                break
            assert mine["state"] is None, mine
        assert mine == {
            "request_id": request_id, "holder": "IL", "state": "delivered", "error": None,
        }  # fmt: skip
        read_after = bytes_read(holder)
        # The file that held the recorded bytes was completed: its name is gone (stored),
        # the open file holds the whole stream.
        assert not spool.exists()
        assert os.fstat(held.fileno()).st_size == sealed_size
        held.seek(0)
        stream_sha256 = manifest(pair, row_id).sealed_stream.ciphertext_sha256.hex()
        assert hashlib.file_digest(held, "sha256").hexdigest() == stream_sha256
    if read_before is not None and read_after is not None:
        # IL read its spool from MN's offset: at least the rest, far less than the whole.
        assert sealed_size - verified <= read_after - read_before < sealed_size - verified // 2


def assert_delivered(pair: KillPair, external_id: str, request_id: str, out: Path) -> None:
    """Stored at MN under IL with every file intact; IL took the receipt; spools gone."""
    gid = pair.ids[external_id]
    row_id = outgoing_row(pair, request_id)
    assert run_json(pair.mn, "bundle", "show", request_id)["state"] == "delivered"
    [(state, incident_id)] = db_rows(
        pair.mn, select(m.Incident.state, m.Incident.id).where(m.Incident.global_id == gid)
    )
    assert state == "IL"
    items = db_rows(
        pair.mn,
        select(m.EvidenceItem.file_name, m.EvidenceItem.sha256, m.EvidenceItem.size)
        .where(m.EvidenceItem.incident_id == incident_id)
        .order_by(m.EvidenceItem.position),
    )
    assert [(n, s, z) for n, s, z in items] == pair.evidence[external_id]
    # Every file read back through MN's API is the original.
    out.mkdir(parents=True, exist_ok=True)
    for name, sha, _size in pair.evidence[external_id]:
        got = compact(
            "evidence", "get", gid, sha, "-o", str(out / name), "--data-dir", str(pair.mn.data_dir)
        )
        assert got.returncode == 0, got.stderr
        with (out / name).open("rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == sha
        (out / name).unlink()
    wait_for("IL to take the receipt", lambda: pair.incoming_state(request_id) == "delivered")
    wait_for(
        "MN's receipt to be confirmed",
        lambda: (
            db_rows(
                pair.mn, select(m.Bundle.acknowledged_at).where(m.Bundle.request_row_id == row_id)
            )
            != [(None,)]
        ),
    )
    # One `sent` per file at IL, however often the stream was started.
    sent = db_rows(
        pair.il,
        select(m.CustodyEvent.id)
        .join(m.EvidenceItem)
        .join(m.Incident, m.Incident.id == m.EvidenceItem.incident_id)
        .where(m.Incident.global_id == gid, m.CustodyEvent.kind == "sent"),
    )
    assert len(sent) == len(pair.evidence[external_id])
    assert list(pair.il.bundle_dir.glob("*.sealed")) == []
    assert list(pair.mn.bundle_dir.glob("*.sealed")) == []
    assert not (pair.mn.blob_dir / ".staging" / f"bundle-{row_id}").exists()


def test_the_requester_killed_mid_stream_resumes_after_a_restart(
    pair: KillPair, tmp_path: Path
) -> None:
    request_id = pair.request("IL-K-1")["request_id"]
    wait_for("IL to seal", lambda: pair.incoming_state(request_id) == "sealed", timeout=120)
    row_id = outgoing_row(pair, request_id)

    refresh = Refresh(pair.mn, tmp_path / "refresh")
    try:
        refresh.wait_for_spool(pair.mn.bundle_dir / f"{row_id}.sealed", KILL_AT)
        os.kill(refresh.proc.pid, signal.SIGKILL)
    finally:
        refresh.end()
    assert refresh.proc.returncode == -signal.SIGKILL

    assert_nothing_visible(pair, "IL-K-1", request_id)
    resume(pair, row_id, request_id)
    assert_delivered(pair, "IL-K-1", request_id, tmp_path / "out")


def test_the_holder_killed_mid_stream_resumes_after_its_restart(
    pair: KillPair, tmp_path: Path
) -> None:
    request_id = pair.request("IL-K-2")["request_id"]
    wait_for("IL to seal", lambda: pair.incoming_state(request_id) == "sealed", timeout=120)
    row_id = outgoing_row(pair, request_id)
    [(il_row,)] = db_rows(
        pair.il,
        select(m.BundleRequestRow.id).where(
            m.BundleRequestRow.request_id == request_id,
            m.BundleRequestRow.direction == "incoming",
        ),
    )
    il_spool = pair.il.bundle_dir / f"{il_row}.sealed"
    sealed_size = il_spool.stat().st_size

    refresh = Refresh(pair.mn, tmp_path / "refresh")
    try:
        seen = refresh.wait_for_spool(pair.mn.bundle_dir / f"{row_id}.sealed", KILL_AT)
        holder = pair.holder()
        holder.proc.kill()  # SIGKILL
        pair.procs.remove(holder)
        assert holder.proc.wait(timeout=30) == -signal.SIGKILL
        refresh.proc.wait(timeout=120)
    finally:
        refresh.end()
    # The refresh ends by itself and says the request is not done: the holder is gone.
    assert refresh.proc.returncode == 0, refresh.output()
    [result] = json.loads(refresh.stdout.read_text(encoding="utf-8"))
    assert result["request_id"] == request_id and result["state"] is None, result
    assert result["error"].startswith("IL "), result  # names the holder, e.g. unreachable
    # What MN had on disk when the holder went is recorded; nothing is visible.
    verified, size = progress(pair, row_id)
    assert size == sealed_size
    assert seen <= verified < sealed_size
    assert_nothing_visible(pair, "IL-K-2", request_id)
    # IL's spool survived the kill whole.
    with il_spool.open("rb") as f:
        assert hashlib.file_digest(f, "sha256").digest() == (
            manifest(pair, row_id).sealed_stream.ciphertext_sha256
        )

    pair.procs.insert(0, start_node(pair.il))
    assert pair.incoming_state(request_id) == "transferring"
    resume(pair, row_id, request_id, tries=5)
    assert_delivered(pair, "IL-K-2", request_id, tmp_path / "out")
