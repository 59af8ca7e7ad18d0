"""Matters at one node (node.matters): create, add exhibits, hold; every revision signed,
logged and audited in one transaction; refusals leave nothing behind. Both backends.

IL owns the matters; MN and CA are members of the roster, NY is not. IL holds three
incidents of its own (one with a file); MN's incident is in IL's replica of the index
but not held here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crypto.dsse import Envelope
from federation.matter import Matter, check_successor, sign_matter, verify_matter
from node import matters as matters_module
from node import models as m
from node.db import Database
from node.errors import Refusal
from node.ingest import NodeStorage, ingest_file
from node.matters import MATTER_KIND, MatterDesk, MatterRefused, get_matter, list_matters
from node.translog import TransparencyLog
from tests.helpers import make_storage, record, write_jsonl
from tests.test_federation_roster import CA, IL, MN, roster

ROSTER = roster(1, [IL, MN, CA])
NOW = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)
MN_GID = "MN-5d0c8a4e-1f3b-4c2d-9e8f-0a1b2c3d4e5f"
CA_GID = "CA-0a1b2c3d-1f3b-4c2d-9e8f-0a1b2c3d4e5f"
FILE = b"bystander video bytes" * 100
FILE_SHA = hashlib.sha256(FILE).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclasses.dataclass
class Node:
    storage: NodeStorage
    desk: MatterDesk
    ids: dict[str, str]

    def count(self, table: type[m.Base]) -> int:
        with self.storage.db.read() as s:
            return int(s.scalar(select(func.count()).select_from(table)) or 0)

    def log(self) -> list[tuple[str, bytes]]:
        with self.storage.db.read() as s:
            return [
                (e.kind, e.payload)
                for e in s.scalars(select(m.LogEntry).order_by(m.LogEntry.index))
            ]

    def audit(self, action: str) -> list[m.AuditEvent]:
        with self.storage.db.read() as s:
            return list(s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == action)))

    def revisions(self, matter: str) -> list[Matter]:
        with self.storage.db.read() as s:
            rows = s.scalars(
                select(m.MatterRevision.envelope)
                .join(m.Matter, m.Matter.id == m.MatterRevision.matter_id)
                .where(m.Matter.global_id == matter)
                .order_by(m.MatterRevision.revision)
            ).all()
        return [verify_matter(Envelope.from_json(e), ROSTER, owner="IL") for e in rows]

    def snapshot(self) -> tuple[int, ...]:
        return tuple(
            self.count(t)
            for t in (m.Matter, m.MatterRevision, m.MatterMember, m.Exhibit, m.LogEntry)
        )


@pytest.fixture
def il(database_url: str, tmp_path: Path) -> Iterator[Node]:
    storage = make_storage(database_url, tmp_path / "il")
    folder = tmp_path / "import"
    (folder / "media").mkdir(parents=True)
    (folder / "media" / "clip.mp4").write_bytes(FILE)
    evidence = {"path": "media/clip.mp4", "media_type": "video/mp4"}
    path = write_jsonl(
        folder,
        [record("IL-1", evidence=[evidence]), record("IL-2"), record("IL-3", sharing="sealed")],
    )
    assert ingest_file(storage, path, actor="clerk").imported == 3
    with storage.db.write() as s:
        ids = {
            str(e): str(g)
            for e, g in s.execute(select(m.Incident.external_id, m.Incident.global_id))
        }
        for state, gid, withdrawn in (("MN", MN_GID, False), ("CA", CA_GID, True)):
            s.add(
                m.ReplicaEntry(
                    state=state, log_index=0, global_id=gid, revision=1, withdrawn=withdrawn,
                    current=True, envelope=b"{}", received_at=NOW,
                )
            )  # fmt: skip
    desk = MatterDesk(storage, TransparencyLog(storage.db), IL.key, clock=Clock())
    yield Node(storage, desk, ids)
    storage.db.dispose()


def create(node: Node, **changes: object) -> str:
    args: dict[str, object] = {
        "title": "Doe v. Noem",
        "states": ["mn", "CA"],
        "user": "atty.chen",
        "roster": ROSTER,
        **changes,
    }
    return node.desk.create(**args).matter_id  # type: ignore[arg-type]


# --- create -----------------------------------------------------------------------------


def test_create_signs_logs_and_audits_the_first_revision(il: Node) -> None:
    info = il.desk.create(
        title="Doe v. Noem", states=["mn", "CA"], user="atty.chen", roster=ROSTER,
        bates_prefix="IL-MN", legal_hold=True,
    )  # fmt: skip
    assert info.matter_id == "IL:DOE-V-NOEM"
    assert (info.owner, info.revision, info.states) == ("IL", 1, ("CA", "IL", "MN"))
    assert (info.bates_prefix, info.legal_hold, info.exhibits) == ("IL-MN", True, ())
    shared = {mb.state: mb.shared_revision for mb in info.members}
    assert shared == {"CA": None, "IL": 1, "MN": None}
    (first,) = il.revisions(info.matter_id)
    assert (first.revision, first.states, first.legal_hold) == (1, ("CA", "IL", "MN"), True)
    log = il.log()
    assert [k for k, _ in log] == [MATTER_KIND]
    assert Envelope.from_json(log[0][1]).payload == first.payload()
    (event,) = il.audit("matter.create")
    assert (event.actor, event.target, event.outcome) == ("atty.chen", "IL:DOE-V-NOEM", "ok")


def test_create_with_an_id_and_the_default_prefix(il: Node) -> None:
    info = il.desk.create(
        title="State v. Agent 4471", states=["IL"], user="u", roster=ROSTER, slug="SVA-4471"
    )
    assert (info.matter_id, info.bates_prefix, info.states) == ("IL:SVA-4471", "IL", ("IL",))


@pytest.mark.parametrize(
    ("changes", "kind", "message"),
    [
        ({"states": ["NY"]}, Refusal.INVALID, "states: NY is not a member of the compact"),
        ({"states": ["ZZ"]}, Refusal.INVALID, "states: expected state codes"),
        ({"bates_prefix": "il mn"}, Refusal.INVALID, "bates_prefix: expected capital letters"),
        ({"slug": "doe"}, Refusal.INVALID, "id: expected 1 to 40 capital letters"),
        ({"title": "—"}, Refusal.INVALID, "title: has no letters or digits"),
        ({"title": "a\x00b", "slug": "X"}, Refusal.INVALID, "title: contains a control"),
    ],
)
def test_create_refusals_write_nothing(
    il: Node, changes: dict[str, object], kind: Refusal, message: str
) -> None:
    before = il.snapshot()
    with pytest.raises(MatterRefused, match=message) as raised:
        create(il, **changes)
    assert raised.value.kind is kind
    assert il.snapshot() == before


def test_a_matter_id_is_used_once(il: Node) -> None:
    create(il)
    before = il.snapshot()
    with pytest.raises(MatterRefused, match="matter IL:DOE-V-NOEM exists already") as raised:
        create(il, title="Doe v Noem")
    assert raised.value.kind is Refusal.ALREADY_EXISTS
    assert il.snapshot() == before


# --- exhibits ---------------------------------------------------------------------------


def test_exhibits_are_numbered_in_order_and_each_is_a_revision(il: Node) -> None:
    matter = create(il, bates_prefix="IL-MN")
    _, one = il.desk.add_exhibit(
        matter, global_id=il.ids["IL-1"], description="Arrest video", user="para.kim"
    )
    _, two = il.desk.add_exhibit(
        "doe-v-noem", global_id=il.ids["IL-1"], evidence_sha256=FILE_SHA.upper(),
        description="The bystander's file", user="para.kim",
    )  # fmt: skip
    info, three = il.desk.add_exhibit(
        matter, global_id=MN_GID, description="MN stop, same agent", user="para.kim"
    )
    assert [one.number, two.number, three.number] == [
        "IL-MN-000001",
        "IL-MN-000002",
        "IL-MN-000003",
    ]
    assert (one.evidence_position, two.evidence_position, two.evidence_sha256) == (
        None,
        0,
        FILE_SHA,
    )
    assert (one.held, three.held) == (True, False)
    assert info.revision == 4 and len(info.exhibits) == 3
    revisions = il.revisions(matter)
    assert [r.revision for r in revisions] == [1, 2, 3, 4]
    for old, new in itertools.pairwise(revisions):
        check_successor(old, new)
    gids = [e.global_id for e in revisions[-1].exhibits]
    assert gids == [il.ids["IL-1"], il.ids["IL-1"], MN_GID]
    assert [k for k, _ in il.log()] == [MATTER_KIND] * 4
    assert [a.detail["number"] for a in il.audit("matter.add-exhibit")] == [
        "IL-MN-000001", "IL-MN-000002", "IL-MN-000003",
    ]  # fmt: skip
    # What `show` reads agrees with the signed document.
    shown = get_matter(il.storage.db, matter, "IL")
    assert [e.number for e in shown.exhibits] == [e.number for e in revisions[-1].exhibits]
    assert [r.matter_id for r in list_matters(il.storage.db)] == [matter]


def test_a_sealed_own_incident_may_be_an_exhibit(il: Node) -> None:
    matter = create(il)
    _, exhibit = il.desk.add_exhibit(
        matter, global_id=il.ids["IL-3"], description="sealed", user="u"
    )
    assert exhibit.held


@pytest.mark.parametrize(
    ("target", "kind", "message"),
    [
        ("unknown", Refusal.NOT_FOUND, "incident: not held here and not in the compact's index"),
        ("withdrawn", Refusal.NOT_FOUND, "incident: not held here"),
        ("mn-file", Refusal.FAILED_PRECONDITION, "evidence: MN's incident is not held here"),
        ("no-such-file", Refusal.NOT_FOUND, "evidence: the incident has no file with this"),
        ("twice", Refusal.ALREADY_EXISTS, "already exhibit IL-000001 of the matter"),
        ("not-member", Refusal.FAILED_PRECONDITION, "incident: CA is not a member of matter"),
        ("bad-id", Refusal.INVALID, "incident: expected a global incident id"),
        ("bad-sha", Refusal.INVALID, "evidence: expected 64 lowercase hex digits"),
        ("long", Refusal.INVALID, "description: longer than 2000 characters"),
    ],
)
def test_exhibit_refusals_write_nothing(il: Node, target: str, kind: Refusal, message: str) -> None:
    matter = create(il, states=["MN", "CA"])
    il.desk.add_exhibit(matter, global_id=il.ids["IL-2"], description="first", user="u")
    if target == "not-member":
        matter = create(il, title="Second", states=["MN"])
    gid, sha, description = {
        "unknown": ("MN-" + "0" * 36, None, "d"),
        "withdrawn": (CA_GID, None, "d"),
        "mn-file": (MN_GID, FILE_SHA, "d"),
        "no-such-file": (il.ids["IL-2"], FILE_SHA, "d"),
        "twice": (il.ids["IL-2"], None, "d"),
        "not-member": (CA_GID, None, "d"),
        "bad-id": ("IL-1", None, "d"),
        "bad-sha": (il.ids["IL-1"], "abc", "d"),
        "long": (il.ids["IL-1"], None, "x" * 2001),
    }[target]
    before = il.snapshot()
    with pytest.raises(MatterRefused, match=message) as raised:
        il.desk.add_exhibit(
            matter, global_id=gid, evidence_sha256=sha, description=description, user="u"
        )
    assert raised.value.kind is kind
    assert il.snapshot() == before


def test_an_unknown_matter(il: Node) -> None:
    with pytest.raises(MatterRefused, match="matter: no such matter here") as raised:
        il.desk.add_exhibit("IL:NOPE", global_id=il.ids["IL-1"], description="d", user="u")
    assert raised.value.kind is Refusal.NOT_FOUND


def test_only_the_owner_changes_a_matter(il: Node) -> None:
    theirs = Matter(
        matter_id="MN:JOINT", owner="MN", revision=1, title="Joint", states=("IL", "MN"),
        bates_prefix="MN", legal_hold=False, exhibits=(), updated_at=NOW,
    )  # fmt: skip
    envelope = sign_matter(theirs, MN.key).to_json()
    with il.storage.db.write() as s:
        s.add(
            m.Matter(
                global_id="MN:JOINT", owner="MN", title="Joint", bates_prefix="MN",
                legal_hold=False, revision=1, envelope=envelope, created_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
    before = il.snapshot()
    with pytest.raises(MatterRefused, match="only its owner, MN, can change it") as raised:
        il.desk.add_exhibit("MN:JOINT", global_id=il.ids["IL-1"], description="d", user="u")
    assert raised.value.kind is Refusal.FAILED_PRECONDITION
    with pytest.raises(MatterRefused, match="only its owner, MN"):
        il.desk.set_hold("mn:joint", on=True, user="u")
    assert il.snapshot() == before


def test_a_matter_that_would_outgrow_a_log_entry_is_refused(
    il: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    matter = create(il)
    size = len(get_matter(il.storage.db, matter, "IL").exhibits)
    assert size == 0
    monkeypatch.setattr(matters_module, "MAX_MATTER_BYTES", 1200)
    il.desk.add_exhibit(matter, global_id=il.ids["IL-1"], description="x" * 300, user="u")
    before = il.snapshot()
    with pytest.raises(MatterRefused, match="the matter would be larger than 1 KiB") as raised:
        il.desk.add_exhibit(matter, global_id=il.ids["IL-2"], description="y" * 600, user="u")
    assert raised.value.kind is Refusal.OUT_OF_RANGE
    assert il.snapshot() == before


# --- legal hold -------------------------------------------------------------------------


def test_hold_and_release_are_revisions(il: Node) -> None:
    matter = create(il)
    assert il.desk.set_hold(matter, on=True, user="atty.chen").legal_hold
    assert il.desk.set_hold(matter, on=True, user="atty.chen").revision == 2  # no change
    released = il.desk.set_hold(matter, on=False, user="atty.chen")
    assert (released.legal_hold, released.revision) == (False, 3)
    assert [r.legal_hold for r in il.revisions(matter)] == [False, True, False]
    assert [len(il.audit(a)) for a in ("matter.hold", "matter.release")] == [1, 1]


# --- concurrent writers -----------------------------------------------------------------

WRITERS = 4
PER_WRITER = 3


def test_concurrent_writers_get_distinct_consecutive_numbers(
    il: Node, database_url: str, tmp_path: Path
) -> None:
    """Writers with their own connections add exhibits to one matter at once: every
    number is used once, in order, and every revision follows the one before."""
    folder = tmp_path / "more"
    path = write_jsonl(folder, [record(f"C-{i}") for i in range(WRITERS * PER_WRITER)])
    assert ingest_file(il.storage, path, actor="clerk").imported == WRITERS * PER_WRITER
    with il.storage.db.read() as s:
        gids = sorted(
            str(g)
            for g in s.scalars(
                select(m.Incident.global_id).where(m.Incident.external_id.like("C-%"))
            )
        )
    matter = create(il)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        db = Database.from_url(database_url)
        storage = dataclasses.replace(il.storage, db=db)
        desk = MatterDesk(storage, TransparencyLog(db), IL.key, clock=Clock())
        try:
            for gid in gids[w * PER_WRITER : (w + 1) * PER_WRITER]:
                desk.add_exhibit(matter, global_id=gid, description=f"w{w}", user=f"w{w}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            db.dispose()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    info = get_matter(il.storage.db, matter, "IL")
    total = WRITERS * PER_WRITER
    assert [e.number for e in info.exhibits] == [f"IL-{i:06d}" for i in range(1, total + 1)]
    assert sorted(e.global_id for e in info.exhibits) == gids
    revisions = il.revisions(matter)
    assert [r.revision for r in revisions] == list(range(1, total + 2))
    for old, new in itertools.pairwise(revisions):
        check_successor(old, new)
    assert info.revision == total + 1
