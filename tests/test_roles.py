"""The role matrix (docs/roles.md), cell by cell: the document is the code, and every
command and every NodeService method refuses exactly the roles the matrix says no to."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import grpc
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from compact.v1 import node_pb2 as pb
from compact.v1 import node_pb2_grpc as pb_grpc
from node import models as m
from node.cli import main
from node.cli_auth import EXIT_NOPERM, access_of
from node.config import Config
from node.roles import PERMISSION_TEXT, ROLES, Permission
from node.server import METHOD_PERMISSIONS
from tests.helpers import record, write_jsonl
from tests.nodeproc import NodeProcess, db_rows, init_test_node, run_compact, start_node, user_env

DOC = Path(__file__).resolve().parent.parent / "docs" / "roles.md"
ROLE_ORDER = ("analyst", "investigator", "clerk", "reviewer", "litigator", "admin")


def _table(name: str) -> list[list[str]]:
    """The rows (cells stripped) of the table between <!-- name:begin --> and :end."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert found, f"docs/roles.md has no {name} table"
    lines = [line for line in found.group(1).strip().splitlines() if line.strip()]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def _commands() -> dict[str, click.Command]:
    """Every runnable command by its full name (`compact bundle approve`)."""
    out: dict[str, click.Command] = {}

    def walk(cmd: click.Command, name: str) -> None:
        if cmd.hidden:  # an alias (`compact user`), documented by its own name
            return
        if not isinstance(cmd, click.Group) or cmd.invoke_without_command:
            out[name] = cmd
        if isinstance(cmd, click.Group):
            for sub_name, sub in cmd.commands.items():
                walk(sub, f"{name} {sub_name}")

    for sub_name, sub in main.commands.items():
        walk(sub, f"compact {sub_name}")
    return out


# --- the document is the code -------------------------------------------------------------


def test_the_documented_matrix_is_the_code_cell_by_cell() -> None:
    rows = _table("matrix")
    header = DOC.read_text(encoding="utf-8").split("<!-- matrix:begin -->\n", 1)[1]
    roles = [c.strip().strip("`") for c in header.splitlines()[0].strip("|").split("|")][1:]
    assert roles == list(ROLE_ORDER) and set(roles) == set(ROLES)
    documented: dict[str, list[str]] = {}
    for cells in rows:
        found = re.fullmatch(r"`(\w+)`: (.+)", cells[0])
        assert found, cells[0]
        permission = Permission(found.group(1))
        assert found.group(2) == PERMISSION_TEXT[permission]
        documented[permission.value] = cells[1:]
    assert list(documented) == [p.value for p in Permission]
    for permission in Permission:
        for role, cell in zip(roles, documented[permission.value], strict=True):
            assert cell in ("yes", "no")
            assert (cell == "yes") == (permission in ROLES[role]), (permission, role)


def test_the_documented_methods_are_the_servers() -> None:
    documented = {c[0].strip("`"): c[1].split()[0].strip("`") for c in _table("methods")}
    assert documented == {k: v.value for k, v in METHOD_PERMISSIONS.items()}
    assert set(documented) == set(pb.DESCRIPTOR.services_by_name["NodeService"].methods_by_name)


def test_every_command_declares_its_access_and_the_document_says_which() -> None:
    documented = {c[0].strip("`"): c[1] for c in _table("commands")}
    commands = _commands()
    assert sorted(documented) == sorted(commands)
    for name, cmd in commands.items():
        access = access_of(cmd)
        assert access is not None, f"{name} declares no access (node.cli_auth)"
        want = f"`{access.value}`" if isinstance(access, Permission) else access.value
        assert documented[name].split(" (")[0] == want, name


# --- every command as every role ------------------------------------------------------------

