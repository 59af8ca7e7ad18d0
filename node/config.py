"""Node configuration: frozen, typed, bounded, every setting documented.

The configuration file is TOML (`compact.toml` in the data folder). `compact init`
writes it from these dataclasses, with each field's documentation as a comment,
so the file an operator reads and the settings the node enforces cannot drift
apart. Unknown keys, wrong types and out-of-range values are errors that name
the setting. Relative paths are relative to the data folder.

Environment overrides: `COMPACT_DATABASE_URL` replaces `database.url`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from node.errors import ConfigError, NotInitializedError
from node.vocab import STATES

CONFIG_FILE: Final = "compact.toml"
DATABASE_URL_ENV: Final = "COMPACT_DATABASE_URL"
MiB: Final = 1024 * 1024


def _doc(text: str, *, minimum: float | None = None, maximum: float | None = None) -> Any:
    return {"doc": text, "min": minimum, "max": maximum}


@dataclass(frozen=True)
class NodeSettings:
    """Who this node is."""

    state: str = field(metadata=_doc("Two-letter code of the state this node serves."))
    name: str = field(default="", metadata=_doc("A human-readable name for the node."))


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the node's records live."""

    url: str = field(
        default="",
        metadata=_doc(
            "SQLAlchemy URL. Empty: SQLite (WAL mode) at node.db in the data folder. "
            "For PostgreSQL: postgresql+psycopg://user@host:5432/dbname. "
            "The environment variable COMPACT_DATABASE_URL overrides this."
        ),
    )
    busy_timeout_ms: int = field(
        default=10_000,
        metadata=_doc("SQLite: how long a writer waits for a lock.", minimum=0, maximum=600_000),
    )


@dataclass(frozen=True)
class KeySettings:
    """The node's key material, encrypted at rest."""

    keystore: str = field(
        default="keys/keystore.json",
        metadata=_doc("Encrypted keystore (Ed25519, X25519, TLS key, data key)."),
    )
    tls_certificate: str = field(
        default="keys/tls.crt",
        metadata=_doc("The node's self-signed TLS certificate (public)."),
    )
    unlock: str = field(
        default="passphrase",
        metadata=_doc(
            'How the keystore is unlocked: "passphrase" (from the environment variable '
            'COMPACT_PASSPHRASE, a --passphrase-file, or a prompt) or "key_file".'
        ),
    )
    key_file: str = field(
        default="",
        metadata=_doc(
            'With unlock = "key_file": the absolute path of the key file. It must not be '
            "inside the data folder (keep it on another volume or in a secret store)."
        ),
    )


@dataclass(frozen=True)
class ServerSettings:
    """The gRPC server (`compact serve`)."""

    listen: str = field(
        default="127.0.0.1:7400",
        metadata=_doc("host:port to listen on; port 0 lets the OS choose (see run/server.json)."),
    )
    tls_hosts: tuple[str, ...] = field(
        default=("localhost", "127.0.0.1"),
        metadata=_doc("Host names and addresses written into the TLS certificate at init."),
    )
    max_receive_message_bytes: int = field(
        default=4 * MiB,
        metadata=_doc("Largest message the server accepts.", minimum=64 * 1024, maximum=64 * MiB),
    )
    evidence_chunk_bytes: int = field(
        default=256 * 1024,
        metadata=_doc("Chunk size of evidence streams.", minimum=16 * 1024, maximum=2 * MiB),
    )
    max_concurrent_rpcs: int = field(
        default=200,
        metadata=_doc("Calls served at once; more are refused.", minimum=1, maximum=10_000),
    )
    shutdown_grace_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "On SIGTERM/Ctrl-C, in-flight calls get this long to finish; then they are cancelled.",
            minimum=0,
            maximum=600,
        ),
    )


@dataclass(frozen=True)
class ClientSettings:
    """How the `compact` command line reaches this node."""

    endpoint: str = field(
        default="",
        metadata=_doc(
            "host:port of the node. Empty: the server's listen address, or the address the "
            "running server recorded in run/server.json."
        ),
    )
    credential_file: str = field(
        default="credentials/admin.token",
        metadata=_doc("Bearer token the command line presents (file mode 0600)."),
    )
    deadline_seconds: float = field(
        default=30.0,
        metadata=_doc("Deadline of each unary call.", minimum=0.1, maximum=3600),
    )


