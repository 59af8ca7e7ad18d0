"""Every Alembic revision: the migrated schema is exactly the models'; up, down, up."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from node import migrate
from node import models as m
from node.db import Database, make_engine
from node.models import Base
from node.replica import KeptCheckpoint, Replicas


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_migrations_produce_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    engine.dispose()
    assert _diff(database_url) == []


def test_migrations_up_down_up(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.downgrade(engine, "base")
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    engine.dispose()
    assert _diff(database_url) == []


def test_a_schema_differing_from_the_models_is_detected(database_url: str) -> None:
    """The comparison itself can fail: drop an index and it must be reported."""
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_incidents_county")
    engine.dispose()
    diff = _diff(database_url)
    assert any("ix_incidents_county" in repr(d) for d in diff)


def test_0004_carries_pseudonyms_over_to_their_log_positions(database_url: str) -> None:
    """Each pseudonym row finds its entry's log index (a peer's current replica entry, or
    this node's published entry) and gets its prefix; down again, the rows come back."""
    engine = make_engine(database_url)
    migrate.upgrade(engine, "0003")
    mn_gid, il_gid = "MN-" + "1" * 36, "IL-" + "2" * 36
    p_mn, p_il = "ab" * 64, "01" * 64
    now = "2026-11-21 12:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO replica_entries (state, log_index, global_id, revision, withdrawn,"
                " current, envelope, received_at) VALUES"
                " ('MN', 6, :gid, 1, :no, :no, :env, :now),"
                " ('MN', 7, :gid, 2, :no, :yes, :env, :now)"
            ),
            {"gid": mn_gid, "no": False, "yes": True, "env": b"{}", "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO published_entries (global_id, revision, log_index, entry_sha256,"
                " content_hash, withdrawn, published_at) VALUES (:gid, 1, 3, :h, NULL, :no, :now)"
            ),
            {"gid": il_gid, "h": "0" * 64, "no": False, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO replica_pseudonyms (state, global_id, position, kind, pseudonym)"
                " VALUES ('MN', :mn, 0, 'badge', :pmn), ('IL', :il, 1, 'name', :pil),"
                " ('CA', :orphan, 0, 'badge', :pmn)"
            ),
            {"mn": mn_gid, "il": il_gid, "orphan": "CA-" + "3" * 36, "pmn": p_mn, "pil": p_il},
        )
    migrate.upgrade(engine, "0004")
    with engine.connect() as conn:
        rows = sorted(
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT state, log_index, position, kind, global_id, pseudonym, prefix"
                    " FROM replica_pseudonyms"
                )
            )
        )
    assert rows == [
        ("IL", 3, 1, "name", il_gid, p_il, 0x0101010101010101),
        ("MN", 7, 0, "badge", mn_gid, p_mn, int.from_bytes(b"\xab" * 8, "big", signed=True)),
    ]
    migrate.downgrade(engine, "0003")
    with engine.connect() as conn:
        back = sorted(
            tuple(r)
            for r in conn.execute(
                text("SELECT state, global_id, position, kind, pseudonym FROM replica_pseudonyms")
            )
        )
    assert back == [("IL", il_gid, 1, "name", p_il), ("MN", mn_gid, 0, "badge", p_mn)]
    engine.dispose()


def _entry_envelope(state: str, gid: str, revision: int, conduct: tuple[str, ...]) -> bytes:
    from crypto import signing
    from federation.index_entry import AgentEntry, EntryContent, IndexEntry, sign_entry

    agents = (
        AgentEntry("ICE-ERO", "primary", True, False, None, {"badge": "ab" * 64}),
        AgentEntry(None, "unknown", None, None, False, {}),
    )
    content = EntryContent("2025-10-04", "Cook", "school", conduct, "reported", agents)
    entry = IndexEntry(state, gid, revision, content if conduct else None)
    return sign_entry(entry, signing.SigningKey.generate()).to_json()


