"""Rotating a member's signing, encryption and TLS keys through a roster update
(node.keyrotation; docs/operations.md, "Rotating keys").

In process: next keys are made and sealed beside the current ones, a roster naming them
makes them current (and a crash part-way is finished by the next call), the retired
X25519 key still opens a stream sealed to it, re-wrapping covers next and retired
keystores. With three real nodes: IL rotates every key while the compact runs; the new
roster reaches the members by sync, IL's running node switches to the new keys in the
same process, the records IL logged under its old key and those it logs under the new
one replicate and are witnessed, the OPRF key (and so every pseudonym) is kept, no
member raises an alert, and IL's audit trail still verifies.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crypto import keystore as ks
from crypto import x25519
from crypto.dsse import Envelope
from crypto.errors import DecryptionError
from crypto.sealing import SealedStreamReader, seal_stream
from federation.roster import Roster
from node import models as m
from node.config import Config
from node.keyrotation import (
    KeyPaths,
    RotationError,
    finish_rotation,
    keys_public,
    next_public,
    open_next,
    open_retired,
    prepare_next,
    public_keys,
)
from node.setup import Secret
from tests.nodeproc import (
    NodeProcess,
    compact,
    db_rows,
    init_test_node,
    run_compact,
    running_compact,
    start_node,
)
from tests.test_backup import _ingest
from tests.test_bundle_transfer import wait_for


def _secret(config: Config) -> Secret:
    return Secret(key_file_secret=Path(config.keys.key_file).read_bytes())


def _roster_naming(config: Config, keys: ks.NodeKeys, certificate: bytes) -> Roster:
    """A one-member roster that names `keys` for the node's state."""
    from crypto import signing
    from federation.roster import Member

    public = keys_public(keys, certificate)
    member = Member(
        config.node.state,
        "127.0.0.1:7401",
        public.tls_pin,
        signing.SigningKey(keys.signing_key).public_key,
        x25519.PrivateKey(keys.encryption_key).public_key,
    )
    from datetime import UTC, datetime

    return Roster(2, datetime(2030, 1, 1, tzinfo=UTC), 1, (member,))


# --- in process ------------------------------------------------------------------------


def test_next_keys_wait_beside_and_a_roster_naming_them_makes_them_current(
    tmp_path: Path,
) -> None:
    config = init_test_node(tmp_path, "IL")
    paths = KeyPaths.of(config)
    secret = _secret(config)
    before = public_keys(paths.keystore, paths.certificate)
    current = ks.open_keystore(paths.keystore.read_bytes(), key_file_secret=secret.key_file_secret)

    new, certificate = prepare_next(config, secret, rotate=("signing", "tls"))
    assert new.data_key == current.data_key  # the data key is re-wrapped, never rotated
    assert new.encryption_key.encode() == current.encryption_key.encode()  # not asked for
    assert new.signing_key.encode() != current.signing_key.encode()
    assert open_next(config, secret) == new
    upcoming = next_public(config)
    assert upcoming is not None and upcoming.tls_pin != before.tls_pin
    assert paths.next_keystore.stat().st_mode & 0o077 == 0
    with pytest.raises(RotationError, match="waiting already"):
        prepare_next(config, secret)
    with pytest.raises(RotationError, match="choose among"):
        prepare_next(config, secret, rotate=("data",), replace=True)

    # A roster that names other keys changes nothing; one naming the next keys does.
    named_now = _roster_naming(config, current, paths.certificate.read_bytes())
    assert not finish_rotation(config, named_now)
    assert not finish_rotation(config, None)
    assert public_keys(paths.keystore, paths.certificate) == before
    assert finish_rotation(config, _roster_naming(config, new, certificate))
    assert public_keys(paths.keystore, paths.certificate) == upcoming
    assert not paths.next_keystore.exists() and not paths.next_certificate.exists()
    assert [k.signing_key.encode() for k in open_retired(config, secret)] == [
        current.signing_key.encode()
    ]
    assert not finish_rotation(config, _roster_naming(config, new, certificate))  # done


def test_a_crash_between_the_renames_is_finished_by_the_next_call(tmp_path: Path) -> None:
    config = init_test_node(tmp_path, "IL")
    paths = KeyPaths.of(config)
    new, certificate = prepare_next(config, _secret(config))
    roster = _roster_naming(config, new, certificate)
    # The keystore was renamed into place, the certificate not yet.
    os.replace(paths.next_keystore, paths.keystore)
    assert public_keys(paths.keystore, paths.next_certificate).named_by(roster.member("IL"))
    assert finish_rotation(config, roster)
    assert public_keys(paths.keystore, paths.certificate).named_by(roster.member("IL"))
    assert not paths.next_certificate.exists()