@dataclass(frozen=True)
class FederationSettings:
    """FederationService (node to node, mutual TLS) and syncing with the other members."""

    listen: str = field(
        default="127.0.0.1:7401",
        metadata=_doc(
            "host:port FederationService listens on (mutual TLS, members only); port 0 lets "
            "the OS choose (see run/federation.json)."
        ),
    )
    endpoint: str = field(
        default="",
        metadata=_doc(
            "host:port other members dial, as written into this node's member card. "
            "Empty: the listen address."
        ),
    )
    sync_interval_seconds: float = field(
        default=30.0,
        metadata=_doc(
            "`compact serve` syncs with every member this often (and publishes new records).",
            minimum=0.5,
            maximum=86_400,
        ),
    )
    max_backoff_seconds: float = field(
        default=600.0,
        metadata=_doc(
            "A member that cannot be reached is retried with exponential backoff up to this.",
            minimum=1,
            maximum=86_400,
        ),
    )
    deadline_seconds: float = field(
        default=30.0,
        metadata=_doc("Deadline of each call to another member.", minimum=0.1, maximum=3600),
    )
    oprf_daily_limit: int = field(
        default=200_000,
        metadata=_doc(
            "Identifier keys each member may have this node evaluate with its OPRF key share "
            "per UTC day; more are refused (RESOURCE_EXHAUSTED).",
            minimum=1,
            maximum=1_000_000_000,
        ),
    )
    oprf_batch_size: int = field(
        default=500,
        metadata=_doc(
            "Identifier keys per OPRF request to a share holder.", minimum=1, maximum=1000
        ),
    )
    entries_per_request: int = field(
        default=1000,
        metadata=_doc("Log entries fetched per request while syncing.", minimum=1, maximum=1000),
    )


@dataclass(frozen=True)
class BundleSettings:
    """Evidence bundles: which requests are approved without a reviewer (docs/bundles.md)."""

    review_levels: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            'Sharing levels ("compact", "matter") whose requests wait for a reviewer even '
            "though the policy would approve them; `index` always waits, `sealed` is never "
            "shared. The policy can be made stricter here, never looser."
        ),
    )
    chunk_bytes: int = field(
        default=1024 * 1024,
        metadata=_doc(
            "Plaintext bytes per chunk of a sealed bundle stream (one chunk per message).",
            minimum=1024,
            maximum=4 * MiB - 1024,
        ),
    )
    spool_days: int = field(
        default=30,
        metadata=_doc(
            "A sealed bundle that the requester has not acknowledged is kept this long.",
            minimum=1,
            maximum=3650,
        ),
    )
    poll_seconds: float = field(
        default=10.0,
        metadata=_doc(
            "`compact serve` checks outgoing requests and resumes transfers this often.",
            minimum=0.5,
            maximum=86_400,
        ),
    )


@dataclass(frozen=True)
class LimitSettings:
    """Bounds on imported data. A value over a limit is rejected, never truncated."""

    max_line_bytes: int = field(
        default=1 * MiB,
        metadata=_doc("Longest import line (one incident).", minimum=1024, maximum=64 * MiB),
    )
    max_text_chars: int = field(
        default=1_000,
        metadata=_doc(
            "Longest short text field (names, ids, places).", minimum=16, maximum=100_000
        ),
    )
    max_narrative_chars: int = field(
        default=100_000,
        metadata=_doc("Longest narrative or description.", minimum=100, maximum=10_000_000),
    )
    max_list_items: int = field(
        default=100,
        metadata=_doc(
            "Most agents, people or evidence items per incident.", minimum=1, maximum=10_000
        ),
    )
    max_evidence_file_bytes: int = field(
        default=4 * 1024 * MiB,
        metadata=_doc("Largest evidence file.", minimum=1, maximum=1024 * 1024 * MiB),
    )
    max_import_lines: int = field(
        default=1_000_000,
        metadata=_doc("Most lines in one import.", minimum=1, maximum=100_000_000),
    )


@dataclass(frozen=True)
class MonitoringSettings:
    """The Prometheus metrics endpoint and the gRPC health service (docs/operations.md)."""

    metrics_listen: str = field(
        default="",
        metadata=_doc(
            "host:port of the Prometheus metrics endpoint (plain HTTP, GET /metrics, no "
            "authentication: keep it on loopback or a monitoring network). Empty: off. Port 0 "
            "lets the OS choose (see run/metrics.json)."
        ),
    )
    health_interval_seconds: float = field(
        default=5.0,
        metadata=_doc(
            "How often the health service re-checks the database and the members.",
            minimum=0.2,
            maximum=3600,
        ),
    )
    peer_stale_seconds: float = field(
        default=600.0,
        metadata=_doc(
            "A member not synced successfully for this long is reported NOT_SERVING "
            "(health services compact.peers and compact.peer.XX).",
            minimum=1,
            maximum=30 * 86_400,
        ),
    )


@dataclass(frozen=True)
class LoggingSettings:
    """Logs: structlog JSON lines on stdout."""

    level: str = field(default="info", metadata=_doc('"debug", "info", "warning" or "error".'))


