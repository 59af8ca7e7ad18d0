"""Seeded multi-state incident data with planted truth, for testing cross-state analysis.

Run from the repository root::

    python -m bench.planted --seed 7 --out DIR [--states IL,MN,WI] [--scale 1]

It writes one JSON Lines import file per state, ``DIR/<STATE>.jsonl`` (the import
format of docs/import-format.md; no evidence, no people), and ``DIR/truth.json``,
which says what was planted in terms of ``[state, external_id]`` pairs. The same
seed, states and scale give byte-identical files: every draw comes from one
``random.Random(seed)``, never the global generator or the clock, and nothing
depends on set order or ``PYTHONHASHSEED``.

What is planted (counts at scale 1; each is multiplied by ``--scale``):

- **background**: every county of every state (2-3 a state from a small table;
  Adams, Franklin and Jefferson for a state not in it) gets a steady rate of
  incidents a week (2 in its first county, 1 in the others) over 26 weeks from
  Monday 2025-05-05, at the state's summer UTC offset, with 1-3 agents drawn from
  a per-state pool of 30 single-state agents (unique badges, names, units and
  plates; some show only some identifiers, some are masked), random location
  kinds, statuses, sources and conduct;
- **travellers** (6): each in 2-3 states over 4-6 incidents, its badge and name in
  varied spellings that normalise to one key; some incidents show the badge only,
  some the name and agency only, at least one both, so joining them is transitive;
- **decoys** (3 pairs): two different agents with the same common name, each in
  one state; either different agencies, or the same agency with each agent's own
  badge always beside the name (so the name and agency is ambiguous);
- **teams** (2 of 4 agents): 3 incidents in one county of a state within 4 weeks,
  then 3 (6 weeks later) in another state, 3-4 members at each, sharing a unit
  text (at every incident) and one or two plates (the first plate at the first
  incident in each state);
- **masked** (1 group, 8 incidents): masked agents without name or badge, one
  agency, one unit text and plate (each incident shows the unit or the plate, the
  first in each state both), 4 incidents within 3 weeks in one county of a
  state, then 4 in one county of another;
- **surge**: one county (MN Hennepin when MN is generated, else the first county
  of the last state) gets 5 times its weekly rate in two consecutive weeks; the
  other planted incidents avoid that county, so its other weeks hold exactly
  its rate;
- **conduct**: exactly ``round(0.6 n)`` of the n incidents with a CBP-USBP agent
  carry ``excessive_force``, against ``round(0.05 n)`` of the others; exactly
  ``round(0.3 n)`` of the incidents with an ICE-ERO agent are at a
  ``courthouse``, against ``round(0.03 n)`` of the others.

Nothing else links states: pool agents, units and plates never appear in two
states, so every badge, name, unit or plate key seen in two or more states is
one that truth.json names (a same-agency decoy pair also shares its name and
agency, which joins nothing). External ids (``MN-PL-000123``) are numbered in
time order per state, so they say nothing about what was planted.

truth.json (keys are key *values* as docs/identifiers.md derives them, without
the ``kind:`` prefix; an incident is ``[state, external_id]``)::

    {"seed": 7, "scale": 1, "states": ["IL", "MN", "WI"],
     "weeks": ["2025-05-05", ...],                      # the 26 Monday start days
     "agents": [                                        # travellers and team members
       {"id": "traveller-1", "kind": "traveller",      # or "team" (with "team")
        "agency": "ICE-ERO", "badge_key": "ICE-ERO:4471", "name_key": "john smith",
        "name_agency_key": "ICE-ERO:john smith", "states": ["IL", "MN"],
        "incidents": [["IL", "IL-PL-000004"], ...],
        "observations": [{"incident": ["IL", "IL-PL-000004"], "agent": 0,
                          "shows": ["badge"]}, ...],   # agent = index in "agents"
        "links": [{"kind": "badge", "key": "ICE-ERO:4471", "incidents": [...]},
                  {"kind": "name_agency", "key": "ICE-ERO:john smith", "incidents": [...]}],
        "bridges": [...],                               # incidents showing both keys
        "transitive": true}, ...],                      # no single key covers all
     "decoys": [{"name": "michael johnson", "same_agency": false,
                 "agents": [{"id": "decoy-1-a", "state": "IL", "agency": "ICE-ERO",
                             "badge_key": "ICE-ERO:812", "name_agency_key": "...",
                             "incidents": [...], "observations": [...]}, ...]}, ...],
     "teams": [{"id": "team-1", "agency": "ICE-ERO", "unit": "Midway Team 3",
                "unit_key": "ICE-ERO:midway team 3", "plates": ["IL ABC 1234"],
                "plate_keys": ["IL:ABC1234"], "members": ["team-1-a", ...],
                "states_in_order": ["IL", "MN"], "incidents": [...]}, ...],
     "masked": [{"id": "masked-1", "agency": "CBP-USBP", "unit": "...", "unit_key": "...",
                 "plates": [...], "plate_keys": [...],
                 "clusters": [{"state": "IL", "county": "Cook", "first_day": "...",
                               "last_day": "...", "incidents": [...]}, ...],
                 "incidents": [...]}, ...],
     "surge": {"state": "MN", "county": "Hennepin", "weeks": ["2025-09-01", "2025-09-08"],
               "factor": 5, "baseline_per_week": 2,
               "weekly_counts": {"2025-05-05": 2, ...}, "incidents": [...]},
     "conduct": [{"agency": "CBP-USBP", "conduct": "excessive_force", "rate": 0.6,
                  "baseline_rate": 0.05, "observed": {"incidents": 80, "with": 48},
                  "observed_baseline": {"incidents": 300, "with": 15}},
                 {"agency": "ICE-ERO", "location_kind": "courthouse", ...}],
     "counts": {"IL": 129, "MN": 141, "WI": 121}}

"surge.incidents" are the incidents added above the county's rate (the surge
weeks hold its background incidents too); "weekly_counts" counts every incident
of the county. An incident "with" an agency has at least one agent of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from random import Random
from typing import Any, Final, TypeVar

from node.normalize import US_STATE_CODES
from node.vocab import CONDUCT, SOURCE, STATES, STATUS

FIRST_MONDAY: Final = date(2025, 5, 5)
WEEKS: Final = 26
SURGE_FACTOR: Final = 5
FORCE_AGENCY: Final = "CBP-USBP"
FORCE_CONDUCT: Final = "excessive_force"
FORCE_RATE: Final = 0.6
FORCE_BASELINE: Final = 0.05
COURT_AGENCY: Final = "ICE-ERO"
COURT_KIND: Final = "courthouse"
COURT_RATE: Final = 0.3
COURT_BASELINE: Final = 0.03
DEFAULT_STATES: Final = ("IL", "MN", "WI")

TRAVELLERS_PER_SCALE: Final = 6
DECOY_PAIRS_PER_SCALE: Final = 3
TEAMS_PER_SCALE: Final = 2
TEAM_SIZE: Final = 4
MASKED_GROUPS_PER_SCALE: Final = 1
POOL_PER_SCALE: Final = 30
NARRATIVE: Final = "Synthetic incident generated by bench.planted; not a real event."

T = TypeVar("T")
Incident = list[str]  # [state, external_id], as truth.json writes it


# --- places and times ------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


@dataclass(frozen=True)
class County:
    """A county and its background rate (incidents a week at scale 1)."""

    name: str
    city: str | None
    rate: int


_COUNTIES: Final[dict[str, tuple[County, ...]]] = {
    "IL": (
        County("Cook", "Chicago", 2),
        County("DuPage", "Wheaton", 1),
        County("Lake", "Waukegan", 1),
    ),
    "MN": (
        County("Hennepin", "Minneapolis", 2),
        County("Ramsey", "Saint Paul", 1),
        County("Dakota", "Hastings", 1),
    ),
    "WI": (
        County("Milwaukee", "Milwaukee", 2),
        County("Dane", "Madison", 1),
        County("Waukesha", "Waukesha", 1),
    ),
    "IA": (County("Polk", "Des Moines", 2), County("Linn", "Cedar Rapids", 1)),
    "TX": (
        County("Harris", "Houston", 2),
        County("Dallas", "Dallas", 1),
        County("El Paso", "El Paso", 1),
    ),
    "CA": (
        County("Los Angeles", "Los Angeles", 2),
        County("San Diego", "San Diego", 1),
        County("Fresno", "Fresno", 1),
    ),
    "NY": (
        County("Kings", "Brooklyn", 2),
        County("Queens", "Queens", 1),
        County("Erie", "Buffalo", 1),
    ),
}
_GENERIC_COUNTIES: Final = (
    County("Adams", None, 2),
    County("Franklin", None, 1),
    County("Jefferson", None, 1),
)

# UTC offsets in summer (every generated day is under daylight saving time, which
# ends 2025-11-02); a state split between zones takes its larger part's; Central
# (-5) for the states not named.
_EASTERN: Final = _words("CT DE DC FL GA IN KY ME MD MA MI NH NJ NY NC OH PA RI SC VT VA WV")
_OFFSET_HOURS: Final[dict[str, int]] = {
    **{s: -4 for s in _EASTERN},
    **{s: -6 for s in ("CO", "ID", "MT", "NM", "UT", "WY")},
    **{s: -7 for s in ("AZ", "CA", "NV", "OR", "WA")},
    "AK": -8, "HI": -10, "PR": -4, "VI": -4, "GU": 10, "MP": 10, "AS": -11,
}  # fmt: skip
_CENTRAL: Final = -5


def counties_of(state: str) -> tuple[County, ...]:
    """The counties generated for a state: a small table, else generic names."""
    return _COUNTIES.get(state, _GENERIC_COUNTIES)


def offset_of(state: str) -> timezone:
    """The fixed summer UTC offset used for every incident of the state."""
    return timezone(timedelta(hours=_OFFSET_HOURS.get(state, _CENTRAL)))


def week_start(index: int) -> date:
    """The Monday that starts generated week `index` (0-based)."""
    return FIRST_MONDAY + timedelta(weeks=index)


def week_of(day: date) -> int:
    """The generated week a day falls in."""
    return (day - FIRST_MONDAY).days // 7


# --- identities and how they are written --------------------------------------------------------


def fold(text: str) -> str:
    """Accents stripped and lowercased: enough for the plain letters names use here."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


