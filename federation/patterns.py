"""`compact patterns repeat|units|unidentified|surges|conduct`: pattern reports.

Each report runs on the node's replica of the federated index (the tables that
federation.matches describes) and returns a `Report`: a title, columns, rows, the
global incident ids behind each row (at most `ids_limit` per row, with the count of
the rest), and notes that say how the report was computed. docs/analysis.md
describes each report and its method.

Aggregate reports (surges, conduct) can be prepared for publication outside the
compact with `suppress`: counts below a minimum are replaced by "<N" (primary
suppression), rates computed from them are blanked, global ids are left out, and
a note says so. Reports that list individual agents or incidents (repeat, units,
unidentified) are not aggregates and cannot be published this way.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Final

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import aliased

from federation.linking import STRONG, Agent, DisjointSets, link_agents
from federation.matches import Loaded, MatchFilter, in_range, load_linked, summarize
from node import models as m
from node.db import Database

_P = m.ReplicaPseudonym
_I = m.ReplicaIncident
_A = m.ReplicaAgent
SHORT: Final = 12
PUBLISH_MINIMUM: Final = 5
PLOT_PLACES: Final = 6  # surges: the places whose weekly timelines a report carries


@dataclass(frozen=True)
class Series:
    """One place's weekly counts, for the surges timeline: each week (its Monday), the
    count (None: suppressed for publication), the baseline it was tested against (None
    before the place has a baseline, and in a published report), and whether it was
    flagged."""

    label: str
    weeks: tuple[str, ...]
    counts: tuple[int | None, ...]
    baselines: tuple[float | None, ...]
    flagged: tuple[bool, ...]
    suppressed_below: int | None = None  # published: the counts left out are 1 to this - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            **({"suppressed_below": self.suppressed_below} if self.suppressed_below else {}),
            "weeks": [
                {"week": w, "count": n, "baseline": b, "flagged": x}
                for w, n, b, x in zip(
                    self.weeks, self.counts, self.baselines, self.flagged, strict=True
                )
            ],
        }


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]  # column values, and "global_ids", "more_ids"
    notes: tuple[str, ...] = ()
    count_columns: tuple[str, ...] = ()  # an aggregate report: counts that --publish hides
    derived_columns: tuple[str, ...] = ()  # values computed from the counts (rates)
    series: tuple[Series, ...] = ()  # surges: the timelines of the places plotted

    @property
    def aggregate(self) -> bool:
        return bool(self.count_columns)

    def to_json(self) -> dict[str, Any]:
        return {
            "report": self.name,
            "title": self.title,
            "columns": list(self.columns),
            "rows": [dict(r) for r in self.rows],
            "notes": list(self.notes),
            **({"series": [x.to_json() for x in self.series]} if self.series else {}),
        }


@dataclass(frozen=True)
class PatternFilter:
    """What every report shares: a date range (inclusive) and, for the reports that list
    them, how many global ids to give per row."""

    since: date | None = None
    until: date | None = None
    ids_limit: int = 50

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since: after until")
        if self.ids_limit < 0:
            raise ValueError("ids_limit: must not be negative")

    @property
    def matches(self) -> MatchFilter:
        return MatchFilter(since=self.since, until=self.until)


def _ids(ids: Iterable[str], limit: int) -> dict[str, Any]:
    ordered = sorted(set(ids))
    return {"global_ids": ordered[:limit], "more_ids": max(0, len(ordered) - limit)}


def _profile(counts: dict[str, int], top: int = 5) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {n}" for k, n in ranked[:top])


def suppress(report: Report, minimum: int = PUBLISH_MINIMUM) -> Report:
    """The report as it may leave the compact: counts below `minimum` become "<minimum",
    derived values in those rows are blanked, global ids are dropped, and a note says so."""
    if not report.aggregate:
        raise ValueError(
            f"{report.name} lists individual agents or incidents, not aggregate counts: "
            "it cannot be published"
        )
    if minimum < 1:
        raise ValueError("minimum: at least 1")
    hidden = 0
    rows = []
    for row in report.rows:
        out = {k: v for k, v in row.items() if k not in ("global_ids", "more_ids")}
        small = [c for c in report.count_columns if 0 < int(row[c]) < minimum]
        for c in small:
            out[c] = f"<{minimum}"
        if small:
            for c in report.derived_columns:
                out[c] = None
        hidden += len(small)
        rows.append(out)
    series = tuple(
        replace(
            x,
            counts=tuple(None if n and n < minimum else n for n in x.counts),
            baselines=tuple(None for _ in x.baselines),
            suppressed_below=minimum,
        )
        for x in report.series
    )
    note = (
        f"for publication: {hidden} cells with counts from 1 to {minimum - 1} are shown as "
        f"<{minimum} and the rates computed from them are blanked (primary suppression); "
        "global incident ids are left out"
    )
    if series:
        note += (
            f"; in the timelines, weekly counts from 1 to {minimum - 1} are left out and so "
            "are the baselines (consecutive baselines would give them away)"
        )
    return replace(report, rows=tuple(rows), notes=(*report.notes, note), series=series)


# --- repeat and units: agents joined by strong keys ------------------------------------


def _repeated_agents(db: Database, f: PatternFilter) -> tuple[list[Agent], Loaded]:
    """Every agent seen at two or more incidents (within the date range), joined as
    federation.linking joins them: seeded by the strong keys carried by two or more
    observations (an agent of several incidents has at least one)."""
    seeds = select(_P.prefix).where(_P.kind.in_(STRONG))
    if f.since or f.until:
        seeds = seeds.join(_I, and_(_I.state == _P.state, _I.log_index == _P.log_index))
    seeds = seeds.where(*in_range(f.matches)).group_by(_P.prefix).having(func.count() >= 2)
    with db.read() as s:
        loaded = load_linked(s, f.matches, seeds)
    agents = link_agents(r for r in loaded.rows.values() if r.kind in STRONG)
    return [a for a in agents if len(_incidents_of(a)) >= 2], loaded


def _incidents_of(agent: Agent) -> set[tuple[str, int]]:
    return {(o[0], o[1]) for o in agent.observations}


def repeat(db: Database, f: PatternFilter, *, min_incidents: int = 3) -> Report:
    """Agents with at least `min_incidents` incidents, in any states, with their conduct."""
    if min_incidents < 2:
        raise ValueError("min_incidents: at least 2")
    agents, loaded = _repeated_agents(db, f)
    rows = []
    for a in agents:
        if len(_incidents_of(a)) < min_incidents:
            continue
        x = summarize("agent", "strong", a.ident, a.observations, loaded.facts, ())
        rows.append(
            {
                "agent": a.ident[:SHORT],
                "incidents": x.incident_count,
                "states": " · ".join(f"{s} {len(x.incidents[s])}" for s in x.states),
                "first_day": x.first_day,
                "last_day": x.last_day,
                "conduct": _profile(x.conduct),
                "agencies": _profile(x.agencies),
                "pseudonym": a.ident,
                "per_state": {s: len(x.incidents[s]) for s in x.states},
                **_ids((g for gs in x.incidents.values() for g in gs), f.ids_limit),
            }
        )
    rows.sort(key=lambda r: (-r["incidents"], r["pseudonym"]))
    return Report(
        "repeat",
        f"Agents with at least {min_incidents} incidents",
        ("agent", "incidents", "states", "first_day", "last_day", "conduct", "agencies"),
        tuple(rows),
        (
            "agents are joined by badge or by name and agency, transitively "
            "(docs/analysis.md); conduct counts incidents",
        ),
    )


def _components(edges: Iterable[tuple[str, str]]) -> list[set[str]]:
    sets: DisjointSets[str] = DisjointSets()
    for a, b in edges:
        sets.union(a, b)
    return sorted(sets.groups(), key=min)


def units(db: Database, f: PatternFilter, *, min_together: int = 2) -> Report:
    """Groups of agents repeatedly present together: agents are linked when they share at
    least `min_together` incidents; each connected group is a team, with the states it
    operated in, in order, and when."""
    if min_together < 2:
        raise ValueError("min_together: at least 2")
    agents, loaded = _repeated_agents(db, f)
    at: dict[tuple[str, int], set[str]] = defaultdict(set)
    for a in agents:
        for incident in _incidents_of(a):
            at[incident].add(a.ident)
    together: Counter[tuple[str, str]] = Counter()
    for present in at.values():
        ordered = sorted(present)
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                together[(first, second)] += 1
    edges = [pair for pair, n in together.items() if n >= min_together]
    gid = {(o[0], o[1]): fact.global_id for o, fact in loaded.facts.items()}
    day = {(o[0], o[1]): fact.day for o, fact in loaded.facts.items()}
    rows = []
    for members in _components(edges):
        shared = [i for i, present in at.items() if len(present & members) >= 2]
        spans: dict[str, list[str]] = defaultdict(list)
        for incident in shared:
            spans[incident[0]].append(day[incident])
        moves = sorted(spans.items(), key=lambda kv: (min(kv[1]), kv[0]))
        rows.append(
            {
                "team": "T-" + min(members)[:SHORT],
                "agents": len(members),
                "incidents": len(shared),
                "states": len(spans),
                "movement": " → ".join(f"{s} {min(d)}…{max(d)}" for s, d in moves),
                "spans": [{"state": s, "first_day": min(d), "last_day": max(d)} for s, d in moves],
                "members": sorted(members),
                **_ids((gid[i] for i in shared), f.ids_limit),
            }
        )
    rows.sort(key=lambda r: (-r["states"], -r["incidents"], r["team"]))
    return Report(
        "units",
        f"Agents present together at {min_together} or more incidents",
        ("team", "agents", "incidents", "states", "movement"),
        tuple(rows),
        (
            f"co-presence graph: two agents are linked when at least {min_together} incidents "
            "list both; a team is a connected group of linked agents; movement lists each "
            "state with the first and last day the team was there, in order",
        ),
    )


# --- unidentified: masked or unidentified agents grouped -------------------------------


@dataclass
class _Masked:
    observation: tuple[str, int, int]
    global_id: str
    day: date
    county: str
    agency: str
    conduct: tuple[str, ...]
    unit: str | None = None
    plate: str | None = None
    basis: set[str] = field(default_factory=set)


def _masked_rows(db: Database, f: PatternFilter) -> list[_Masked]:
    """Agents recorded as masked or as not identifying themselves, with no badge and no name
    key, with their unit and plate pseudonyms if any."""
    unit, plate, named = aliased(_P), aliased(_P), aliased(_P)

    def key_of(alias: Any, kinds: Sequence[str]) -> Any:
        return and_(
            alias.state == _A.state, alias.log_index == _A.log_index,
            alias.position == _A.position, alias.kind.in_(kinds),
        )  # fmt: skip

    q = (
        select(
            _A.state, _A.log_index, _A.position, _I.global_id, _I.day, _I.county, _A.agency,
            _I.conduct, unit.pseudonym, plate.pseudonym,
        )
        .join(_I, and_(_I.state == _A.state, _I.log_index == _A.log_index))
        .outerjoin(unit, key_of(unit, ["unit"]))
        .outerjoin(plate, key_of(plate, ["plate"]))
        .outerjoin(named, key_of(named, ["badge", "name", "name_agency"]))
        .where(or_(_A.masked == 1, _A.identified_self == 0), named.kind.is_(None))
        .where(*in_range(f.matches))
    )  # fmt: skip
    with db.read() as s:
        return [
            _Masked((str(st), int(i), int(p)), str(g), date.fromisoformat(str(d)), str(c),
                    str(a or "UNKNOWN"), tuple(str(cd).split()), u, pl)
            for st, i, p, g, d, c, a, cd, u, pl in s.execute(q)
        ]  # fmt: skip


def _places(members: Iterable[_Masked]) -> str:
    return ", ".join(sorted({f"{x.county} ({x.observation[0]})" for x in members}))


UNIDENTIFIED_BASES: Final = ("unit", "vehicle", "county")


def unidentified(
    db: Database,
    f: PatternFilter,
    *,
    window_days: int = 14,
    min_incidents: int = 2,
    bases: Sequence[str] = UNIDENTIFIED_BASES,
) -> Report:
    """Incidents with masked or unidentified agents, grouped into provisional teams: the same
    unit, or the same vehicle, or (with neither) the same county and agency, each time
    within `window_days` of the group's previous incident; agents at one incident are one
    group. `bases` names the joins made (county alone is the weakest: place and time). No
    facial recognition, no image: only what the index records."""
    if window_days < 1 or min_incidents < 2:
        raise ValueError("window_days: at least 1; min_incidents: at least 2")
    if not bases or set(bases) - set(UNIDENTIFIED_BASES):
        raise ValueError(f"bases: one or more of {', '.join(UNIDENTIFIED_BASES)}")
    found = _masked_rows(db, f)
    sets: DisjointSets[int] = DisjointSets()
    for i in range(len(found)):
        sets.add(i)

    def join(ids: list[int], basis: str) -> None:
        ids.sort(key=lambda i: found[i].day)
        for a, b in itertools.pairwise(ids):
            if (found[b].day - found[a].day).days <= window_days:
                sets.union(a, b)
                found[a].basis.add(basis)
                found[b].basis.add(basis)

    buckets: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, x in enumerate(found):
        buckets[("incident", x.observation[0], str(x.observation[1]))].append(i)
        if x.unit:
            buckets[("unit", x.unit)].append(i)
        if x.plate:
            buckets[("vehicle", x.plate)].append(i)
        if not x.unit and not x.plate:
            buckets[("county", x.observation[0], x.county, x.agency)].append(i)
    for key, ids in buckets.items():
        if key[0] == "incident":
            for i in ids[1:]:
                sets.union(ids[0], i)
        elif key[0] in bases:
            label = {
                "unit": lambda k: f"unit {k[1][:SHORT]}",
                "vehicle": lambda k: f"vehicle {k[1][:SHORT]}",
                "county": lambda k: f"county {k[2]}, {k[1]} ({k[3]})",
            }[key[0]](key)
            join(list(ids), label)
    rows = []
    for group in sets.groups():
        members = [found[i] for i in group]
        incidents = {(x.observation[0], x.global_id): x for x in members}
        if len(incidents) < min_incidents:
            continue
        days = [x.day for x in members]
        conduct = Counter(c for x in incidents.values() for c in x.conduct)
        rows.append(
            {
                "group": "U-" + min(g for _, g in incidents)[:SHORT + 3],
                "incidents": len(incidents),
                "states": ", ".join(sorted({s for s, _ in incidents})),
                "counties": _places(members),
                "first_day": min(days).isoformat(),
                "last_day": max(days).isoformat(),
                "agencies": _profile(Counter(x.agency for x in members)),
                "basis": "; ".join(sorted(set().union(*(x.basis for x in members)))),
                "conduct": _profile(dict(conduct)),
                **_ids((g for _, g in incidents), f.ids_limit),
            }
        )  # fmt: skip
    rows.sort(key=lambda r: (-r["incidents"], r["group"]))
    return Report(
        "unidentified",
        "Provisional unidentified teams (masked or unidentified agents)",
        ("group", "incidents", "states", "counties", "first_day", "last_day", "agencies",
         "basis", "conduct"),
        tuple(rows),
        (
            "agents recorded as masked or as not identifying themselves, with no badge and no "
            f"name; grouped when they share a unit, a vehicle, or (with neither) a county and "
            f"an agency (joins made: {', '.join(b for b in UNIDENTIFIED_BASES if b in bases)}), "
            f"each incident within {window_days} days of the previous one; "
            "agents at one incident are one group; a provisional record, not an "
            "identification",
        ),
    )  # fmt: skip


# --- surges: weekly counts against each place's own baseline ---------------------------


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def poisson_sf(x: int, lam: float) -> float:
    """P(X >= x) for X ~ Poisson(lam), summed from the upper tail (no SciPy)."""
    if x <= 0:
        return 1.0
    log_p = -lam + x * math.log(lam) - math.lgamma(x + 1)
    term, total, k = math.exp(log_p), 0.0, x
    while term > 1e-300 and k < x + 10_000:
        total += term
        k += 1
        term *= lam / k
        if term < total * 1e-16:
            break
    return min(1.0, total)


def surges(
    db: Database,
    f: PatternFilter,
    *,
    baseline_weeks: int = 12,
    alpha: float = 0.01,
    min_count: int = 5,
    floor: float = 0.5,
) -> Report:
    """Weeks whose incident count at a place (state and county) is significantly above
    that place's own baseline: the mean of its previous `baseline_weeks` weeks."""
    if baseline_weeks < 2 or not 0 < alpha < 1 or min_count < 1:
        raise ValueError("baseline_weeks: at least 2; alpha: between 0 and 1; min_count: >= 1")
    q = select(_I.state, _I.county, _I.day, _I.global_id).where(*in_range(f.matches))
    weekly: dict[tuple[str, str], Counter[date]] = defaultdict(Counter)
    ids: dict[tuple[str, str, date], list[str]] = defaultdict(list)
    with db.read() as s:
        for state, county, day, gid in s.execute(q):
            week = _monday(date.fromisoformat(str(day)))
            weekly[(str(state), str(county))][week] += 1
            ids[(str(state), str(county), week)].append(str(gid))
    if not weekly:
        return _surge_report([], 0, baseline_weeks, alpha, min_count, floor, ())
    first = min(min(c) for c in weekly.values())
    last = max(max(c) for c in weekly.values())
    weeks = [first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)]
    tests = len(weekly) * max(0, len(weeks) - baseline_weeks)
    limit = alpha / max(1, tests)
    rows = []
    timelines: dict[tuple[str, str], Series] = {}
    for (state, county), counts in weekly.items():
        history: list[int] = []  # the place's weeks so far, flagged weeks left out
        bases: list[float | None] = []
        flags: list[bool] = []
        for week in weeks:
            n = counts.get(week, 0)
            flags.append(False)
            if len(history) < baseline_weeks:
                history.append(n)
                bases.append(None)
                continue
            base = sum(history[-baseline_weeks:]) / baseline_weeks
            bases.append(round(base, 2))
            p = poisson_sf(n, max(base, floor))
            if n < min_count or p >= limit:
                history.append(n)
                continue
            flags[-1] = True
            rows.append(
                {
                    "state": state,
                    "county": county,
                    "week": week.isoformat(),
                    "count": n,
                    "baseline": round(base, 2),
                    "ratio": round(n / max(base, floor), 1),
                    "p_value": float(f"{p:.3g}"),
                    **_ids(ids[(state, county, week)], f.ids_limit),
                }
            )
        timelines[(state, county)] = Series(
            f"{county} ({state})",
            tuple(w.isoformat() for w in weeks),
            tuple(counts.get(w, 0) for w in weeks),
            tuple(bases),
            tuple(flags),
        )
    rows.sort(key=lambda r: (r["p_value"], r["state"], r["county"], r["week"]))
    plotted = list(dict.fromkeys((r["state"], r["county"]) for r in rows))[:PLOT_PLACES]
    if not plotted:  # nothing flagged: the busiest places
        busiest = sorted(weekly, key=lambda k: (-sum(weekly[k].values()), k))
        plotted = busiest[:PLOT_PLACES]
    series = tuple(timelines[k] for k in plotted)
    return _surge_report(rows, tests, baseline_weeks, alpha, min_count, floor, series)


