"""Cross-state analysis benchmark: each report against a raw SQL group-by on the same replica.

Run from the repository root::

    .venv/bin/python -m bench.patterns [--entries 100000,1000000] [--states 50] [--seed 1]
                                       [--rounds 3] [--long-run 600] [--database-url URL]
                                       [--work DIR] [--json [FILE]]

For each size (number of index entries) a fresh database is made: a SQLite file in
`--work` (kept there afterwards) or in a temporary folder (removed), or with
`--database-url` a new `compact_bench_patterns_*` database on that PostgreSQL server
(dropped afterwards). It is migrated with `node.migrate.upgrade` and filled as a
node's sync fills its replica: `node.publish.index_pseudonyms(session, state,
[(log_index, IndexEntry), ...], replaced=())`, one transaction per 5,000 entries,
each state's entries in log order. The build's time is reported (context, no goal).

**The synthetic replica** (one `random.Random(seed)`; the same arguments give the same
replica). The states are the first `--states` of the 50 US states in alphabetical
order; each state's share of the entries is drawn between 0.5 and 2 times the mean.

- Every entry has 1 to 3 agents (uniform), so 2 observations on average. There are
  half as many agents as entries (each agent seen in about 4 incidents), given to the
  states in proportion to their entries. 95 % of them are local to their home state;
  5 % travel: each is in the pool of 2 to 5 states (its home state and 1 to 4
  others). Every agent of an entry is drawn uniformly from its state's pool.
- An agent has an agency (weighted towards ICE-ERO and CBP, `AGENCY_WEIGHTS`; 5 % of
  agents have none recorded), a badge, a name (2 % carry one of ten common names, so
  different agents share them; the rest a name of their own), a unit of its home state
  (about 8 agents per unit) and a vehicle of its home state (about 3 agents per plate).
- Each observation records a subset of the agent's keys, drawn independently: badge
  60 %, name 50 % (with `name_agency` beside it), unit 40 %, plate 20 %; 10 % of
  observations are masked agents with no key at all. As at ingest (docs/identifiers.md)
  an agent without an agency has no badge, `name_agency` or unit key.
- Pseudonyms stand in for the OPRF as in tests/test_matches.py: the SHA-512 hex digest
  (128 lowercase hex digits) of the key text `kind:value`.
- The day is uniform over two years (2024-01-01 to 2025-12-30), the county one of 20 per
  state, the conduct 1 to 3 values of `node.vocab.CONDUCT`, the location kind and status
  uniform over their vocabularies.

**The timings.** On each replica, in this process: the raw primitive (`RAW_SQL`, a
group-by of `replica_pseudonyms` on the full pseudonym, every row fetched) and each
report of `REPORTS`: `agents matches` (`federation.matches.find_matches` with no
filter) and the five `patterns` reports (`federation.patterns.REPORTS`, each with its
defaults and no filter). Each runs once untimed to warm the caches (its result is described and
checked against the raw rows: every match must rest on a pseudonym the group-by found
in two or more states), then `--rounds` timed rounds alternate them (the order reversed
every other round). The best round is the figure; every round is reported. A report
whose warm-up run takes longer than `--long-run` seconds (default 600) is not run
again: that run is its one timed run (`warmup_only` in the JSON), so that a slow report
does not hold the machine for hours.

Goals (issue 6): `agents matches` at least 0.5 of the raw group-by's speed (raw seconds
over report seconds; the ratio is given for every report, as context for the others),
and every report's time growing no worse than linearly in entries: from the smallest
size to the largest at most 1.2 times the growth in entries (12x for 100,000 to
1,000,000).

Progress goes to stderr and the table to stdout (`--json` alone: the figures as JSON
instead; `--json FILE`: the table, and the figures written to FILE). Nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import random
import secrets
import shlex
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql
from sqlalchemy import func, select, text

from bench.ingest import machine_info, say
from federation.index_entry import AgentEntry, EntryContent, IndexEntry
from federation.matches import Match, MatchFilter, find_matches
from federation.patterns import REPORTS as PATTERNS
from federation.patterns import PatternFilter
from federation.patterns import Report as PatternReport
from node import migrate
from node import models as m
from node.db import Database
from node.publish import index_pseudonyms
from node.vocab import AGENCY, CONDUCT, LOCATION_KIND, STATES, STATUS

DEFAULT_ENTRIES: Final = (100_000, 1_000_000)
US_STATES: Final = tuple(sorted(STATES - {"AS", "DC", "GU", "MP", "PR", "VI"}))
BATCH: Final = 5_000  # entries per transaction, as a sync stores them
RATIO_GOAL: Final = 0.5  # raw group-by seconds / report seconds, at least
LONG_RUN: Final = 600.0  # seconds: a warm-up longer than this is the report's one timed run
GROWTH_SLACK: Final = 1.2  # time growth / entries growth, at most (12x for 10x entries)
BASELINE: Final = "raw group-by"
RAW_SQL: Final = (
    "SELECT pseudonym, COUNT(DISTINCT state), COUNT(*) FROM replica_pseudonyms"
    " GROUP BY pseudonym HAVING COUNT(DISTINCT state) >= 2"
)

# --- the synthetic replica's distribution (see the module docstring) -------------------------
SIGHTINGS: Final = 4  # incidents per agent, on average: agents = entries * 2 / SIGHTINGS
TRAVELLERS: Final = 0.05  # share of agents in the pools of several states
TRAVEL_STATES: Final = (2, 5)  # a traveller's states, home included
STATE_WEIGHT: Final = (0.5, 2.0)  # a state's share of entries, relative to the mean
NO_AGENCY: Final = 0.05  # agents whose agency is never recorded
COMMON_NAME: Final = 0.02  # agents carrying one of COMMON_NAMES
COMMON_NAMES: Final = (
    "john smith", "michael johnson", "david williams", "james brown", "robert jones",
    "maria garcia", "jose rodriguez", "juan martinez", "daniel miller", "chris davis",
)  # fmt: skip
AGENTS_PER_UNIT: Final = 8
AGENTS_PER_PLATE: Final = 3
KEY_SHARE: Final = {"badge": 0.6, "name": 0.5, "unit": 0.4, "plate": 0.2}
MASKED: Final = 0.1  # observations that record no key at all
COUNTIES: Final = 20
FIRST_DAY: Final = date(2024, 1, 1)
DAYS: Final = 730
AGENCY_WEIGHTS: Final = {
    "ICE-ERO": 40, "CBP-USBP": 15, "ICE-HSI": 10, "CBP-OFO": 8, "CBP-BORTAC": 4, "FBI": 4,
    "USMS": 4, "DEA": 3, "DHS-OTHER": 3, "NATIONAL-GUARD": 3, "ATF": 2, "FPS": 2, "OTHER": 2,
}  # fmt: skip
ROLES: Final = ("primary", "participant", "supervisor")
assert set(AGENCY_WEIGHTS) == AGENCY - {"UNKNOWN"}
assert len(US_STATES) == 50

_CONDUCT: Final = sorted(CONDUCT)
_LOCATION_KINDS: Final = sorted(LOCATION_KIND)
_STATUSES: Final = sorted(STATUS)
_TABLES: Final = ("replica_pseudonyms", "replica_incidents", "replica_agents")


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to (or a report was wrong)."""