# How many ways each identifier is written (see each class's `render`).
NAME_STYLES: Final = 6
BADGE_STYLES: Final = 6
UNIT_STYLES: Final = 4
PLATE_STYLES: Final = 5


class Styles:
    """Cycles through a shuffled list of writing styles, so spellings vary per identity."""

    def __init__(self, rng: Random, count: int) -> None:
        self._order = list(range(count))
        rng.shuffle(self._order)
        self._next = 0

    def take(self) -> int:
        style = self._order[self._next % len(self._order)]
        self._next += 1
        return style


@dataclass
class Name:
    """A person's name in parts; `render` writes it in one of several real-world ways."""

    given: tuple[str, ...]
    family: tuple[str, ...]
    initial: str | None
    suffix: str | None
    styles: Styles

    @property
    def key(self) -> str:
        """The `name` key value the compact derives from every rendering."""
        return f"{fold(self.given[0])} {fold(self.family[-1])}"

    def render(self, rng: Random) -> str:
        g, f = " ".join(self.given), (" " if rng.random() < 0.5 else "-").join(self.family)
        mid = f" {self.initial}." if self.initial else ""
        suf = f" {self.suffix}" if self.suffix else ""
        style = self.styles.take()
        if style == 0:
            return f"{f}, {self.given[0]}{mid}"  # Smith, John Q.
        if style == 1:
            return f"{self.given[0]} {f}".upper()  # JOHN SMITH
        if style == 2:
            return f"{g}{mid} {f}{suf}"  # John Q. Smith Jr.
        if style == 3:
            return fold(f"{g} {' '.join(self.family)}").title()  # Maria Jose Nunez Garcia
        if style == 4:
            return f"{f}{suf}, {g}"  # Smith Jr., John
        return f"{self.given[0]} {self.family[-1]}".lower()  # john smith


