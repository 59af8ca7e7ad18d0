"""federation.linking: which observations are one agent."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.linking import KeyRow, ambiguous_names, link_agents, strength_of


def rows(*observations: tuple[str, int, dict[str, str]]) -> list[KeyRow]:
    """KeyRows from (state, log index, {kind: pseudonym}); position 0."""
    return [
        KeyRow((state, index, 0), kind, p)
        for state, index, keys in observations
        for kind, p in keys.items()
    ]


def shape(agents: list) -> list[set[tuple[str, int, int]]]:  # type: ignore[type-arg]
    return sorted((a.observations for a in agents), key=sorted)


def test_badge_then_badge_and_name_then_name_alone_is_one_agent() -> None:
    agents = link_agents(
        rows(
            ("IL", 1, {"badge": "B"}),
            ("IL", 2, {"badge": "B", "name_agency": "N", "name": "n"}),
            ("MN", 1, {"name_agency": "N", "name": "n"}),
        )
    )
    assert len(agents) == 1
    (agent,) = agents
    assert agent.observations == {("IL", 1, 0), ("IL", 2, 0), ("MN", 1, 0)}
    assert agent.states == {"IL", "MN"}
    assert agent.ident == "B"
    assert agent.keys["name_agency"]["N"] == {("IL", 2, 0), ("MN", 1, 0)}
    assert agent.keys["name"]["n"] == {("IL", 2, 0), ("MN", 1, 0)}  # kept, joined nothing


def test_a_name_and_agency_beside_two_badges_joins_nothing() -> None:
    """Two ICE-ERO officers called John Smith with different badges stay two agents, and
    a third observation with only that name and agency is given to neither."""
    data = rows(
        ("IL", 1, {"badge": "B1", "name_agency": "N"}),
        ("MN", 1, {"badge": "B2", "name_agency": "N"}),
        ("WI", 1, {"name_agency": "N"}),
    )
    assert ambiguous_names(data) == {"N"}
    agents = link_agents(data)
    assert shape(agents) == [{("IL", 1, 0)}, {("MN", 1, 0)}]
    assert all(a.ambiguous == {"N"} for a in agents)


def test_name_unit_and_plate_never_join_observations() -> None:
    data = rows(
        ("IL", 1, {"name": "n", "unit": "u", "plate": "p"}),
        ("MN", 1, {"name": "n", "unit": "u", "plate": "p"}),
    )
    assert link_agents(data) == []


def test_same_name_different_agencies_are_different_agents() -> None:
    data = rows(
        ("IL", 1, {"name_agency": "ERO:n", "name": "n"}),
        ("MN", 1, {"name_agency": "CBP:n", "name": "n"}),
    )
    assert shape(link_agents(data)) == [{("IL", 1, 0)}, {("MN", 1, 0)}]


def test_strength_of_each_kind() -> None:
    assert [strength_of(k) for k in ("badge", "name_agency", "name", "unit", "plate")] == [
        "strong",
        "strong",
        "medium",
        "medium",
        "vehicle",
    ]
    with pytest.raises(ValueError, match="unknown identifier key kind"):
        strength_of("ssn")


_observation = st.tuples(
    st.sampled_from(["IL", "MN", "WI"]),
    st.integers(0, 30),
    st.fixed_dictionaries(
        {},
        optional={
            "badge": st.sampled_from(["B1", "B2", "B3", "B4"]),
            "name_agency": st.sampled_from(["N1", "N2", "N3"]),
            "name": st.sampled_from(["n1", "n2"]),
        },
    ),
)


def _unique(observations: list[tuple[str, int, dict[str, str]]]) -> list[KeyRow]:
    seen: dict[tuple[str, int], dict[str, str]] = {}
    for state, index, keys in observations:
        seen.setdefault((state, index), keys)
    return rows(*((s, i, k) for (s, i), k in seen.items()))


@settings(max_examples=300, deadline=None)
@given(st.lists(_observation, max_size=25), st.randoms(use_true_random=False))
def test_no_agent_holds_two_badges_and_order_does_not_matter(
    observations: list[tuple[str, int, dict[str, str]]], rnd: random.Random
) -> None:
    data = _unique(observations)
    agents = link_agents(data)
    for a in agents:
        assert len(a.keys.get("badge", {})) <= 1
    # every observation with a badge is in exactly one agent, with every other of its badge
    placed = [o for a in agents for o in a.observations]
    assert len(placed) == len(set(placed))
    with_badge = {r.observation for r in data if r.kind == "badge"}
    assert with_badge <= set(placed)
    shuffled = list(data)
    rnd.shuffle(shuffled)
    assert shape(link_agents(shuffled)) == shape(agents)
    # an unambiguous name and agency never splits across agents
    ambiguous = ambiguous_names(data)
    for r in data:
        if r.kind == "name_agency" and r.pseudonym not in ambiguous:
            holders = [a for a in agents if r.pseudonym in a.keys.get("name_agency", {})]
            assert len(holders) == 1