#: Arguments that get each command past its own parsing, so that what decides the
#: outcome is the role: refused (exit 77) or let through to do its work (which may
#: then fail for other reasons: there is no roster, no such request, ...).
ARGS: dict[str, list[str]] = {
    "compact agents lookup": ["--badge", "4471", "--agency", "ICE-ERO"],
    "compact agents matches": [],
    "compact alerts": [],
    "compact audit": [],
    "compact audit verify": [],
    "compact bundle approve": ["no-such-request"],
    "compact bundle deny": ["no-such-request", "--reason", "not now"],
    "compact bundle list": [],
    "compact bundle refresh": [],
    "compact bundle request": [
        "--state", "MN", "--incident", "MN-00000000-0000-0000-0000-000000000000",
        "--purpose", "role test",
    ],
    "compact bundle show": ["no-such-request"],
    "compact exhibit export": ["IL:NO-SUCH-MATTER", "{tmp}/export"],
    "compact hits": [],
    "compact ingest": ["{tmp}/bad.jsonl"],
    "compact log status": [],
    "compact matter add-exhibit": [
        "IL:NO-SUCH-MATTER", "--incident", "IL-00000000-0000-0000-0000-000000000000",
        "--description", "role test",
    ],
    "compact matter create": ["Role test {role}", "--states", "MN"],
    "compact matter hold": ["IL:NO-SUCH-MATTER", "--on"],
    "compact matter list": [],
    "compact matter share": [],
    "compact matter show": ["IL:NO-SUCH-MATTER"],
    "compact oprf status": [],
    "compact patterns conduct": [],
    "compact patterns repeat": [],
    "compact patterns surges": [],
    "compact patterns unidentified": [],
    "compact patterns units": [],
    "compact peers": [],
    "compact roster show": [],
    "compact users add": ["made-by-{role}", "--role", "analyst", "--token-file", "{tmp}/{role}.t"],
    "compact users disable": ["no-such-user"],
    "compact users list": [],
}  # fmt: skip


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Path]:
    root = tmp_path_factory.mktemp("roles")
    config = init_test_node(root)
    (root / "bad.jsonl").write_text("{not json\n", encoding="utf-8")
    return config, root


def test_the_command_cells_cover_every_command_that_checks_a_role() -> None:
    checked = {n for n, c in _commands().items() if isinstance(access_of(c), Permission)}
    assert checked == set(ARGS)


@pytest.mark.parametrize("command", sorted(ARGS))
def test_each_command_refuses_exactly_the_roles_the_matrix_says_no_to(
    node: tuple[Config, Path], command: str
) -> None:
    config, root = node
    cmd = _commands()[command]
    permission = access_of(cmd)
    assert isinstance(permission, Permission)
    runner = CliRunner()
    for role in ROLE_ORDER:
        env = user_env(config, f"role-{role}", role)
        args = [a.format(tmp=root, role=role) for a in ARGS[command]]
        result = runner.invoke(
            main, [*command.split()[1:], *args, "--data-dir", str(config.data_dir)], env=env
        )
        assert result.exit_code != 2, result.output  # a usage error: ARGS are wrong
        allowed = permission in ROLES[role]
        refused = result.exit_code == EXIT_NOPERM
        assert refused != allowed, (command, role, result.exit_code, result.output)
        if refused:
            assert f"may not {PERMISSION_TEXT[permission]}" in result.output
            assert f"'{permission.value}'" in result.output
        else:
            assert "permission denied" not in result.output, (command, role)


def test_a_refusal_and_a_run_are_audited_under_the_users_name(node: tuple[Config, Path]) -> None:
    config, _ = node
    runner = CliRunner()
    d = str(config.data_dir)
    analyst = user_env(config, "role-analyst", "analyst")
    reviewer = user_env(config, "role-reviewer", "reviewer")
    assert runner.invoke(main, ["users", "list", "--data-dir", d], env=analyst).exit_code == 77
    assert runner.invoke(main, ["agents", "matches", "--data-dir", d], env=analyst).exit_code == 0
    out = runner.invoke(
        main, ["audit", "--user", "role-analyst", "--json", "--data-dir", d], env=reviewer
    )
    assert out.exit_code == 0, out.output
    events = [(e["action"], e["target"], e["outcome"]) for e in json.loads(out.stdout)["events"]]
    assert ("denied", "compact users list", "refused") in events
    assert ("command", "compact agents matches", "ok") in events


def test_a_token_that_is_not_the_nodes_is_refused(
    node: tuple[Config, Path], tmp_path: Path
) -> None:
    config, _ = node
    forged = tmp_path / "forged.token"
    forged.write_text("cpt_" + "A" * 43 + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["hits", "--data-dir", str(config.data_dir)],
        env={"COMPACT_TOKEN_FILE": str(forged)},
    )
    assert result.exit_code == EXIT_NOPERM
    assert "not a valid token of this node" in result.output
    assert "AAAA" not in result.output  # the token is never echoed
    missing = CliRunner().invoke(
        main,
        ["hits", "--data-dir", str(config.data_dir)],
        env={"COMPACT_TOKEN_FILE": str(tmp_path / "absent.token")},
    )
    assert missing.exit_code == EXIT_NOPERM and "cannot be read" in missing.output


