"""federation.matches over a replica written the way sync writes it (index_pseudonyms)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date

import pytest

from federation.index_entry import AgentEntry, EntryContent, IndexEntry
from federation.matches import Match, MatchFilter, find_matches
from node import migrate
from node.db import Database
from node.publish import index_pseudonyms


def pseudonym(key: str) -> str:
    """Stands in for the OPRF: 128 hex digits, equal for equal keys."""
    return hashlib.sha512(key.encode()).hexdigest()


def agent(agency: str | None = "ICE-ERO", **keys: str) -> AgentEntry:
    return AgentEntry(
        agency, "primary", False, True, True, {k: pseudonym(f"{k}:{v}") for k, v in keys.items()}
    )


def entry(
    state: str,
    n: int,
    agents: tuple[AgentEntry, ...],
    *,
    day: str = "2025-10-04",
    conduct: tuple[str, ...] = ("warrantless_arrest",),
    revision: int = 1,
) -> IndexEntry:
    gid = f"{state}-{n:036d}"
    return IndexEntry(
        state, gid, revision, EntryContent(day, "Cook", "street", conduct, "reported", agents)
    )


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


def store(
    db: Database, state: str, *entries: tuple[int, IndexEntry], replaced: tuple[int, ...] = ()
) -> None:
    with db.write() as s:
        index_pseudonyms(s, state, list(entries), replaced)


SMITH = {"badge": "ICE-ERO:4471", "name_agency": "ICE-ERO:john smith", "name": "john smith"}


@pytest.fixture
def compact(db: Database) -> Database:
    """An agent seen in IL (badge, name), MN (name and agency only) and WI (badge only,
    in December); a CBP officer of the same name in CA; a unit in IL and MN; a plate in
    IL and WI; an agent seen twice in IL only."""
    store(
        db,
        "IL",
        (1, entry("IL", 1, (agent(**SMITH),), conduct=("masked_agent", "warrantless_arrest"))),
        (2, entry("IL", 2, (agent(unit="ICE-ERO:midway team 3"),))),
        (3, entry("IL", 3, (agent(plate="IL:ABC1234"),))),
        (4, entry("IL", 4, (agent(badge="ICE-ERO:1"),))),
        (5, entry("IL", 5, (agent(badge="ICE-ERO:1"),))),
    )
    store(
        db,
        "MN",
        (
            10,
            entry(
                "MN",
                1,
                (agent(name_agency="ICE-ERO:john smith", name="john smith"),),
                conduct=("excessive_force",),
            ),
        ),
        (11, entry("MN", 2, (agent(unit="ICE-ERO:midway team 3"), agent(None)))),
    )
    store(
        db,
        "WI",
        (0, entry("WI", 1, (agent(badge="ICE-ERO:4471"),), day="2025-12-01")),
        (1, entry("WI", 2, (agent(plate="IL:ABC1234"),))),
    )
    store(
        db,
        "CA",
        (
            7,
            entry(
                "CA",
                1,
                (
                    agent(
                        "CBP-OFO",
                        badge="CBP-OFO:9",
                        name="john smith",
                        name_agency="CBP-OFO:john smith",
                    ),
                ),
            ),
        ),
    )
    return db


def by_entity(matches: list[Match]) -> dict[str, list[Match]]:
    out: dict[str, list[Match]] = {}
    for x in matches:
        out.setdefault(x.entity, []).append(x)
    return out


def test_one_agent_across_three_states_joined_by_badge_and_by_name(compact: Database) -> None:
    found = by_entity(find_matches(compact, MatchFilter()))
    assert sorted(found) == ["agent", "name", "unit", "vehicle"]
    (smith,) = found["agent"]
    assert smith.strength == "strong"
    assert smith.ident == pseudonym("badge:ICE-ERO:4471")
    assert smith.states == ("IL", "MN", "WI")
    assert smith.incidents == {
        "IL": (f"IL-{1:036d}",),
        "MN": (f"MN-{1:036d}",),
        "WI": (f"WI-{1:036d}",),
    }
    assert (smith.first_day, smith.last_day) == ("2025-10-04", "2025-12-01")
    assert smith.conduct == {"masked_agent": 1, "warrantless_arrest": 2, "excessive_force": 1}
    assert smith.agencies == {"ICE-ERO": 3}
    # the evidence for each link: which key joined which incidents
    links = {(link.kind, link.incidents) for link in smith.links}
    assert links == {
        ("badge", (("IL", f"IL-{1:036d}"), ("WI", f"WI-{1:036d}"))),
        ("name_agency", (("IL", f"IL-{1:036d}"), ("MN", f"MN-{1:036d}"))),
    }


def test_a_shared_common_name_is_a_medium_link_never_a_strong_one(compact: Database) -> None:
    found = by_entity(find_matches(compact, MatchFilter()))
    (name,) = found["name"]
    assert name.strength == "medium"
    assert name.states == ("CA", "IL", "MN")
    assert name.agencies == {"ICE-ERO": 2, "CBP-OFO": 1}
    assert all("CA" not in x.states for x in found["agent"])


def test_units_and_vehicles(compact: Database) -> None:
    found = by_entity(find_matches(compact, MatchFilter()))
    (unit,) = found["unit"]
    assert (unit.strength, unit.states) == ("medium", ("IL", "MN"))
    (vehicle,) = found["vehicle"]
    assert (vehicle.strength, vehicle.states) == ("vehicle", ("IL", "WI"))


def test_strongest_first_then_most_states(compact: Database) -> None:
    found = find_matches(compact, MatchFilter())
    assert [x.entity for x in found] == ["agent", "name", "unit", "vehicle"]


@pytest.mark.parametrize(
    ("f", "entities"),
    [
        (MatchFilter(min_strength="strong"), ["agent"]),
        (MatchFilter(min_strength="medium"), ["agent", "name", "unit"]),
        (MatchFilter(min_states=3), ["agent", "name"]),
        (MatchFilter(states=frozenset({"WI"})), ["agent", "vehicle"]),
        (MatchFilter(states=frozenset({"IL", "MN"})), ["agent", "name", "unit"]),
        (MatchFilter(agency="CBP-OFO"), ["name"]),
        (MatchFilter(conduct="excessive_force"), ["agent", "name"]),
        (MatchFilter(conduct="chemical_agent"), []),
    ],
)
def test_filters(compact: Database, f: MatchFilter, entities: list[str]) -> None:
    assert [x.entity for x in find_matches(compact, f)] == entities


def test_a_date_range_uses_only_the_observations_inside_it(compact: Database) -> None:
    october = find_matches(compact, MatchFilter(until=date(2025, 10, 31)))
    (smith,) = by_entity(october)["agent"]
    assert smith.states == ("IL", "MN")
    assert by_entity(october).get("vehicle")  # IL and WI#2 are both in October
    december = find_matches(compact, MatchFilter(since=date(2025, 11, 1)))
    assert december == []


def test_a_correction_that_drops_the_name_drops_the_link(compact: Database) -> None:
    store(
        compact,
        "MN",
        (12, entry("MN", 1, (agent(unit="ICE-ERO:other"),), revision=2)),
        replaced=(10,),
    )
    (smith,) = by_entity(find_matches(compact, MatchFilter()))["agent"]
    assert smith.states == ("IL", "WI")


def test_filter_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="min_states"):
        MatchFilter(min_states=1)
    with pytest.raises(ValueError, match="min_strength"):
        MatchFilter(min_strength="weak")
    with pytest.raises(ValueError, match="since"):
        MatchFilter(since=date(2025, 2, 1), until=date(2025, 1, 1))


def test_an_empty_replica_has_no_matches(db: Database) -> None:
    assert find_matches(db, MatchFilter()) == []
