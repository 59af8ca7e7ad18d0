"""Every Alembic revision: the migrated schema is exactly the models'; up, down, up."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from node import migrate
from node.db import make_engine
from node.models import Base


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
