"""The deployment files under deploy/: the properties that matter, checked from their text.

Nothing here builds an image, starts compose or talks to a cluster (this repository's CI
has no Docker engine and no Kubernetes): the checks parse the Dockerfile, the compose
file, the Kubernetes manifests, the systemd unit and the example configurations, and
hold them to what docs/deploying.md promises and to each other (the ports, paths and
names one file uses must be the ones the others use).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from crypto.keystore import MIN_KEY_FILE_SECRET_BYTES
from node.config import Config, load_config, parse_host_port
from node.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose"
KUBE = DEPLOY / "kubernetes"
NODES = ("ca", "il", "mn")
#: What form-compact.sh writes next to compose.yaml: never committed, never listed.
GENERATED = ("compose/secrets", "compose/ceremony", "compose/.env")


# --- reading the files ------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs, f"{path} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
    return docs


def deploy_files() -> Iterator[Path]:
    for path in sorted(DEPLOY.rglob("*")):
        rel = path.relative_to(DEPLOY).as_posix()
        if path.is_file() and not any(rel == g or rel.startswith(g + "/") for g in GENERATED):
            yield path


def load_example(path: Path, tmp_path: Path) -> Config:
    """Load a compact.toml with the node's own loader, as the node would in its data folder."""
    data_dir = tmp_path / path.stem
    data_dir.mkdir()
    shutil.copyfile(path, data_dir / "compact.toml")
    return load_config(data_dir)


def port(host_port: str) -> int:
    return parse_host_port(host_port, setting="test")[1]


def is_loopback(host_port: str) -> bool:
    host = parse_host_port(host_port, setting="test")[0]
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def is_within(path: str, folder: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(folder))


@dataclass(frozen=True)
class Instruction:
    stage: int  # 0 for the first FROM, 1 for the second...
    keyword: str
    args: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword.upper(), args.strip()))
    return out


def final_stage() -> list[Instruction]:
    instructions = dockerfile()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def exec_form(args: str) -> list[str]:
    value = yaml.safe_load(args)  # a JSON array is YAML too
    assert isinstance(value, list), f"not in exec form: {args}"
    return [str(v) for v in value]


def compose() -> dict[str, Any]:
    [doc] = yaml_documents(COMPOSE / "compose.yaml")
    return doc


def compose_nodes() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return {n: s for n, s in services.items() if "build" in s}


def interpolated(value: str) -> str:
    """A compose value with each ${VAR...} interpolation replaced by a plain word."""
    return re.sub(r"\$\{[^}]*\}", "INTERPOLATED", value)


def kube_resources() -> list[dict[str, Any]]:
    [kustomization] = yaml_documents(KUBE / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += yaml_documents(KUBE / name)
    return docs


def kube(kind: str) -> list[dict[str, Any]]:
    return [d for d in kube_resources() if d["kind"] == kind]


def statefulset() -> dict[str, Any]:
    [sts] = kube("StatefulSet")
    return sts


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = statefulset()["spec"]["template"]["spec"]
    return spec


def main_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec()["containers"]
    [container] = containers
    return container


def container_port(name: str) -> int:
    ports = {p["name"]: int(p["containerPort"]) for p in main_container()["ports"]}
    return ports[name]


def mount_path(container: dict[str, Any], volume: str) -> str:
    [path] = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume]
    return str(path)


def unit() -> dict[str, list[str]]:
    """The systemd unit's settings, each key with all its values (comments dropped)."""
    settings: dict[str, list[str]] = {}
    text = (DEPLOY / "systemd" / "compact-node.service").read_text(encoding="utf-8")
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


# --- every file -------------------------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses() -> None:
    files = [p for p in deploy_files() if p.suffix in (".yaml", ".yml")]
    names = {p.relative_to(DEPLOY).as_posix() for p in files}
    assert {
        "compose/compose.yaml",
        "kubernetes/kustomization.yaml",
        "kubernetes/statefulset.yaml",
        "kubernetes/service.yaml",
        "kubernetes/networkpolicy.yaml",
        "kubernetes/secret.example.yaml",
    } <= names
    for path in files:
        for doc in yaml_documents(path):
            if path.parent == KUBE and path.name != "kustomization.yaml":
                assert {"apiVersion", "kind", "metadata"} <= set(doc), path
                assert "namespace" not in doc["metadata"], f"{path}: namespace-agnostic"


