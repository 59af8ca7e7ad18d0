"""Legal holds (node.holds): what a held matter keeps, that the database refuses to delete
it, that blobs leave only through remove_unreferenced, and that migration 0010 writes
the same holds as node.holds. Both backends.

IL owns the matters and holds incidents IL-1 (two files) and IL-2 (none).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from node import holds, migrate
from node import models as m
from node.ingest import NodeStorage, ingest_file
from node.matters import MatterDesk, get_matter
from node.translog import TransparencyLog
from tests.helpers import make_storage, record, write_jsonl
from tests.test_federation_roster import CA, IL, MN, roster
from tests.test_matters import Clock

ROSTER = roster(1, [IL, MN, CA])
FILES = (b"first file" * 50, b"second file" * 50)
SHAS = tuple(hashlib.sha256(f).hexdigest() for f in FILES)
NODE = Path(__file__).resolve().parent.parent / "node"


class Node:
    def __init__(self, storage: NodeStorage) -> None:
        self.storage = storage
        self.desk = MatterDesk(storage, TransparencyLog(storage.db), IL.key, clock=Clock())
        with storage.db.read() as s:
            rows = s.execute(select(m.Incident.external_id, m.Incident.global_id))
            self.ids = {str(e): str(g) for e, g in rows}

    def holds(self) -> set[tuple[str, str, str | None]]:
        """(matter, incident global id, blob) of every hold row."""
        with self.storage.db.read() as s:
            rows = s.execute(
                select(m.Matter.global_id, m.Incident.global_id, m.LegalHold.blob_sha256)
                .join(m.Matter, m.Matter.id == m.LegalHold.matter_id)
                .join(m.Incident, m.Incident.id == m.LegalHold.incident_id)
            )
            return {(mt, gid, blob) for mt, gid, blob in rows}


def ingest_two(storage: NodeStorage, folder: Path) -> None:
    (folder / "media").mkdir(parents=True)
    evidence = []
    for i, data in enumerate(FILES):
        (folder / "media" / f"f{i}.bin").write_bytes(data)
        evidence.append({"path": f"media/f{i}.bin", "media_type": "application/octet-stream"})
    path = write_jsonl(folder, [record("IL-1", evidence=evidence), record("IL-2")])
    assert ingest_file(storage, path, actor="clerk").imported == 2


@pytest.fixture
def il(database_url: str, tmp_path: Path) -> Iterator[Node]:
    storage = make_storage(database_url, tmp_path / "il")
    ingest_two(storage, tmp_path / "in")
    yield Node(storage)
    storage.db.dispose()


def held_matter(node: Node, *, file_only: bool = False) -> str:
    matter = node.desk.create(title="Doe", states=["MN"], user="u", roster=ROSTER).matter_id
    node.desk.add_exhibit(
        matter, global_id=node.ids["IL-1"], description="d", user="u",
        evidence_sha256=SHAS[1] if file_only else None,
    )  # fmt: skip
    node.desk.add_exhibit(matter, global_id=node.ids["IL-2"], description="d", user="u")
    node.desk.set_hold(matter, on=True, user="u")
    return matter


def test_a_hold_keeps_each_incident_and_the_files_its_exhibits_name(il: Node) -> None:
    matter = held_matter(il)
    one, two = il.ids["IL-1"], il.ids["IL-2"]
    assert il.holds() == {
        (matter, one, None), (matter, one, SHAS[0]), (matter, one, SHAS[1]), (matter, two, None),
    }  # fmt: skip
    info = get_matter(il.storage.db, matter, "IL")
    assert (info.held_incidents, info.held_files) == (2, 2)
    il.desk.set_hold(matter, on=False, user="u")
    assert il.holds() == set()


def test_a_file_exhibit_keeps_that_file_only(il: Node) -> None:
    matter = held_matter(il, file_only=True)
    one = il.ids["IL-1"]
    assert (matter, one, SHAS[1]) in il.holds()
    assert (matter, one, SHAS[0]) not in il.holds()


def test_no_hold_until_the_matter_is_held_and_exhibits_added_later_are_covered(
    il: Node,
) -> None:
    matter = il.desk.create(title="Doe", states=["MN"], user="u", roster=ROSTER).matter_id
    il.desk.add_exhibit(matter, global_id=il.ids["IL-2"], description="d", user="u")
    assert il.holds() == set()
    il.desk.set_hold(matter, on=True, user="u")
    il.desk.add_exhibit(matter, global_id=il.ids["IL-1"], description="d", user="u")
    assert {(gid, blob) for _, gid, blob in il.holds()} == {
        (il.ids["IL-2"], None), (il.ids["IL-1"], None),
        (il.ids["IL-1"], SHAS[0]), (il.ids["IL-1"], SHAS[1]),
    }  # fmt: skip


def test_the_database_refuses_to_delete_what_is_held(il: Node) -> None:
    matter = held_matter(il)
    two = il.ids["IL-2"]
    with pytest.raises(IntegrityError), il.storage.db.write() as s:
        s.execute(delete(m.Incident).where(m.Incident.global_id == two))
    il.desk.set_hold(matter, on=False, user="u")
    with il.storage.db.write() as s:  # released, the same delete goes through
        s.execute(delete(m.Incident).where(m.Incident.global_id == two))


def test_check_not_held_names_the_matters(il: Node) -> None:
    matter = held_matter(il, file_only=True)
    with il.storage.db.read() as s:
        holds.check_not_held(s, [SHAS[0]])
        with pytest.raises(holds.LegalHoldError, match=f"1 evidence file.*{matter}"):
            holds.check_not_held(s, list(SHAS))


def test_remove_unreferenced_keeps_referenced_and_held_blobs(il: Node, tmp_path: Path) -> None:
    held_matter(il)
    data = b"bytes an import placed and then did not store"
    (tmp_path / "stray").write_bytes(data)
    stray = hashlib.sha256(data).hexdigest()
    il.storage.blobs.put_file(tmp_path / "stray", stray)
    assert holds.remove_unreferenced(il.storage, [*SHAS, stray]) == [stray]
    assert all(il.storage.blobs.has(d) for d in SHAS)
    assert not il.storage.blobs.has(stray)


def _blob_removals(source: str) -> list[int]:
    """Lines that call `remove` on something named like a blob store."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "remove"
        and "blob" in ast.unparse(node.func.value).lower()
    ]