@dataclass
class Badge:
    """A badge: an optional letter prefix and digits; `render` varies spacing and zeros."""

    prefix: str
    digits: str
    styles: Styles

    def key(self, agency: str) -> str:
        """The `badge` key value: agency, prefix and digits without leading zeros."""
        value = (self.prefix + self.digits).lstrip("0")
        return f"{agency}:{value}"

    def render(self) -> str:
        p, d = self.prefix, self.digits
        if p:  # the digits keep their zeros: HS 0093 is not HS 93
            spellings = (
                f"{p} {d}",
                f"{p}{d}",
                f"{p.lower()}-{d}",
                f"{p}.{d}",
                f"#{p}{d}",
                f"{p} {d}".lower(),
            )
        else:
            half = len(d) // 2
            spellings = (
                d,
                f"0{d}",
                f"{d[:half]} {d[half:]}",
                f"{d[:half]}-{d[half:]}",
                f"#{d}",
                f"00{d}",
            )
        return spellings[self.styles.take()]


@dataclass
class Unit:
    """A unit's name in words; `render` varies case and punctuation, never the words."""

    words: tuple[str, ...]
    styles: Styles

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def key(self, agency: str) -> str:
        return f"{agency}:{fold(self.text)}"

    def render(self) -> str:
        style = self.styles.take()
        if style == 0:
            return self.text
        if style == 1:
            return self.text.upper()
        if style == 2:
            return "-".join(self.words).lower()
        return f"{' '.join(self.words[:-1])} #{self.words[-1]}"


@dataclass
class Plate:
    """A vehicle plate issued by `state`; `render` varies separators and the state prefix."""

    state: str
    letters: str
    digits: str
    styles: Styles

    @property
    def text(self) -> str:
        return f"{self.state} {self.letters} {self.digits}"

    @property
    def key(self) -> str:
        return f"{self.state}:{self.letters}{self.digits}"

    def render(self, incident_state: str) -> str:
        style = self.styles.take()
        if style == 4 and incident_state == self.state:
            return f"{self.letters} {self.digits}"  # the issuing state is implied
        return (
            self.text,
            f"{self.state}-{self.letters}-{self.digits}".lower(),
            f"{self.state} {self.letters}{self.digits}",
            f"{self.state}-{self.letters}-{self.digits}",
            self.text.lower(),
        )[style % 5]


@dataclass
class Person:
    """An agent: `ident` names it in truth.json (empty for pool agents)."""

    ident: str
    agency: str
    name: Name | None
    badge: Badge | None
    unit: Unit | None = None
    plate: Plate | None = None
    masked_often: bool = False


# Fictional people: common given names and invented family names.
_GIVEN: Final = _words(
    "Aaron Adele Alden Alma Amos Anika Arlo Beatrix Bennett Calla Cyrus Dalia Dorian Edwin Elsa "
    "Emmett Faye Felix Greta Hollis Ines Ivo Jasper Juno Kurt Lena Lionel Mabel Milo Nadia Nils "
    "Odette Otis Petra Quentin Rhea Rufus Selma Silas Tessa Tobias Una Vera Wendell Xenia Yara"
)
_FAMILY_HEAD: Final = _words(
    "Ash Black Bram Cold Dun Elm Fair Glen Hart Holl Kirk Lang Marsh North Oak Pen Red Rock "
    "Stan Thorn West Wood"
)
_FAMILY_TAIL: Final = _words(
    "bury by croft dale field ford gate ham holt ley mere more ridge stead ton wick worth"
)
_TRAVELLER_NAMES: Final = (
    (("John",), ("Smith",), "Q", "Jr."),
    (("María", "José"), ("Núñez", "García"), None, None),
    (("Renée",), ("Lefèvre", "Dubois"), "M", None),
    (("Tomás",), ("Ibáñez",), "R", None),
    (("Kwame",), ("Mensah",), None, "III"),
    (("Ingrid",), ("Halvorsen",), "A", None),
)
_DECOY_NAMES: Final = (
    ("Michael", "Johnson"),
    ("David", "Miller"),
    ("James", "Brown"),
    ("Robert", "Davis"),
    ("Daniel", "Wilson"),
    ("Maria", "Hernandez"),
)
_TRAVELLER_AGENCIES: Final = ("ICE-ERO", "CBP-USBP", "ICE-HSI", "ICE-ERO", "CBP-BORTAC", "CBP-USBP")
_DECOY_AGENCIES: Final = (("ICE-ERO", "CBP-USBP"), ("ICE-ERO", "ICE-ERO"), ("CBP-OFO", "ICE-HSI"))
_TEAM_AGENCIES: Final = ("ICE-ERO", "CBP-BORTAC", "CBP-USBP", "ICE-HSI")
_MASKED_AGENCIES: Final = ("CBP-USBP", "ICE-ERO")
_UNIT_PLACES: Final = _words(
    "Midway Prairie Lakeshore Northline Granite Riverside Ironwood Cedar Harbor Summit Timber "
    "Beacon"
)
_UNIT_KINDS: Final = ("Team", "Unit", "Task Force", "Response Team", "Strike Team", "Group")
_PLATE_LETTERS: Final = "ABCDEFGHJKLMNPRSTUVWXYZ"
# Pool agencies and their weights; UNKNOWN agents carry a name only.
_POOL_AGENCIES: Final = (
    ("ICE-ERO", 40), ("CBP-USBP", 20), ("ICE-HSI", 8), ("CBP-OFO", 5), ("CBP-BORTAC", 5),
    ("FBI", 2), ("DEA", 2), ("ATF", 2), ("USMS", 3), ("FPS", 2), ("DHS-OTHER", 2),
    ("NATIONAL-GUARD", 3), ("OTHER", 1), ("UNKNOWN", 5),
)  # fmt: skip
_KIND_WEIGHTS: Final = (
    ("residence", 30), ("street", 25), ("vehicle", 15), ("workplace", 12), ("school", 3),
    ("place_of_worship", 2), ("hospital", 2), ("shelter", 2), ("transit", 4),
    ("detention_facility", 2), ("protest", 2), ("other", 1),
)  # fmt: skip
_SENSITIVE_KINDS: Final = frozenset({"school", "place_of_worship", "hospital"})
# Conduct that rules set (planted rates, masks, places) and random draws never add.
_RULED_CONDUCT: Final = frozenset(
    {FORCE_CONDUCT, "masked_agent", "courthouse_arrest", "sensitive_location"}
)


# --- incidents -------------------------------------------------------------------------------


