"""The bundle policy for `matter` incidents: approved without a reviewer (`policy:matter`)
only when the request names a matter held by the holder that lists the requester and
has the incident as an exhibit.

IL holds the incidents and the matters; MN requests; CA is a third member.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from federation.matter import Matter, MatterExhibit, sign_matter
from node import models as m
from node.config import BundleSettings
from node.ingest import ingest_file
from node.matters import MatterDesk
from tests.helpers import record, write_jsonl
from tests.test_bundles import BundleNode, make_bundle_node, new_request, send
from tests.test_fedservice import IL, MN, NOW, Compact, make_compact


@pytest.fixture(scope="module")
def compact() -> Compact:
    return make_compact()


class Holder:
    def __init__(self, tmp_path: Path, compact: Compact, settings: BundleSettings) -> None:
        self.il: BundleNode = make_bundle_node(tmp_path, IL, compact, settings)
        self.mn: BundleNode = make_bundle_node(tmp_path, MN, compact)
        path = write_jsonl(
            tmp_path / "in",
            [
                record("M-1", sharing="matter"),
                record("M-2", sharing="matter"),
                record("I-1", sharing="index"),
            ],
        )
        assert ingest_file(self.il.storage, path, actor="clerk").imported == 3
        with self.il.storage.db.read() as s:
            rows = s.execute(select(m.Incident.external_id, m.Incident.global_id))
            self.ids = {str(e): str(g) for e, g in rows}
        self.matters = MatterDesk(self.il.storage, self.il.log, IL.signing_key, clock=self.il.clock)
        self.roster = compact.roster
        info = self.matters.create(
            title="Doe v. Noem", states=["MN"], user="atty", roster=self.roster
        )
        self.matter = info.matter_id
        for key in ("M-1", "I-1"):
            self.matters.add_exhibit(
                self.matter, global_id=self.ids[key], description=key, user="atty"
            )

    def ask(self, key: str, matter: str | None) -> Any:
        _, envelope = new_request(self.mn, self.ids[key], matter=matter)
        return send(MN, self.il, envelope)

    def close(self) -> None:
        self.il.storage.db.dispose()
        self.mn.storage.db.dispose()


@pytest.fixture
def holder(tmp_path: Path, compact: Compact) -> Iterator[Holder]:
    h = Holder(tmp_path, compact, BundleSettings())
    yield h
    h.close()


def test_an_exhibit_of_a_matter_listing_the_requester_is_approved(holder: Holder) -> None:
    answer = holder.ask("M-1", holder.matter)
    assert answer.state == "approved"
    assert holder.il.audit("bundle.decide") == [("policy:matter", "approved", holder.ids["M-1"])]


@pytest.mark.parametrize(
    ("key", "matter"),
    [
        ("M-1", None),  # no matter named
        ("M-1", "IL:OTHER"),  # a matter the holder does not hold
        ("M-2", "IL:DOE-V-NOEM"),  # not an exhibit of the matter
        ("I-1", "IL:DOE-V-NOEM"),  # an exhibit, but an `index` incident always waits
    ],
)
def test_anything_else_waits_for_a_reviewer(holder: Holder, key: str, matter: str | None) -> None:
    assert holder.ask(key, matter).state == "pending"
    assert holder.il.audit("bundle.decide") == []


def test_a_matter_that_does_not_list_the_requester(holder: Holder) -> None:
    other = holder.matters.create(
        title="CA only", states=["CA"], user="atty", roster=holder.roster
    ).matter_id
    holder.matters.add_exhibit(other, global_id=holder.ids["M-1"], description="d", user="atty")
    assert holder.ask("M-1", other).state == "pending"


def test_a_matter_shared_by_another_owner_counts_too(holder: Holder) -> None:
    """MN owns a matter with IL as member and IL's incident as an exhibit; IL received it."""
    theirs = Matter(
        matter_id="MN:JOINT", owner="MN", revision=1, title="Joint", states=("IL", "MN"),
        bates_prefix="MN", legal_hold=False, updated_at=NOW + timedelta(seconds=1),
        exhibits=(MatterExhibit("MN-000001", holder.ids["M-2"], None, "d", NOW),),
    )  # fmt: skip
    envelope = sign_matter(theirs, MN.signing_key).to_json()
    assert holder.matters.receive("MN", envelope, holder.roster) == 1
    assert holder.ask("M-2", "MN:JOINT").state == "approved"


def test_the_requester_may_name_its_own_matter_by_id_alone(
    tmp_path: Path, compact: Compact
) -> None:
    """`--matter joint` at MN means MN:JOINT when MN holds that matter."""
    h = Holder(tmp_path, compact, BundleSettings())
    try:
        mn_desk = MatterDesk(h.mn.storage, h.mn.log, MN.signing_key, clock=h.mn.clock)
        mn_desk.create(title="Joint", states=["IL"], user="atty", roster=h.roster, slug="JOINT")
        info, _ = h.mn.desk.new_request(
            holder="IL", global_id=h.ids["M-1"], purpose="p", matter="joint", user="u",
            roster=h.roster,
        )  # fmt: skip
        assert info.matter == "MN:JOINT"
        info, _ = h.mn.desk.new_request(
            holder="IL", global_id=h.ids["M-1"], purpose="p", matter="CA:ELSEWHERE", user="u",
            roster=h.roster,
        )  # fmt: skip
        assert info.matter == "CA:ELSEWHERE"
    finally:
        h.close()


def test_review_levels_make_matter_requests_wait(tmp_path: Path, compact: Compact) -> None:
    h = Holder(tmp_path, compact, BundleSettings(review_levels=("matter",)))
    try:
        assert h.ask("M-1", h.matter).state == "pending"
    finally:
        h.close()
