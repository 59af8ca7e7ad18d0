"""Fuzzing the two readers of files from outside (issue 9): the import parser
(node/importformat.py, node/importfile.py) and the exhibit package reader
(federation/verify_package.py).

The import parser never raises on a line: it returns the record or its `LineError`s, and a
file as a whole fails only with `ImportFileError`. The package reader fails only with
`PackageError` (the container) and records every other failure in its report: `verify`
never raises. Inputs are raw bytes and mutations of valid objects (tests/fuzz_mutations.py):
a valid import record, a small valid exhibit package (a folder and its canonical zip), and
that package rebuilt with one of its signed documents mutated and signed again by the key
that signs it (what a malicious exporter could hand a court).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crypto import merkle, signing, x25519
from crypto.checkpoint import Checkpoint, add_cosignature, sign_checkpoint
from crypto.dsse import sign_envelope
from federation import verify_package as vp
from federation.bundle import CustodyRecord
from federation.encoding import canonical_json
from federation.matter import ExhibitEvidence, Matter, MatterExhibit
from federation.naming import log_origin, log_signer, witness_signer
from federation.roster import Member, Roster
from node.config import LimitSettings
from node.importfile import ImportFileError, read_csv, read_import_file, read_jsonl
from node.importformat import decode_line, parse_record
from node.package_zip import write_canonical_zip
from node.records import IncidentInput, LineError
from tests.fuzz_mutations import (
    ODD_STRINGS,
    json_paths,
    json_values,
    mutated_bytes,
    mutated_json,
    mutated_text,
)
from tests.fuzzing import Trial, fuzz_settings, trial
from tests.helpers import record

# --- 1. the import parser ------------------------------------------------------------------

LIMITS: Final = LimitSettings()
# Small limits, so that the limit checks are reached by small inputs too.
SMALL: Final = replace(
    LimitSettings(),
    max_line_bytes=2048,
    max_text_chars=40,
    max_narrative_chars=200,
    max_list_items=3,
    max_import_lines=6,
)
RECORD: Final = record(
    "IL-HL-2025-000123",
    reported_at="2025-10-04T09:00:00Z",
    sharing="compact",
    evidence=[
        {
            "path": "media/clip1.mp4",
            "media_type": "video/mp4",
            "captured_at": "2025-10-04T07:16:02-05:00",
            "captured_by": "bystander",
            "description": "phone video",
        }
    ],
)
RECORD["location"].update({"lat": 41.84, "lon": -87.72, "address": "2700 S Pulaski Rd"})
EXAMPLES: Final = Path(__file__).resolve().parent.parent / "examples" / "incidents.jsonl"
EXAMPLE_LINES: Final = tuple(EXAMPLES.read_bytes().splitlines())
# Personal data of the records: no error may repeat it.
SECRETS: Final = ("secret narrative text", "Jane Roe", "+1 312 555 0100", "Smith, John Q.")
# The federation's media type rule (federation.bundle, federation.index_entry): what an
# imported record's evidence is later published and sent under.
MEDIA_TYPE: Final = re.compile(r"[a-z0-9][a-z0-9!#$&^.+_-]{0,63}/[a-z0-9][a-z0-9!#$&^.+_-]{0,126}")


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _check_errors(errors: list[LineError], line: int) -> None:
    assert errors, "an empty error list"
    for e in errors:
        assert isinstance(e, LineError)
        assert e.line_number == line and e.reason
        for secret in SECRETS:
            assert secret not in e.reason and secret not in e.field, "an error shows a value"


def _check_record(result: IncidentInput) -> None:
    """What an accepted record promises the node that stores, publishes and sends it."""
    assert result.occurred_at.utc.tzinfo is not None
    for item in result.evidence:
        assert MEDIA_TYPE.fullmatch(item.media_type), "a media type the federation refuses"
    assert len(result.canonical_hash) == 64


def _parse(t: Trial, line_number: int, value: Any, limits: LimitSettings) -> None:
    result = parse_record(line_number, value, node_state="IL", limits=limits)
    if isinstance(result, list):
        _check_errors(result, line_number)
        t.outcome("LineError")
    else:
        assert isinstance(result, IncidentInput)
        _check_record(result)
        t.outcome("accepted")


line_inputs = st.one_of(
    st.binary(max_size=300),
    mutated_bytes(_line(RECORD)),
    st.sampled_from(EXAMPLE_LINES).flatmap(mutated_bytes),
)


@pytest.mark.fuzz
@fuzz_settings()
@given(line_inputs, st.sampled_from((LIMITS, SMALL)))
@example(b"1" * 5000, LIMITS)  # a number past Python's 4,300-digit limit: ValueError escaped
def test_fuzz_decode_line(raw: bytes, limits: LimitSettings) -> None:
    with trial("node.importformat.decode_line") as t:
        value = decode_line(9, raw, limits)
        if isinstance(value, LineError):
            _check_errors([value], 9)
            t.outcome("LineError")
        else:
            t.outcome("decoded")
    if not isinstance(value, LineError):
        with trial("node.importformat.parse_record") as t:
            _parse(t, 9, value, limits)


record_values = st.one_of(
    json_values(),
    mutated_json(RECORD),
    st.sampled_from(EXAMPLE_LINES).map(json.loads).flatmap(mutated_json),
)


@pytest.mark.fuzz
@fuzz_settings()
@given(record_values, st.sampled_from((LIMITS, SMALL)))
@example(record(narrative="\ud800"), LIMITS)  # canonical_hash: UnicodeEncodeError escaped
@example(record(occurred_at="0001-01-01T00:00:00+14:00"), LIMITS)  # OverflowError escaped
@example(record(occurred_at="9999-12-31T23:59:59-14:00"), LIMITS)  # OverflowError escaped
@example(record(evidence=[{"path": "a.mp4", "media_type": "vid\u00e9o/mp4"}]), LIMITS)
@example(record(evidence=[{"path": "a.mp4", "media_type": "video/mp4\n"}]), LIMITS)
def test_fuzz_parse_record(value: Any, limits: LimitSettings) -> None:
    with trial("node.importformat.parse_record") as t:
        _parse(t, 3, value, limits)


def _jsonl_file() -> bytes:
    return b"\n".join((_line(RECORD), *EXAMPLE_LINES[:3], b"", b"[1, 2]")) + b"\n"


def _csv_file() -> bytes:
    header = (
        "external_id,occurred_at,status,source,conduct,narrative,location.county,location.state,"
        "location.kind,location.lat,location.lon,agents.0.name,agents.0.masked,agents.0.role,"
        "people.0.role,people.0.name,evidence.0.path,evidence.0.media_type"
    )
    rows = [
        'IL-1,2025-10-04T07:15:00-05:00,substantiated,hotline,"masked_agent;warrantless_arrest",'
        '"secret narrative text, with a comma",Cook,IL,school,41.84,-87.72,"Smith, John Q.",yes,'
        "primary,victim,Jane Roe,media/clip1.mp4,video/mp4",
        "IL-2,2025-10-05T07:15:00Z,under_review,hotline,masked_agent,,Cook,IL,street,,,,,,,,,",
    ]
    return ("\r\n".join([header, *rows]) + "\r\n").encode()


JSONL_FILE: Final = _jsonl_file()
CSV_FILE: Final = _csv_file()


def _drain(t: Trial, reader: Callable[[], Iterator[Any]], limits: LimitSettings) -> None:
    """Read every line of a file (each through parse_record): ImportFileError only."""
    refused: ImportFileError | None = None
    try:
        for item in reader():
            if isinstance(item, LineError):
                _check_errors([item], item.line_number)
                continue
            number, value = item
            result = parse_record(number, value, node_state="IL", limits=limits)
            if isinstance(result, list):
                _check_errors(result, number)
            else:
                _check_record(result)
    except ImportFileError as e:
        refused = e
    if refused is None:
        t.outcome("read")
        return
    t.outcome("ImportFileError")
    for secret in SECRETS:
        assert secret not in str(refused), "an error shows a value"


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(st.binary(max_size=300), mutated_bytes(JSONL_FILE)),
    st.sampled_from((LIMITS, SMALL)),
)
def test_fuzz_read_jsonl(data: bytes, limits: LimitSettings) -> None:
    with trial("node.importfile.read_jsonl") as t:
        _drain(t, lambda: read_jsonl(io.BytesIO(data), limits), limits)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(st.binary(max_size=300), mutated_bytes(CSV_FILE)),
    st.sampled_from((LIMITS, SMALL)),
)
@example(b'"a"b\n', LIMITS)  # a malformed header: csv.Error escaped
@example(b'a,"b\n', LIMITS)
@example(CSV_FILE.split(b"\r\n", 1)[1], LIMITS)  # no header row: the error showed a record
def test_fuzz_read_csv(data: bytes, limits: LimitSettings) -> None:
    with trial("node.importfile.read_csv") as t:
        _drain(t, lambda: read_csv(io.BytesIO(data), limits), limits)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="compact-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.fuzz
@fuzz_settings(scale=0.5)
@given(
    st.one_of(
        st.tuples(mutated_bytes(JSONL_FILE), st.sampled_from(("in.jsonl", "IN.JSON", "x"))),
        st.tuples(mutated_bytes(CSV_FILE), st.sampled_from(("in.csv", "IN.CSV"))),
    ),
    st.sampled_from((LIMITS, SMALL)),
)
def test_fuzz_read_import_file(
    scratch: Path, case: tuple[bytes, str], limits: LimitSettings
) -> None:
    data, name = case
    path = scratch / name
    path.write_bytes(data)
    with trial("node.importfile.read_import_file") as t:
        _drain(t, lambda: read_import_file(path, limits), limits)


# --- 2. the exhibit package reader: names, inflate, the zip --------------------------------

NAMES: Final = (
    "DOE-2026-exhibits/package.dsse.json",
    "DOE-2026-exhibits/exhibits/IL-MN-000001/IL-MN-000001.001.txt",
    "DOE-2026-exhibits/exhibits/Ünïcødé répertoire/résumé.txt",
)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(ODD_STRINGS),
        st.sampled_from(NAMES).flatmap(mutated_text),
    )
)
def test_fuzz_name_problem(name: str) -> None:
    with trial("federation.verify_package.name_problem") as t:
        problem = vp.name_problem(name)
        t.outcome("refused" if problem else "accepted")
        if problem is None:
            name.encode("utf-8")  # no lone surrogate (UnicodeEncodeError)
            assert not name.startswith("/") and not name.endswith("/")
            assert all(s not in ("", ".", "..") for s in name.split("/"))
            assert "\\" not in name
            assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)
            assert unicodedata.is_normalized("NFC", name)


TEXT: Final = ("".join(f'{{"n": {i}, "é": "ünïcødé"}}\n' for i in range(60))).encode()


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


DEFLATED: Final = _deflate(TEXT)


@pytest.mark.fuzz
@fuzz_settings()
@given(
    st.one_of(st.binary(max_size=200), mutated_bytes(DEFLATED)),
    st.sampled_from((len(TEXT), len(TEXT) - 1, len(TEXT) + 1, 0, 10**9)),
    st.sampled_from((1 << 30, len(TEXT), 10)),
    st.sampled_from((zlib.crc32(TEXT), 0)),
    st.integers(1, 64),
)
def test_fuzz_inflate(compressed: bytes, size: int, cap: int, crc: int, piece: int) -> None:
    pieces = [compressed[i : i + piece] for i in range(0, len(compressed), piece)]
    with trial("federation.verify_package.inflate") as t:
        try:
            out = b"".join(vp.inflate(iter(pieces), size, cap, crc, "top/a.json"))
        except vp.PackageError:
            t.outcome("PackageError")
            return
        t.outcome("accepted")
        assert len(out) <= min(cap, size + 1)
        if cap > size:  # checked in full
            assert (len(out), zlib.crc32(out)) == (size, crc)
            if compressed != DEFLATED:
                assert out != TEXT or crc == zlib.crc32(TEXT)


# --- 3. a small valid exhibit package, built from its parts --------------------------------

NOW: Final = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)
STATES: Final = ("CA", "IL", "MN")
KEYS: Final = {s: signing.SigningKey.from_seed(bytes([i + 1]) * 32) for i, s in enumerate(STATES)}
ENC: Final = {s: x25519.PrivateKey.from_bytes(bytes([i + 50]) * 32) for i, s in enumerate(STATES)}
TOP: Final = "DOE-2026-exhibits"
MATTER_ID: Final = "IL:DOE-V-NOEM"
PACKAGE_ID: Final = hashlib.sha256(b"the package").hexdigest()
IL_GID: Final = "IL-44717613-8a84-4971-a218-2ebd1ba3d81e"
MN_GID: Final = "MN-5d0c8a4e-1f3b-4c2d-9e8f-0a1b2c3d4e5f"
BUNDLE_ID: Final = hashlib.sha256(b"MN's bundle").hexdigest()
EVIDENCE: Final = {"IL-MN-000001": b"officer's report\n", "IL-MN-000002": b"witness notes\n"}
SHA: Final = {n: hashlib.sha256(d).hexdigest() for n, d in EVIDENCE.items()}
ORIGIN: Final = {"IL-MN-000001": ("IL", IL_GID), "IL-MN-000002": ("MN", MN_GID)}
ENVELOPE_TYPES: Final = {
    "roster": vp.ROSTER_TYPE,
    "matter": vp.MATTER_TYPE,
    "custody": vp.CUSTODY_TYPE,
    "origin_manifest": vp.BUNDLE_MANIFEST_TYPE,
    "manifest": vp.PACKAGE_TYPE,
}


def _member(state: str) -> Member:
    pin = hashlib.sha256(f"cert of {state}".encode()).hexdigest()
    return Member(
        state,
        f"{state.lower()}.compact.test:7401",
        pin,
        KEYS[state].public_key,
        ENC[state].public_key,
    )


ROSTER: Final = Roster(
    version=1,
    expires=datetime(2027, 11, 21, tzinfo=UTC),
    threshold=2,
    members=tuple(_member(s) for s in STATES),
)
PIN: Final = hashlib.sha256(ROSTER.payload()).hexdigest()
MATTER: Final = Matter(
    matter_id=MATTER_ID,
    owner="IL",
    revision=1,
    title="Doe v. Noem",
    states=STATES,
    bates_prefix="IL-MN",
    legal_hold=True,
    exhibits=(
        MatterExhibit(
            "IL-MN-000001", IL_GID, ExhibitEvidence(0, SHA["IL-MN-000001"]), "Officer's report", NOW
        ),
        MatterExhibit(
            "IL-MN-000002", MN_GID, ExhibitEvidence(0, SHA["IL-MN-000002"]), "Witness notes", NOW
        ),
    ),
    updated_at=NOW,
)


def _custody(state: str, number: str, event_id: int, kind: str, detail: Any) -> Any:
    record = CustodyRecord(
        state=state,
        global_id=ORIGIN[number][1],
        evidence_sha256=SHA[number],
        evidence_position=0,
        event_id=event_id,
        kind=kind,
        at=NOW,
        actor="atty.chen",
        detail=detail,
    )
    return json.loads(record.payload())


def _exported(number: str) -> dict[str, str]:
    return {
        "matter": MATTER_ID,
        "package_id": PACKAGE_ID,
        "exhibit": number,
        "doc_id": f"{number}.001",
    }


# Each log: a first entry that is not ours, then custody records (payloads), by exhibit.
CUSTODY: Final[dict[str, list[Any]]] = {
    "IL": [
        _custody("IL", "IL-MN-000001", 1, "collected", {"source": "hotline"}),
        _custody("IL", "IL-MN-000001", 2, "exported", _exported("IL-MN-000001")),
        _custody("IL", "IL-MN-000002", 3, "received", {"bundle_id": BUNDLE_ID}),
        _custody("IL", "IL-MN-000002", 4, "exported", _exported("IL-MN-000002")),
    ],
    "MN": [_custody("MN", "IL-MN-000002", 1, "collected", {"source": "hotline"})],
}
# Which log entries (state, index in CUSTODY[state]) each exhibit's custody file holds.
ENTRIES: Final = {
    "IL-MN-000001": [("IL", 0), ("IL", 1)],
    "IL-MN-000002": [("MN", 0), ("IL", 2), ("IL", 3)],
}
WITNESSES: Final = {"IL": ("CA", "MN"), "MN": ("CA", "IL")}
ORIGIN_MANIFEST: Final = {
    "format": "compact-bundle-manifest-v1",
    "bundle_id": BUNDLE_ID,
    "holder": "MN",
    "requester": "IL",
    "global_id": MN_GID,
    "evidence": [
        {"sha256": SHA["IL-MN-000002"], "position": 0, "size": len(EVIDENCE["IL-MN-000002"])}
    ],
}

DESCRIPTIONS: Final = {e.number: e.description for e in MATTER.exhibits}
Mutate = Callable[[str, Any], Any]


def _unchanged(stage: str, value: Any) -> Any:
    return value


def _envelope(stage: str, payload: bytes, *states: str) -> bytes:
    keys = [KEYS[s] for s in states]
    return sign_envelope(ENVELOPE_TYPES[stage], payload, keys).to_json()


def _note(state: str, leaves: list[bytes], size: int) -> str:
    checkpoint = Checkpoint(log_origin(state), size, merkle.root_hash(leaves[:size]))
    note = sign_checkpoint(checkpoint, log_signer(state, KEYS[state]))
    for witness in WITNESSES[state]:
        line = witness_signer(witness, KEYS[witness]).cosign(checkpoint, timestamp=1_700_000_000)
        note = add_cosignature(note, line)
    return note


def build_package(root: Path, mutate: Mutate = _unchanged) -> Path:
    """The package folder `root/TOP`, every document signed by the key that signs it, each
    part passed through `mutate(stage, value)` before it is encoded and signed."""
    folder = root / TOP
    files: dict[str, bytes] = {}
    roster = mutate("roster", json.loads(ROSTER.payload()))
    files["roster/1.dsse.json"] = _envelope("roster", canonical_json(roster), "IL", "MN")
    matter = mutate("matter", json.loads(MATTER.payload()))
    files["matter/IL-DOE-V-NOEM.dsse.json"] = _envelope("matter", canonical_json(matter), "IL")

    logs: list[dict[str, Any]] = []
    entries: dict[tuple[str, int], dict[str, Any]] = {}
    for state in ("IL", "MN"):
        records = mutate(f"custody:{state}", CUSTODY[state])
        if not isinstance(records, list):  # a mutation may replace the list itself
            records = [records]
        envelopes = [_envelope("custody", canonical_json(r), state) for r in records]
        leaves = [f"{state}'s first entry".encode(), *envelopes]
        hashes = [merkle.leaf_hash(x) for x in leaves]
        size = len(leaves)
        checkpoints: list[dict[str, Any]] = []
        for n in sorted({max(1, size - 2), size}):
            path = f"logs/{state}/checkpoint-{n}.txt"
            files[path] = mutate(f"checkpoint:{state}", _note(state, hashes, n)).encode(
                "utf-8", "surrogateescape"
            )
            checkpoints.append({"size": n, "path": path})
        consistency = None
        if len(checkpoints) == 2:
            old = checkpoints[0]["size"]
            proof = [h.hex() for h in merkle.consistency_proof(hashes, old)]
            items = mutate("consistency", [{"from": old, "to": size, "proof": proof}])
            consistency = f"logs/{state}/consistency.json"
            files[consistency] = canonical_json(items)
        logs.append({"state": state, "checkpoints": checkpoints, "consistency": consistency})
        for i, envelope in enumerate(envelopes):
            entries[(state, i)] = {
                "state": state,
                "checkpoint_size": size,
                "log_index": i + 1,
                "envelope": base64.b64encode(envelope).decode("ascii"),
                "proof": [h.hex() for h in merkle.inclusion_proof(hashes, i + 1)],
            }

    exhibits = []
    for number, data in EVIDENCE.items():
        base = f"exhibits/{number}"
        doc_path = f"{base}/{number}.001.txt"
        files[doc_path] = data
        custody = [entries[key] for key in ENTRIES[number] if key in entries]
        files[f"{base}/custody.json"] = canonical_json(mutate(f"entries:{number}", custody))
        origin, gid = ORIGIN[number]
        origin_manifest = None
        if origin != "IL":
            origin_manifest = f"{base}/origin-manifest.dsse.json"
            doc = mutate("origin_manifest", ORIGIN_MANIFEST)
            files[origin_manifest] = _envelope("origin_manifest", canonical_json(doc), origin)
        exhibits.append(
            {
                "number": number,
                "global_id": gid,
                "origin": origin,
                "description": DESCRIPTIONS[number],
                "origin_manifest": origin_manifest,
                "custody": f"{base}/custody.json",
                "files": [
                    {
                        "doc_id": f"{number}.001",
                        "path": doc_path,
                        "position": 0,
                        "sha256": SHA[number],
                        "size": len(data),
                        "media_type": "text/plain",
                        "file_name": "notes.txt",
                    }
                ],
            }
        )
    manifest = {
        "format": vp.PACKAGE_FORMAT,
        "package_id": PACKAGE_ID,
        "name": TOP,
        "exporter": "IL",
        "exported_at": "2026-11-21T12:00:05Z",
        "exported_by": "atty.chen",
        "min_witnesses": 2,
        "matter": {"id": MATTER_ID, "revision": 1, "path": "matter/IL-DOE-V-NOEM.dsse.json"},
        "roster": {
            "versions": ["roster/1.dsse.json"],
            "in_force": 1,
            "v1_sha256": hashlib.sha256(canonical_json(roster)).hexdigest(),
        },
        "logs": logs,
        "exhibits": exhibits,
        "files": [
            {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
            for p, d in sorted(files.items())
        ],
    }
    manifest = mutate("manifest", manifest)
    files[vp.MANIFEST_NAME] = _envelope("manifest", canonical_json(manifest), "IL")
    for path, data in files.items():
        target = folder.joinpath(*path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def _is_evidence(rel: str) -> bool:
    return rel.endswith(".txt") and rel.startswith("exhibits/")


@dataclass(frozen=True)
class Package:
    folder: Path
    zip: Path
    files: dict[str, bytes]  # relative path -> content


@pytest.fixture(scope="module")
def package(scratch: Path) -> Package:
    """The valid package, once per module: as a folder and as its canonical zip."""
    folder = build_package(scratch / "valid")
    zip_path = scratch / "valid.zip"
    write_canonical_zip(folder, zip_path, store=_is_evidence)
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    for path in (folder, zip_path):
        report = vp.verify(str(path), roster_pin=PIN)
        assert report.exit_code() == 0, report.to_json()
    return Package(folder, zip_path, files)


def _copy(package: Package) -> Path:
    work = Path(tempfile.mkdtemp(prefix="pkg-"))
    shutil.copytree(package.folder, work / TOP)
    return work


# --- 4. the package reader on mutated packages ---------------------------------------------


def _read_all(source: vp.Source) -> dict[str, tuple[int, str, bytes]]:
    out = {}
    for path in source.paths():
        size = source.size(path)
        digest, _n = source.sha256(path, size)
        out[path] = (size, digest, source.read(path, 1 << 24))
    return out


@pytest.mark.fuzz
@fuzz_settings(scale=0.5)
@given(st.data())
def test_fuzz_zip_source(package: Package, data: st.DataObject) -> None:
    original = package.zip.read_bytes()
    mutated = data.draw(mutated_bytes(original), label="zip")
    work = Path(tempfile.mkdtemp(prefix="zip-"))
    try:
        path = work / "p.zip"
        path.write_bytes(mutated)
        with trial("federation.verify_package.ZipSource") as t:
            try:
                with vp.ZipSource(str(path)) as source:
                    contents = _read_all(source)
            except vp.PackageError:
                t.outcome("PackageError")
            else:
                t.outcome("accepted")
                baseline = {
                    p: (len(d), hashlib.sha256(d).hexdigest(), d) for p, d in package.files.items()
                }
                assert mutated == original or contents != baseline, "a change went unseen"
        _verify_refuses(path, changed=mutated != original, what="a changed zip")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _verify_refuses(path: Path, *, changed: bool, what: str) -> None:
    """Verify the package at `path` against the roster pin; if it was `changed`, it must
    fail (exit 1 or 2)."""
    with trial("federation.verify_package.verify") as t:
        report = vp.verify(str(path), roster_pin=PIN)
        t.outcome(f"exit {report.exit_code()}")
        if changed:
            assert report.exit_code() in (1, 2), f"{what} verified"


@pytest.mark.fuzz
@fuzz_settings(scale=0.5)
@given(st.data())
def test_fuzz_folder_file_changed(package: Package, data: st.DataObject) -> None:
    """One file of the folder changed in place: open_source reads it as it is, and the
    package fails (every file is listed with its SHA-256 in the signed manifest)."""
    rel = data.draw(st.sampled_from(sorted(package.files)), label="file")
    mutated = data.draw(mutated_bytes(package.files[rel]), label="content")
    work = _copy(package)
    try:
        folder = work / TOP
        folder.joinpath(*rel.split("/")).write_bytes(mutated)
        with trial("federation.verify_package.open_source") as t:
            try:
                with vp.open_source(folder) as source:
                    contents = _read_all(source)
            except vp.PackageError:
                t.outcome("PackageError")
            else:
                t.outcome("accepted")
                assert contents[rel][2] == mutated
        _verify_refuses(folder, changed=mutated != package.files[rel], what=f"a changed {rel}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.fuzz
@fuzz_settings(scale=0.25)
@given(st.data())
def test_fuzz_folder_names(package: Package, data: st.DataObject) -> None:
    """A file renamed, or one added, under a name the zip rules may refuse."""
    rel = data.draw(st.sampled_from(sorted(package.files)), label="file")
    parts = rel.split("/")
    name = data.draw(st.one_of(mutated_text(parts[-1]), st.sampled_from(ODD_STRINGS)))
    if not _can_name_a_file(name):
        return
    work = _copy(package)
    try:
        folder = work / TOP
        source_file = folder.joinpath(*parts)
        target = source_file.parent / name
        if data.draw(st.booleans(), label="rename"):
            source_file.rename(target)
        else:
            target.write_bytes(b"added")
        with trial("federation.verify_package.open_source") as t:
            try:
                with vp.open_source(folder) as source:
                    _read_all(source)
            except vp.PackageError:
                t.outcome("PackageError")
            else:
                t.outcome("accepted")
        _verify_refuses(folder, changed=name != parts[-1], what="a renamed or added file")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _can_name_a_file(name: str) -> bool:
    """Whether the file system here takes `name` as one file name."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a surrogate outside surrogateescape's range
        return False
    return (
        bool(raw)
        and b"/" not in raw
        and b"\x00" not in raw
        and len(raw) <= 255
        and (name not in (".", ".."))
    )