@dataclass
class Observation:
    """One agent as one incident shows it; `who` is the planted agent's id, if any."""

    agency: str | None
    role: str
    name: str | None = None
    badge: str | None = None
    unit: str | None = None
    plate: str | None = None
    masked: bool | None = None
    identified_self: bool | None = None
    body_camera: bool | None = None
    who: str = ""
    shows: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (
            ("name", self.name),
            ("badge", self.badge),
            ("agency", self.agency),
            ("unit", self.unit),
            ("vehicle_plate", self.plate),
            ("masked", self.masked),
            ("identified_self", self.identified_self),
            ("body_camera", self.body_camera),
            ("role", self.role),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass
class PlantedIncident:
    """An incident being generated; place kind, conduct and id are filled in at the end."""

    uid: int
    state: str
    county: County
    day: date
    clock: time
    agents: list[Observation]
    tags: list[str] = field(default_factory=list)
    conduct: set[str] = field(default_factory=set)
    kind: str = ""
    status: str = ""
    source: str = ""
    reported_after: timedelta | None = None
    external_id: str = ""

    @property
    def ref(self) -> Incident:
        return [self.state, self.external_id]

    def has_agency(self, agency: str) -> bool:
        return any(a.agency == agency for a in self.agents)

    def to_json(self) -> dict[str, Any]:
        """The import record (docs/import-format.md)."""
        occurred = datetime.combine(self.day, self.clock, tzinfo=offset_of(self.state))
        record: dict[str, Any] = {
            "external_id": self.external_id,
            "occurred_at": occurred.isoformat(),
        }
        if self.reported_after is not None:
            record["reported_at"] = (occurred + self.reported_after).isoformat()
        location: dict[str, Any] = {"county": self.county.name, "state": self.state}
        if self.county.city:
            location["city"] = self.county.city
        location["kind"] = self.kind
        record["location"] = location
        record["conduct"] = sorted(self.conduct)
        record["status"] = self.status
        record["source"] = self.source
        record["narrative"] = NARRATIVE
        if self.agents:
            record["agents"] = [a.to_json() for a in self.agents]
        return record


@dataclass(frozen=True)
class Planted:
    """What `generate` made: each state's import records and the truth about them."""

    seed: int
    scale: int
    states: tuple[str, ...]
    records: dict[str, list[dict[str, Any]]]
    truth: dict[str, Any]

    def jsonl(self, state: str) -> bytes:
        """The state's import file: one compact JSON object per line, UTF-8."""
        lines = (
            json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in self.records[state]
        )
        return "".join(f"{line}\n" for line in lines).encode("utf-8")

    def truth_json(self) -> bytes:
        return (json.dumps(self.truth, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


# --- the generator ---------------------------------------------------------------------------


@dataclass
class _Team:
    ident: str
    agency: str
    unit: Unit
    plates: list[Plate]
    members: list[Person]
    states: tuple[str, str]


@dataclass
class _Masked:
    ident: str
    agency: str
    unit: Unit
    plates: list[Plate]
    clusters: list[tuple[str, County]]


@dataclass
class _DecoyPair:
    name_key: str
    same_agency: bool
    agents: list[Person]


def _weighted(rng: Random, table: Sequence[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _exact_pick(rng: Random, group: list[PlantedIncident], rate: float) -> set[int]:
    """The uids of exactly round(rate * len(group)) incidents of the group, at random."""
    return {i.uid for i in rng.sample(group, round(rate * len(group)))}


class _Builder:
    """Generates every incident in a fixed order of draws from one seeded generator."""

    def __init__(self, seed: int, states: tuple[str, ...], scale: int) -> None:
        self.rng = Random(seed)
        self.seed, self.states, self.scale = seed, states, scale
        self.used: set[str] = set()  # every "kind:value" key handed out so far
        self.incidents: list[PlantedIncident] = []
        self.pools: dict[str, list[Person]] = {}
        self.travellers: list[Person] = []
        self.decoys: list[_DecoyPair] = []
        self.teams: list[_Team] = []
        self.masked: list[_Masked] = []
        self.surge_state = "MN" if "MN" in states else states[-1]
        self.surge_county = counties_of(self.surge_state)[0]
        first = self.rng.randrange(4, WEEKS - 5)
        self.surge_weeks = (first, first + 1)

    # identities ---------------------------------------------------------------------------

    def claim(self, key: str) -> bool:
        """Reserve an identifier key; False when something already holds it."""
        if key in self.used:
            return False
        self.used.add(key)
        return True

    def styles(self, count: int) -> Styles:
        return Styles(self.rng, count)

    def new_name(self) -> Name:
        """A fictional name whose `name` key nothing else holds."""
        while True:
            given = (self.rng.choice(_GIVEN),)
            family = (self.rng.choice(_FAMILY_HEAD) + self.rng.choice(_FAMILY_TAIL),)
            initial = self.rng.choice("ABCDEFGHJKLMNPRSTW") if self.rng.random() < 0.5 else None
            name = Name(given, family, initial, None, self.styles(NAME_STYLES))
            if self.claim(f"name:{name.key}"):
                return name

    def new_badge(self, agency: str) -> Badge:
        """A badge no other agent of the agency holds (HSI badges carry a letter prefix)."""
        while True:
            if agency == "ICE-HSI":
                badge = Badge("HS", f"{self.rng.randrange(10_000):04d}", self.styles(BADGE_STYLES))
            else:
                digits = str(self.rng.randrange(100, 100_000))
                badge = Badge("", digits, self.styles(BADGE_STYLES))
            if self.claim(f"badge:{badge.key(agency)}"):
                return badge

    def new_unit(self, agency: str) -> Unit:
        while True:
            words = (
                self.rng.choice(_UNIT_PLACES),
                *self.rng.choice(_UNIT_KINDS).split(),
                str(self.rng.randint(1, 9)),
            )
            unit = Unit(words, self.styles(UNIT_STYLES))
            if self.claim(f"unit:{unit.key(agency)}"):
                return unit

    def new_plate(self, state: str) -> Plate:
        while True:
            letters = "".join(self.rng.choices(_PLATE_LETTERS, k=3))
            plate = Plate(
                state, letters, str(self.rng.randint(1000, 9999)), self.styles(PLATE_STYLES)
            )
            if self.claim(f"plate:{plate.key}"):
                return plate

    def named_person(
        self,
        ident: str,
        agency: str,
        parts: tuple[tuple[str, ...], tuple[str, ...], str | None, str | None] | None,
    ) -> Person:
        """A person with a badge and a name (from `parts`, else invented)."""
        if parts is None:
            name = self.new_name()
        else:
            name = Name(*parts, styles=self.styles(NAME_STYLES))
            if not self.claim(f"name:{name.key}"):
                name = self.new_name()
        return Person(ident, agency, name, self.new_badge(agency))

    def pool_person(self, state: str) -> Person:
        """A single-state background agent."""
        agency = _weighted(self.rng, _POOL_AGENCIES)
        if agency == "UNKNOWN":
            return Person("", agency, self.new_name(), None, masked_often=self.rng.random() < 0.3)
        has_name = self.rng.random() < 0.6
        has_badge = not has_name or self.rng.random() < 0.75
        person = Person(
            "",
            agency,
            self.new_name() if has_name else None,
            self.new_badge(agency) if has_badge else None,
            masked_often=self.rng.random() < 0.2,
        )
        if self.rng.random() < 0.15:
            person.unit = self.new_unit(agency)
        if self.rng.random() < 0.12:
            person.plate = self.new_plate(state)
        return person

    # observations -------------------------------------------------------------------------

    def observe(self, person: Person, shows: Sequence[str], role: str, state: str) -> Observation:
        """`person` at one incident, showing the identifiers named in `shows`."""
        rng = self.rng
        obs = Observation(person.agency, role, who=person.ident, shows=tuple(shows))
        if "name" in shows and person.name:
            obs.name = person.name.render(rng)
        if "badge" in shows and person.badge:
            obs.badge = person.badge.render()
        if "unit" in shows and person.unit:
            obs.unit = person.unit.render()
        if "plate" in shows and person.plate:
            obs.plate = person.plate.render(state)
        obs.masked = rng.random() < 0.1
        obs.identified_self = None if rng.random() < 0.3 else not obs.masked
        obs.body_camera = None if rng.random() < 0.4 else rng.random() < 0.3
        return obs

    def pool_observation(self, person: Person, role: str, state: str) -> Observation:
        """A background agent's observation: a random subset of what it can show."""
        rng = self.rng
        if person.masked_often and rng.random() < 0.5:  # masked: the agency only
            return Observation(person.agency, role, masked=True, identified_self=False)
        shows = [k for k in ("name", "badge") if getattr(person, k) is not None]
        if len(shows) == 2:
            shows = _weighted_choice(rng, (["badge"], 4), (["name"], 2), (shows, 4))
        if person.unit and rng.random() < 0.7:
            shows.append("unit")
        if person.plate and rng.random() < 0.6:
            shows.append("plate")
        return self.observe(person, shows, role, state)

    def pool_agents(self, state: str, count: int, agency: str | None = None) -> list[Observation]:
        """`count` distinct background agents of `state` (of `agency` when there are enough)."""
        pool = self.pools[state]
        eligible = [p for p in pool if p.agency == agency] if agency else pool
        if len(eligible) < count:
            eligible = pool
        people = self.rng.sample(eligible, count)
        roles = ["primary", *(["participant"] * (count - 1))]
        return [self.pool_observation(p, r, state) for p, r in zip(people, roles, strict=True)]

    # incidents ----------------------------------------------------------------------------

    def add(
        self, state: str, county: County, day: date, agents: list[Observation], *tags: str
    ) -> PlantedIncident:
        clock = time(self.rng.randint(6, 21), self.rng.randrange(60))
        incident = PlantedIncident(
            len(self.incidents), state, county, day, clock, agents, list(tags)
        )
        self.incidents.append(incident)
        return incident

    def day_in_week(self, week: int) -> date:
        return week_start(week) + timedelta(days=self.rng.randrange(7))

    def random_days(
        self, count: int, first_week: int = 0, last_week: int = WEEKS - 1
    ) -> list[date]:
        """`count` sorted days between the start of one week and the end of another."""
        span = (last_week - first_week + 1) * 7
        offsets = sorted(self.rng.randrange(span) for _ in range(count))
        return [week_start(first_week) + timedelta(days=o) for o in offsets]

    def planted_county(self, state: str) -> County:
        """A county for a planted incident: never the surge county, so its baseline stays flat."""
        return self.rng.choice([c for c in counties_of(state) if c != self.surge_county])

    def maybe_bystander(self, state: str) -> list[Observation]:
        """Half the time one local background agent, alongside a planted one."""
        if self.rng.random() < 0.5:
            return [self.pool_observation(self.rng.choice(self.pools[state]), "participant", state)]
        return []

    # what is planted ----------------------------------------------------------------------

    def make_pools(self) -> None:
        for state in self.states:
            self.pools[state] = [
                self.pool_person(state) for _ in range(POOL_PER_SCALE * self.scale)
            ]

    def background(self) -> None:
        """Every county gets exactly its rate of incidents in every week."""
        for state in self.states:
            for county in counties_of(state):
                for week in range(WEEKS):
                    for _ in range(county.rate * self.scale):
                        agents = self.pool_agents(
                            state, _weighted_choice(self.rng, (1, 5), (2, 4), (3, 2))
                        )
                        self.add(state, county, self.day_in_week(week), agents, "background")

    def plant_travellers(self) -> None:
        for i in range(TRAVELLERS_PER_SCALE * self.scale):
            agency = _TRAVELLER_AGENCIES[i % len(_TRAVELLER_AGENCIES)]
            parts = _TRAVELLER_NAMES[i] if i < len(_TRAVELLER_NAMES) else None
            person = self.named_person(f"traveller-{i + 1}", agency, parts)
            self.travellers.append(person)
            for state, shows, day in self.travel_plan():
                role = self.rng.choice(("primary", "participant", "supervisor"))
                agents = [self.observe(person, shows, role, state), *self.maybe_bystander(state)]
                self.add(state, self.planted_county(state), day, agents, person.ident)

    def travel_plan(self) -> list[tuple[str, tuple[str, ...], date]]:
        """Where a traveller is seen and what shows: badge in A, both in A or B, name in C."""
        rng = self.rng
        k = 3 if len(self.states) >= 3 and rng.random() < 0.5 else 2
        states = rng.sample(self.states, k)
        forms = (("badge",), ("name",), ("badge", "name"))
        plan = [(states[0], forms[0]), (rng.choice(states[:2]), forms[2]), (states[-1], forms[1])]
        if k == 3:
            plan.append((states[1], rng.choice(forms)))
        plan += [(rng.choice(states), rng.choice(forms)) for _ in range(rng.randint(1, 2))]
        days = self.random_days(len(plan))
        return [(s, f, d) for (s, f), d in zip(plan, days, strict=True)]

    def plant_decoys(self) -> None:
        for i in range(DECOY_PAIRS_PER_SCALE * self.scale):
            agencies = _DECOY_AGENCIES[i % len(_DECOY_AGENCIES)]
            given, family = _DECOY_NAMES[i % len(_DECOY_NAMES)]
            name_key = f"{fold(given)} {fold(family)}"
            if not self.claim(f"name:{name_key}"):
                name = self.new_name()
                given, family, name_key = name.given[0], name.family[0], name.key
            pair = _DecoyPair(name_key, agencies[0] == agencies[1], [])
            for side, (agency, state) in enumerate(
                zip(agencies, self.rng.sample(self.states, 2), strict=True)
            ):
                name = Name(
                    (given,),
                    (family,),
                    self.rng.choice("ABCDEFGHJKLMNPRSTW"),
                    None,
                    self.styles(NAME_STYLES),
                )
                person = Person(f"decoy-{i + 1}-{'ab'[side]}", agency, name, self.new_badge(agency))
                pair.agents.append(person)
                self.plant_decoy(person, state, always_badge=pair.same_agency)
            self.decoys.append(pair)

    def plant_decoy(self, person: Person, state: str, *, always_badge: bool) -> None:
        """2-3 incidents in one state; the name always, the badge always or half the time."""
        for day in self.random_days(self.rng.randint(2, 3)):
            shows = ("badge", "name") if always_badge or self.rng.random() < 0.5 else ("name",)
            agents = [self.observe(person, shows, "primary", state), *self.maybe_bystander(state)]
            self.add(state, self.planted_county(state), day, agents, person.ident)

    def plant_teams(self) -> None:
        for i in range(TEAMS_PER_SCALE * self.scale):
            ident = f"team-{i + 1}"
            agency = _TEAM_AGENCIES[i % len(_TEAM_AGENCIES)]
            first, second = self.rng.sample(self.states, 2)
            members = [
                self.named_person(f"{ident}-{'abcdefgh'[m]}", agency, None)
                for m in range(TEAM_SIZE)
            ]
            plates = [self.new_plate(first) for _ in range(self.rng.randint(1, 2))]
            team = _Team(ident, agency, self.new_unit(agency), plates, members, (first, second))
            self.teams.append(team)
            start = self.rng.randrange(0, WEEKS - 10)
            seen: set[str] = set()
            for state, weeks in ((first, start), (second, start + 6)):
                self.plant_team_phase(team, state, weeks, seen)

    def plant_team_phase(self, team: _Team, state: str, first_week: int, seen: set[str]) -> None:
        """3 incidents in one county within 4 weeks, each member absent at most once.

        Each incident shows the unit; the first shows the first plate, the others
        one of the plates at random, or none."""
        county = self.planted_county(state)
        dropped: set[str] = set()
        for n, day in enumerate(self.random_days(3, first_week, first_week + 3)):
            present = list(team.members)
            if self.rng.random() < 0.6:
                drop = self.rng.choice([m for m in present if m.ident not in dropped])
                dropped.add(drop.ident)
                present.remove(drop)
            agents = [self.team_observation(team, m, state, seen, j) for j, m in enumerate(present)]
            if not any(a.unit for a in agents):
                agents[0].unit = team.unit.render()
                agents[0].shows += ("unit",)
            if n == 0 or self.rng.random() < 0.8:
                plate = team.plates[0] if n == 0 else self.rng.choice(team.plates)
                agents[-1].plate = plate.render(state)
                agents[-1].shows += ("plate",)
            self.add(state, county, day, agents, team.ident)

    def team_observation(
        self, team: _Team, member: Person, state: str, seen: set[str], j: int
    ) -> Observation:
        """A member shows badge and name the first time, then any of badge, name, both."""
        if member.ident in seen:
            shows = self.rng.choice((("badge",), ("name",), ("badge", "name")))
        else:
            shows = ("badge", "name")
            seen.add(member.ident)
        obs = self.observe(member, shows, "supervisor" if j == 0 else "participant", state)
        if self.rng.random() < 0.7:
            obs.unit = team.unit.render()
            obs.shows += ("unit",)
        return obs

    def plant_masked(self) -> None:
        for i in range(MASKED_GROUPS_PER_SCALE * self.scale):
            agency = _MASKED_AGENCIES[i % len(_MASKED_AGENCIES)]
            states = self.rng.sample(self.states, 2)
            clusters = [(s, self.planted_county(s)) for s in states]
            group = _Masked(
                f"masked-{i + 1}",
                agency,
                self.new_unit(agency),
                [self.new_plate(states[0])],
                clusters,
            )
            self.masked.append(group)
            start = week_start(self.rng.randrange(0, 17))
            for n, (state, county) in enumerate(clusters):
                first = start + timedelta(days=n * (28 + self.rng.randrange(15)))
                for k, offset in enumerate(sorted(self.rng.sample(range(21), 4))):
                    agents = self.masked_agents(group, state, both=k == 0)
                    incident = self.add(
                        state, county, first + timedelta(days=offset), agents, group.ident
                    )
                    incident.conduct |= {"masked_agent", "no_identification", "no_body_camera"}

    def masked_agents(self, group: _Masked, state: str, *, both: bool) -> list[Observation]:
        """2-3 masked agents of one agency; the group's unit and/or plate (`both`: and) shown."""
        agents = []
        for j in range(self.rng.randint(2, 3)):
            obs = Observation(
                group.agency, "primary" if j == 0 else "participant",
                masked=True, identified_self=False, body_camera=False, who=group.ident,
            )  # fmt: skip
            if self.rng.random() < 0.6 or (both and j == 0):
                obs.unit = group.unit.render()
            agents.append(obs)
        if both or self.rng.random() < 0.7 or not any(a.unit for a in agents):
            agents[-1].plate = group.plates[0].render(state)
        for a in agents:
            a.shows = tuple(k for k in ("unit", "plate") if getattr(a, k))
        return agents

    def plant_surge(self) -> None:
        """The surge county's surge weeks get (factor - 1) times its rate on top."""
        county, state = self.surge_county, self.surge_state
        for week in self.surge_weeks:
            for _ in range(county.rate * self.scale * (SURGE_FACTOR - 1)):
                agents = self.pool_agents(state, self.rng.randint(2, 3), agency="ICE-ERO")
                self.add(state, county, self.day_in_week(week), agents, "surge")

    # places, conduct, ids -----------------------------------------------------------------

    def finish(self) -> None:
        """Place kinds and conduct by the planted rates, statuses, sources; then ids."""
        rng = self.rng
        court = self.split(COURT_AGENCY, COURT_RATE, COURT_BASELINE)
        force = self.split(FORCE_AGENCY, FORCE_RATE, FORCE_BASELINE)
        statuses, sources = sorted(STATUS), sorted(SOURCE)
        free = sorted(CONDUCT - _RULED_CONDUCT)
        other_kinds = [(k, w) for k, w in _KIND_WEIGHTS if k != COURT_KIND]
        for incident in self.incidents:
            incident.kind = COURT_KIND if incident.uid in court else _weighted(rng, other_kinds)
            incident.conduct |= set(rng.sample(free, rng.randint(1, 2)))
            if incident.uid in force:
                incident.conduct.add(FORCE_CONDUCT)
            if any(a.masked for a in incident.agents):
                incident.conduct.add("masked_agent")
            if incident.kind == COURT_KIND:
                incident.conduct.add("courthouse_arrest")
            if incident.kind in _SENSITIVE_KINDS:
                incident.conduct.add("sensitive_location")
            incident.status, incident.source = rng.choice(statuses), rng.choice(sources)
            if rng.random() < 0.7:
                incident.reported_after = timedelta(minutes=rng.randrange(30, 72 * 60))
        self.assign_ids()

    def split(self, agency: str, rate: float, baseline: float) -> set[int]:
        """Uids picked at exactly `rate` of the incidents with `agency`, `baseline` of the rest."""
        with_agency = [i for i in self.incidents if i.has_agency(agency)]
        without = [i for i in self.incidents if not i.has_agency(agency)]
        return _exact_pick(self.rng, with_agency, rate) | _exact_pick(self.rng, without, baseline)

    def assign_ids(self) -> None:
        """External ids in time order per state, so an id says nothing about what was planted."""
        for state in self.states:
            mine = sorted(
                (i for i in self.incidents if i.state == state),
                key=lambda i: (i.day, i.clock, i.uid),
            )
            for n, incident in enumerate(mine, start=1):
                incident.external_id = f"{state}-PL-{n:06d}"

    def build(self) -> Planted:
        self.make_pools()
        self.background()
        self.plant_travellers()
        self.plant_decoys()
        self.plant_teams()
        self.plant_masked()
        self.plant_surge()
        self.finish()
        ordered = sorted(self.incidents, key=lambda i: i.external_id)
        records = {s: [i.to_json() for i in ordered if i.state == s] for s in self.states}
        truth = _Truth(self).build()
        return Planted(self.seed, self.scale, self.states, records, truth)


def _weighted_choice(rng: Random, *options: tuple[T, int]) -> T:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


# --- truth.json ------------------------------------------------------------------------------


def _shown(obs: Observation) -> list[str]:
    return [k for k in ("badge", "name", "unit", "plate") if k in obs.shows]


class _Truth:
    """Builds truth.json from the finished incidents (ids assigned)."""

    def __init__(self, builder: _Builder) -> None:
        self.b = builder
        self.ordered = sorted(builder.incidents, key=lambda i: (i.state, i.external_id))
        self.seen: dict[str, list[tuple[PlantedIncident, int, Observation]]] = {}
        self.tagged: dict[str, list[PlantedIncident]] = {}
        for incident in self.ordered:
            for tag in incident.tags:
                self.tagged.setdefault(tag, []).append(incident)
            for position, obs in enumerate(incident.agents):
                if obs.who:
                    self.seen.setdefault(obs.who, []).append((incident, position, obs))

    def build(self) -> dict[str, Any]:
        b = self.b
        members = [(m, t.ident) for t in b.teams for m in t.members]
        agents = [self.agent(p, "traveller", None) for p in b.travellers]
        agents += [self.agent(m, "team", team) for m, team in members]
        return {
            "seed": b.seed,
            "scale": b.scale,
            "states": list(b.states),
            "weeks": [week_start(w).isoformat() for w in range(WEEKS)],
            "agents": [a for a in agents if len(a["states"]) >= 2],
            "decoys": [self.decoy_pair(p) for p in b.decoys],
            "teams": [self.team(t) for t in b.teams],
            "masked": [self.masked(m) for m in b.masked],
            "surge": self.surge(),
            "conduct": self.conduct(),
            "counts": {s: sum(1 for i in self.ordered if i.state == s) for s in b.states},
        }

    def refs(self, incidents: Iterable[PlantedIncident]) -> list[Incident]:
        """Distinct incidents as [state, external_id], in (state, id) order."""
        unique = {(i.state, i.external_id): i for i in incidents}
        return [unique[k].ref for k in sorted(unique)]

    def observations(self, ident: str) -> list[dict[str, Any]]:
        return [
            {"incident": i.ref, "agent": pos, "shows": _shown(obs)}
            for i, pos, obs in self.seen[ident]
        ]

    def agent(self, person: Person, kind: str, team: str | None) -> dict[str, Any]:
        """A planted agent: its keys, incidents, and which incidents each strong key joins."""
        assert person.badge is not None
        assert person.name is not None
        seen = self.seen[person.ident]
        badge_key = person.badge.key(person.agency)
        name_agency_key = f"{person.agency}:{person.name.key}"
        with_badge = [i for i, _, o in seen if "badge" in o.shows]
        with_name = [i for i, _, o in seen if "name" in o.shows]
        everything = self.refs(i for i, _, _ in seen)
        entry: dict[str, Any] = {"id": person.ident, "kind": kind}
        if team is not None:
            entry["team"] = team
        entry |= {
            "agency": person.agency,
            "badge_key": badge_key,
            "name_key": person.name.key,
            "name_agency_key": name_agency_key,
            "states": sorted({i.state for i, _, _ in seen}),
            "incidents": everything,
            "observations": self.observations(person.ident),
            "links": [
                {"kind": "badge", "key": badge_key, "incidents": self.refs(with_badge)},
                {"kind": "name_agency", "key": name_agency_key, "incidents": self.refs(with_name)},
            ],
            "bridges": self.refs(i for i, _, o in seen if {"badge", "name"} <= set(o.shows)),
            "transitive": len(self.refs(with_badge)) < len(everything)
            and len(self.refs(with_name)) < len(everything),
        }
        return entry

    def decoy_pair(self, pair: _DecoyPair) -> dict[str, Any]:
        agents = []
        for person in pair.agents:
            assert person.badge is not None
            assert person.name is not None
            seen = self.seen[person.ident]
            agents.append(
                {
                    "id": person.ident,
                    "state": seen[0][0].state,
                    "agency": person.agency,
                    "badge_key": person.badge.key(person.agency),
                    "name_agency_key": f"{person.agency}:{person.name.key}",
                    "incidents": self.refs(i for i, _, _ in seen),
                    "observations": self.observations(person.ident),
                }
            )
        return {"name": pair.name_key, "same_agency": pair.same_agency, "agents": agents}

    def team(self, team: _Team) -> dict[str, Any]:
        return {
            "id": team.ident,
            "agency": team.agency,
            "unit": team.unit.text,
            "unit_key": team.unit.key(team.agency),
            "plates": [p.text for p in team.plates],
            "plate_keys": [p.key for p in team.plates],
            "members": [m.ident for m in team.members],
            "states_in_order": list(team.states),
            "incidents": self.refs(self.tagged[team.ident]),
        }

    def masked(self, group: _Masked) -> dict[str, Any]:
        incidents = self.tagged[group.ident]
        clusters = []
        for state, county in group.clusters:
            mine = [i for i in incidents if i.state == state]
            clusters.append(
                {
                    "state": state,
                    "county": county.name,
                    "first_day": min(i.day for i in mine).isoformat(),
                    "last_day": max(i.day for i in mine).isoformat(),
                    "incidents": self.refs(mine),
                }
            )
        return {
            "id": group.ident,
            "agency": group.agency,
            "unit": group.unit.text,
            "unit_key": group.unit.key(group.agency),
            "plates": [p.text for p in group.plates],
            "plate_keys": [p.key for p in group.plates],
            "clusters": clusters,
            "incidents": self.refs(incidents),
        }

    def surge(self) -> dict[str, Any]:
        b = self.b
        county = [
            i for i in self.ordered if i.state == b.surge_state and i.county == b.surge_county
        ]
        counts = [0] * WEEKS
        for incident in county:
            counts[week_of(incident.day)] += 1
        return {
            "state": b.surge_state,
            "county": b.surge_county.name,
            "weeks": [week_start(w).isoformat() for w in b.surge_weeks],
            "factor": SURGE_FACTOR,
            "baseline_per_week": b.surge_county.rate * b.scale,
            "weekly_counts": {week_start(w).isoformat(): n for w, n in enumerate(counts)},
            "incidents": self.refs(self.tagged.get("surge", [])),
        }

    def conduct(self) -> list[dict[str, Any]]:
        force = self.rates(FORCE_AGENCY, lambda i: FORCE_CONDUCT in i.conduct)
        court = self.rates(COURT_AGENCY, lambda i: i.kind == COURT_KIND)
        return [
            {"agency": FORCE_AGENCY, "conduct": FORCE_CONDUCT, "rate": FORCE_RATE}
            | {"baseline_rate": FORCE_BASELINE}
            | force,
            {"agency": COURT_AGENCY, "location_kind": COURT_KIND, "rate": COURT_RATE}
            | {"baseline_rate": COURT_BASELINE}
            | court,
        ]

    def rates(self, agency: str, test: Callable[[PlantedIncident], bool]) -> dict[str, Any]:
        """How many incidents with / without the agency there are, and how many pass `test`."""
        mine = [i for i in self.ordered if i.has_agency(agency)]
        rest = [i for i in self.ordered if not i.has_agency(agency)]
        return {
            "observed": {"incidents": len(mine), "with": sum(map(test, mine))},
            "observed_baseline": {"incidents": len(rest), "with": sum(map(test, rest))},
        }


# --- API and command line --------------------------------------------------------------------


def generate(seed: int, states: Sequence[str] = DEFAULT_STATES, scale: int = 1) -> Planted:
    """Records of every state and the truth about them; the same arguments, the same result."""
    chosen = tuple(states)
    if len(chosen) < 2 or len(set(chosen)) != len(chosen):
        raise ValueError("give two or more distinct states")
    bad = [s for s in chosen if s not in STATES or s not in US_STATE_CODES]
    if bad:
        raise ValueError(f"not a state code: {', '.join(bad)}")
    if scale < 1:
        raise ValueError("scale must be at least 1")
    return _Builder(seed, chosen, scale).build()


def write(planted: Planted, out_dir: Path) -> list[Path]:
    """Write `<STATE>.jsonl` for each state and `truth.json` into `out_dir` (created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for state in planted.states:
        path = out_dir / f"{state}.jsonl"
        path.write_bytes(planted.jsonl(state))
        written.append(path)
    truth = out_dir / "truth.json"
    truth.write_bytes(planted.truth_json())
    written.append(truth)
    return written


def _states(text: str) -> tuple[str, ...]:
    return tuple(s.strip().upper() for s in text.split(",") if s.strip())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.planted",
        description="Seeded multi-state import files with planted travelling agents, decoys, "
        "teams, masked incidents, a surge and a conduct pattern, and truth.json.",
    )
    p.add_argument("--seed", type=int, required=True)
    p.add_argument(
        "--out", type=Path, required=True, help="folder for <STATE>.jsonl and truth.json"
    )
    p.add_argument("--states", type=_states, default=DEFAULT_STATES, help="e.g. IL,MN,WI")
    p.add_argument("--scale", type=int, default=1, help="multiplies every planted count")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        planted = generate(args.seed, args.states, args.scale)
    except ValueError as e:
        print(f"python -m bench.planted: error: {e}", file=sys.stderr)
        return 2
    write(planted, args.out)
    counts = ", ".join(f"{s} {n}" for s, n in planted.truth["counts"].items())
    print(f"wrote {args.out}: {counts} incidents, and truth.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