def test_deploy_readme_lists_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    missing = [
        p.relative_to(DEPLOY).as_posix()
        for p in deploy_files()
        if p.name != "README.md" and p.relative_to(DEPLOY).as_posix() not in readme
    ]
    assert not missing, f"deploy/README.md does not mention {missing}"


def test_every_example_configuration_loads_with_the_node_loader(tmp_path: Path) -> None:
    files = sorted(DEPLOY.rglob("*.toml"))
    assert len(files) >= 5  # production, three compose nodes, Kubernetes
    for path in files:
        config = load_example(path, tmp_path)
        # Never SQLite in a deployment, and never a keystore secret to type in.
        assert config.database.url.startswith("postgresql+psycopg://"), path
        assert config.keys.unlock == "key_file", path
        assert config.client.endpoint and is_loopback(config.client.endpoint), path


def test_the_loader_refuses_an_unknown_setting(tmp_path: Path) -> None:
    # The check above would pass a misspelt setting only if the loader ignored it.
    path = tmp_path / "bad.toml"
    text = (DEPLOY / "examples" / "production.toml").read_text(encoding="utf-8")
    path.write_text(text.replace("[server]\n", "[server]\nlisten_adress = '0.0.0.0:1'\n"))
    with pytest.raises(ConfigError, match="listen_adress"):
        load_example(path, tmp_path)


def test_production_example_fits_the_systemd_unit(tmp_path: Path) -> None:
    config = load_example(DEPLOY / "examples" / "production.toml", tmp_path)
    settings = unit()
    assert config.monitoring.metrics_listen and is_loopback(config.monitoring.metrics_listen)
    assert config.federation.endpoint, "a node on 0.0.0.0 must say where members dial it"
    [data_dir] = settings["ReadWritePaths"]
    assert f"--data-dir {data_dir}" in settings["ExecStart"][0]
    assert any(is_within(config.keys.key_file, p) for p in settings["ReadOnlyPaths"])
    assert not is_within(config.keys.key_file, data_dir)
    assert settings["User"] != ["root"] and settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["CapabilityBoundingSet"] == [""]


