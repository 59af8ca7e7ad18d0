"""Configuration: round trip through TOML, errors that name the setting, docs current."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from node.config import (
    Config,
    LimitSettings,
    NodeSettings,
    ServerSettings,
    config_from_mapping,
    load_config,
    render_config,
)
from node.errors import ConfigError, NotInitializedError

REPO = Path(__file__).resolve().parent.parent


def base() -> dict[str, Any]:
    return {"node": {"state": "IL"}}


def test_rendered_config_loads_back_identically(tmp_path: Path) -> None:
    config = Config(
        data_dir=tmp_path,
        node=NodeSettings(state="MN", name="Minnesota"),
        server=ServerSettings(listen="0.0.0.0:9000", tls_hosts=("node.mn.example",)),
        limits=LimitSettings(max_text_chars=500),
    )
    (tmp_path / "compact.toml").write_text(render_config(config), encoding="utf-8")
    assert load_config(tmp_path) == config


def test_every_setting_is_documented_in_the_rendered_file(tmp_path: Path) -> None:
    text = render_config(Config(data_dir=tmp_path, node=NodeSettings(state="IL")))
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), f"undocumented setting: {line}"
    assert set(tomllib.loads(text)) == {
        "node",
        "database",
        "keys",
        "server",
        "client",
        "federation",
        "bundles",
        "limits",
        "monitoring",
        "logging",
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, r"\[node\]: missing section"),
        ({"node": {}}, r"\[node\]: missing setting\(s\): state"),
        ({"node": {"state": "XX"}}, "node.state"),
        ({"node": {"state": "IL", "colour": "red"}}, r"\[node\]: unknown setting\(s\): colour"),
        ({**base(), "nodes": {}}, r"unknown section\(s\): nodes"),
        ({**base(), "server": {"listen": "localhost"}}, "server.listen: expected host:port"),
        (
            {**base(), "server": {"max_concurrent_rpcs": 0}},
            "server.max_concurrent_rpcs: must be at least 1",
        ),
        (
            {**base(), "server": {"max_concurrent_rpcs": "8"}},
            "server.max_concurrent_rpcs: expected a number",
        ),
        (
            {**base(), "server": {"max_concurrent_rpcs": True}},
            "server.max_concurrent_rpcs: expected a number",
        ),
        ({**base(), "server": {"max_concurrent_rpcs": 1.5}}, "expected a whole number"),
        (
            {**base(), "server": {"tls_hosts": "localhost"}},
            "server.tls_hosts: expected a list of strings",
        ),
        (
            {**base(), "limits": {"max_line_bytes": 10}},
            "limits.max_line_bytes: must be at least 1024",
        ),
        ({**base(), "keys": {"unlock": "magic"}}, "keys.unlock"),
        ({**base(), "keys": {"unlock": "key_file"}}, "keys.key_file: an absolute path is required"),
        ({**base(), "logging": {"level": "loud"}}, "logging.level"),
        ({**base(), "database": []}, r"\[database\]: expected a table"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(tmp_path, raw)


def test_a_key_file_inside_the_data_folder_is_refused(tmp_path: Path) -> None:
    raw = {**base(), "keys": {"unlock": "key_file", "key_file": str(tmp_path / "keys" / "k")}}
    with pytest.raises(ConfigError, match="must not be inside the data folder"):
        config_from_mapping(tmp_path, raw)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(NotInitializedError, match="compact init"):
        load_config(tmp_path)
    (tmp_path / "compact.toml").write_text("[node\nstate=", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)


def test_database_url_default_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_from_mapping(tmp_path, base())
    monkeypatch.delenv("COMPACT_DATABASE_URL", raising=False)
    assert config.database_url() == f"sqlite:///{(tmp_path / 'node.db').resolve()}"
    monkeypatch.setenv("COMPACT_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert config.database_url() == "postgresql+psycopg://u@h/db"


def test_configuration_doc_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_config_doc.py"), "--check"], check=False
    )
    assert result.returncode == 0, (
        "docs/configuration.md is stale: run python scripts/gen_config_doc.py"
    )


def test_bundle_review_levels_can_only_make_the_policy_stricter(tmp_path: Path) -> None:
    base = {"node": {"state": "IL"}}
    config = config_from_mapping(tmp_path, {**base, "bundles": {"review_levels": ["compact"]}})
    assert config.bundles.review_levels == ("compact",)
    with pytest.raises(ConfigError, match=r"bundles\.review_levels"):
        config_from_mapping(tmp_path, {**base, "bundles": {"review_levels": ["sealed"]}})