def test_a_roster_naming_other_keys_leaves_the_next_ones_waiting(tmp_path: Path) -> None:
    config = init_test_node(tmp_path, "IL")
    paths = KeyPaths.of(config)
    secret = _secret(config)
    current = ks.open_keystore(paths.keystore.read_bytes(), key_file_secret=secret.key_file_secret)
    prepare_next(config, secret)
    stranger, cert = prepare_next(config, secret, replace=True)  # replaced: not the waiting one
    prepare_next(config, secret, replace=True)
    before = paths.keystore.read_bytes()
    assert not finish_rotation(config, _roster_naming(config, stranger, cert))
    assert not finish_rotation(
        config, _roster_naming(config, current, paths.certificate.read_bytes())
    )
    assert paths.keystore.read_bytes() == before and paths.next_keystore.exists()


def test_a_stream_sealed_to_a_retired_key_opens_with_it_and_no_other() -> None:
    old, new, stranger = (x25519.PrivateKey.generate() for _ in range(3))
    sealed = io.BytesIO()
    info = seal_stream(io.BytesIO(b"evidence" * 1000), sealed, [old.public_key])
    data = sealed.getvalue()
    reader = SealedStreamReader(new, expected=info, earlier_keys=[stranger, old])
    assert reader.feed(data, eof=True) == b"evidence" * 1000
    with pytest.raises(DecryptionError, match="not sealed to this key"):
        SealedStreamReader(new, expected=info, earlier_keys=[stranger]).feed(data, eof=True)


def test_rewrap_reseals_next_and_retired_keystores(tmp_path: Path) -> None:
    from node.rewrap import rewrap_keystore
    from node.setup import ensure_key_file, open_database

    config = init_test_node(tmp_path, "IL")
    secret = _secret(config)
    new, certificate = prepare_next(config, secret)
    finish_rotation(config, _roster_naming(config, new, certificate))
    prepare_next(config, secret)  # and a second rotation waiting
    new_secret, _ = ensure_key_file(tmp_path / "new.key")
    db = open_database(config)
    try:
        rewrap_keystore(
            config, db, secret, new_secret, new_key_file=tmp_path / "new.key", actor="t"
        )
    finally:
        db.dispose()
    assert len(open_retired(config, new_secret)) == 1
    assert open_next(config, new_secret) is not None
    from node.errors import UnlockError

    with pytest.raises(UnlockError):
        open_retired(config, secret)


# --- three nodes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compact3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_compact(tmp_path_factory.mktemp("rotation3")) as running:
        yield running


def _roster_version(config: Config) -> int:
    rows = db_rows(config, select(m.RosterVersion.version).order_by(m.RosterVersion.version))
    return int(rows[-1][0])


def _replicated(configs: dict[str, Config], state: str) -> bool:
    """Every other member holds `state`'s whole log under a checkpoint it accepted."""
    rows = db_rows(configs[state], select(m.LogEntry.index).order_by(m.LogEntry.index.desc()))
    size = int(rows[0][0]) + 1 if rows else 0
    for other, config in configs.items():
        if other == state:
            continue
        kept = db_rows(
            config,
            select(m.ReplicaLog.size, m.ReplicaLog.checkpoint_size).where(
                m.ReplicaLog.state == state
            ),
        )
        if not kept or int(kept[0][0]) != size or int(kept[0][1]) != size:
            return False
    return True