@dataclass(frozen=True)
class Config:
    """The whole configuration of one node, with the data folder it belongs to."""

    data_dir: Path
    node: NodeSettings
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    keys: KeySettings = field(default_factory=KeySettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    federation: FederationSettings = field(default_factory=FederationSettings)
    bundles: BundleSettings = field(default_factory=BundleSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)

    def path(self, relative: str) -> Path:
        """A path from the configuration, resolved against the data folder."""
        p = Path(relative)
        return p if p.is_absolute() else self.data_dir / p

    def database_url(self) -> str:
        url = os.environ.get(DATABASE_URL_ENV) or self.database.url
        if url:
            return url
        return f"sqlite:///{(self.data_dir / 'node.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def bundle_dir(self) -> Path:
        """Spool files of evidence bundles (sealed streams being sent or received)."""
        return self.data_dir / "bundles"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"


_SECTIONS: Final[dict[str, type[Any]]] = {
    "node": NodeSettings,
    "database": DatabaseSettings,
    "keys": KeySettings,
    "server": ServerSettings,
    "client": ClientSettings,
    "federation": FederationSettings,
    "bundles": BundleSettings,
    "limits": LimitSettings,
    "monitoring": MonitoringSettings,
    "logging": LoggingSettings,
}

T = TypeVar("T")


def _coerce(section: str, f: dataclasses.Field[Any], value: Any) -> Any:
    name = f"{section}.{f.name}"
    expected = f.type
    if expected == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string")
        return value
    if expected == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false")
        return value
    if expected in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number")
        if expected == "int" and not isinstance(value, int):
            raise ConfigError(f"{name}: expected a whole number")
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if lo is not None and value < lo:
            raise ConfigError(f"{name}: must be at least {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{name}: must be at most {hi}")
        return float(value) if expected == "float" else value
    if expected == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of strings")
        return tuple(value)
    raise ConfigError(f"{name}: unsupported setting type {expected}")  # pragma: no cover


def _section(cls: type[T], section: str, raw: Any) -> T:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{section}]: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"[{section}]: unknown setting(s): {', '.join(unknown)}")
    values = {k: _coerce(section, fields[k], v) for k, v in raw.items()}
    try:
        return cls(**values)
    except TypeError:
        missing = [
            n
            for n, f in fields.items()
            if n not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        raise ConfigError(f"[{section}]: missing setting(s): {', '.join(missing)}") from None


def validate_config(config: Config) -> None:
    if config.node.state not in STATES:
        raise ConfigError("node.state: not a US state, DC or territory code")
    if config.keys.unlock not in ("passphrase", "key_file"):
        raise ConfigError('keys.unlock: must be "passphrase" or "key_file"')
    if config.keys.unlock == "key_file":
        if not config.keys.key_file or not Path(config.keys.key_file).is_absolute():
            raise ConfigError(
                'keys.key_file: an absolute path is required with unlock = "key_file"'
            )
        if _is_within(Path(config.keys.key_file), config.data_dir):
            raise ConfigError("keys.key_file: must not be inside the data folder")
    if config.logging.level not in ("debug", "info", "warning", "error"):
        raise ConfigError('logging.level: must be "debug", "info", "warning" or "error"')
    parse_host_port(config.server.listen, setting="server.listen")
    if config.client.endpoint:
        parse_host_port(config.client.endpoint, setting="client.endpoint")
    for level in config.bundles.review_levels:
        if level not in ("compact", "matter"):
            raise ConfigError('bundles.review_levels: each must be "compact" or "matter"')
    parse_host_port(config.federation.listen, setting="federation.listen")
    if config.federation.endpoint:
        parse_host_port(config.federation.endpoint, setting="federation.endpoint")
    if config.monitoring.metrics_listen:
        parse_host_port(config.monitoring.metrics_listen, setting="monitoring.metrics_listen")


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def parse_host_port(value: str, *, setting: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{setting}: expected host:port")
    return host.strip("[]"), int(port)


def config_from_mapping(data_dir: Path, raw: dict[str, Any]) -> Config:
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(unknown)}")
    if "node" not in raw:
        raise ConfigError("[node]: missing section")
    sections = {name: _section(cls, name, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    config = Config(data_dir=data_dir, **sections)
    validate_config(config)
    return config


def load_config(data_dir: Path) -> Config:
    """Read and validate `compact.toml` in `data_dir`."""
    path = data_dir / CONFIG_FILE
    if not path.is_file():
        raise NotInitializedError(f"{data_dir}: no {CONFIG_FILE}; run `compact init` first")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return config_from_mapping(data_dir, raw)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(type(value).__name__)  # pragma: no cover


def render_config(config: Config) -> str:
    """The TOML text of `config`, every setting preceded by its documentation."""
    lines = [
        "# Compact node configuration. Every setting is documented; values shown are in force.",
        "# Relative paths are relative to this folder.",
    ]
    for name in _SECTIONS:
        section = getattr(config, name)
        lines += ["", f"# {type(section).__doc__}", f"[{name}]"]
        for f in dataclasses.fields(section):
            lines += textwrap.wrap(
                f.metadata["doc"], 88, initial_indent="# ", subsequent_indent="# "
            )
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
    return "\n".join(lines) + "\n"


def set_setting(path: Path, key: str, value: object) -> None:
    """Change the one `key = value` line of a compact.toml written by `compact init`
    (every setting is written there); a key not there is a ConfigError."""
    text, count = re.subn(
        rf"^{re.escape(key)} = .*$", f"{key} = {value}", path.read_text(encoding="utf-8"),
        count=1, flags=re.MULTILINE,
    )  # fmt: skip
    if count != 1:
        raise ConfigError(f"{path.name} has no {key} setting")
    path.write_text(text, encoding="utf-8")