STAGES: Final = (
    "roster",
    "matter",
    "custody:IL",
    "custody:MN",
    "checkpoint:IL",
    "checkpoint:MN",
    "consistency",
    "entries:IL-MN-000001",
    "entries:IL-MN-000002",
    "origin_manifest",
    "manifest",
)


def _drawing_mutator(data: st.DataObject, stage: str) -> Mutate:
    def mutate(at: str, value: Any) -> Any:
        if at != stage:
            return value
        if isinstance(value, str):
            return data.draw(mutated_text(value), label=at)
        return data.draw(mutated_json(value), label=at)

    return mutate


@pytest.mark.fuzz
@fuzz_settings(scale=0.5)
@given(st.data(), st.sampled_from(STAGES))
def test_fuzz_verify_resigned(data: st.DataObject, stage: str) -> None:
    """A package whose one part was mutated and then signed, hashed and listed again as an
    exporter would: `verify` reports on it and never raises."""
    work = Path(tempfile.mkdtemp(prefix="pkg-"))
    try:
        folder = build_package(work, _drawing_mutator(data, stage))
        with trial("federation.verify_package.verify") as t:
            report = vp.verify(str(folder))
            t.outcome(f"exit {report.exit_code()}")
            json.dumps(report.to_json())
        as_json = data.draw(st.booleans(), label="as_json")
        with trial("federation.verify_package.run") as t:
            out = io.StringIO()
            code = vp.run(str(folder), as_json=as_json, out=out)
            t.outcome(f"exit {code}")
            assert code == report.exit_code()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _record_seeds() -> dict[str, Any]:
    """The value each stage of `build_package` passes to `mutate` (the last, if several)."""
    seen: dict[str, Any] = {}

    def record(stage: str, value: Any) -> Any:
        seen[stage] = value
        return value

    work = Path(tempfile.mkdtemp(prefix="pkg-"))
    try:
        build_package(work, record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return seen


SEEDS: Final = _record_seeds()
NOTE_IL: Final[str] = SEEDS["checkpoint:IL"]


@st.composite
def _patches(draw: st.DrawFn) -> tuple[str, tuple[Any, ...], Any]:
    stage = draw(st.sampled_from(STAGES))
    seed = SEEDS[stage]
    if isinstance(seed, str):
        return stage, (), draw(mutated_text(seed))
    return stage, draw(st.sampled_from(json_paths(seed))), draw(json_values(max_leaves=4))


def _patcher(stage: str, path: tuple[Any, ...], value: Any) -> Mutate:
    def mutate(at: str, seed: Any) -> Any:
        if at != stage:
            return seed
        if not path:
            return value
        doc = json.loads(json.dumps(seed))
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return doc

    return mutate


@pytest.mark.fuzz
@fuzz_settings(scale=0.5)
@given(_patches())
# Each escaped verify() before it was fixed (federation/verify_package.py):
@example(("manifest", ("roster", "versions"), 5))  # TypeError: not iterable
@example(("manifest", ("roster", "versions"), [[1]]))  # TypeError: unhashable
@example(("manifest", ("exhibits", 0, "files", 0, "sha256"), [1]))  # TypeError: unhashable
@example(("consistency", (0, "from"), [3]))  # TypeError: unhashable
@example(("entries:IL-MN-000001", (0, "checkpoint_size"), [5]))  # TypeError: unhashable
@example(("entries:IL-MN-000001", (0, "proof"), None))  # TypeError: not iterable
@example(("matter", ("exhibits", 0, "evidence", "sha256"), [1]))  # TypeError: unhashable
@example(("custody:IL", (0, "kind"), ["collected"]))  # TypeError: unhashable
@example(("custody:IL", (0, "evidence_sha256"), [1]))  # TypeError: unhashable
@example(("checkpoint:IL", (), NOTE_IL.replace("\n5\n", "\n\u00b2\n", 1)))  # ValueError
@example(("checkpoint:IL", (), NOTE_IL.replace("\n5\n", "\n" + "9" * 5000 + "\n", 1)))
def test_fuzz_verify_patched(patch: tuple[str, tuple[Any, ...], Any]) -> None:
    """A package whose one part has one value replaced (then signed and listed again)."""
    work = Path(tempfile.mkdtemp(prefix="pkg-"))
    try:
        folder = build_package(work, _patcher(*patch))
        with trial("federation.verify_package.verify") as t:
            report = vp.verify(str(folder))
            t.outcome(f"exit {report.exit_code()}")
            json.dumps(report.to_json())
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.fuzz
@fuzz_settings()
@given(st.integers(-160, 32), st.sampled_from((b"[", b'{"a":')))
@example(-60, b"[")  # RecursionError escaped load_canonical (re-encoding what it decoded)
def test_fuzz_load_canonical_deep(offset: int, opener: bytes) -> None:
    """JSON nested to about the interpreter's recursion limit (as it is while the test
    runs: Hypothesis raises it): the reader parses it, then re-encodes it to check the
    canonical form; neither may escape as RecursionError. Each input tries 32 depths:
    where the limit falls depends on the caller's stack."""
    closer = b"]" if opener == b"[" else b"}"
    start = sys.getrecursionlimit() + offset
    with trial("federation.verify_package.load_canonical") as t:
        outcomes = set()
        for depth in range(start, start + 32):
            try:
                vp.load_canonical(opener * depth + b"1" + closer * depth, "deep.json")
            except vp.Invalid:
                outcomes.add("Invalid")
            else:
                outcomes.add("accepted")
        t.outcome("+".join(sorted(outcomes)))
