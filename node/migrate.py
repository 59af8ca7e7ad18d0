"""Schema migrations (Alembic), run programmatically against an engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def _run(engine: Engine, action: str, revision: str) -> None:
    cfg = _config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` (default: the newest)."""
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema down to `revision` ("base" removes every table)."""
    _run(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config_for_scripts()).get_current_head()
    assert head is not None
    return head


def _config_for_scripts() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def known_revisions() -> list[str]:
    """Every revision this version has, oldest first."""
    script = ScriptDirectory.from_config(_config_for_scripts())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def schema_problem(engine: Engine) -> str | None:
    """Why this version may not use the database, with the command that mends it, or
    None when its schema is this version's newest. Raises the driver's error if the
    database cannot be reached."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return (
            f"the database has no schema yet; this version needs {head}: run `compact db upgrade`"
        )
    if current in known_revisions():
        return (
            f"the database schema is at {current}, this version needs {head}: "
            "run `compact db upgrade` (back up the database first)"
        )
    return (
        f"the database schema is at {current}, which this version does not know (its newest "
        f"is {head}): a newer version of compact upgraded it; run that version"
    )