def test_0007_fills_the_facts_of_current_entries(database_url: str) -> None:
    """Peers' current entries and this node's published ones get their incident and agent
    rows; older revisions and withdrawn entries get none; down drops both tables."""
    engine = make_engine(database_url)
    migrate.upgrade(engine, "0006")
    mn, gone, il = "MN-" + "1" * 36, "MN-" + "4" * 36, "IL-" + "2" * 36
    now = "2026-11-21 12:00:00"
    rows = [
        ("MN", 6, mn, 1, False, False, _entry_envelope("MN", mn, 1, ("other",))),
        (
            "MN",
            7,
            mn,
            2,
            False,
            True,
            _entry_envelope("MN", mn, 2, ("masked_agent", "excessive_force")),
        ),
        ("MN", 8, gone, 2, True, True, _entry_envelope("MN", gone, 2, ())),
    ]
    with engine.begin() as conn:
        for state, index, gid, rev, withdrawn, current, env in rows:
            conn.execute(
                text(
                    "INSERT INTO replica_entries (state, log_index, global_id, revision,"
                    " withdrawn, current, envelope, received_at)"
                    " VALUES (:s, :i, :g, :r, :w, :c, :e, :now)"
                ),
                {
                    "s": state,
                    "i": index,
                    "g": gid,
                    "r": rev,
                    "w": withdrawn,
                    "c": current,
                    "e": env,
                    "now": now,
                },
            )
        conn.execute(
            text(
                'INSERT INTO log_entries ("index", kind, payload, leaf_hash, appended_at)'
                " VALUES (3, 'index-entry', :p, :h, :now)"
            ),
            {"p": _entry_envelope("IL", il, 1, ("firearm_discharge",)), "h": b"0" * 32, "now": now},
        )
        conn.execute(
            text(
                "INSERT INTO published_entries (global_id, revision, log_index, entry_sha256,"
                " content_hash, withdrawn, published_at) VALUES (:gid, 1, 3, :h, NULL, :no, :now)"
            ),
            {"gid": il, "h": "0" * 64, "no": False, "now": now},
        )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        incidents = sorted(
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT state, log_index, global_id, day, county, location_kind, status,"
                    " conduct FROM replica_incidents"
                )
            )
        )
        agents = sorted(
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT state, log_index, position, agency, role, masked, identified_self,"
                    " body_camera FROM replica_agents"
                )
            )
        )
    assert incidents == [
        ("IL", 3, il, "2025-10-04", "Cook", "school", "reported", "firearm_discharge"),
        ("MN", 7, mn, "2025-10-04", "Cook", "school", "reported", "excessive_force masked_agent"),
    ]
    assert agents == [
        ("IL", 3, 0, "ICE-ERO", "primary", 1, 0, None),
        ("IL", 3, 1, None, "unknown", None, None, 0),
        ("MN", 7, 0, "ICE-ERO", "primary", 1, 0, None),
        ("MN", 7, 1, None, "unknown", None, None, 0),
    ]
    migrate.downgrade(engine, "0006")
    assert not {"replica_incidents", "replica_agents"} & set(inspect(engine).get_table_names())
    engine.dispose()


def test_0009_refuses_to_drop_hand_made_matter_rows(database_url: str) -> None:
    """0001's `matters` was never written by code; a row put there by hand is not dropped:
    the upgrade stops, naming the table, and the schema stays at 0008."""
    engine = make_engine(database_url)
    migrate.upgrade(engine, "0008")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO matters (global_id, title, states, bates_prefix, legal_hold,"
                " created_at) VALUES ('IL:X', 'Doe', '[]', 'IL', :no, '2026-11-21 12:00:00')"
            ),
            {"no": False},
        )
    with pytest.raises(RuntimeError, match="table matters holds rows"):
        migrate.upgrade(engine)
    assert migrate.current_revision(engine) == "0008"
    with engine.begin() as conn:
        assert conn.execute(text("SELECT title FROM matters")).scalar_one() == "Doe"
        conn.execute(text("DELETE FROM matters"))
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


def test_0011_keeps_the_checkpoint_each_replica_log_holds(database_url: str) -> None:
    """Each peer's newest accepted checkpoint (`replica_logs`) becomes its first kept one
    (`replica_checkpoints`), note and time unchanged; down drops the new tables only."""
    engine = make_engine(database_url)
    migrate.upgrade(engine, "0010")
    mn_note, ca_note = "compact-log/MN\n7\nroot\n\n\u2014 compact-log/MN sig\n", "CA note\n"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO replica_logs (state, size, checkpoint_size, checkpoint_root,"
                " checkpoint_note, updated_at) VALUES"
                " ('MN', 5, 7, :mn_root, :mn_note, '2026-11-21 12:00:00'),"
                " ('CA', 0, 0, :ca_root, :ca_note, '2026-11-22 08:30:00')"
            ),
            {
                "mn_root": b"\x01" * 32,
                "mn_note": mn_note,
                "ca_root": b"\x02" * 32,
                "ca_note": ca_note,
            },
        )
    migrate.upgrade(engine, "0011")
    replicas = Replicas(Database(engine))
    assert replicas.checkpoints("MN") == [KeptCheckpoint(7, b"\x01" * 32, mn_note)]
    assert replicas.checkpoints("CA") == [KeptCheckpoint(0, b"\x02" * 32, ca_note)]
    with replicas.db.read() as s:
        kept = s.execute(select(m.ReplicaCheckpoint.state, m.ReplicaCheckpoint.updated_at))
        logs = s.execute(select(m.ReplicaLog.state, m.ReplicaLog.updated_at))
        assert sorted(tuple(r) for r in kept) == sorted(tuple(r) for r in logs)
    migrate.downgrade(engine, "0010")
    tables = set(inspect(engine).get_table_names())
    assert not {"replica_checkpoints", "exhibit_exports"} & tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM replica_logs")).scalar_one() == 2
    engine.dispose()