def test_il_rotates_every_key_while_the_compact_runs(compact3: dict[str, Any]) -> None:
    root: Path = compact3["root"]
    configs: dict[str, Config] = compact3["configs"]
    nodes: dict[str, NodeProcess] = compact3["nodes"]
    il, ca = configs["IL"], configs["CA"]
    _ingest(il, root, "BEFORE")
    wait_for("CA and MN to hold IL's log", lambda: _replicated(configs, "IL"), 120)
    before = json.loads(
        run_compact("keys", "status", "--json", "--data-dir", str(il.data_dir)).stdout
    )
    assert before["current"]["in_roster"] is True and before["next"] is None
    v1 = Roster.from_payload(
        Envelope.from_json(bytes(db_rows(ca, select(m.RosterVersion.envelope))[0][0])).payload
    )

    # MN goes down; IL logs two more records under its old key, which only CA replicates.
    assert nodes["MN"].stop() == 0
    _ingest(il, root, "MIDDLE", evidence=False)
    wait_for(
        "CA to hold IL's records logged while MN was down",
        lambda: (
            _replicated({"IL": il, "CA": ca}, "IL")
            and len(db_rows(il, select(m.PublishedEntry.log_index))) == 4
        ),
        120,
    )

    # IL makes its next keys; nothing changes until a roster names them.
    card = root / "il-next.json"
    run_compact("keys", "next", "--out", str(card), "--data-dir", str(il.data_dir))
    status = json.loads(
        run_compact("keys", "status", "--json", "--data-dir", str(il.data_dir)).stdout
    )
    assert status["next"]["in_roster"] is False and status["current"] == before["current"]

    # CA proposes version 2 with IL's card; IL signs with its current and its next key.
    proposal = root / "rotation.json"
    run_compact(
        "roster", "propose", "--card", str(card), "--threshold", "2", "--expires", "2030-01-01",
        "--out", str(proposal), "--data-dir", str(ca.data_dir),
    )  # fmt: skip
    unsigned_by_new = compact("roster", "apply", str(proposal), "--data-dir", str(ca.data_dir))
    assert unsigned_by_new.returncode == 1 and "nothing was applied" in unsigned_by_new.stderr
    run_compact("roster", "sign", str(proposal), "--data-dir", str(il.data_dir))
    signatures = json.loads(proposal.read_text(encoding="utf-8"))["envelope"]["signatures"]
    assert len(signatures) == 3  # CA, IL's current key, IL's next key

    # Applied on CA alone: IL fetches it from CA (with the certificate version 1 pinned
    # for it: GetRoster only) and switches by itself; MN fetches it once it is back.
    applied = run_compact("roster", "apply", str(proposal), "--data-dir", str(ca.data_dir))
    assert "now in force" in applied.stderr
    wait_for("IL to hold roster version 2", lambda: _roster_version(il) == 2, 120)

    def switched() -> bool:
        now = json.loads(
            run_compact("keys", "status", "--json", "--data-dir", str(il.data_dir)).stdout
        )
        return bool(now["current"]["in_roster"]) and now["next"] is None

    wait_for("IL to make its next keys current", switched, 120)
    after = json.loads(
        run_compact("keys", "status", "--json", "--data-dir", str(il.data_dir)).stdout
    )
    assert after["current"] == {**status["next"], "in_roster": True}
    assert len(after["retired"]) == 1
    assert nodes["IL"].proc.poll() is None  # the same process, serving again
    wait_for(
        "IL's node to restart its servers with the new keys",
        lambda: any(
            e.get("event") == "serve.restarting_with_rotated_keys" for e in nodes["IL"].logs()
        ),
        60,
    )

    nodes["MN"] = start_node(configs["MN"])
    wait_for("MN to hold roster version 2", lambda: _roster_version(configs["MN"]) == 2, 120)

    # The OPRF key is kept: version 2 carries version 1's record.
    v2 = Roster.from_payload(
        Envelope.from_json(
            bytes(
                db_rows(
                    ca,
                    select(m.RosterVersion.envelope).where(m.RosterVersion.version == 2),
                )[0][0]
            )
        ).payload
    )
    assert v2.oprf == v1.oprf
    assert v2.member("IL") != v1.member("IL") and v2.member("MN") == v1.member("MN")

    # IL publishes under its new key; CA and MN replicate and witness, with no alert.
    _ingest(il, root, "AFTER", evidence=False)
    wait_for(
        "IL to publish its new records",
        lambda: len(db_rows(il, select(m.PublishedEntry.log_index))) == 6,
        120,
    )
    # MN verifies the records IL signed with its retired key (through the key history of
    # the roster versions) and those signed with the new one.
    wait_for("CA and MN to hold IL's whole log again", lambda: _replicated(configs, "IL"), 120)
    for state in ("CA", "MN"):
        replica = db_rows(
            configs[state], select(m.ReplicaEntry.global_id).where(m.ReplicaEntry.state == "IL")
        )
        assert len({g for (g,) in replica}) == 6, state
        alerts = run_compact("alerts", "--json", "--data-dir", str(configs[state].data_dir))
        assert json.loads(alerts.stdout) == {"alerts": []}, state
    # IL witnesses with its new key: its cosignature of CA's log is accepted by CA.
    _ingest(ca, root, "CA-AFTER", evidence=False)
    wait_for("IL to hold CA's whole log", lambda: _replicated(configs, "CA"), 120)

    trail = run_compact("audit", "verify", "--json", "--data-dir", str(il.data_dir))
    assert json.loads(trail.stdout)["ok"] is True