# --- the Dockerfile ---------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    instructions = dockerfile()
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2
    args = {
        i.args.partition("=")[0]: i.args.partition("=")[2]
        for i in instructions
        if i.keyword == "ARG"
    }
    base = froms[-1].split()[0]
    base = args.get(base.strip("${}"), base)
    assert base.startswith("python:3.11-slim")


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    stage = final_stage()
    [user] = [i.args for i in stage if i.keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    # The user is created with that id, and the Kubernetes pod runs as the same one.
    assert any(i.keyword == "RUN" and f"--uid {uid}" in i.args for i in stage)
    security = pod_spec()["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))
    # USER comes before ENTRYPOINT: the node never starts as root.
    keywords = [i.keyword for i in stage]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")


def test_dockerfile_installs_system_libsodium_and_no_dev_extra() -> None:
    runs = " ".join(i.args for i in final_stage() if i.keyword == "RUN")
    assert re.search(r"apt-get install\b[^&;]*\blibsodium23\b", runs)
    installs = [i.args for i in dockerfile() if i.keyword == "RUN" and "pip install" in i.args]
    assert installs and not any("[dev" in a or "-e " in a for a in installs)


def test_dockerfile_healthcheck_entrypoint_and_data_volume() -> None:
    stage = final_stage()
    [health] = [i.args for i in stage if i.keyword == "HEALTHCHECK"]
    assert "compact health" in health
    [entrypoint] = [i.args for i in stage if i.keyword == "ENTRYPOINT"]
    [cmd] = [i.args for i in stage if i.keyword == "CMD"]
    assert exec_form(entrypoint) + exec_form(cmd) == ["compact", "serve"]
    env = " ".join(i.args for i in stage if i.keyword == "ENV")
    data_dir = re.search(r"COMPACT_DATA_DIR=(\S+)", env)
    assert data_dir is not None
    [volume] = [i.args for i in stage if i.keyword == "VOLUME"]
    assert exec_form(volume) == [data_dir.group(1)]
    exposed = {int(p.split("/")[0]) for i in stage if i.keyword == "EXPOSE" for p in i.args.split()}
    assert {container_port("nodeservice"), container_port("federation")} <= exposed


def test_dockerignore_admits_only_what_the_image_copies() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist: key files and .env never enter the build context"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        src.rstrip("/")
        for i in dockerfile()
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for src in i.args.split()[:-1]
    }
    assert copied == allowed
    for generated in GENERATED:
        assert f"deploy/{generated}" in lines


def test_the_wheel_the_image_installs_builds_and_holds_what_the_node_needs(
    tmp_path: Path,
) -> None:
    """`pip install .` in the Dockerfile (and on a host) builds a wheel with hatchling; it
    must build (hatchling refuses a file added twice, e.g. by a force-include inside a
    package) and carry the migrations, the generated protobuf modules and the exhibit
    package's verifier, which are not all Python modules of ours."""
    import subprocess
    import sys
    import zipfile

    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("compact_node-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = {n for n in names if n.startswith("node/migrations/versions/")}
    assert len(revisions) == len(list((REPO / "node/migrations/versions").glob("*.py")))
    assert {"node/migrations/env.py", "node/migrations/script.py.mako"} <= names
    assert {"compact/v1/node_pb2.py", "compact/v1/federation_pb2_grpc.py"} <= names
    assert "federation/verify_package.py" in names


# --- compose ----------------------------------------------------------------------------------


def test_compose_has_three_nodes_each_with_its_own_postgresql() -> None:
    services: dict[str, Any] = compose()["services"]
    nodes = compose_nodes()
    assert set(nodes) == set(NODES)
    databases = {
        n for n, s in services.items() if str(s.get("image", "")).startswith("postgres:16")
    }
    assert databases == {f"{n}-db" for n in NODES}
    assert set(services) == set(nodes) | databases
    volumes = [v for n in databases for v in services[n]["volumes"]]
    assert len({v.split(":")[0] for v in volumes}) == 3, "one data volume per database"
    for name, node in nodes.items():
        url = urlsplit(interpolated(node["environment"]["COMPACT_DATABASE_URL"]))
        assert url.scheme == "postgresql+psycopg"
        assert url.hostname == f"{name}-db" and url.port == 5432
        assert node["depends_on"] == {f"{name}-db": {"condition": "service_healthy"}}
        # Only this node shares a network with its database.
        db_networks = set(services[f"{name}-db"]["networks"])
        sharing = {n for n, s in nodes.items() if db_networks & set(s["networks"])}
        assert sharing == {name}
        assert compose()["networks"][next(iter(db_networks))].get("internal") is True


def test_compose_publishes_nodeservice_on_loopback_only() -> None:
    services: dict[str, Any] = compose()["services"]
    for name, service in services.items():
        ports = service.get("ports", [])
        if name not in NODES:
            assert not ports, f"{name} publishes a port"
            continue
        assert ports, f"{name} publishes no NodeService port"
        for spec in ports:
            host_ip, host_port, target = str(spec).rsplit(":", 2)
            assert host_ip == "127.0.0.1", f"{name} publishes {spec} beyond loopback"
            assert int(target) == 7400 and host_port.isdigit()


def test_compose_nodes_are_hardened_and_health_checked() -> None:
    for name, node in compose_nodes().items():
        assert node["read_only"] is True, name
        assert node["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in node["security_opt"], name
        assert "compact health" in " ".join(node["healthcheck"]["test"]), name
        assert node["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE / node["build"]["context"] / node["build"]["dockerfile"]).is_file()


def test_compose_configs_and_key_secrets_fit_each_node(tmp_path: Path) -> None:
    top = compose()
    gitignore = (COMPOSE / ".gitignore").read_text(encoding="utf-8")
    for name, node in compose_nodes().items():
        [config_ref] = node["configs"]
        config_file = COMPOSE / top["configs"][config_ref["source"]]["file"]
        config = load_example(config_file, tmp_path)
        [secret_ref] = node["secrets"]
        secret_file = top["secrets"][secret_ref["source"]]["file"]
        [data_mount] = [v.split(":")[1] for v in node["volumes"]]
        # The node is the state its service is named for, and the members dial it by name.
        assert config.node.state == name.upper()
        assert config.federation.endpoint == f"{name}:{port(config.federation.listen)}"
        assert port(config.server.listen) == 7400 and port(config.federation.listen) == 7401
        assert urlsplit(config.database.url).hostname == f"{name}-db"
        # The key file is the compose secret, mounted outside the data folder.
        assert config.keys.key_file == secret_ref["target"]
        assert not is_within(config.keys.key_file, data_mount)
        assert data_mount == "/var/lib/compact"
        assert secret_file.startswith("./secrets/") and "/secrets/" in gitignore
        assert config_ref["target"] == "/etc/compact/compact.toml"


def test_compose_interpolations_are_documented_in_env_example() -> None:
    text = (COMPOSE / "compose.yaml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = (COMPOSE / ".env.example").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE))
    assert used and used == defined
    assert "/.env" in (COMPOSE / ".gitignore").read_text(encoding="utf-8")


def test_form_compact_script_parses_and_follows_the_demo_order() -> None:
    script = COMPOSE / "form-compact.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text(encoding="utf-8")
    steps = [
        " init --state",
        "roster card",
        "roster propose",
        "oprf ceremony",
        "roster sign",
        "roster apply",
        "--pin",
        "oprf import-share",
    ]
    positions = [text.find(s) for s in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions), "the steps must run in node/demo.py's order"
    # The script hands init the key file where compose mounts it.
    targets = {s["target"] for n in compose_nodes().values() for s in n["secrets"]}
    assert targets == {"/run/secrets/compact.key"}
    assert "--key-file /run/secrets/compact.key" in text


# --- Kubernetes -------------------------------------------------------------------------------


def test_kustomization_lists_existing_files_and_never_the_placeholder_secret() -> None:
    [kustomization] = yaml_documents(KUBE / "kustomization.yaml")
    for name in kustomization["resources"]:
        assert (KUBE / name).is_file(), name
    for generator in kustomization["configMapGenerator"]:
        for name in generator["files"]:
            assert (KUBE / name).is_file(), name
    # Applying the placeholder over the real Secret would lock the node out of its keys.
    assert "secret.example.yaml" not in kustomization["resources"]
    assert not kube("Secret")


def test_statefulset_runs_one_hardened_non_root_pod() -> None:
    sts = statefulset()
    assert sts["spec"]["replicas"] == 1
    spec = pod_spec()
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in spec["initContainers"] + spec["containers"]:
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True, container["name"]
        assert ctx["allowPrivilegeEscalation"] is False, container["name"]
        assert ctx["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert ctx.get("privileged", False) is False
        assert "memory" in container["resources"]["limits"], container["name"]
        assert container["resources"]["requests"], container["name"]


def test_statefulset_probes_call_compact_health() -> None:
    container = main_container()
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = " ".join(container[probe]["exec"]["command"])
        assert "compact health" in command, probe
    # Readiness is "serving" (exit 0); liveness only "answers" (not exit 2).
    assert container["readinessProbe"]["exec"]["command"] == ["compact", "health"]
    assert "-ne 2" in " ".join(container["livenessProbe"]["exec"]["command"])


def test_statefulset_mounts_the_key_secret_read_only_outside_the_data_folder(
    tmp_path: Path,
) -> None:
    spec = pod_spec()
    volumes = {v["name"]: v for v in spec["volumes"]}
    [claim] = statefulset()["spec"]["volumeClaimTemplates"]
    config = load_example(KUBE / "compact.toml", tmp_path)
    secrets = {
        d["metadata"]["name"]: d
        for d in yaml_documents(KUBE / "secret.example.yaml")
        if d["kind"] == "Secret"
    }
    for container in spec["initContainers"] + spec["containers"]:
        data = mount_path(container, claim["metadata"]["name"])
        key_mounts = [
            m
            for m in container["volumeMounts"]
            if "secret" in volumes.get(m["name"], {})
            and volumes[m["name"]]["secret"]["secretName"] == "compact-node-key"
        ]
        assert len(key_mounts) == 1, container["name"]
        [key] = key_mounts
        assert key["readOnly"] is True
        assert not is_within(key["mountPath"], data) and not is_within(data, key["mountPath"])
        assert is_within(config.keys.key_file, key["mountPath"])
        assert data == "/var/lib/compact"
    assert "compact-node-key" in secrets and "compact-node-database" in secrets
    # The placeholder key cannot be used by mistake: compact refuses so short a key file.
    placeholder = secrets["compact-node-key"]["stringData"]["node.key"]
    assert len(placeholder.encode()) < MIN_KEY_FILE_SECRET_BYTES
    env = {e["name"]: e for e in main_container()["env"]}
    ref = env["COMPACT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert (
        ref["name"] == "compact-node-database" and ref["key"] in secrets[ref["name"]]["stringData"]
    )


def test_kubernetes_config_matches_the_container_ports(tmp_path: Path) -> None:
    config = load_example(KUBE / "compact.toml", tmp_path)
    assert port(config.server.listen) == container_port("nodeservice")
    assert port(config.federation.listen) == container_port("federation")
    assert port(config.monitoring.metrics_listen) == container_port("metrics")
    assert port(config.client.endpoint) == container_port("nodeservice")
    # The init container reads the state from the same ConfigMap it copies.
    init = " ".join(" ".join(c.get("command", [])) for c in pod_spec()["initContainers"])
    assert "compact init" in init and 'cp "$config"' in init


def test_services_headless_and_federation() -> None:
    services = {s["metadata"]["name"]: s["spec"] for s in kube("Service")}
    headless = services[statefulset()["spec"]["serviceName"]]
    assert headless["clusterIP"] == "None"
    # Every Service selects the StatefulSet's pods and targets a port they name.
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    names = {p["name"] for p in main_container()["ports"]}
    for spec in services.values():
        assert spec["selector"].items() <= pod_labels.items()
        for p in spec["ports"]:
            assert p["targetPort"] in names
    federation = [s for s in services.values() if s.get("type") == "LoadBalancer"]
    assert len(federation) == 1
    [lb] = federation
    assert lb["externalTrafficPolicy"] == "Local"
    assert [p["targetPort"] for p in lb["ports"]] == ["federation"]


def test_networkpolicy_limits_federation_to_members_and_egress() -> None:
    [policy] = kube("NetworkPolicy")
    spec = policy["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert spec["podSelector"]["matchLabels"].items() <= (
        statefulset()["spec"]["template"]["metadata"]["labels"].items()
    )
    federation, nodeservice = container_port("federation"), container_port("nodeservice")
    members: set[str] = set()
    for rule in spec["ingress"]:
        assert rule.get("from") and rule.get("ports"), "an ingress rule open to all"
        ports = {p["port"] for p in rule["ports"]}
        if federation in ports:
            assert ports == {federation}
            assert all(set(peer) == {"ipBlock"} for peer in rule["from"])
            members |= {peer["ipBlock"]["cidr"] for peer in rule["from"]}
        if nodeservice in ports:
            assert ports == {nodeservice}
            assert all(set(peer) == {"podSelector"} for peer in rule["from"])
    assert members, "no ingress rule for the federation port"
    egress_ports: dict[int, list[dict[str, Any]]] = {}
    for rule in spec["egress"]:
        assert rule.get("to") and rule.get("ports"), "an egress rule open to all"
        for p in rule["ports"]:
            egress_ports.setdefault(p["port"], []).extend(rule["to"])
    assert set(egress_ports) == {53, 5432, federation}
    assert {peer["ipBlock"]["cidr"] for peer in egress_ports[federation]} == members
    # The load balancer admits the same members.
    [lb] = [s["spec"] for s in kube("Service") if s["spec"].get("type") == "LoadBalancer"]
    assert set(lb["loadBalancerSourceRanges"]) == members


# --- the walk-through -------------------------------------------------------------------------


def test_deploying_doc_links_resolve() -> None:
    doc = REPO / "docs" / "deploying.md"
    text = doc.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link and not link.startswith("mailto:")]
    assert len(local) >= 5
    broken = [link for link in local if not (doc.parent / link).exists()]
    assert not broken, f"docs/deploying.md links to missing files: {broken}"
    for required in ("roster.md", "oprf-ceremony.md", "../deploy/README.md"):
        assert required in local
