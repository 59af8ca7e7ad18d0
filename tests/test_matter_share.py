"""ShareMatter: an owner gives a member its matter's revisions over FederationService.

IL owns the matter and calls MN's servicer over mutual TLS on loopback; MN verifies each
revision against the roster, stores and logs it, and refuses forks, forgeries and
matters it is not a member of, with the right status code.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from crypto.dsse import sign_envelope
from federation.matter import MATTER_TYPE, ExhibitEvidence, Matter, MatterExhibit, sign_matter
from node import models as m
from node.config import FederationSettings
from node.fedclient import PeerRefusedByError
from node.fedservice import FederationServicer
from node.matters import MATTER_KIND, MatterDesk, PendingShare, get_matter
from tests.test_bundles import BundleNode, make_bundle_node, peer, serving
from tests.test_fedservice import CA, IL, MN, NOW, Compact, Identity, make_compact

GID = "IL-44717613-8a84-4971-a218-2ebd1ba3d81e"
SHA = "ab" * 32


@pytest.fixture(scope="module")
def compact() -> Compact:
    return make_compact()


@dataclasses.dataclass
class Member:
    node: BundleNode
    desk: MatterDesk

    @property
    def who(self) -> Identity:
        return self.node.who

    @property
    def store(self) -> Any:
        return self.node.store

    def servicer(self) -> FederationServicer:
        return FederationServicer(
            state=self.node.who.state,
            store=self.node.store,
            log=self.node.log,
            db=self.node.storage.db,
            settings=FederationSettings(),
            clock=self.node.clock,
            matters=self.desk,
        )

    def count(self, table: type[m.Base]) -> int:
        with self.node.storage.db.read() as s:
            return int(s.scalar(select(func.count()).select_from(table)) or 0)

    def snapshot(self) -> tuple[int, ...]:
        return tuple(
            self.count(t)
            for t in (m.Matter, m.MatterRevision, m.MatterMember, m.Exhibit, m.LogEntry)
        )


def member(tmp_path: Path, who: Identity, compact: Compact) -> Member:
    node = make_bundle_node(tmp_path, who, compact)
    return Member(node, MatterDesk(node.storage, node.log, who.signing_key, clock=node.clock))


@pytest.fixture
def mn(tmp_path: Path, compact: Compact) -> Iterator[Member]:
    node = member(tmp_path, MN, compact)
    yield node
    node.node.storage.db.dispose()


R1 = Matter(
    matter_id="IL:DOE-V-NOEM",
    owner="IL",
    revision=1,
    title="Doe v. Noem",
    states=("IL", "MN"),
    bates_prefix="IL-MN",
    legal_hold=False,
    exhibits=(),
    updated_at=NOW,
)
LATER = NOW + timedelta(minutes=5)
EXHIBIT = MatterExhibit("IL-MN-000001", GID, ExhibitEvidence(0, SHA), "Arrest video", LATER)
R2 = R1.revised(LATER, exhibits=(EXHIBIT,), states=("CA", "IL", "MN"))
R3 = R2.revised(LATER + timedelta(minutes=1), legal_hold=True)


def signed(matter: Matter, who: Identity = IL) -> bytes:
    return sign_matter(matter, who.signing_key).to_json()


def share(target: Member, envelope: bytes, caller: Identity = IL) -> int:
    async def scenario() -> int:
        async with serving(target) as port, peer(caller, target.who, port) as c:  # type: ignore[arg-type]
            return await c.share_matter(envelope)

    return asyncio.run(scenario())


def refusal(target: Member, envelope: bytes, caller: Identity = IL) -> tuple[Any, str]:
    with pytest.raises(PeerRefusedByError) as e:
        share(target, envelope, caller)
    return e.value.code, str(e.value)


# --- a member stores each revision once --------------------------------------------------


def test_a_member_stores_and_logs_each_revision_once(mn: Member) -> None:
    assert share(mn, signed(R1)) == 1
    info = get_matter(mn.node.storage.db, "IL:DOE-V-NOEM", "MN")
    assert (info.owner, info.revision, info.states, info.exhibits) == ("IL", 1, ("IL", "MN"), ())
    assert share(mn, signed(R2)) == 2
    info = get_matter(mn.node.storage.db, "IL:doe-v-noem", "MN")
    assert info.states == ("CA", "IL", "MN")
    (exhibit,) = info.exhibits
    assert (exhibit.number, exhibit.global_id, exhibit.evidence_position) == (
        "IL-MN-000001", GID, 0,
    )  # fmt: skip
    assert exhibit.held is False
    assert mn.node.log_kinds() == [MATTER_KIND, MATTER_KIND]
    assert mn.node.audit("matter.receive") == [
        ("member:IL", "ok", "IL:DOE-V-NOEM"), ("member:IL", "ok", "IL:DOE-V-NOEM"),
    ]  # fmt: skip
    # The same revision again, or an older one: answered with the revision held, nothing
    # stored twice.
    before = mn.snapshot()
    assert share(mn, signed(R2)) == 2
    assert share(mn, signed(R1)) == 2
    assert mn.snapshot() == before
    # A revision that skips one is accepted: the owner sends only the newest.
    assert share(mn, signed(R3.revised(R3.updated_at, title="Doe v. Noem (2)"))) == 4
    shown = get_matter(mn.node.storage.db, "IL:DOE-V-NOEM", "MN")
    assert (shown.revision, shown.legal_hold, len(shown.exhibits)) == (4, True, 1)
    shared = {mb.state: mb.shared_revision for mb in shown.members}
    assert shared == {"CA": None, "IL": 4, "MN": 4}


@pytest.mark.parametrize(
    ("fork", "reason"),
    [
        (replace(R2, title="Doe v. Someone"), "another document at a revision already held"),
        (
            R2.revised(LATER, exhibits=(replace(EXHIBIT, description="edited"),)),
            "exhibits: an earlier exhibit was changed",
        ),
        (R2.revised(LATER, exhibits=()), "exhibits: an earlier exhibit was changed"),
    ],
)
def test_a_fork_is_refused_with_an_alert(mn: Member, fork: Matter, reason: str) -> None:
    share(mn, signed(R2))
    before = mn.snapshot()
    code, message = refusal(mn, signed(fork))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert reason in message and "edited" not in message
    assert mn.snapshot() == before
    with mn.node.storage.db.read() as s:
        (alert,) = s.scalars(select(m.Alert)).all()
    assert (alert.kind, alert.state) == ("forked-matter", "IL")
    assert alert.evidence["held_revision"] == 2 and alert.evidence["offered_envelope_b64"]
    assert ("member:IL", "refused", "IL:DOE-V-NOEM") in mn.node.audit("matter.receive")


# --- refusals ------------------------------------------------------------------------------


def test_a_node_that_is_not_a_member_of_the_matter(mn: Member) -> None:
    theirs = replace(R1, states=("CA", "IL"))
    code, message = refusal(mn, signed(theirs))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "this node (MN) is not a member of the matter" in message
    assert mn.snapshot()[:4] == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("caller", "envelope", "message"),
    [
        (CA, lambda: signed(R1), "envelope: matter: not signed by CA's roster key"),
        (CA, lambda: signed(R1, CA), "envelope: matter: signed by CA but names another owner"),
        (IL, lambda: signed(R1, CA), "envelope: matter: not signed by IL's roster key"),
        (IL, lambda: b"not json", "envelope:"),
        (IL, lambda: b"", "envelope: required"),
        (
            IL,
            lambda: sign_envelope("application/json", R1.payload(), [IL.signing_key]).to_json(),
            f"payload type is not {MATTER_TYPE}",
        ),
    ],
)
def test_forgeries_and_malformed_envelopes_are_invalid(
    mn: Member, caller: Identity, envelope: Any, message: str
) -> None:
    code, text = refusal(mn, envelope(), caller)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in text
    assert mn.snapshot() == (0, 0, 0, 0, 0)


def test_an_envelope_too_large(mn: Member) -> None:
    code, text = refusal(mn, b"{" + b" " * (1024 * 1024 + 1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "envelope: larger than" in text


# --- the owner's side ----------------------------------------------------------------------


def test_the_owner_knows_what_each_member_lacks(tmp_path: Path, compact: Compact) -> None:
    il = member(tmp_path, IL, compact)
    try:
        info = il.desk.create(
            title="Doe v. Noem", states=["MN", "CA"], user="u", roster=compact.roster
        )
        pending = il.desk.pending_shares()
        assert [(p.state, p.revision) for p in pending] == [("CA", 1), ("MN", 1)]
        il.desk.record_shared(pending[1], 1)
        il.desk.set_hold(info.matter_id, on=True, user="u")
        assert [(p.state, p.revision) for p in il.desk.pending_shares()] == [
            ("CA", 2), ("MN", 2),
        ]  # fmt: skip
        # A member answering an older revision than sent has not caught up.
        newest = il.desk.pending_shares()[1]
        il.desk.record_shared(newest, 1)
        assert [p.state for p in il.desk.pending_shares()] == ["CA", "MN"]
        il.desk.record_shared(newest, 2)
        assert [p.state for p in il.desk.pending_shares()] == ["CA"]
        assert isinstance(newest, PendingShare)
    finally:
        il.node.storage.db.dispose()
