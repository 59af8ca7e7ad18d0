"""`compact agents matches`: agents, units and vehicles seen in two or more states.

Runs on the node's own replica of the federated index (`replica_pseudonyms`,
`replica_incidents`, `replica_agents`; node.publish.index_pseudonyms fills them for
every member, this node included), so it reveals nothing the index does not
already share. The steps (docs/analysis.md):

1. One grouped scan of the pseudonym index finds the pseudonyms seen in two or
   more states (grouped on the indexed 64-bit prefix; the full pseudonyms are
   compared afterwards, so a prefix collision merges nothing).
2. Every row of those pseudonyms is read with its incident's day and conduct and
   its agent's agency.
3. Strong keys (`badge`, `name_agency`) are followed transitively: the other strong
   keys of each observation reached, then every observation of those keys, until
   nothing new is reached, so that an agent whose badge appears in one state and
   whose name and agency appears in another is one agent.
4. federation.linking joins observations into agents. An agent seen in two or more
   states is a strong match; a cross-state `name` that is not one agent's is a
   medium match, as is a cross-state `unit`; a cross-state `plate` is a vehicle.

A date range restricts the observations used (a match must hold within it); the
other filters keep or drop whole matches.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, distinct, func, select
from sqlalchemy.orm import Session

from federation.linking import (
    STRONG,
    Agent,
    KeyRow,
    Observation,
    group_by_key,
    link_agents,
    strength_of,
)
from node import models as m
from node.db import Database
from node.normalize import STRENGTHS

CHUNK: Final = 500  # values per IN list
ENTITY_OF_KIND: Final = {"name": "name", "unit": "unit", "plate": "vehicle"}

_P = m.ReplicaPseudonym
_I = m.ReplicaIncident
_A = m.ReplicaAgent


@dataclass(frozen=True)
class MatchFilter:
    """What `agents matches` keeps. `states`: every one must be among a match's states;
    `agency`, `conduct`: at least one observation (incident) must have it; `since`,
    `until`: only observations on those days (inclusive) are used."""

    states: frozenset[str] = frozenset()
    agency: str | None = None
    conduct: str | None = None
    since: date | None = None
    until: date | None = None
    min_states: int = 2
    min_strength: str = "vehicle"

    def __post_init__(self) -> None:
        if self.min_states < 2:
            raise ValueError("min_states: a match needs at least 2 states")
        if self.min_strength not in STRENGTHS:
            raise ValueError(f"min_strength: one of {', '.join(STRENGTHS)}")
        if self.since and self.until and self.since > self.until:
            raise ValueError("since: after until")


@dataclass(frozen=True)
class Link:
    """One key that joins observations of a match: its kind, its pseudonym, and the
    incidents (state, global id) that carry it."""

    kind: str
    pseudonym: str
    incidents: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "strength": strength_of(self.kind),
            "pseudonym": self.pseudonym,
            "incidents": [{"state": s, "global_id": g} for s, g in self.incidents],
        }


@dataclass(frozen=True)
class Match:
    """One agent (joined by strong keys), name, unit or vehicle seen in several states."""

    entity: str  # agent | name | unit | vehicle
    strength: str  # strong | medium | vehicle
    ident: str  # a pseudonym: the agent's badge or smallest strong key; else the key itself
    incidents: dict[str, tuple[str, ...]]  # state -> global ids, sorted
    first_day: str
    last_day: str
    conduct: dict[str, int]  # conduct -> incidents
    agencies: dict[str, int]  # agency -> observations (agents not naming one: "UNKNOWN")
    links: tuple[Link, ...]
    ambiguous: tuple[str, ...] = ()  # name_agency pseudonyms that joined nothing

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(sorted(self.incidents))

    @property
    def incident_count(self) -> int:
        return sum(len(g) for g in self.incidents.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "strength": self.strength,
            "id": self.ident,
            "states": list(self.states),
            "incidents_per_state": {s: len(g) for s, g in sorted(self.incidents.items())},
            "first_day": self.first_day,
            "last_day": self.last_day,
            "conduct": dict(sorted(self.conduct.items())),
            "agencies": dict(sorted(self.agencies.items())),
            "global_ids": [g for s in self.states for g in self.incidents[s]],
            "links": [link.to_json() for link in self.links],
            "ambiguous_name_agency": list(self.ambiguous),
        }


@dataclass(frozen=True)
class Facts:
    global_id: str
    day: str
    conduct: tuple[str, ...]
    agency: str | None


@dataclass
class Loaded:
    rows: dict[tuple[Observation, str], KeyRow] = field(default_factory=dict)
    facts: dict[Observation, Facts] = field(default_factory=dict)

    def add(self, result: Iterable[Any]) -> list[KeyRow]:
        """Keep the rows of `result` (query rows of `_rows`); returns the strong-key rows
        that were not kept already."""
        fresh = []
        for state, index, position, kind, pseudonym, gid, day, conduct, agency in result:
            o = (str(state), int(index), int(position))
            key = (o, str(kind))
            if key in self.rows:
                continue
            row = self.rows[key] = KeyRow(o, str(kind), str(pseudonym))
            if row.kind in STRONG:
                fresh.append(row)
            if o not in self.facts:
                self.facts[o] = Facts(
                    str(gid), str(day), tuple(str(conduct).split()), agency and str(agency)
                )
        return fresh


def _rows(f: MatchFilter) -> Select[*tuple[Any, ...]]:
    """Pseudonym rows with their incident's day and conduct and their agent's agency."""
    return (
        select(
            _P.state, _P.log_index, _P.position, _P.kind, _P.pseudonym, _P.global_id,
            _I.day, _I.conduct, _A.agency,
        )
        .join(_I, and_(_I.state == _P.state, _I.log_index == _P.log_index))
        .join(
            _A,
            and_(_A.state == _P.state, _A.log_index == _P.log_index, _A.position == _P.position),
        )
        .where(*in_range(f))
    )  # fmt: skip


def in_range(f: MatchFilter) -> list[ColumnElement[bool]]:
    """The conditions on `replica_incidents.day` that the date range sets."""
    conditions = []
    if f.since:
        conditions.append(_I.day >= f.since.isoformat())
    if f.until:
        conditions.append(_I.day <= f.until.isoformat())
    return conditions


def _cross_state_prefixes(f: MatchFilter) -> Select[Any]:
    """The prefixes of the pseudonyms seen in two or more states (in the date range)."""
    q = select(_P.prefix)
    if f.since or f.until:
        q = q.join(_I, and_(_I.state == _P.state, _I.log_index == _P.log_index))
    return q.where(*in_range(f)).group_by(_P.prefix).having(func.count(distinct(_P.state)) >= 2)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _strong_rows_of(
    s: Session, f: MatchFilter, observations: Sequence[Observation]
) -> Iterator[Any]:
    """The strong-key rows of `observations`: per state, by chunks of log indexes (the primary
    key's leading columns), keeping only the observations asked for. A row-value
    `(state, log_index, position) IN (...)` is a full scan of the table on SQLite."""
    wanted = set(observations)
    indexes: dict[str, set[int]] = defaultdict(set)
    for state, index, _ in observations:
        indexes[state].add(index)
    for state, found in sorted(indexes.items()):
        for chunk in _chunks(sorted(found)):
            q = _rows(f).where(_P.state == state, _P.log_index.in_(chunk), _P.kind.in_(STRONG))
            yield from (r for r in s.execute(q) if (r[0], r[1], r[2]) in wanted)


def _seed_rows(s: Session, f: MatchFilter, seeds: Select[Any]) -> Iterator[Any]:
    """Every row (within `f`'s date range) of the pseudonyms whose prefixes `seeds` selects.
    SQLite runs this best as one query with `seeds` as a subquery. PostgreSQL misestimates
    the join of the three replica tables at one row and re-runs the grouped subquery for
    each (quadratic: docs/BENCHMARKS.md), so there the prefixes are read first and the rows
    by chunks of them."""
    bind = s.get_bind()
    if bind.dialect.name == "sqlite":
        yield from s.execute(_rows(f).where(_P.prefix.in_(seeds)))
        return
    prefixes = [p for (p,) in s.execute(seeds)]
    for chunk in _chunks(prefixes):
        yield from s.execute(_rows(f).where(_P.prefix.in_(chunk)))


def load_linked(s: Session, f: MatchFilter, seeds: Select[Any]) -> Loaded:
    """Every row of the pseudonyms whose prefixes `seeds` selects, and then the strong keys
    followed transitively (step 3 of the module docstring), within `f`'s date range."""
    loaded = Loaded()
    fresh = loaded.add(_seed_rows(s, f, seeds))
    done_keys = {r.pseudonym for r in fresh}  # every row of these is loaded
    done_obs: set[Observation] = set()  # every strong row of these is loaded
    while fresh:
        new_obs = sorted({r.observation for r in fresh} - done_obs)
        done_obs.update(new_obs)
        new_keys = sorted(
            {r.pseudonym for r in loaded.add(_strong_rows_of(s, f, new_obs))} - done_keys
        )
        done_keys.update(new_keys)
        fresh = []
        for chunk in _chunks(new_keys):
            fresh += loaded.add(
                s.execute(
                    _rows(f).where(
                        _P.prefix.in_([m.pseudonym_prefix(p) for p in chunk]),
                        _P.pseudonym.in_(chunk),
                    )
                )
            )
    return loaded


def summarize(
    entity: str,
    strength: str,
    ident: str,
    observations: Iterable[Observation],
    facts: dict[Observation, Facts],
    links: Iterable[Link],
    ambiguous: Iterable[str] = (),
) -> Match:
    incidents: dict[str, set[str]] = defaultdict(set)
    days: list[str] = []
    conduct_of: dict[tuple[str, str], tuple[str, ...]] = {}
    agencies: Counter[str] = Counter()
    for o in observations:
        fact = facts[o]
        incidents[o[0]].add(fact.global_id)
        days.append(fact.day)
        conduct_of[(o[0], fact.global_id)] = fact.conduct
        agencies[fact.agency or "UNKNOWN"] += 1
    conduct = Counter(c for values in conduct_of.values() for c in values)
    return Match(
        entity,
        strength,
        ident,
        {s: tuple(sorted(g)) for s, g in incidents.items()},
        min(days),
        max(days),
        dict(conduct),
        dict(agencies),
        tuple(links),
        tuple(sorted(ambiguous)),
    )


def _link(kind: str, pseudonym: str, carriers: Iterable[Observation], loaded: Loaded) -> Link:
    incidents = sorted({(o[0], loaded.facts[o].global_id) for o in carriers})
    return Link(kind, pseudonym, tuple(incidents))


def _agent_match(agent: Agent, loaded: Loaded) -> Match:
    links = [
        _link(kind, p, carriers, loaded)
        for kind in STRONG
        for p, carriers in sorted(agent.keys.get(kind, {}).items())
        if p not in agent.ambiguous  # carried, but joined nothing
    ]
    return summarize(
        "agent",
        "strong",
        agent.ident,
        agent.observations,
        loaded.facts,
        [link for link in links if len(link.incidents) > 1],
        agent.ambiguous,
    )


def _keep(match: Match, f: MatchFilter) -> bool:
    return (
        len(match.incidents) >= f.min_states
        and STRENGTHS.index(match.strength) >= STRENGTHS.index(f.min_strength)
        and f.states <= set(match.incidents)
        and (f.agency is None or f.agency in match.agencies)
        and (f.conduct is None or f.conduct in match.conduct)
    )


def _order(match: Match) -> tuple[int, int, int, str]:
    return (
        -STRENGTHS.index(match.strength),
        -len(match.incidents),
        -match.incident_count,
        match.ident,
    )


def find_matches(db: Database, f: MatchFilter) -> list[Match]:
    """The cross-state matches in this node's replica that `f` keeps, strongest first,
    then by number of states and of incidents."""
    with db.read() as s:
        loaded = load_linked(s, f, _cross_state_prefixes(f))
    rows = list(loaded.rows.values())
    agents = link_agents(r for r in rows if r.kind in STRONG)
    agent_of = {o: a.ident for a in agents for o in a.observations}
    found = [_agent_match(a, loaded) for a in agents if len(a.states) >= 2]
    for (kind, pseudonym), carriers in sorted(group_by_key(rows).items()):
        if kind in STRONG or len({o[0] for o in carriers}) < 2:
            continue
        if (
            kind == "name"
            and len({agent_of.get(o) for o in carriers}) == 1
            and all(o in agent_of for o in carriers)
        ):
            continue  # the name of one agent already matched by strong keys
        link = _link(kind, pseudonym, carriers, loaded)
        found.append(
            summarize(
                ENTITY_OF_KIND[kind], strength_of(kind), pseudonym, carriers, loaded.facts, [link]
            )
        )
    return sorted((x for x in found if _keep(x, f)), key=_order)
