"""Which agent observations are one agent: transitive linking over strong keys.

Pure functions over pseudonymised identifier keys (no database; federation.matches
reads the rows). An **observation** is one agent as one incident's index entry
records it: `(state, log_index, position)`. Each carries at most one pseudonym of
each key kind (docs/identifiers.md): `badge`, `name_agency`, `name`, `unit`,
`plate`.

The rule (docs/analysis.md, "How observations become one agent"):

- Two observations with the same `badge` pseudonym are the same agent.
- Two observations with the same `name_agency` pseudonym are the same agent,
  unless that name and agency was seen beside two or more different badges: then
  it names several people (two ICE-ERO officers called John Smith) and joins
  nothing; it is reported as **ambiguous**.
- Joining is transitive: a badge in one incident, the same badge with a name in
  another, and that name and agency alone in a third are one agent.
- `name` (without the agency), `unit` and `plate` never join observations into an
  agent: a common name is shared by strangers, a unit by a team, a plate by
  whoever drives. They are links of their own (medium, medium, vehicle).

Because an observation carries at most one badge and one name-and-agency, and an
unambiguous name-and-agency was seen with at most one badge, no agent built this
way holds two different badges, and the result does not depend on the order of
the rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from node.normalize import KEY_STRENGTH

STRONG: Final = ("badge", "name_agency")


def strength_of(kind: str) -> str:
    """The strength of a link by this key kind (DESIGN.md section 3)."""
    strength = KEY_STRENGTH.get(kind)
    if strength is None:
        raise ValueError(f"unknown identifier key kind {kind!r}")
    return strength


Observation = tuple[str, int, int]  # state, log index, agent position in the entry
T = TypeVar("T")


@dataclass(frozen=True)
class KeyRow:
    """One pseudonym of one observation (a row of `replica_pseudonyms`)."""

    observation: Observation
    kind: str
    pseudonym: str


@dataclass
class Agent:
    """Observations joined into one agent, and the keys that join them."""

    observations: set[Observation] = field(default_factory=set)
    # key kind -> pseudonym -> the observations of this agent that carry it
    keys: dict[str, dict[str, set[Observation]]] = field(default_factory=dict)
    # name_agency pseudonyms this agent carries that name several badged agents
    ambiguous: set[str] = field(default_factory=set)

    @property
    def states(self) -> set[str]:
        return {o[0] for o in self.observations}

    @property
    def ident(self) -> str:
        """A stable name for the agent: its badge pseudonym, else its smallest strong key."""
        badges = sorted(self.keys.get("badge", {}))
        if badges:
            return badges[0]
        return min(p for kind in STRONG for p in self.keys.get(kind, {}))


class DisjointSets(Generic[T]):
    """Union-find (path halving, union by size): which items have been joined, directly or
    through others. Used for agents here and for teams in federation.patterns."""

    def __init__(self) -> None:
        self.parent: dict[T, T] = {}
        self.size: dict[T, int] = {}

    def add(self, item: T) -> None:
        if item not in self.parent:
            self.parent[item] = item
            self.size[item] = 1

    def find(self, item: T) -> T:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, a: T, b: T) -> None:
        self.add(a)
        self.add(b)
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> list[set[T]]:
        """Every group of joined items (each item added is in exactly one)."""
        found: dict[T, set[T]] = defaultdict(set)
        for item in self.parent:
            found[self.find(item)].add(item)
        return list(found.values())


def ambiguous_names(rows: Iterable[KeyRow]) -> set[str]:
    """The `name_agency` pseudonyms seen beside two or more different badges."""
    badge_of: dict[Observation, str] = {}
    names: dict[Observation, str] = {}
    for r in rows:
        if r.kind == "badge":
            badge_of[r.observation] = r.pseudonym
        elif r.kind == "name_agency":
            names[r.observation] = r.pseudonym
    badges: dict[str, set[str]] = defaultdict(set)
    for o, name in names.items():
        if o in badge_of:
            badges[name].add(badge_of[o])
    return {name for name, seen in badges.items() if len(seen) > 1}


def link_agents(rows: Iterable[KeyRow]) -> list[Agent]:
    """The agents that the strong keys among `rows` form (see the module docstring).

    `rows` must hold every strong key row of every observation it mentions, and every
    row of each strong pseudonym it mentions (federation.matches expands to that);
    rows of other kinds are kept as each agent's other keys. Observations without a
    usable strong key form no agent. Agents are returned by `ident`."""
    rows = list(rows)
    ambiguous = ambiguous_names(rows)
    sets: DisjointSets[Observation] = DisjointSets()
    by_key: dict[str, list[Observation]] = defaultdict(list)
    for r in rows:
        if r.kind in STRONG and r.pseudonym not in ambiguous:
            sets.add(r.observation)
            by_key[r.pseudonym].append(r.observation)
    for observations in by_key.values():
        first = observations[0]
        for o in observations[1:]:
            sets.union(first, o)
    agents: dict[Observation, Agent] = defaultdict(Agent)
    for r in rows:
        if r.observation not in sets.parent:
            continue
        agent = agents[sets.find(r.observation)]
        agent.observations.add(r.observation)
        agent.keys.setdefault(r.kind, {}).setdefault(r.pseudonym, set()).add(r.observation)
        if r.pseudonym in ambiguous:
            agent.ambiguous.add(r.pseudonym)
    return sorted(agents.values(), key=lambda a: a.ident)


def group_by_key(rows: Iterable[KeyRow]) -> Mapping[tuple[str, str], set[Observation]]:
    """(kind, pseudonym) -> the observations that carry it."""
    groups: dict[tuple[str, str], set[Observation]] = defaultdict(set)
    for r in rows:
        groups[(r.kind, r.pseudonym)].add(r.observation)
    return groups
