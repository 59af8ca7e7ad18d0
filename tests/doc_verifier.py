"""A minimal exhibit-package verifier written from docs/exhibit-package.md alone.

It exists to test the document: it reads no project code. Folders only (no zip).
`verify_folder(path, roster_pin=..., min_witnesses=2)` returns (exit status of section 8,
failure messages), each message naming the package or exhibit and the file.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import itertools
import json
import os
import stat
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

T = "application/vnd.compact.%s.v1+json"
T_PACKAGE, T_ROSTER, T_MATTER = T % "exhibit-package", T % "roster", T % "matter"
T_CUSTODY, T_BUNDLE = T % "custody-event", T % "bundle-manifest"
PACKAGE_FIELDS = {"format", "package_id", "name", "exporter", "exported_at", "exported_by"}
PACKAGE_FIELDS |= {"min_witnesses", "matter", "roster", "logs", "exhibits", "files"}
EXHIBIT_FIELDS = {"number", "global_id", "origin", "description", "origin_manifest", "custody"}
EXHIBIT_FIELDS |= {"files"}
FILE_FIELDS = {"doc_id", "path", "position", "sha256", "size", "media_type", "file_name"}
RECORD_FIELDS = {"format", "state", "global_id", "evidence_sha256", "evidence_position"}
RECORD_FIELDS |= {"event_id", "kind", "at", "actor", "detail"}
ENTRY_FIELDS = {"state", "checkpoint_size", "log_index", "envelope", "proof"}
Cp = tuple[int, bytes | None, set[str]]  # a checkpoint: size, root (None if bad), cosigners


class Fail(Exception):
    """One failure; its text names the file."""


MALFORMED = (Fail, KeyError, TypeError, AttributeError, ValueError, IndexError)


def msg(e: Exception, where: str) -> str:
    return str(e) if isinstance(e, Fail) else f"{where}: malformed data: {e!r}"


# Ed25519, strictly (section 2). The cofactorless equation [S]B = R + [k]A is OpenSSL's own
# check (via cryptography); S < L, canonical encodings, small order and the subgroup are here.
P, L = 2**255 - 19, 2**252 + 27742317777372353535851937790883648493
D, SQRT_M1 = -121665 * pow(121666, P - 2, P) % P, pow(2, (P - 1) // 4, P)
Point = tuple[int, int]


def _add(a: Point, b: Point) -> Point:  # complete twisted Edwards addition, affine
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    return x, (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P


def _mul(n: int, a: Point) -> Point:
    r = (0, 1)
    while n:
        r, a, n = (_add(r, a) if n & 1 else r), _add(a, a), n >> 1
    return r


@functools.lru_cache(maxsize=256)
def good_point(b: bytes, subgroup: bool) -> bool:
    """Canonical encoding, not of small order, and (if asked) in the prime-order subgroup."""
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if len(b) != 32 or y >= P:
        return False
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    x = x if x * x % P == x2 else x * SQRT_M1 % P
    if x * x % P != x2 or (x == 0 and sign):
        return False
    pt = (P - x if x & 1 != sign else x), y
    return _mul(8, pt) != (0, 1) and (not subgroup or _mul(L, pt) == (0, 1))


def ed_verify(pub: bytes, sig: bytes, message: bytes) -> bool:
    if len(sig) != 64 or int.from_bytes(sig[32:], "little") >= L:
        return False
    if not good_point(pub, True) or not good_point(sig[:32], False):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, message)
    except InvalidSignature:
        return False
    return True


# Encodings (section 2).
def _no_float(text: str) -> Any:
    raise ValueError(f"not an integer: {text}")


def load(data: bytes, what: str) -> Any:
    try:  # the round trip alone would let 1.5 and NaN through: refuse them when parsing
        value = json.loads(data.decode("ascii"), parse_float=_no_float, parse_constant=_no_float)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Fail(f"{what}: not JSON ({e})") from None
    canon = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if canon.encode("ascii") != data:
        raise Fail(f"{what}: not canonical JSON")
    return value


def b64(s: Any, what: str) -> bytes:
    try:
        raw = base64.b64decode(s, validate=True) if isinstance(s, str) else None
    except binascii.Error:
        raw = None
    if raw is None or base64.b64encode(raw).decode("ascii") != s:
        raise Fail(f"{what}: not canonical base64")
    return raw


def is_hex(s: Any) -> bool:
    return isinstance(s, str) and len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def hashes(v: Any, what: str) -> list[bytes]:
    if not isinstance(v, list) or not all(is_hex(h) for h in v):
        raise Fail(f"{what}: not a list of 64 hex")
    return [bytes.fromhex(h) for h in v]


def fields(obj: Any, names: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != names:
        raise Fail(f"{what}: fields are not exactly {sorted(names)}")
    return obj


def dsse(data: bytes, ptype: str, what: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    env = fields(load(data, what), {"payload", "payloadType", "signatures"}, what)
    if env["payloadType"] != ptype or not isinstance(env["signatures"], list):
        raise Fail(f"{what}: not a DSSE envelope of {ptype}")
    sigs = []
    for s in env["signatures"]:
        s = fields(s, {"keyid", "sig"}, f"{what}: signature")
        sigs.append((str(s["keyid"]), b64(s["sig"], f"{what}: sig")))
    return b64(env["payload"], f"{what}: payload"), sigs


def signers(payload: bytes, ptype: str, sigs: list[tuple[str, bytes]], keys: Any) -> set[str]:
    """The key ids among `keys` with a valid signature (a signature counts for the key it names)."""
    t = ptype.encode("utf-8")
    pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
    by_id = {hashlib.sha256(k).hexdigest()[:32]: k for k in keys}
    return {kid for kid, sig in sigs if kid in by_id and ed_verify(by_id[kid], sig, pae)}


# Merkle trees (RFC 9162 2.1). `_fold` is the loop of 2.1.4.2; with fr ignored it is 2.1.3.2.
def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _fold(fn: int, sn: int, seed: bytes, path: list[bytes]) -> tuple[bytes, bytes] | None:
    fr = sr = seed
    for c in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return (fr, sr) if sn == 0 else None


def inclusion_ok(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    folded = _fold(index, size - 1, leaf, proof) if 0 <= index < size else None
    return folded is not None and folded[1] == root


def consistency_ok(first: int, second: int, r1: bytes, r2: bytes, proof: list[bytes]) -> bool:
    if first == second:
        return not proof and r1 == r2
    if not 0 < first < second or not proof:
        return False
    path = [r1, *proof] if first & (first - 1) == 0 else proof
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    return _fold(fn, sn, path[0], path[1:]) == (r1, r2)


class Verifier:
    def __init__(self, root: str, pin: str | None, min_witnesses: int) -> None:
        self.root, self.pin, self.min_witnesses = root, pin, min_witnesses
        self.pkg: list[str] = []  # the package's failures
        self.exh: dict[str, list[str]] = {}  # each exhibit's failures
        self.listed: dict[str, tuple[str, int]] = {}
        self.keys: dict[str, list[bytes]] = {}  # a state's keys in any version (section 4)
        self.newest: dict[str, bytes] = {}
        self.logs: dict[str, list[Cp]] = {}
        self.matter_doc: dict[str, Any] = {"exhibits": []}
        self.present: set[str] = set()  # regular files found, never through a link

    def read(self, rel: Any) -> bytes:
        if rel not in self.present or (rel not in self.listed and rel != "package.dsse.json"):
            raise Fail(f"{rel}: not a listed regular file")
        try:
            with open(os.path.join(self.root, *rel.split("/")), "rb") as f:
                return f.read()
        except OSError:
            raise Fail(f"{rel}: cannot be read") from None

    def signed_by(self, payload: bytes, ptype: str, sigs: Any, state: str, what: str) -> None:
        if not signers(payload, ptype, sigs, self.keys.get(state, [])):
            raise Fail(f"{what}: no valid signature by {state}")

    def run(self) -> None:
        self.present = present = self.walk()
        try:
            payload, sigs = dsse(self.read("package.dsse.json"), T_PACKAGE, "package.dsse.json")
            m = fields(load(payload, "package.dsse.json payload"), PACKAGE_FIELDS, "manifest")
            self.check_manifest(m)
        except MALFORMED as e:
            self.pkg.append(msg(e, "package.dsse.json"))
            return
        self.inventory(present, {x["number"] for x in m["exhibits"]})
        for step in (self.roster, self.matter, self.check_logs):
            try:
                step(m)
            except MALFORMED as e:
                self.pkg.append(msg(e, step.__name__))
        key = self.newest.get(m["exporter"])
        if key is None or not signers(payload, T_PACKAGE, sigs, [key]):
            self.pkg.append(f"package.dsse.json: not signed by {m['exporter']}'s newest key")
        for x in m["exhibits"]:
            errs = self.exh.setdefault(x["number"], [])
            try:
                self.exhibit(m, x, errs)
            except MALFORMED as e:
                errs.append(msg(e, x["custody"]))

    def walk(self) -> set[str]:
        present: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, self.root).replace(os.sep, "/")
                mode = os.lstat(full).st_mode
                if stat.S_ISDIR(mode):
                    continue
                if not stat.S_ISREG(mode):
                    self.pkg.append(f"{rel}: refused: a link, device, FIFO or socket")
                elif any(ord(c) < 0x20 or c == "\\" for c in rel):
                    self.pkg.append(f"{rel}: refused: a bad name")
                else:
                    present.add(rel)
        return present

    def check_manifest(self, m: dict[str, Any]) -> None:
        if m["format"] != "compact-exhibit-package-v1" or not is_hex(m["package_id"]):
            raise Fail("manifest: bad format or package_id")
        fields(m["matter"], {"id", "revision", "path"}, "manifest: matter")
        fields(m["roster"], {"versions", "in_force", "v1_sha256"}, "manifest: roster")
        for log in m["logs"]:
            fields(log, {"state", "checkpoints", "consistency"}, "manifest: logs")
            for c in log["checkpoints"]:
                fields(c, {"size", "path"}, "manifest: logs: checkpoints")
        for x in m["exhibits"]:
            fields(x, EXHIBIT_FIELDS, "manifest: exhibit")
            for f in x["files"]:
                fields(f, FILE_FIELDS, f"manifest: exhibit {x['number']}: file")
        for f in m["files"]:
            fields(f, {"path", "sha256", "size"}, "manifest: files")
            p = f["path"]
            if not isinstance(p, str) or {"", ".", ".."} & set(p.split("/")):
                raise Fail(f"manifest: files: bad path {p!r}")
            if not is_hex(f["sha256"]) or type(f["size"]) is not int:
                raise Fail(f"manifest: files: bad entry {p!r}")
            self.listed[p] = (f["sha256"], f["size"])
        paths = [f["path"].encode("utf-8") for f in m["files"]]
        if paths != sorted(set(paths)) or "package.dsse.json" in self.listed:
            raise Fail("manifest: files are not sorted, unique, without package.dsse.json")

    def inventory(self, present: set[str], numbers: set[str]) -> None:
        def fail(rel: str, text: str) -> None:
            parts = rel.split("/")
            if len(parts) > 2 and parts[0] == "exhibits" and parts[1] in numbers:
                self.exh.setdefault(parts[1], []).append(f"{rel}: {text}")
            else:
                self.pkg.append(f"{rel}: {text}")

        for rel in sorted(present - set(self.listed) - {"package.dsse.json"}):
            fail(rel, "file added")
        for rel, (sha, size) in self.listed.items():
            if rel not in present:
                fail(rel, "file removed")
                continue
            h, n = hashlib.sha256(), 0
            with open(os.path.join(self.root, *rel.split("/")), "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
            if n != size or h.hexdigest() != sha:
                fail(rel, f"size or SHA-256 differs from the manifest ({n} bytes)")

    def roster(self, m: dict[str, Any]) -> None:
        r, prev = m["roster"], None
        if not isinstance(r["versions"], list) or not r["versions"]:
            raise Fail("manifest: roster: no versions")
        for i, path in enumerate(r["versions"]):
            payload, sigs = dsse(self.read(path), T_ROSTER, path)
            # n+1 needs version n's threshold of version n's members
            if (
                prev is not None
                and len(signers(payload, T_ROSTER, sigs, prev[1].values())) < prev[0]
            ):
                raise Fail(f"{path}: fewer than {prev[0]} signatures of version {i}'s members")
            v = load(payload, f"{path} payload")
            if not isinstance(v, dict) or v.get("format") != "compact-roster-v1":
                raise Fail(f"{path}: not a compact-roster-v1 payload")
            if v.get("version") != i + 1 or type(v.get("threshold")) is not int:
                raise Fail(f"{path}: not version {i + 1}, or no threshold")
            members: dict[str, bytes] = {}
            for mem in v["members"]:
                if not is_hex(mem["signing_key"]) or mem["state"] in members:
                    raise Fail(f"{path}: bad member {mem['state']!r}")
                members[mem["state"]] = bytes.fromhex(mem["signing_key"])
            if len(signers(payload, T_ROSTER, sigs, members.values())) < v["threshold"]:
                raise Fail(f"{path}: fewer than {v['threshold']} signatures of its own members")
            if i == 0 and hashlib.sha256(payload).hexdigest() != r["v1_sha256"]:
                raise Fail(f"{path}: payload SHA-256 is not roster.v1_sha256")
            prev = (v["threshold"], members)
            self.newest = members  # trusted only now: the keys of a refused version never count
            for state, key in members.items():
                self.keys.setdefault(state, []).append(key)
        if r["in_force"] != len(r["versions"]):
            raise Fail("manifest: roster.in_force is not the newest version")
        if self.pin is not None and self.pin.lower() != r["v1_sha256"]:
            raise Fail("roster/v0001: payload SHA-256 is not the --roster-pin")

    def matter(self, m: dict[str, Any]) -> None:
        path = m["matter"]["path"]
        payload, sigs = dsse(self.read(path), T_MATTER, path)
        doc = load(payload, f"{path} payload")
        if not isinstance(doc, dict) or doc.get("format") != "compact-matter-v1":
            raise Fail(f"{path}: not a compact-matter-v1 payload")
        owner = str(doc.get("matter_id", "")).split(":")[0]
        if doc.get("owner") != owner:
            raise Fail(f"{path}: owner is not the state of the matter id")
        self.signed_by(payload, T_MATTER, sigs, owner, path)
        if doc["matter_id"] != m["matter"]["id"] or doc.get("revision") != m["matter"]["revision"]:
            raise Fail(f"{path}: id or revision differs from the manifest")
        if m["exporter"] not in doc.get("states", []):
            raise Fail(f"{path}: the exporter is not one of its states")
        self.matter_doc = doc

    def check_logs(self, m: dict[str, Any]) -> None:
        for log in m["logs"]:
            state, out = log["state"], list[Cp]()
            if state in self.logs:
                raise Fail(f"manifest: logs: {state} twice")
            for c in log["checkpoints"]:
                try:
                    out.append((c["size"], *self.checkpoint(c["path"], state, c["size"])))
                except MALFORMED as e:
                    self.pkg.append(msg(e, c["path"]))
                    out.append((c["size"], None, set()))
            self.logs[state] = out
            if [c[0] for c in out] != sorted({c[0] for c in out}):
                self.pkg.append(f"logs/{state}: checkpoints not by increasing size")
            need = [(a, b) for a, b in itertools.pairwise(out) if a[0] > 0]
            cpath = log["consistency"]
            if not need:
                if cpath is not None:
                    self.pkg.append(f"logs/{state}: a consistency file with nothing to prove")
                continue
            proofs = load(self.read(cpath), cpath)
            if not isinstance(proofs, list) or len(proofs) != len(need):
                raise Fail(f"{cpath}: not one proof per consecutive pair")
            for (c1, c2), item in zip(need, proofs, strict=True):
                (s1, r1), (s2, r2) = c1[:2], c2[:2]
                p = fields(item, {"from", "to", "proof"}, cpath)
                pr = hashes(p["proof"], cpath)
                if (p["from"], p["to"]) != (s1, s2) or r1 is None or r2 is None:
                    self.pkg.append(f"{cpath}: no usable proof {s1} -> {s2}")
                elif not consistency_ok(s1, s2, r1, r2, pr):
                    self.pkg.append(f"{cpath}: {s1} -> {s2} is not consistent")

    def checkpoint(self, path: str, state: str, size: int) -> tuple[bytes, set[str]]:
        text, sep, rest = self.read(path).partition(b"\n\n")
        text += b"\n"
        lines, sig_lines = text.decode("utf-8").split("\n")[:-1], rest.decode("utf-8")
        if not sep or len(lines) != 3 or lines[0] != f"compact-log/{state}":
            raise Fail(f"{path}: not a checkpoint of compact-log/{state}")
        if lines[1] != str(size) or type(size) is not int:
            raise Fail(f"{path}: size is not {size}")
        root = b64(lines[2], f"{path}: root")
        if len(root) != 32 or not sig_lines.endswith("\n"):
            raise Fail(f"{path}: bad root or signature lines")
        log_ok, cosigners = False, set[str]()
        for line in sig_lines[:-1].split("\n"):
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != "\u2014":
                raise Fail(f"{path}: bad signature line {line!r}")
            name, blob = parts[1], b64(parts[2], f"{path}: signature line")
            kind, _, who = name.partition("/")
            if kind == "compact-log" and who == state and len(blob) == 68:
                tag, signed, sig = b"\x01", text, blob[4:]
            elif kind == "compact-witness" and len(blob) == 76:
                t = int.from_bytes(blob[4:12], "big")
                tag, signed, sig = b"\x04", b"cosignature/v1\ntime %d\n" % t + text, blob[12:]
            else:
                continue  # other names (and malformed blobs) are ignored
            for key in self.keys.get(who, []):
                if hashlib.sha256(name.encode() + b"\n" + tag + key).digest()[:4] != blob[:4]:
                    continue
                if not ed_verify(key, sig, signed):
                    raise Fail(f"{path}: signature of {name} does not verify")
                log_ok |= kind == "compact-log"
                if kind == "compact-witness" and who != state:
                    cosigners.add(who)
        if not log_ok:
            raise Fail(f"{path}: no valid signature of compact-log/{state}")
        return root, cosigners

    def exhibit(self, m: dict[str, Any], x: dict[str, Any], errs: list[str]) -> None:
        num, gid, origin, exporter = x["number"], x["global_id"], x["origin"], m["exporter"]
        if not isinstance(gid, str) or gid[:2] != origin:
            errs.append("origin is not the first two characters of global_id")
        entry = next((e for e in self.matter_doc["exhibits"] if e["number"] == num), None)
        held = [{"position": f["position"], "sha256": f["sha256"]} for f in x["files"]]
        if entry is None or (entry["global_id"], entry["description"]) != (gid, x["description"]):
            errs.append(f"{m['matter']['path']}: no exhibit {num} of this incident and description")
        elif entry["evidence"] is not None and held != [entry["evidence"]]:
            errs.append(f"{m['matter']['path']}: names one file; the exhibit holds other files")
        for f in x["files"]:
            if self.listed.get(f["path"]) != (f["sha256"], f["size"]):
                errs.append(f"{f['path']}: not listed in files with this SHA-256 and size")
        files = {(f["sha256"], f["position"]) for f in x["files"]}
        records: list[dict[str, Any]] = []
        entries = load(self.read(x["custody"]), x["custody"])
        for i, e in enumerate(entries if isinstance(entries, list) else [None]):
            try:
                records.append(self.custody(f"{x['custody']}: entry {i}", e, gid, files, errs))
            except MALFORMED as err:
                errs.append(msg(err, f"{x['custody']}: entry {i}"))
        bundle_id: Any = None
        if (origin == exporter) != (x["origin_manifest"] is None):
            errs.append("origin_manifest must be null exactly when the origin is the exporter")
        elif x["origin_manifest"] is not None:
            try:
                bundle_id = self.origin_manifest(x, exporter, errs)
            except MALFORMED as err:
                errs.append(msg(err, x["origin_manifest"]))
                bundle_id = ""  # then no received record of the exporter can match it
        for f in x["files"]:
            mine = [r for r in records if r["evidence_sha256"] == f["sha256"]]
            mine = [r for r in mine if r["evidence_position"] == f["position"]]
            kinds = {(r["state"], r["kind"]) for r in mine}
            if not {(origin, "received"), (origin, "collected")} & kinds:
                errs.append(f"{f['doc_id']}: no received or collected record by {origin}")
            if bundle_id is not None and not any(
                (r["state"], r["kind"]) == (exporter, "received")
                and r["detail"].get("bundle_id") == bundle_id
                for r in mine
            ):
                errs.append(f"{f['doc_id']}: no received record by {exporter} of the bundle")
            exported = {"matter": m["matter"]["id"], "package_id": m["package_id"]}
            exported |= {"exhibit": num, "doc_id": f["doc_id"]}
            if not any(
                (r["state"], r["kind"], r["detail"]) == (exporter, "exported", exported)
                for r in mine
            ):
                errs.append(f"{f['doc_id']}: no exported record by {exporter} for this package")

    def origin_manifest(self, x: dict[str, Any], exporter: str, errs: list[str]) -> Any:
        path, origin, gid = x["origin_manifest"], x["origin"], x["global_id"]
        payload, sigs = dsse(self.read(path), T_BUNDLE, path)
        self.signed_by(payload, T_BUNDLE, sigs, origin, path)
        b = load(payload, f"{path} payload")
        want = {"format": "compact-bundle-manifest-v1", "holder": origin}
        want |= {"requester": exporter, "global_id": gid}
        if not isinstance(b, dict) or any(b.get(k) != v for k, v in want.items()):
            raise Fail(f"{path}: not a bundle manifest from {origin} to {exporter} of {gid}")
        listed = {(e["sha256"], e["position"], e["size"]) for e in b["evidence"]}
        for f in x["files"]:
            if (f["sha256"], f["position"], f["size"]) not in listed:
                errs.append(f"{path}: does not list {f['doc_id']}")
        return b["bundle_id"]

    def custody(self, what: str, e: Any, gid: str, files: Any, errs: list[str]) -> dict[str, Any]:
        e = fields(e, ENTRY_FIELDS, what)
        raw = b64(e["envelope"], what)
        payload, sigs = dsse(raw, T_CUSTODY, f"{what}: envelope")
        self.signed_by(payload, T_CUSTODY, sigs, e["state"], what)
        r = fields(load(payload, f"{what}: payload"), RECORD_FIELDS, what)
        if r["format"] != "compact-custody-event-v1" or r["state"] != e["state"]:
            raise Fail(f"{what}: not a custody event of {e['state']}")
        if r["global_id"] != gid or (r["evidence_sha256"], r["evidence_position"]) not in files:
            raise Fail(f"{what}: not of this exhibit's incident and files")
        if not isinstance(r["detail"], dict):
            raise Fail(f"{what}: detail is not an object")
        log = self.logs.get(e["state"], [])
        at = next((k for k, c in enumerate(log) if c[0] == e["checkpoint_size"]), None)
        root = None if at is None else log[at][1]
        if at is None or root is None or type(e["log_index"]) is not int:
            raise Fail(f"{what}: no usable checkpoint {e['state']}/{e['checkpoint_size']}")
        leaf = hashlib.sha256(b"\x00" + raw).digest()
        if not inclusion_ok(e["log_index"], log[at][0], leaf, hashes(e["proof"], what), root):
            raise Fail(f"{what}: not included at {e['log_index']} under its checkpoint")
        witnesses = set[str]().union(*(c[2] for c in log[at:]))
        if len(witnesses) < self.min_witnesses:
            errs.append(f"{what}: witnessed by {len(witnesses)} < {self.min_witnesses} states")
        return r


def verify_folder(
    path: str, *, roster_pin: str | None = None, min_witnesses: int = 2
) -> tuple[int, list[str]]:
    """Verify an exhibit package folder: (exit status of section 8, failure messages)."""
    v = Verifier(path, roster_pin, min_witnesses)
    v.run()
    failures = [f"package: {s}" for s in v.pkg]
    failures += [f"exhibit {n}: {s}" for n, errs in v.exh.items() for s in errs]
    if v.pkg:  # a package failure outranks an exhibit's (the document does not say)
        return 2, failures
    if failures:
        return 1, failures
    return (0 if roster_pin is not None else 3), []