def _surge_report(
    rows: list[dict[str, Any]],
    tests: int,
    weeks: int,
    alpha: float,
    min_count: int,
    floor: float,
    series: tuple[Series, ...],
) -> Report:
    return Report(
        "surges",
        "Weekly incident surges against each place's own baseline",
        ("state", "county", "week", "count", "baseline", "ratio", "p_value"),
        tuple(rows),
        (
            f"test: for each place (state, county) and week (Monday to Sunday), a one-sided "
            f"Poisson test of the week's count against the mean count of the place's previous "
            f"{weeks} unflagged weeks (at least {floor}; a surge does not raise its own "
            f"baseline); a week is flagged when its count is at least "
            f"{min_count} and p < {alpha} after a Bonferroni correction over the {tests} "
            f"place-weeks tested (p < {alpha / max(1, tests):.3g})",
        ),
        count_columns=("count",),
        derived_columns=("ratio", "p_value"),
        series=series,
    )


# --- conduct: by agency, unit, location kind or state ----------------------------------

CONDUCT_BY: Final = ("agency", "unit", "location_kind", "state")


def _conduct_rows(db: Database, f: PatternFilter, by: str) -> Iterable[tuple[str, str, str]]:
    """(group, global id, conduct) for each incident in each group, each pair once."""
    if by in ("location_kind", "state"):
        column = _I.location_kind if by == "location_kind" else _I.state
        q: Any = select(column, _I.global_id, _I.conduct).where(*in_range(f.matches))
    elif by == "agency":
        q = (
            select(func.coalesce(_A.agency, literal("UNKNOWN")), _I.global_id, _I.conduct)
            .join(_I, and_(_I.state == _A.state, _I.log_index == _A.log_index))
            .where(*in_range(f.matches))
            .distinct()
        )
    else:
        q = (
            select(_P.pseudonym, _I.global_id, _I.conduct)
            .join(_I, and_(_I.state == _P.state, _I.log_index == _P.log_index))
            .where(_P.kind == "unit", *in_range(f.matches))
            .distinct()
        )
    with db.read() as s:
        for group, gid, conduct in s.execute(q):
            yield str(group), str(gid), str(conduct)


