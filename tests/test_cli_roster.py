"""`compact roster` and `compact oprf`: three states form a compact and run the key ceremony.

The commands run in-process (click's CliRunner) on three real node folders; no
server is needed. Every refusal exits 1, says why, and leaves the database as
it was (`roster show` and `oprf status` print what they printed before).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from node.cli import main
from node.config import load_config
from tests.nodeproc import init_test_node

STATES = ("IL", "MN", "CA")
EXPIRES = "2099-01-01"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.stderr
    return result


def refused(*args: str | Path, reason: str) -> Result:
    result = run(*args)
    assert result.exit_code == 1, result.stderr
    assert reason in result.stderr
    return result


@dataclass
class Compact:
    """Three initialised nodes and their member cards."""

    root: Path

    def d(self, state: str) -> Path:
        return self.root / state.lower()

    def card(self, state: str) -> Path:
        return self.root / f"{state.lower()}.card"

    def cards(self, *states: str) -> list[str]:
        return [arg for s in states or STATES for arg in ("--card", str(self.card(s)))]

    def propose(self, out: Path, *extra: str, on: str = "IL", threshold: int = 2) -> Path:
        ok(
            "roster",
            "propose",
            "--data-dir",
            self.d(on),
            *extra,
            "--threshold",
            str(threshold),
            "--expires",
            EXPIRES,
            "--out",
            out,
        )
        return out

    def sign(self, proposal: Path, *states: str) -> None:
        for state in states:
            ok("roster", "sign", proposal, "--data-dir", self.d(state))

    def apply(self, proposal: Path, *pin: str, states: tuple[str, ...] = STATES) -> None:
        for state in states:
            ok("roster", "apply", proposal, "--data-dir", self.d(state), *pin)

    def show(self, state: str) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(
            ok("roster", "show", "--data-dir", self.d(state), "--json").stdout
        )
        return shown

    def status(self, state: str) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(
            ok("oprf", "status", "--data-dir", self.d(state), "--json").stdout
        )
        return status

    def snapshot(self) -> dict[str, object]:
        """What every node shows of its federation state (None before the first roster)."""
        out: dict[str, object] = {}
        for s in STATES:
            shown = run("roster", "show", "--data-dir", self.d(s), "--json")
            out[s] = (json.loads(shown.stdout), self.status(s)) if shown.exit_code == 0 else None
        return out


def pin_of(proposal: Path) -> str:
    payload = json.loads(proposal.read_bytes())["envelope"]["payload"]
    return hashlib.sha256(base64.b64decode(payload)).hexdigest()


def rewrite_payload(proposal: Path, old: bytes, new: bytes) -> None:
    obj = json.loads(proposal.read_bytes())
    payload = base64.b64decode(obj["envelope"]["payload"])
    assert old in payload
    obj["envelope"]["payload"] = base64.b64encode(payload.replace(old, new)).decode()
    proposal.write_text(json.dumps(obj))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compact")
    for state in STATES:
        config = init_test_node(root, state)
        ok("roster", "card", "--data-dir", config.data_dir, "--out", root / f"{state.lower()}.card")
    return root


@pytest.fixture
def fresh(template: Path, tmp_path: Path) -> Compact:
    """Three nodes with their cards and no roster (a copy of the module's template)."""
    shutil.copytree(template, tmp_path / "c")
    return Compact(tmp_path / "c")


@pytest.fixture
def v1(fresh: Compact) -> Compact:
    """The same three nodes with roster version 1 (threshold 2) in force on each."""
    proposal = fresh.propose(fresh.root / "v1.json", *fresh.cards())
    fresh.sign(proposal, "MN")
    fresh.apply(proposal, "--pin", pin_of(proposal))
    return fresh


@pytest.fixture
def ceremony(v1: Compact) -> tuple[Compact, Path]:
    """Version 1 in force, and a ceremony's output folder for version 2 (signed by IL)."""
    v2 = v1.propose(v1.root / "v2.json", *v1.cards())
    out = v1.root / "ceremony"
    ok("oprf", "ceremony", v2, "--threshold", "2", "--out-dir", out, "--data-dir", v1.d("IL"))
    return v1, out


# --- the whole workflow --------------------------------------------------------------------


def test_forming_a_compact_and_running_the_ceremony(fresh: Compact) -> None:
    c = fresh
    card = json.loads(c.card("IL").read_bytes())
    config = load_config(c.d("IL"))
    assert card["endpoint"] == config.federation.listen
    assert card["tls_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    printed = ok("roster", "card", "--data-dir", c.d("IL"))
    assert printed.stdout.strip() == c.card("IL").read_text()

    # Version 1: proposed and signed by IL, co-signed by MN, pinned and applied everywhere.
    proposal = c.root / "v1.json"
    proposed = ok(
        "roster",
        "propose",
        "--data-dir",
        c.d("IL"),
        *c.cards(),
        "--threshold",
        "2",
        "--expires",
        EXPIRES,
        "--out",
        proposal,
    )
    pin = pin_of(proposal)
    assert f"payload SHA-256: {pin}" in proposed.stderr
    assert "compare this payload SHA-256 out of band" in proposed.stderr
    doc = json.loads(proposal.read_bytes())
    assert doc["format"] == "compact-roster-proposal-v1"
    assert sorted(doc["certificates"]) == sorted(STATES)
    assert len(doc["envelope"]["signatures"]) == 1
    signed = ok("roster", "sign", proposal, "--data-dir", c.d("MN"))
    assert "signed by: IL, MN" in signed.stderr
    again = ok("roster", "sign", proposal, "--data-dir", c.d("MN"))
    assert "already signed" in again.stderr
    assert len(json.loads(proposal.read_bytes())["envelope"]["signatures"]) == 2
    for state in STATES:
        applied = ok("roster", "apply", proposal, "--data-dir", c.d(state), "--pin", pin)
        assert "roster version 1 is now in force" in applied.stderr

    shown = c.show("CA")
    assert (shown["version"], shown["threshold"]) == (1, 2)
    assert shown["expires"] == "2099-01-01T00:00:00Z"
    assert shown["payload_sha256"] == pin
    assert shown["signed_by"] == ["IL", "MN"] and shown["other_signatures"] == []
    assert shown["oprf"] is None
    members = shown["members"]
    assert isinstance(members, list)
    assert [m["state"] for m in members] == ["CA", "IL", "MN"]
    assert all(m["certificate_held"] for m in members)
    assert [m["this_node"] for m in members] == [True, False, False]
    il = next(m for m in members if m["state"] == "IL")
    assert il["tls_pin"] == card["tls_pin"] and il["endpoint"] == card["endpoint"]
    table = ok("roster", "show", "--data-dir", c.d("IL"))
    assert "roster version 1" in table.stdout and "CA (this node)" not in table.stdout
    assert "IL (this node)" in table.stdout and "signed by: IL, MN" in table.stdout

    # Version 2: the same members, with the OPRF key's public record from the ceremony.
    v2 = c.propose(c.root / "v2.json", *c.cards())
    out = c.root / "ceremony"
    done = ok("oprf", "ceremony", v2, "--threshold", "2", "--out-dir", out, "--data-dir", c.d("IL"))
    assert "compact oprf import-share" in done.stderr and "compact roster sign" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "proposal.json",
        "share-CA.sealed",
        "share-IL.sealed",
        "share-MN.sealed",
    ]
    for state in STATES:
        assert stat.S_IMODE((out / f"share-{state}.sealed").stat().st_mode) == 0o600
    with_oprf = out / "proposal.json"
    assert b"compact-oprf-public-v1" in base64.b64decode(
        json.loads(with_oprf.read_bytes())["envelope"]["payload"]
    )
    c.sign(with_oprf, "CA")
    c.apply(with_oprf)
    for state in STATES:
        imported = ok(
            "oprf", "import-share", out / f"share-{state}.sealed", "--data-dir", c.d(state)
        )
        assert "imported share" in imported.stderr
    indexes = set()
    for state in STATES:
        status = c.status(state)
        assert status["roster_version"] == 2 and status["oprf"] is True
        assert status["threshold"] == 2 and status["share_held"] is True
        indexes.add(status["share_index"])
    assert indexes == {1, 2, 3}
    shown = c.show("MN")
    oprf = shown["oprf"]
    assert isinstance(oprf, dict) and oprf["threshold"] == 2
    assert sorted(oprf["commitments"]) == ["CA", "IL", "MN"]
    assert shown["signed_by"] == ["CA", "IL"]

    # Version 3 with the same members keeps the record (and the shares stay valid) ...
    v3 = c.propose(c.root / "v3.json", on="MN")
    kept = json.loads(base64.b64decode(json.loads(v3.read_bytes())["envelope"]["payload"]))
    assert (
        kept["oprf"]
        == json.loads(base64.b64decode(json.loads(with_oprf.read_bytes())["envelope"]["payload"]))[
            "oprf"
        ]
    )
    c.sign(v3, "CA")
    c.apply(v3)
    assert all(c.status(s)["share_held"] for s in STATES)
    # ... and one where CA leaves drops it, with a warning.
    left = run(
        "roster",
        "propose",
        "--data-dir",
        c.d("IL"),
        "--remove",
        "CA",
        "--threshold",
        "2",
        "--expires",
        EXPIRES,
        "--out",
        c.root / "v4.json",
    )
    assert left.exit_code == 0, left.stderr
    assert "a new key ceremony is needed" in left.stderr
    payload = json.loads(
        base64.b64decode(json.loads((c.root / "v4.json").read_bytes())["envelope"]["payload"])
    )
    assert "oprf" not in payload and [m["state"] for m in payload["members"]] == ["IL", "MN"]
    c.sign(c.root / "v4.json", "MN")
    c.apply(c.root / "v4.json", states=("IL", "MN"))
    assert c.show("IL")["version"] == 4 and c.status("IL")["oprf"] is False
    assert c.show("CA")["version"] == 3


def test_founding_with_the_ceremony_on_version_1(fresh: Compact) -> None:
    c = fresh
    v1 = c.propose(c.root / "v1.json", *c.cards())
    out = c.root / "ceremony"
    ok("oprf", "ceremony", v1, "--threshold", "3", "--out-dir", out, "--data-dir", c.d("CA"))
    proposal = out / "proposal.json"
    assert pin_of(proposal) != pin_of(v1)
    c.sign(proposal, "IL")
    c.apply(proposal, "--pin", pin_of(proposal))
    for state in STATES:
        ok("oprf", "import-share", out / f"share-{state}.sealed", "--data-dir", c.d(state))
        status = c.status(state)
        assert (status["roster_version"], status["threshold"]) == (1, 3)
        assert status["share_held"] is True
    assert c.show("IL")["signed_by"] == ["CA", "IL"]


# --- applying: every refusal leaves the database as it was --------------------------------


def test_apply_version_1_without_pin(fresh: Compact) -> None:
    proposal = fresh.propose(fresh.root / "v1.json", *fresh.cards())
    fresh.sign(proposal, "MN")
    refused(
        "roster",
        "apply",
        proposal,
        "--data-dir",
        fresh.d("CA"),
        reason="the first roster needs the SHA-256 pin",
    )
    refused("roster", "show", "--data-dir", fresh.d("CA"), reason="not part of a compact yet")


def test_apply_version_1_with_a_wrong_pin(fresh: Compact) -> None:
    proposal = fresh.propose(fresh.root / "v1.json", *fresh.cards())
    fresh.sign(proposal, "MN")
    refused(
        "roster",
        "apply",
        proposal,
        "--data-dir",
        fresh.d("CA"),
        "--pin",
        "ab" * 32,
        reason="not the one whose SHA-256 was pinned",
    )
    assert fresh.snapshot()["CA"] is None


def test_apply_with_too_few_signatures(fresh: Compact) -> None:
    proposal = fresh.propose(fresh.root / "v1.json", *fresh.cards())  # IL's signature only
    refused(
        "roster",
        "apply",
        proposal,
        "--data-dir",
        fresh.d("CA"),
        "--pin",
        pin_of(proposal),
        reason="not signed by enough of its own members",
    )
    assert fresh.snapshot()["CA"] is None


def test_apply_with_too_few_signatures_of_the_version_in_force(v1: Compact) -> None:
    # Version 2 adds nobody: IL's signature is one of the two version 1 requires.
    proposal = v1.propose(v1.root / "v2.json", threshold=1)
    before = v1.snapshot()
    refused(
        "roster",
        "apply",
        proposal,
        "--data-dir",
        v1.d("CA"),
        reason="not signed by enough of version 1's members",
    )
    assert v1.snapshot() == before


def test_apply_a_proposal_twice_is_a_rollback(v1: Compact) -> None:
    before = v1.snapshot()
    refused(
        "roster",
        "apply",
        v1.root / "v1.json",
        "--data-dir",
        v1.d("IL"),
        "--pin",
        pin_of(v1.root / "v1.json"),
        reason="roster version 1 cannot follow version 1 (version 1 is in force here)",
    )
    assert v1.snapshot() == before


def test_apply_an_older_version(v1: Compact) -> None:
    v2 = v1.propose(v1.root / "v2.json")
    v1.sign(v2, "MN")
    v1.apply(v2)
    before = v1.snapshot()
    refused(
        "roster",
        "apply",
        v1.root / "v1.json",
        "--data-dir",
        v1.d("MN"),
        reason="roster version 1 cannot follow version 2",
    )
    assert v1.snapshot() == before
    shown = before["MN"]
    assert isinstance(shown, tuple) and shown[0]["version"] == 2


def test_tampered_proposal_payload(fresh: Compact) -> None:
    proposal = fresh.propose(fresh.root / "v1.json", *fresh.cards())
    fresh.sign(proposal, "MN")
    pin = pin_of(proposal)
    rewrite_payload(proposal, b'"threshold":2', b'"threshold":1')
    refused(
        "roster",
        "apply",
        proposal,
        "--data-dir",
        fresh.d("CA"),
        "--pin",
        pin,
        reason="not the one whose SHA-256 was pinned",
    )
    # Pinning the tampered bytes does not help: the signatures do not cover them.
    refused(
        "roster",
        "apply",
        proposal,
        "--data-dir",
        fresh.d("CA"),
        "--pin",
        pin_of(proposal),
        reason="not signed by enough of its own members",
    )
    assert fresh.snapshot()["CA"] is None


def test_tampered_update_payload(v1: Compact) -> None:
    v2 = v1.propose(v1.root / "v2.json")
    v1.sign(v2, "MN")
    il_card = json.loads(v1.card("IL").read_bytes())
    rewrite_payload(v2, il_card["endpoint"].encode(), b"attacker.example:7401")
    before = v1.snapshot()
    refused(
        "roster",
        "apply",
        v2,
        "--data-dir",
        v1.d("CA"),
        reason="not signed by enough of version 1's members",
    )
    assert v1.snapshot() == before


def test_tampered_proposal_file_is_refused_before_anything(v1: Compact) -> None:
    path = v1.root / "broken.json"
    path.write_text('{"format": "compact-roster-proposal-v1"}')
    refused("roster", "apply", path, "--data-dir", v1.d("IL"), reason="not a roster proposal")
    refused("roster", "sign", path, "--data-dir", v1.d("IL"), reason="not a roster proposal")
    refused(
        "roster",
        "apply",
        v1.root / "missing.json",
        "--data-dir",
        v1.d("IL"),
        reason="cannot be read",
    )


# --- proposing and signing ----------------------------------------------------------------


def test_card_whose_certificate_does_not_match_its_pin(v1: Compact) -> None:
    card = json.loads(v1.card("IL").read_bytes())
    card["tls_certificate"] = json.loads(v1.card("MN").read_bytes())["tls_certificate"]
    bad = v1.root / "bad.card"
    bad.write_text(json.dumps(card))
    before = v1.snapshot()
    out = v1.root / "v2.json"
    refused(
        "roster",
        "propose",
        "--data-dir",
        v1.d("IL"),
        "--card",
        bad,
        "--threshold",
        "2",
        "--expires",
        EXPIRES,
        "--out",
        out,
        reason=f"{bad}: member card: the TLS certificate does not match the card's tls_pin",
    )
    assert not out.exists()
    assert v1.snapshot() == before


@pytest.mark.parametrize(("threshold", "members"), [(0, 3), (4, 3)])
def test_propose_with_a_threshold_out_of_range(
    fresh: Compact, threshold: int, members: int
) -> None:
    out = fresh.root / "v1.json"
    refused(
        "roster",
        "propose",
        "--data-dir",
        fresh.d("IL"),
        *fresh.cards(),
        "--threshold",
        str(threshold),
        "--expires",
        EXPIRES,
        "--out",
        out,
        reason=f"--threshold {threshold}: must be between 1 and {members}",
    )
    assert not out.exists()
    assert fresh.snapshot()["IL"] is None


def test_propose_with_an_expiry_in_the_past(fresh: Compact) -> None:
    refused(
        "roster",
        "propose",
        "--data-dir",
        fresh.d("IL"),
        *fresh.cards(),
        "--threshold",
        "2",
        "--expires",
        "2020-01-01",
        reason="--expires 2020-01-01 is in the past",
    )
    refused(
        "roster",
        "propose",
        "--data-dir",
        fresh.d("IL"),
        *fresh.cards(),
        "--threshold",
        "2",
        "--expires",
        "2099-01-01T00:00:00",
        reason="give a time zone",
    )
    assert fresh.snapshot()["IL"] is None


def test_propose_with_no_members_or_an_unknown_removal(v1: Compact) -> None:
    common = ["--threshold", "1", "--expires", EXPIRES]
    refused(
        "roster",
        "propose",
        "--data-dir",
        v1.d("IL"),
        *[arg for s in STATES for arg in ("--remove", s)],
        *common,
        reason="the proposed roster has no members",
    )
    refused(
        "roster",
        "propose",
        "--data-dir",
        v1.d("IL"),
        "--remove",
        "TX",
        *common,
        reason="--remove TX: not a member of the roster in force",
    )


def test_sign_refuses_a_non_member_and_a_version_that_is_not_next(fresh: Compact) -> None:
    proposal = fresh.propose(fresh.root / "v1.json", *fresh.cards("IL", "MN"))
    refused(
        "roster",
        "sign",
        proposal,
        "--data-dir",
        fresh.d("CA"),
        reason="not a member's in the proposed roster or in the one in force",
    )
    fresh.sign(proposal, "MN")
    fresh.apply(proposal, "--pin", pin_of(proposal), states=("IL",))
    before = proposal.read_bytes()
    refused(
        "roster",
        "sign",
        proposal,
        "--data-dir",
        fresh.d("IL"),
        reason="proposes roster version 1, but the next version here is 2",
    )
    assert proposal.read_bytes() == before


# --- the ceremony and shares --------------------------------------------------------------


def test_import_a_share_meant_for_another_state(ceremony: tuple[Compact, Path]) -> None:
    c, out = ceremony
    c.sign(out / "proposal.json", "MN")
    c.apply(out / "proposal.json")
    before = c.snapshot()
    refused(
        "oprf",
        "import-share",
        out / "share-MN.sealed",
        "--data-dir",
        c.d("IL"),
        reason="cannot be opened with this node's key; nothing was stored",
    )
    assert c.snapshot() == before
    assert c.status("IL")["share_held"] is False


def test_import_a_share_before_the_roster_has_an_oprf_record(
    ceremony: tuple[Compact, Path],
) -> None:
    c, out = ceremony
    before = c.snapshot()
    refused(
        "oprf",
        "import-share",
        out / "share-IL.sealed",
        "--data-dir",
        c.d("IL"),
        reason="the roster in force has no OPRF public record",
    )
    assert c.snapshot() == before
    assert c.status("IL") == {
        "roster_version": 1,
        "oprf": False,
        "threshold": None,
        "public_key": None,
        "oprf_sha256": None,
        "share_held": False,
        "share_index": None,
    }


def test_ceremony_refusals(ceremony: tuple[Compact, Path]) -> None:
    c, out = ceremony
    v2 = c.root / "v2.json"
    refused(
        "oprf",
        "ceremony",
        v2,
        "--threshold",
        "2",
        "--out-dir",
        out,
        "--data-dir",
        c.d("IL"),
        reason="exists and is not empty",
    )
    refused(
        "oprf",
        "ceremony",
        v2,
        "--threshold",
        "4",
        "--out-dir",
        c.root / "other",
        "--data-dir",
        c.d("IL"),
        reason="--threshold 4: must be between 1 and 3",
    )
    refused(
        "oprf", "ceremony", v2, "--threshold", "1", "--out-dir", c.root / "other",
        "--data-dir", c.d("IL"),
        reason="--threshold 1: must be at least 2 when there are several members",
    )  # fmt: skip
    assert not (c.root / "other").exists()


def test_ceremony_without_a_node_writes_an_unsigned_proposal(
    ceremony: tuple[Compact, Path],
) -> None:
    c, _ = ceremony
    out = c.root / "offline"
    done = ok(
        "oprf",
        "ceremony",
        c.root / "v2.json",
        "--threshold",
        "3",
        "--out-dir",
        out,
        "--data-dir",
        c.root / "nowhere",
    )
    assert "unsigned" in done.stderr
    assert json.loads((out / "proposal.json").read_bytes())["envelope"]["signatures"] == []
    c.sign(out / "proposal.json", "IL", "MN")
    c.apply(out / "proposal.json")
    for state in STATES:
        ok("oprf", "import-share", out / f"share-{state}.sealed", "--data-dir", c.d(state))
        assert c.status(state)["threshold"] == 3


# --- cards and init -----------------------------------------------------------------------


def test_card_with_an_os_chosen_port_needs_the_running_server(tmp_path: Path) -> None:
    config = init_test_node(tmp_path, "NY", federation_listen="127.0.0.1:0")
    d = config.data_dir
    refused("roster", "card", "--data-dir", d, reason="start `compact serve` first")
    (d / "run" / "federation.json").write_text(json.dumps({"host": "127.0.0.1", "port": 45678}))
    card = json.loads(ok("roster", "card", "--data-dir", d).stdout)
    assert card["endpoint"] == "127.0.0.1:45678" and card["state"] == "NY"


def test_init_takes_the_federation_listen_address(tmp_path: Path) -> None:
    ok(
        "init",
        "--state",
        "WA",
        "--data-dir",
        tmp_path / "wa",
        "--key-file",
        tmp_path / "wa.key",
        "--kdf-strength",
        "interactive",
        "--federation-listen",
        "127.0.0.1:7555",
    )
    assert load_config(tmp_path / "wa").federation.listen == "127.0.0.1:7555"
    card = json.loads(ok("roster", "card", "--data-dir", tmp_path / "wa").stdout)
    assert card["endpoint"] == "127.0.0.1:7555"


def test_a_late_member_catches_up_through_expired_versions_in_one_apply(
    fresh: Compact, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the newest version must be in force: CA, applying nothing until version 1 has
    expired, walks 1 then 2 in one command; neither alone nor out of order writes anything."""
    from datetime import UTC, datetime

    import node.cli_federation as clif

    c = fresh
    v1 = c.propose(c.root / "v1.json", *c.cards())
    c.sign(v1, "MN")
    c.apply(v1, "--pin", pin_of(v1), states=("IL", "MN"))
    v2 = c.root / "v2.json"
    ok("roster", "propose", "--data-dir", c.d("IL"), "--threshold", "2",
       "--expires", "2100-06-01", "--out", v2)  # fmt: skip
    c.sign(v2, "MN")
    monkeypatch.setattr(clif, "_now", lambda: datetime(2099, 6, 1, tzinfo=UTC))  # v1 expired
    refused("roster", "apply", v1, "--pin", pin_of(v1), "--data-dir", c.d("CA"), reason="expired")
    refused(
        "roster", "apply", v2, v1, "--pin", pin_of(v1), "--data-dir", c.d("CA"),
        reason="nothing was applied",
    )  # fmt: skip
    assert run("roster", "show", "--data-dir", c.d("CA"), "--json").exit_code == 1
    ok("roster", "apply", v1, v2, "--pin", pin_of(v1), "--data-dir", c.d("CA"))
    assert c.show("CA")["version"] == 2