# --- generating the replica ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyntheticAgent:
    """One agent: what any observation of it may record."""

    number: int
    agency: str | None
    name: str
    unit: str  # the unit's text, without the agency
    plate: str  # `ST:PLATE`, issued by the agent's home state

    def keys(self, rng: random.Random) -> dict[str, str]:
        """The identifier keys (`kind` -> `kind:value`) that one observation records."""
        if rng.random() < MASKED:
            return {}
        keys: dict[str, str] = {}
        agency = self.agency
        if agency and rng.random() < KEY_SHARE["badge"]:
            keys["badge"] = f"badge:{agency}:{self.number}"
        if rng.random() < KEY_SHARE["name"]:
            keys["name"] = f"name:{self.name}"
            if agency:
                keys["name_agency"] = f"name_agency:{agency}:{self.name}"
        if agency and rng.random() < KEY_SHARE["unit"]:
            keys["unit"] = f"unit:{agency}:{self.unit}"
        if rng.random() < KEY_SHARE["plate"]:
            keys["plate"] = f"plate:{self.plate}"
        return keys


@dataclass
class Population:
    """The states, how many entries each holds, and each state's pool of agents."""

    entries: dict[str, int]
    pools: dict[str, list[SyntheticAgent]]
    agents: int
    travellers: int
    common_names: int

    def to_json(self) -> dict[str, Any]:
        return {
            "agents": self.agents,
            "travelling_agents": self.travellers,
            "agents_with_common_names": self.common_names,
            "entries_per_state": {
                "min": min(self.entries.values()),
                "max": max(self.entries.values()),
            },
        }


