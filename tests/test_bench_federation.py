"""The federation benchmark at a tiny size: three real nodes, every figure reported.

No timing is asserted here; figures come from `python -m bench.federation`. These
tests check that it measures what it says: the sync stored exactly the origin's
entries, the raw baseline verified the same signatures, the two OPRF paths gave
the same pseudonyms.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import federation as bench
from crypto import signing
from crypto.dsse import sign_envelope

pytestmark = pytest.mark.timeout(300)


def test_raw_verification_rejects_what_it_should_not_accept() -> None:
    key = signing.SigningKey.generate()
    env = sign_envelope("text/plain", b"entry", [key]).to_json()
    items = [
        bench.Signed(x.message, x.signature, key.public_key.raw)
        for x in bench.signed_messages([env])
    ]
    assert set(bench.time_raw_verify(items)) == {"pysodium", "pynacl"}
    forged = [bench.Signed(items[0].message + b"!", items[0].signature, items[0].public_key)]
    with pytest.raises(Exception):  # noqa: B017,PT011 - each binding raises its own error type
        bench.time_raw_verify(forged)


def test_run_smoke_three_nodes(tmp_path: Path) -> None:
    out = tmp_path / "fed.json"
    lines: list[str] = []
    assert (
        bench.main(
            ["--entries", "40", "--inputs", "30", "--json", str(out), "--tmpdir", str(tmp_path)],
            out=lines.append,
        )
        == 0
    )
    result = json.loads(out.read_text(encoding="utf-8"))
    sync = result["sync"]
    assert sync["entries"] == 40 and sync["sync_seconds"] > 0
    assert set(sync["raw_verify_seconds"]) == {"pysodium", "pynacl"}
    assert sync["ratio"] == pytest.approx(
        min(sync["raw_verify_seconds"].values()) / sync["sync_seconds"]
    )
    assert set(sync["phases_seconds"]) == {"fetch", "verify", "store"}
    ps = result["pseudonyms"]
    assert ps["inputs"] == 30 and ps["checked_between_paths"] == 20
    assert ps["grpc"]["remote"]["holders"] == ["CA", "IL"]
    assert ps["grpc"]["node"]["holders"] == ["MN", "CA"]
    assert ps["in_process"]["inputs"] == 30
    assert len(lines) == 1 and "sync: MN replicated 40 entries from IL" in lines[0]
    assert not list(tmp_path.glob("compact-bench-fed-*"))  # the temporary compact is gone