def test_only_node_holds_removes_blobs() -> None:
    """Every call of `<…>.blobs.remove(…)` in node/ is in node/holds.py; the check sees
    such a call where there is one."""
    offenders = {
        path.name: lines
        for path in sorted(NODE.glob("*.py"))
        if path.name != "holds.py" and (lines := _blob_removals(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
    assert _blob_removals((NODE / "holds.py").read_text(encoding="utf-8"))
    assert _blob_removals("x = 1\nself._storage.blobs.remove(digest)") == [2]


def test_migration_0010_writes_the_holds_node_holds_would(
    database_url: str, tmp_path: Path
) -> None:
    """A node with held matters at 0009 gets, on upgrade, exactly the rows refresh writes."""
    storage = make_storage(database_url, tmp_path / "il")
    try:
        ingest_two(storage, tmp_path / "in")
        node = Node(storage)
        whole = held_matter(node)
        held_matter_two = node.desk.create(
            title="Two", states=["MN"], user="u", roster=ROSTER
        ).matter_id
        node.desk.add_exhibit(
            held_matter_two, global_id=node.ids["IL-1"], evidence_sha256=SHAS[0],
            description="d", user="u",
        )  # fmt: skip
        node.desk.set_hold(held_matter_two, on=True, user="u")
        expected = node.holds()
        assert {mt for mt, _, _ in expected} == {whole, held_matter_two}
        migrate.downgrade(storage.db.engine, "0009")
        migrate.upgrade(storage.db.engine)
        assert node.holds() == expected
    finally:
        storage.db.dispose()