def two_proportion_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """One-sided p-value that proportion 1 exceeds proportion 2 (pooled z-test)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


def conduct(
    db: Database,
    f: PatternFilter,
    *,
    by: str = "agency",
    only: Sequence[str] = (),
    alpha: float = 0.01,
) -> Report:
    """For each group (agency, unit, location kind or state) and conduct: the incidents with
    that conduct, the group's incidents, the rate, the rate in every other group, and
    whether the group's rate is significantly higher."""
    if by not in CONDUCT_BY:
        raise ValueError(f"by: one of {', '.join(CONDUCT_BY)}")
    totals: Counter[str] = Counter()
    counts: Counter[tuple[str, str]] = Counter()
    ids: dict[tuple[str, str], list[str]] = defaultdict(list)
    for group, gid, values in _conduct_rows(db, f, by):
        totals[group] += 1
        for c in values.split():
            counts[(group, c)] += 1
            if len(ids[(group, c)]) < f.ids_limit + 1:
                ids[(group, c)].append(gid)
    everyone = sum(totals.values())
    overall: Counter[str] = Counter()
    for (_, c), n in counts.items():
        overall[c] += n
    keys = [k for k in counts if not only or k[1] in only]
    tests = max(1, len(keys))
    rows = []
    for group, c in keys:
        n, total = counts[(group, c)], totals[group]
        rest_n, rest_total = overall[c] - n, everyone - total
        p = two_proportion_p(n, total, rest_n, rest_total)
        rows.append(
            {
                by: group[:SHORT] if by == "unit" else group,
                "conduct": c,
                "incidents": n,
                "of": total,
                "rate": round(n / total, 3),
                "rate_elsewhere": round(rest_n / rest_total, 3) if rest_total else None,
                "p_value": float(f"{p:.3g}"),
                "flagged": p < alpha / tests,
                **_ids(ids[(group, c)], f.ids_limit),
            }
        )
    rows.sort(key=lambda r: (not r["flagged"], r["p_value"], r[by], r["conduct"]))
    return Report(
        "conduct",
        f"Conduct by {by.replace('_', ' ')}",
        (by, "conduct", "incidents", "of", "rate", "rate_elsewhere", "p_value", "flagged"),
        tuple(rows),
        (
            f"incidents are counted once per {by.replace('_', ' ')} (an incident with two "
            "agencies counts for each); flagged: the rate is higher than in all other groups "
            f"together by a one-sided two-proportion z-test, p < {alpha} after a Bonferroni "
            f"correction over the {tests} rows (p < {alpha / tests:.3g})",
        ),
        count_columns=("incidents", "of"),
        derived_columns=("rate", "p_value", "flagged"),
    )


REPORTS: Final[dict[str, Callable[..., Report]]] = {
    "repeat": repeat,
    "units": units,
    "unidentified": unidentified,
    "surges": surges,
    "conduct": conduct,
}

__all__ = ["REPORTS", "PatternFilter", "Report", "suppress"]
