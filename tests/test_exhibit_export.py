"""Exhibit packages between three real node processes, exported and verified.

IL, MN and CA run `compact serve` (syncing every two seconds, so each witnesses the
others' logs). IL receives MN's incident in a bundle, makes a matter with an exhibit of
its own incident and one of MN's files, and exports it; `compact verify` and the
script inside the package check the folder and the zip. Tampered copies are then
checked by the same verifier. Loopback only, ports from the OS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from node import models as m
from tests.doc_verifier import verify_folder
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    NodeProcess,
    db_rows,
    form_compact,
    run_compact,
    start_node,
    user_env,
)
from tests.test_bundle_transfer import wait_for

pytestmark = pytest.mark.timeout(420)

FILES = {
    "IL": {"stop.jpg": os.urandom(300_000), "report.txt": b"officer's report\n"},
    "MN": {"clip.mp4": os.urandom(2_000_000), "notes.txt": b"witness notes\n"},
}
MEDIA = {".jpg": "image/jpeg", ".txt": "text/plain", ".mp4": "video/mp4"}


class Exported:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.configs = form_compact(root / "nodes", ("CA", "IL", "MN"), sync_interval_seconds=2)
        self.il, self.mn = self.configs["IL"], self.configs["MN"]
        self.gids = {s: self._ingest(s) for s in ("IL", "MN")}
        (pin,) = db_rows(
            self.il, select(m.RosterVersion.payload_sha256).where(m.RosterVersion.version == 1)
        )
        self.pin = str(pin[0])
        self.procs: list[NodeProcess] = []
        try:
            self.procs = [start_node(self.configs[s]) for s in ("CA", "IL", "MN")]
            self._receive_from_mn()
            self._grow_mn_log()
            self._matter()
            self.out = root / "DOE-2026-exhibits"
            self.export = self.il_json(
                "exhibit", "export", "DOE-V-NOEM", str(self.out), "--zip", "--wait", "180",
                timeout=400, env=user_env(self.il, "atty.chen", "litigator"),
            )  # fmt: skip
        finally:
            self.stop()

    def _ingest(self, state: str) -> str:
        folder = self.root / f"in-{state}"
        (folder / "media").mkdir(parents=True)
        evidence = []
        for name, data in FILES[state].items():
            (folder / "media" / name).write_bytes(data)
            evidence.append({"path": f"media/{name}", "media_type": MEDIA[Path(name).suffix]})
        location = {"county": "Hennepin" if state == "MN" else "Cook", "state": state,
                    "kind": "street"}  # fmt: skip
        path = write_jsonl(
            folder,
            [record(f"{state}-1", sharing="compact", evidence=evidence, location=location)],
        )
        run_compact("ingest", str(path), "--data-dir", str(self.configs[state].data_dir))
        (gid,) = db_rows(self.configs[state], select(m.Incident.global_id))
        return str(gid[0])

    def il_json(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None) -> Any:
        result = run_compact(
            *args, "--json", "--data-dir", str(self.il.data_dir), timeout=timeout, env=env
        )
        return json.loads(result.stdout)

    def _receive_from_mn(self) -> None:
        gid = self.gids["MN"]
        request: dict[str, Any] = {}

        def requested() -> bool:
            """MN's serve loop publishes the incident within seconds; until IL's replica
            holds its index entry the request is refused."""
            result = run_compact(
                "bundle", "request", "--state", "MN", "--incident", gid, "--purpose",
                "Doe v. Noem", "--json", "--data-dir", str(self.il.data_dir), ok=False,
                env=user_env(self.il, "analyst.ortiz", "analyst"),
            )  # fmt: skip
            if result.returncode == 0:
                request.update(json.loads(result.stdout))
            return result.returncode == 0

        wait_for("IL's request to be accepted", requested, timeout=120)

        def delivered() -> bool:
            rows = self.il_json("bundle", "refresh")
            return any(
                r["request_id"] == request["request_id"] and r["state"] == "delivered" for r in rows
            )

        wait_for("MN's bundle to reach IL", delivered, timeout=180)

    def _grow_mn_log(self) -> None:
        """MN's log grows past the checkpoint its bundle was sealed under (an audited read
        is entered in it), and IL holds that larger checkpoint with two witnesses' lines
        (MN's own signature, CA's and IL's cosignatures): the package then proves MN's log
        consistent from the bundle's checkpoint to the witnessed one."""
        size = db_rows(self.mn, select(m.LogEntry.index).order_by(m.LogEntry.index.desc()))[0]
        run_compact("incidents", "show", self.gids["MN"], "--data-dir", str(self.mn.data_dir))

        def witnessed() -> bool:
            notes = db_rows(
                self.il,
                select(m.ReplicaCheckpoint.note).where(
                    m.ReplicaCheckpoint.state == "MN", m.ReplicaCheckpoint.size > size[0] + 1
                ),
            )
            return any(str(n).count("\n\u2014 ") >= 3 for (n,) in notes)

        wait_for("IL to hold a larger, witnessed checkpoint of MN's log", witnessed, 120)

    def _matter(self) -> None:
        self.il_json("matter", "create", "Doe v. Noem", "--states", "MN,CA",
                     "--bates-prefix", "IL-MN")  # fmt: skip
        self.il_json("matter", "add-exhibit", "DOE-V-NOEM", "--incident", self.gids["IL"],
                     "--description", "IL stop: photograph and report")  # fmt: skip
        clip = _sha256(FILES["MN"]["clip.mp4"])
        self.il_json("matter", "add-exhibit", "DOE-V-NOEM", "--incident", self.gids["MN"],
                     "--evidence", clip, "--description", "MN bystander video")  # fmt: skip

    def stop(self) -> None:
        while self.procs:
            assert self.procs.pop().stop() == 0


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return Exported(tmp_path_factory.mktemp("exhibits"))


def verify(package: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_compact("verify", str(package), *args, ok=False)


def script(package: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The verifier inside the package, run alone: isolated mode, no site packages (so the
    pure-Python Ed25519 is used) and no project on the path."""
    return subprocess.run(
        [sys.executable, "-I", "-S", str(package / "verify_package.py"), str(package), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=package.parent,
    )


def test_the_export_holds_every_exhibit_and_is_a_custody_event(exported: Exported) -> None:
    report = exported.export
    assert (report["exhibits"], report["files"], report["resumed"]) == (2, 3, False)
    out = exported.out
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert "package.dsse.json" in names and "verify_package.py" in names
    assert "exhibits/IL-MN-000001/IL-MN-000001.001.jpg" in names
    assert "exhibits/IL-MN-000002/IL-MN-000002.001.mp4" in names
    assert "exhibits/IL-MN-000002/origin-manifest.dsse.json" in names
    assert (out / "exhibits/IL-MN-000002/IL-MN-000002.001.mp4").read_bytes() == FILES["MN"][
        "clip.mp4"
    ]
    documents = ["index/exhibits.csv", "index/exhibits.pdf", "loadfiles/exhibits.dat",
                 "loadfiles/exhibits.opt", "certification.txt", "certification.pdf"]  # fmt: skip
    for doc in [*documents, "VERIFY.txt"]:
        assert doc in names
    assert (out / "verify_package.py").read_bytes() == (
        Path(__file__).resolve().parent.parent / "federation" / "verify_package.py"
    ).read_bytes()
    assert not out.with_name(out.name + ".partial").exists()
    kinds = db_rows(
        exported.il,
        select(m.CustodyEvent.kind, m.CustodyEvent.actor, m.CustodyEvent.log_index).where(
            m.CustodyEvent.kind == "exported"
        ),
    )
    assert len(kinds) == 3 and all(a == "atty.chen" and i is not None for _, a, i in kinds)
    (row,) = db_rows(exported.il, select(m.ExhibitExport.state, m.ExhibitExport.package_id))
    assert row == ("written", report["package_id"])
    audit = db_rows(exported.il, select(m.AuditEvent.actor).where(
        m.AuditEvent.action == "exhibit.export"))  # fmt: skip
    assert audit == [("atty.chen",)]


def test_the_package_verifies_as_a_folder_and_as_a_zip(exported: Exported) -> None:
    out, pin = exported.out, exported.pin
    unanchored = verify(out)
    assert unanchored.returncode == 3, unanchored.stdout + unanchored.stderr
    assert "IL-MN-000001: VERIFIED" in unanchored.stdout and pin in unanchored.stdout
    anchored = verify(out, "--roster-pin", pin, "--json")
    assert anchored.returncode == 0, anchored.stdout
    doc = json.loads(anchored.stdout)
    assert (
        doc["verified"] and doc["anchored"] and doc["package_id"] == exported.export["package_id"]
    )
    assert [e["verdict"] for e in doc["exhibits"]] == ["VERIFIED", "VERIFIED"]
    zipped = verify(out.with_name(out.name + ".zip"), "--roster-pin", pin)
    assert zipped.returncode == 0, zipped.stdout
    alone = script(out, "--roster-pin", pin)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "Ed25519: pure-python" in alone.stdout


def test_a_wrong_pin_fails_the_package(exported: Exported) -> None:
    wrong = verify(exported.out, "--roster-pin", "0" * 64)
    assert wrong.returncode == 2 and "--roster-pin" in wrong.stdout


def test_more_witnesses_than_the_compact_has_fail_each_entry(exported: Exported) -> None:
    result = verify(exported.out, "--roster-pin", exported.pin, "--min-witnesses", "3")
    assert result.returncode == 1
    assert "3 required" in result.stdout and "IL-MN-000002: FAILED" in result.stdout


def _copy(exported: Exported, tmp_path: Path) -> Path:
    copy = tmp_path / exported.out.name
    shutil.copytree(exported.out, copy)
    return copy


def test_a_flipped_byte_in_an_evidence_file_fails_its_exhibit(
    exported: Exported, tmp_path: Path
) -> None:
    copy = _copy(exported, tmp_path)
    target = copy / "exhibits/IL-MN-000002/IL-MN-000002.001.mp4"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    result = verify(copy, "--roster-pin", exported.pin)
    assert result.returncode == 1
    assert "IL-MN-000002: FAILED" in result.stdout and "IL-MN-000001: VERIFIED" in result.stdout
    assert "IL-MN-000002.001.mp4: SHA-256 does not match the package manifest" in result.stdout


def test_an_added_and_a_removed_file_are_named(exported: Exported, tmp_path: Path) -> None:
    copy = _copy(exported, tmp_path)
    (copy / "exhibits/IL-MN-000001/extra.txt").write_text("planted")
    (copy / "certification.txt").unlink()
    result = verify(copy, "--roster-pin", exported.pin)
    assert result.returncode == 2
    assert "exhibits/IL-MN-000001/extra.txt: file added" in result.stdout
    assert "certification.txt: file removed" in result.stdout


def test_a_flipped_byte_in_the_package_signature_fails_the_package(
    exported: Exported, tmp_path: Path
) -> None:
    copy = _copy(exported, tmp_path)
    target = copy / "package.dsse.json"
    doc = json.loads(target.read_bytes())
    sig = bytearray(doc["signatures"][0]["sig"].encode())
    sig[10] = ord("A") if sig[10] != ord("A") else ord("B")
    doc["signatures"][0]["sig"] = sig.decode()
    target.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    result = verify(copy, "--roster-pin", exported.pin)
    assert result.returncode == 2
    assert "package.dsse.json: signature does not verify with IL's key" in result.stdout


def test_a_verifier_written_from_the_format_document_alone_agrees(
    exported: Exported, tmp_path: Path
) -> None:
    """tests/doc_verifier.py was written from docs/exhibit-package.md only (no code of
    ours read): it verifies the package and fails the same tampered copies."""
    assert verify_folder(str(exported.out), roster_pin=exported.pin) == (0, [])
    assert verify_folder(str(exported.out)) == (3, [])
    status, failures = verify_folder(str(exported.out), roster_pin=exported.pin, min_witnesses=3)
    assert status == 1 and failures
    copy = _copy(exported, tmp_path)
    target = copy / "exhibits/IL-MN-000001/IL-MN-000001.002.txt"
    target.write_bytes(target.read_bytes() + b"!")
    ours = verify(copy, "--roster-pin", exported.pin)
    status, failures = verify_folder(str(copy), roster_pin=exported.pin)
    assert status == ours.returncode == 1
    assert any("IL-MN-000001.002.txt" in f for f in failures)


FLIPPED = [
    ("logs/IL/", ".checkpoint"),
    ("logs/MN/", "consistency.json"),
    ("exhibits/IL-MN-000002/", "custody.json"),
    ("exhibits/IL-MN-000002/", "origin-manifest.dsse.json"),
    ("roster/", "v0001.dsse.json"),
    ("matter/", ".dsse.json"),
    ("index/", "exhibits.pdf"),
    ("", "verify_package.py"),
]


@pytest.mark.parametrize(("folder", "suffix"), FLIPPED)
def test_a_flipped_byte_in_any_signed_or_proving_file_is_named(
    exported: Exported, tmp_path: Path, folder: str, suffix: str
) -> None:
    """Every file is bound by the signed manifest: a change anywhere fails, naming the
    file (and the exhibit, for a file of one)."""
    from federation import verify_package

    copy = _copy(exported, tmp_path)
    found = [p for p in sorted((copy / folder).iterdir()) if p.name.endswith(suffix)]
    assert found, f"the package holds no {folder}*{suffix}"
    target = found[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 3] ^= 0x20
    target.write_bytes(bytes(data))
    report = verify_package.verify(str(copy), roster_pin=exported.pin)
    name = str(target.relative_to(copy))
    failures = report.package + [f for fs in report.exhibits.values() for f in fs]
    assert any(f.startswith(f"{name}: ") for f in failures), failures
    expected = 1 if folder.startswith("exhibits/") else 2
    assert report.exit_code() == expected


# --- re-signed packages: what the exporter's own key cannot make pass ------------------------


def _resign(exported: Exported, copy: Path) -> None:
    """Bring the copy's inventory up to date with its files and sign the manifest again
    with IL's key: only the checks beyond the exporter's signature can then fail."""
    import hashlib

    from crypto import signing
    from crypto.dsse import Envelope, sign_envelope
    from federation.encoding import canonical_json
    from node.exhibit_export import PACKAGE_TYPE
    from node.setup import Secret, unlock

    target = copy / "package.dsse.json"
    manifest = json.loads(Envelope.from_json(target.read_bytes()).payload)
    for entry in manifest["files"]:
        data = (copy / entry["path"]).read_bytes()
        entry["sha256"], entry["size"] = hashlib.sha256(data).hexdigest(), len(data)
    key_file = exported.il.data_dir.parent / "il.key"
    keys = unlock(exported.il, Secret(key_file_secret=key_file.read_bytes()))
    envelope = sign_envelope(
        PACKAGE_TYPE, canonical_json(manifest), [signing.SigningKey(keys.signing_key)]
    )
    target.write_bytes(envelope.to_json())


def test_a_custody_record_signed_by_a_key_not_in_the_roster_fails_its_exhibit(
    exported: Exported, tmp_path: Path
) -> None:
    import base64

    from crypto import signing
    from crypto.dsse import Envelope, sign_envelope
    from federation import verify_package

    copy = _copy(exported, tmp_path)
    path = copy / "exhibits/IL-MN-000002/custody.json"
    entries = json.loads(path.read_bytes())
    [first] = [e for e in entries if e["state"] == "MN"][:1]
    original = Envelope.from_json(base64.b64decode(first["envelope"]))
    forged = sign_envelope(original.payload_type, original.payload, [signing.SigningKey.generate()])
    first["envelope"] = base64.b64encode(forged.to_json()).decode()
    path.write_bytes(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode())
    _resign(exported, copy)
    report = verify_package.verify(str(copy), roster_pin=exported.pin)
    assert report.package == [] and report.exhibits["IL-MN-000001"] == []
    assert any(
        "signature does not verify with MN's key" in f for f in report.exhibits["IL-MN-000002"]
    )
    assert report.exit_code() == 1


def test_a_checkpoint_with_too_few_cosignatures_fails_the_entries_under_it(
    exported: Exported, tmp_path: Path
) -> None:
    from federation import verify_package

    copy = _copy(exported, tmp_path)
    [checkpoint] = list((copy / "logs/IL").glob("*.checkpoint"))
    text, _, lines = checkpoint.read_text(encoding="utf-8").rpartition("\n\n")
    kept = [ln for ln in lines.splitlines() if "compact-witness/" not in ln]
    witnesses = [ln for ln in lines.splitlines() if "compact-witness/" in ln]
    assert len(witnesses) >= 2
    checkpoint.write_text(text + "\n\n" + "\n".join([*kept, witnesses[0]]) + "\n", "utf-8")
    _resign(exported, copy)
    report = verify_package.verify(str(copy), roster_pin=exported.pin)
    assert report.package == []
    for number in ("IL-MN-000001", "IL-MN-000002"):  # both have IL custody records
        assert any("only, 2 required" in f for f in report.exhibits[number]), report.exhibits
    assert (
        verify_package.verify(str(copy), roster_pin=exported.pin, min_witnesses=1).exit_code() == 0
    )