def pseudonym(key: str) -> str:
    """Stands in for the OPRF (as tests/test_matches.py does): 128 hex digits."""
    return hashlib.sha512(key.encode()).hexdigest()


def split(total: int, weights: Sequence[float]) -> list[int]:
    """`total` split in proportion to `weights` (largest remainders; sums to `total`)."""
    exact = [total * w / sum(weights) for w in weights]
    out = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: out[i] - exact[i])
    for i in by_remainder[: total - sum(out)]:
        out[i] += 1
    return out


def _agent(rng: random.Random, number: int, home: str, home_agents: int) -> SyntheticAgent:
    """Agent `number` of `home`, a state with `home_agents` agents (its units and plates)."""
    agency = None if rng.random() < NO_AGENCY else _weighted(rng, AGENCY_WEIGHTS)
    if rng.random() < COMMON_NAME:
        name = rng.choice(COMMON_NAMES)
    else:
        name = f"agent{number} family{number % 9973}"
    units = max(1, home_agents // AGENTS_PER_UNIT)
    plates = max(1, home_agents // AGENTS_PER_PLATE)
    return SyntheticAgent(
        number,
        agency,
        name,
        f"{home.lower()} team {rng.randrange(units)}",
        f"{home}:BX{rng.randrange(plates):05d}",
    )


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    """One key of `weights`, drawn with those weights."""
    return str(rng.choices(list(weights), weights=list(weights.values()))[0])


def make_population(rng: random.Random, entries: int, states: Sequence[str]) -> Population:
    """Agents for `entries` entries over `states`, in each state's pool (module docstring)."""
    weights = [rng.uniform(*STATE_WEIGHT) for _ in states]
    per_state = dict(zip(states, split(entries, weights), strict=True))
    total = max(len(states), entries * 2 // SIGHTINGS)
    travellers = round(total * TRAVELLERS)
    homes = dict(zip(states, split(total - travellers, weights), strict=True))
    pools: dict[str, list[SyntheticAgent]] = {s: [] for s in states}
    everyone: list[SyntheticAgent] = []
    for state in states:
        for _ in range(max(1, homes[state])):
            everyone.append(_agent(rng, len(everyone) + 1, state, homes[state]))
            pools[state].append(everyone[-1])
    for _ in range(travellers):
        most = min(TRAVEL_STATES[1], len(states))
        visits = rng.sample(states, rng.randint(TRAVEL_STATES[0], most))
        everyone.append(_agent(rng, len(everyone) + 1, visits[0], homes[visits[0]]))
        for state in visits:
            pools[state].append(everyone[-1])
    common = sum(1 for a in everyone if a.name in COMMON_NAMES)
    return Population(per_state, pools, len(everyone), travellers, common)


def make_entry(
    rng: random.Random, state: str, log_index: int, pool: Sequence[SyntheticAgent]
) -> IndexEntry:
    """One current index entry of `state` with 1-3 agents of its pool."""
    agents = []
    for position, agent in enumerate(rng.sample(pool, min(len(pool), rng.randint(1, 3)))):
        keys = agent.keys(rng)
        agents.append(
            AgentEntry(
                agent.agency,
                ROLES[position],
                True if not keys else rng.random() < 0.3,
                rng.choice((None, True, False)),
                rng.choice((None, True, False)),
                {kind: pseudonym(key) for kind, key in keys.items()},
            )
        )
    content = EntryContent(
        (FIRST_DAY + timedelta(days=rng.randrange(DAYS))).isoformat(),
        f"{state} county {rng.randrange(COUNTIES) + 1}",
        rng.choice(_LOCATION_KINDS),
        tuple(sorted(rng.sample(_CONDUCT, rng.randint(1, 3)))),
        rng.choice(_STATUSES),
        tuple(agents),
    )
    return IndexEntry(state, f"{state}-{log_index:036x}", 1, content)


# --- building the database ---------------------------------------------------------------------


@dataclass
class Build:
    """How the replica was built: seconds, rows, the generated population."""

    entries: int
    seconds: float = 0.0
    store_seconds: float = 0.0  # inside the write transactions (index_pseudonyms + commit)
    rows: dict[str, int] = field(default_factory=dict)
    population: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "seconds": self.seconds,
            "entries_per_second": self.entries / self.seconds,
            "store_seconds": self.store_seconds,
            "generate_seconds": self.seconds - self.store_seconds,
            "rows": self.rows,
            "population": self.population,
        }


def fill_replica(db: Database, entries: int, states: Sequence[str], seed: int) -> Build:
    """Fill `db`'s replica tables with `entries` synthetic entries, as a sync stores them."""
    rng = random.Random(seed)
    build = Build(entries)
    started = time.perf_counter()
    population = make_population(rng, entries, states)
    build.population = population.to_json()
    done, shown = 0, 0
    for state in states:
        pool = population.pools[state]
        count = population.entries[state]
        for start in range(0, count, BATCH):
            batch = [
                (i, make_entry(rng, state, i, pool))
                for i in range(start, min(count, start + BATCH))
            ]
            stored = time.perf_counter()
            with db.write() as s:
                index_pseudonyms(s, state, batch, replaced=())
            build.store_seconds += time.perf_counter() - stored
            done += len(batch)
            if done * 10 // entries > shown:
                shown = done * 10 // entries
                rate = done / (time.perf_counter() - started)
                say(f"{entries:,}: built {done:,} entries ({state}), {rate:,.0f} entries/s")
    build.seconds = time.perf_counter() - started
    if db.engine.dialect.name == "postgresql":
        with db.write() as s:  # the statistics autovacuum keeps on a live node
            s.execute(text("ANALYZE replica_pseudonyms, replica_incidents, replica_agents"))
    build.rows = count_rows(db)
    return build


def count_rows(db: Database) -> dict[str, int]:
    """Rows in each replica table."""
    with db.read() as s:
        return {
            name: int(s.scalar(select(func.count()).select_from(m.Base.metadata.tables[name])) or 0)
            for name in _TABLES
        }


@contextmanager
def _migrated(url: str) -> Iterator[Database]:
    """The database at `url`, migrated to the newest schema; disposed of afterwards."""
    db = Database.from_url(url)
    try:
        migrate.upgrade(db.engine)
        yield db
    finally:
        db.dispose()


@contextmanager
def fresh_database(entries: int, work: Path, admin_url: str | None) -> Iterator[Database]:
    """A new, migrated database for one size: a SQLite file in `work`, or a database made
    on the PostgreSQL server of `admin_url` and dropped afterwards."""
    if admin_url is None:
        path = work / f"patterns-{entries}.db"
        for leftover in (
            path,
            path.with_name(path.name + "-wal"),
            path.with_name(path.name + "-shm"),
        ):
            leftover.unlink(missing_ok=True)
        with _migrated(f"sqlite:///{path}") as db:
            yield db
        return
    name = f"compact_bench_patterns_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        with _migrated(f"{base}/{name}") as db:
            yield db
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- the reports and the raw primitive ----------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """Something timed on the replica. `run` computes it (timed); `describe` turns the
    warm-up run's result into figures for the output (untimed), checking it against the
    raw group-by's cross-state pseudonyms; a wrong result raises BenchError."""

    run: Callable[[Database], object]
    describe: Callable[[Any, frozenset[str]], dict[str, Any]]
    ratio_goal: float | None = None  # raw seconds / report seconds, at least (issue 6)


def raw_group_by(db: Database) -> list[tuple[Any, ...]]:
    """The raw primitive: every pseudonym seen in two or more states, all rows fetched."""
    with db.read() as s:
        return [tuple(row) for row in s.execute(text(RAW_SQL)).all()]


def describe_raw(rows: list[tuple[Any, ...]], _cross_state: frozenset[str]) -> dict[str, Any]:
    """The cross-state pseudonyms found and the rows they have."""
    return {"cross_state_pseudonyms": len(rows), "rows": sum(int(r[2]) for r in rows)}


def agents_matches(db: Database) -> list[Match]:
    """`compact agents matches` with no filter."""
    return find_matches(db, MatchFilter())


def describe_matches(found: list[Match], cross_state: frozenset[str]) -> dict[str, Any]:
    """Matches by entity; each must rest on a pseudonym found in two or more states."""
    for x in found:
        keys = {x.ident} if x.entity != "agent" else {link.pseudonym for link in x.links}
        if not keys & cross_state:
            raise BenchError(f"{x.entity} match {x.ident[:12]} has no cross-state pseudonym")
    by_entity = Counter(x.entity for x in found)
    return {
        "matches": len(found),
        "matches_by_entity": {e: by_entity.get(e, 0) for e in ("agent", "name", "unit", "vehicle")},
        "agents_with_ambiguous_name_agency": sum(1 for x in found if x.ambiguous),
        "incidents_in_matches": sum(x.incident_count for x in found),
    }


def _pattern(name: str) -> Callable[[Database], PatternReport]:
    """`compact patterns NAME` with its defaults and no filter."""

    def run(db: Database) -> PatternReport:
        return PATTERNS[name](db, PatternFilter())

    return run


def describe_pattern(report: PatternReport, _cross_state: frozenset[str]) -> dict[str, Any]:
    """The rows of a pattern report and the global ids behind them."""
    ids = sum(len(r["global_ids"]) + int(r["more_ids"]) for r in report.rows)
    return {"rows": len(report.rows), "global_ids_behind_rows": ids}


REPORTS: Final[dict[str, Report]] = {
    "agents matches": Report(agents_matches, describe_matches, RATIO_GOAL),
    **{
        f"patterns {name}": Report(_pattern(name), describe_pattern)
        for name in ("repeat", "units", "unidentified", "surges", "conduct")
    },
}
_TIMED: Final[dict[str, Report]] = {BASELINE: Report(raw_group_by, describe_raw), **REPORTS}


def warm_up(db: Database, long_run: float) -> dict[str, dict[str, Any]]:
    """Run each of `_TIMED` once, untimed for the figure unless it took longer than
    `long_run` seconds; describe and check each result. The results are dropped on return,
    so that they do not weigh on the timed rounds (Python's cyclic garbage collector walks
    every live object, and a report's result is hundreds of thousands of them)."""
    warm: dict[str, object] = {}
    figures: dict[str, dict[str, Any]] = {}
    for name, report in _TIMED.items():
        gc.collect()
        started = time.perf_counter()
        warm[name] = report.run(db)
        seconds = time.perf_counter() - started
        figures[name] = {"warmup_seconds": seconds, "warmup_only": seconds > long_run}
        figures[name]["runs_seconds"] = [seconds] if seconds > long_run else []
        say(f"  warm-up {name}: {seconds:.2f} s")
    raw = warm[BASELINE]
    assert isinstance(raw, list)
    cross_state = frozenset(str(row[0]) for row in raw)
    for name, report in _TIMED.items():
        figures[name].update(report.describe(warm[name], cross_state))
    return figures


def time_reports(db: Database, rounds: int, long_run: float) -> dict[str, dict[str, Any]]:
    """Warm up and describe each of `_TIMED`, then time `rounds` alternating rounds. A
    report whose warm-up took longer than `long_run` seconds is not run again: its warm-up
    is its one timed run (`warmup_only`), caches matter little at that length."""
    figures = warm_up(db, long_run)
    names = [name for name in _TIMED if not figures[name]["warmup_only"]]
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            figures[name]["runs_seconds"].append(_timed_run(db, name))
            say(f"  round {r + 1} {name}: {figures[name]['runs_seconds'][-1]:.2f} s")
    raw_best = min(figures[BASELINE]["runs_seconds"])
    for name, f in figures.items():
        f["best_seconds"] = min(f["runs_seconds"])
        if name != BASELINE:
            f["ratio"] = raw_best / f["best_seconds"]
            goal = _TIMED[name].ratio_goal
            if goal is not None:
                f["goal_ratio"] = goal
                f["goal_met"] = f["ratio"] >= goal
    return figures


def _timed_run(db: Database, name: str) -> float:
    """Seconds of one run of `_TIMED[name]` (its result dropped), after a full collection
    so that no run pays for the garbage of the one before it."""
    gc.collect()
    started = time.perf_counter()
    _TIMED[name].run(db)
    return time.perf_counter() - started


# --- the run -----------------------------------------------------------------------------------


def run_size(
    entries: int,
    states: Sequence[str],
    *,
    seed: int,
    rounds: int,
    long_run: float,
    work: Path,
    admin_url: str | None,
) -> dict[str, Any]:
    """Build one replica of `entries` entries and time every report on it."""
    say(f"=== {entries:,} entries from {len(states)} states ===")
    with fresh_database(entries, work, admin_url) as db:
        build = fill_replica(db, entries, states, seed)
        say(f"{entries:,}: built in {build.seconds:.1f} s; timing {rounds} rounds")
        reports = time_reports(db, rounds, long_run)
    return {"entries": entries, "build": build.to_json(), "reports": reports}


def growth(sizes: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each timed name: best time at the largest size over the smallest, and the goal."""
    if len(sizes) < 2:
        return {}
    small, large = min(sizes, key=lambda r: r["entries"]), max(sizes, key=lambda r: r["entries"])
    limit = GROWTH_SLACK * large["entries"] / small["entries"]
    out = {}
    for name in _TIMED:
        ratio = large["reports"][name]["best_seconds"] / small["reports"][name]["best_seconds"]
        out[name] = {
            "from_entries": small["entries"],
            "to_entries": large["entries"],
            "ratio": ratio,
            "goal_at_most": limit,
            "goal_met": ratio <= limit,
        }
    return out


def run(
    sizes: Sequence[int],
    *,
    states: int = 50,
    seed: int = 1,
    rounds: int = 3,
    long_run: float = LONG_RUN,
    database_url: str | None = None,
    work: Path | None = None,
) -> dict[str, Any]:
    """Every size, then the growth across sizes; figures as a JSON-able dict."""
    if not 2 <= states <= len(US_STATES):
        raise BenchError(f"--states must be from 2 to {len(US_STATES)}")
    if not sizes or min(sizes) < states or rounds < 1:
        raise BenchError("every size needs at least one entry per state, and --rounds >= 1")
    if database_url is not None and not database_url.startswith("postgresql://"):
        raise BenchError("--database-url: a PostgreSQL admin database (postgresql://...)")
    chosen = US_STATES[:states]
    with tempfile.TemporaryDirectory(prefix="compact-bench-patterns-") as tmp:
        folder = Path(tmp) if work is None else work
        folder.mkdir(parents=True, exist_ok=True)
        results = [
            run_size(
                n,
                chosen,
                seed=seed,
                rounds=rounds,
                long_run=long_run,
                work=folder,
                admin_url=database_url,
            )
            for n in sizes
        ]
    return {
        "states": list(chosen),
        "seed": seed,
        "rounds": rounds,
        "long_run_seconds": long_run,
        "backend": "sqlite" if database_url is None else "postgresql",
        "raw_sql": RAW_SQL,
        "sizes": results,
        "growth": growth(results),
        "machine": machine_info(_postgres_version(database_url)),
    }


def _postgres_version(admin_url: str | None) -> str | None:
    """The server's version, for the machine details (None without PostgreSQL)."""
    if admin_url is None:
        return None
    with psycopg.connect(admin_url, connect_timeout=3) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return None if row is None else str(row[0])


# --- output --------------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    """How the table says whether a goal is met."""
    return "met" if met else "NOT met"


def format_size(r: dict[str, Any]) -> list[str]:
    """The table lines of one size."""
    b, rows = r["build"], r["build"]["rows"]
    pop = b["population"]
    lines = [
        f"replica: {r['entries']:,} entries; {rows['replica_pseudonyms']:,} pseudonym rows,"
        f" {rows['replica_agents']:,} agent rows; {pop['agents']:,} agents"
        f" ({pop['travelling_agents']:,} travelling)",
        f"  built in {b['seconds']:.1f} s ({b['entries_per_second']:,.0f} entries/s;"
        f" index_pseudonyms and commits {b['store_seconds']:.1f} s)",
        f"  {'':<22}{'best s':>9}  {'ratio':>6}  runs (s)",
    ]
    for name, f in r["reports"].items():
        ratio = f"{f['ratio']:6.3f}" if "ratio" in f else f"{'':6}"
        verdict = (
            f"  goal >= {f['goal_ratio']}: {_verdict(f['goal_met'])}" if "goal_met" in f else ""
        )
        runs = ", ".join(f"{x:.2f}" for x in f["runs_seconds"])
        runs += " (warm-up only)" if f["warmup_only"] else ""
        lines.append(f"  {name:<22}{f['best_seconds']:>9.3f}  {ratio}  {runs}{verdict}")
    raw = r["reports"][BASELINE]
    lines.append(f"  raw: {raw['cross_state_pseudonyms']:,} cross-state pseudonyms")
    for name, f in r["reports"].items():
        if "matches_by_entity" in f:
            found = ", ".join(f"{k} {v:,}" for k, v in f["matches_by_entity"].items())
            lines.append(f"  {name}: {f['matches']:,} matches ({found})")
        elif "global_ids_behind_rows" in f:
            lines.append(f"  {name}: {f['rows']:,} rows")
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The table on stdout: each size, then the growth of each timed name."""
    lines: list[str] = []
    for r in result["sizes"]:
        lines += [*format_size(r), ""]
    for name, g in result["growth"].items():
        lines.append(
            f"growth {g['from_entries']:,} -> {g['to_entries']:,} entries, {name}:"
            f" {g['ratio']:.2f}x (goal <= {g['goal_at_most']:.1f}x: {_verdict(g['goal_met'])})"
        )
    return "\n".join(lines).rstrip()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m bench.patterns", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--entries",
        default=",".join(str(n) for n in DEFAULT_ENTRIES),
        help="index entries per replica, e.g. 100000,1000000",
    )
    p.add_argument("--states", type=int, default=50, help="states (the first N of the 50, A-Z)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per report (best taken)")
    p.add_argument(
        "--long-run",
        type=float,
        default=LONG_RUN,
        metavar="SECONDS",
        help="a report whose warm-up takes longer is timed by that run alone",
    )
    p.add_argument("--database-url", help="a PostgreSQL admin database; default SQLite files")
    p.add_argument("--work", type=Path, help="keep the SQLite databases in this folder")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="the figures as JSON: alone to stdout, with FILE also to FILE",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    """Run the benchmark; the table (or with `--json` alone the JSON) goes to `out`."""
    args = parse_args(argv)
    try:
        sizes = [int(x.replace("_", "")) for x in str(args.entries).split(",")]
    except ValueError:
        raise SystemExit(f"--entries: not a list of numbers: {args.entries!r}") from None
    result = run(
        sizes,
        states=args.states,
        seed=args.seed,
        rounds=args.rounds,
        long_run=args.long_run,
        database_url=args.database_url,
        work=args.work,
    )
    shown = sys.argv[1:] if argv is None else list(argv)
    result["command"] = shlex.join(["python", "-m", "bench.patterns", *shown])
    figures = json.dumps(result, indent=2)
    if args.json == "-":
        out(figures)
        return 0
    out(format_table(result))
    if args.json is not None:
        Path(args.json).write_text(figures + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