def test_a_disabled_user_is_refused_at_once(node: tuple[Config, Path]) -> None:
    config, _ = node
    d = str(config.data_dir)
    env = user_env(config, "soon-gone", "analyst")
    runner = CliRunner()
    assert runner.invoke(main, ["hits", "--data-dir", d], env=env).exit_code == 0
    admin = runner.invoke(main, ["users", "disable", "soon-gone", "--data-dir", d])
    assert admin.exit_code == 0, admin.output
    refused = runner.invoke(main, ["hits", "--data-dir", d], env=env)
    assert refused.exit_code == EXIT_NOPERM and "not a valid token" in refused.output
    himself = runner.invoke(main, ["users", "disable", "admin", "--data-dir", d])
    assert himself.exit_code == 1 and "cannot disable itself" in himself.output
    rows = db_rows(config, select(m.User.name).where(m.User.disabled.is_(True)))
    assert rows == [("soon-gone",)]


# --- every NodeService method as every role ---------------------------------------------------


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, str]]:
    root = tmp_path_factory.mktemp("roles-grpc")
    config = init_test_node(root)
    media = root / "in" / "media"
    media.mkdir(parents=True)
    (media / "a.bin").write_bytes(b"evidence bytes")
    source = write_jsonl(
        root / "in",
        [record("IL-ROLE-1", evidence=[{"path": "media/a.bin", "media_type": "image/png"}])],
    )
    run_compact("ingest", str(source), "--data-dir", str(config.data_dir))
    (gid,) = db_rows(config, select(m.Incident.global_id))[0]
    for role in ROLE_ORDER:
        user_env(config, f"role-{role}", role)
    proc = start_node(config)
    try:
        yield proc, str(gid)
    finally:
        proc.stop()


def _call(
    stub: pb_grpc.NodeServiceStub, method: str, gid: str, token: str
) -> pb.GetIncidentResponse | None:
    metadata = (("authorization", f"Bearer {token}"),)
    sha = "ed1cbd7c3cd3b2ac1e1b4b6e0fb76d6d1c2d8e5e69ba0d1e11cbb7d08fb7f0a8"
    if method == "Ingest":
        line = json.dumps(record("IL-ROLE-2"))
        stub.Ingest(
            iter([pb.IngestRequest(line=pb.IngestLine(line_number=1, json=line.encode()))]),
            metadata=metadata,
            timeout=20,
        )
    elif method == "GetIncident":
        return stub.GetIncident(pb.GetIncidentRequest(global_id=gid), metadata=metadata, timeout=20)
    elif method == "SearchIncidents":
        stub.SearchIncidents(pb.SearchIncidentsRequest(), metadata=metadata, timeout=20)
    elif method == "GetEvidence":
        for _ in stub.GetEvidence(
            pb.GetEvidenceRequest(global_id=gid, sha256=sha), metadata=metadata, timeout=20
        ):
            pass
    return None


@pytest.mark.parametrize("method", sorted(METHOD_PERMISSIONS))
def test_each_method_refuses_exactly_the_roles_the_matrix_says_no_to(
    serving: tuple[NodeProcess, str], method: str
) -> None:
    proc, gid = serving
    config = proc.config
    cert = config.path(config.keys.tls_certificate).read_bytes()
    permission = METHOD_PERMISSIONS[method]
    with grpc.secure_channel(proc.endpoint, grpc.ssl_channel_credentials(cert)) as ch:
        stub = pb_grpc.NodeServiceStub(ch)
        for role in ROLE_ORDER:
            token_file = user_env(config, f"role-{role}", role)["COMPACT_TOKEN_FILE"]
            token = Path(token_file).read_text(encoding="utf-8").strip()
            try:
                reply = _call(stub, method, gid, token)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
                reply = None
            allowed = permission in ROLES[role]
            assert (code == grpc.StatusCode.PERMISSION_DENIED) != allowed, (method, role, code)
            if method == "GetIncident" and reply is not None:
                personal = Permission.READ_PERSONAL in ROLES[role]
                assert reply.incident.restricted_withheld != personal, role
