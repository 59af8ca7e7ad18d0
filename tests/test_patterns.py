"""federation.patterns over a replica written the way sync writes it (index_pseudonyms)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from federation.index_entry import AgentEntry
from federation.patterns import (
    PatternFilter,
    conduct,
    poisson_sf,
    repeat,
    suppress,
    surges,
    two_proportion_p,
    unidentified,
    units,
)
from node.db import Database
from tests.test_matches import agent, db, entry, pseudonym, store

__all__ = ["db"]  # the fixture
F = PatternFilter()
DAY0 = date(2025, 3, 3)  # a Monday


def day(n: int) -> str:
    return (DAY0 + timedelta(days=n)).isoformat()


def masked(agency: str = "ICE-ERO", **keys: str) -> AgentEntry:
    return AgentEntry(
        agency, "unknown", True, False, None, {k: pseudonym(f"{k}:{v}") for k, v in keys.items()}
    )


def team(*badges: str) -> tuple[AgentEntry, ...]:
    return tuple(agent(badge=f"ICE-ERO:{b}") for b in badges)


def test_repeat_counts_an_agents_incidents_across_states(db: Database) -> None:
    store(db, "IL", *((i, entry("IL", i, team("7"), day=day(i))) for i in (1, 2)))
    store(db, "MN", (1, entry("MN", 1, team("7"), day=day(30), conduct=("excessive_force",))))
    store(db, "MN", (2, entry("MN", 2, team("8"), day=day(31))))
    (row,) = repeat(db, F, min_incidents=3).rows
    assert row["incidents"] == 3 and row["states"] == "IL 2 · MN 1"
    assert row["per_state"] == {"IL": 2, "MN": 1}
    assert row["conduct"] == "warrantless_arrest 2, excessive_force 1"
    assert len(row["global_ids"]) == 3 and row["more_ids"] == 0
    assert repeat(db, F, min_incidents=4).rows == ()
    assert repeat(db, PatternFilter(until=date.fromisoformat(day(10))), min_incidents=2).rows
    limited = repeat(db, PatternFilter(ids_limit=1), min_incidents=3).rows[0]
    assert len(limited["global_ids"]) == 1 and limited["more_ids"] == 2
    with pytest.raises(ValueError, match="not aggregate"):
        suppress(repeat(db, F))


def test_units_follow_a_team_from_state_to_state(db: Database) -> None:
    store(db, "IL", *((i, entry("IL", i, team("1", "2", "3"), day=day(i))) for i in (1, 2, 3)))
    store(db, "MN", *((i, entry("MN", i, team("1", "2"), day=day(40 + i))) for i in (1, 2)))
    store(db, "WI", (1, entry("WI", 1, team("3", "9"), day=day(60))))  # together once only
    store(db, "WI", (2, entry("WI", 2, team("9"), day=day(61))))
    (row,) = units(db, F).rows
    assert row["agents"] == 3 and row["incidents"] == 5 and row["states"] == 2
    assert row["movement"] == f"IL {day(1)}…{day(3)} → MN {day(41)}…{day(42)}"
    assert row["spans"] == [
        {"state": "IL", "first_day": day(1), "last_day": day(3)},
        {"state": "MN", "first_day": day(41), "last_day": day(42)},
    ]
    assert row["members"] == sorted(pseudonym(f"badge:ICE-ERO:{b}") for b in "123")
    (pair,) = units(db, F, min_together=4).rows  # 1 and 2 together five times, 3 three
    assert pair["agents"] == 2 and pair["incidents"] == 5
    assert units(db, F, min_together=6).rows == ()


def test_unidentified_groups_masked_agents_by_unit_vehicle_and_county(db: Database) -> None:
    store(
        db, "IL",
        (1, entry("IL", 1, (masked(unit="ICE-ERO:srt"), masked()), day=day(0))),
        (2, entry("IL", 2, (masked(unit="ICE-ERO:srt"),), day=day(10))),
        (3, entry("IL", 3, (masked(unit="ICE-ERO:srt"),), day=day(90))),  # too late
        (4, entry("IL", 4, (masked("CBP-USBP"),), day=day(5))),
        (5, entry("IL", 5, (masked("CBP-USBP"),), day=day(12))),
        (6, entry("IL", 6, (masked(badge="ICE-ERO:5"),), day=day(12))),  # has a badge
    )  # fmt: skip
    store(db, "MN", (1, entry("MN", 1, (masked(plate="IL:X1"),), day=day(20))),
          (2, entry("MN", 2, (masked(plate="IL:X1"),), day=day(25))))  # fmt: skip
    rows = {r["basis"]: r for r in unidentified(db, F).rows}
    assert len(rows) == 3
    by_unit = next(r for b, r in rows.items() if b.startswith("unit"))
    assert by_unit["incidents"] == 2 and by_unit["first_day"] == day(0)
    county = next(r for b, r in rows.items() if b.startswith("county"))
    assert county["incidents"] == 2 and county["agencies"] == "CBP-USBP 2"
    vehicle = next(r for b, r in rows.items() if b.startswith("vehicle"))
    assert vehicle["states"] == "MN"
    keyed = unidentified(db, F, bases=("unit", "vehicle"))  # no join by county alone
    assert sorted(r["basis"].split()[0] for r in keyed.rows) == ["unit", "vehicle"]
    assert "joins made: unit, vehicle" in keyed.notes[0]
    assert [r["basis"].split()[0] for r in unidentified(db, F, bases=("county",)).rows] == [
        "county"
    ]
    with pytest.raises(ValueError, match="bases"):
        unidentified(db, F, bases=("face",))
    assert all(f"IL-{6:036d}" not in r["global_ids"] for r in rows.values())
    assert len(unidentified(db, F, window_days=100).rows) == 3  # the late one joins its unit
    assert max(r["incidents"] for r in unidentified(db, F, window_days=100).rows) == 3


def test_surges_flag_a_week_far_above_its_places_baseline(db: Database) -> None:
    weekly = [(i, entry("MN", i, team("1"), day=day(7 * i))) for i in range(16)]
    burst = [(100 + i, entry("MN", 100 + i, team("2"), day=day(7 * 14 + i % 5))) for i in range(9)]
    store(db, "MN", *weekly, *burst)
    report = surges(db, F)
    (row,) = report.rows
    assert (row["state"], row["county"], row["week"], row["count"]) == (
        "MN", "Cook", day(7 * 14), 10,
    )  # fmt: skip
    assert row["baseline"] == 1.0 and row["p_value"] < 1e-4
    assert "Poisson" in report.notes[0] and "Bonferroni" in report.notes[0]
    (line,) = report.series  # the timeline of the one place, for --plot
    assert line.label == "Cook (MN)" and len(line.weeks) == 16 and line.weeks[0] == day(0)
    assert line.counts == (1,) * 14 + (10, 1)
    assert line.baselines[:12] == (None,) * 12 and line.baselines[12:] == (1.0,) * 4
    assert line.flagged == (False,) * 14 + (True, False)
    assert report.to_json()["series"][0]["weeks"][14] == {
        "week": day(7 * 14), "count": 10, "baseline": 1.0, "flagged": True,
    }  # fmt: skip
    published = suppress(report, 11)
    assert published.rows[0]["count"] == "<11" and published.rows[0]["ratio"] is None
    assert "global_ids" not in published.rows[0] and "primary suppression" in published.notes[-1]
    (hidden,) = published.series  # no count from 1 to 10, no baseline (they give counts away)
    assert hidden.counts == (None,) * 16 and set(hidden.baselines) == {None}
    assert hidden.suppressed_below == 11 and "baselines" in published.notes[-1]
    assert suppress(report, 2).series[0].counts == (None,) * 14 + (10, None)
    assert surges(db, F, min_count=11).rows == ()
    (busiest,) = surges(db, F, min_count=11).series  # none flagged: the busiest places
    assert busiest.counts == line.counts and not any(busiest.flagged)
    assert busiest.baselines[-1] == 1.75  # week 14 is not flagged: in the baseline now


def test_conduct_flags_an_agency_with_a_higher_rate(db: Database) -> None:
    usbp = [
        (
            i,
            entry(
                "IL",
                i,
                (agent("CBP-USBP", badge=f"CBP-USBP:{i}"),),
                conduct=("excessive_force",) if i < 8 else ("other",),
            ),
        )
        for i in range(10)
    ]
    ero = [(100 + i, entry("IL", 100 + i, (agent("ICE-ERO", badge=f"ICE-ERO:{i}"),),
                           conduct=("excessive_force",) if i == 0 else ("warrantless_arrest",)))
           for i in range(30)]  # fmt: skip
    store(db, "IL", *usbp, *ero)
    report = conduct(db, F)
    top = next(
        r for r in report.rows if (r["agency"], r["conduct"]) == ("CBP-USBP", "excessive_force")
    )
    assert (top["incidents"], top["of"]) == (8, 10)
    assert report.rows.index(top) < 2  # flagged rows first (warrantless_arrest at ICE-ERO too)
    assert top["flagged"] and top["rate"] == 0.8 and top["rate_elsewhere"] == round(1 / 30, 3)
    others = [r for r in report.rows if r["conduct"] == "excessive_force" and r is not top]
    assert others and not any(r["flagged"] for r in others)
    by_kind = conduct(db, F, by="location_kind", only=("excessive_force",))
    assert [(r["location_kind"], r["incidents"]) for r in by_kind.rows] == [("street", 9)]
    published = suppress(report)
    cells = {(r["agency"], r["conduct"]): r for r in published.rows}
    assert cells[("CBP-USBP", "other")]["incidents"] == "<5"
    assert cells[("CBP-USBP", "excessive_force")]["incidents"] == 8
    with pytest.raises(ValueError, match="by"):
        conduct(db, F, by="county")


def test_statistics() -> None:
    assert poisson_sf(0, 3.0) == 1.0
    assert poisson_sf(1, 2.0) == pytest.approx(1 - 2.718281828459045**-2.0)
    assert poisson_sf(10, 1.0) == pytest.approx(1.1142547833872e-07, rel=1e-6)
    assert two_proportion_p(8, 10, 1, 30) < 1e-5
    assert two_proportion_p(1, 10, 3, 30) == pytest.approx(0.5)


def test_empty_replica(db: Database) -> None:
    for report in (repeat(db, F), units(db, F), unidentified(db, F), surges(db, F),
                   conduct(db, F)):  # fmt: skip
        assert report.rows == ()


def test_a_two_week_surge_does_not_raise_its_own_baseline(db: Database) -> None:
    weekly = [(i, entry("MN", i, team("1"), day=day(7 * i))) for i in range(16)]
    burst = [
        (100 + i, entry("MN", 100 + i, team("2"), day=day(7 * (13 + i // 9) + i % 5)))
        for i in range(18)
    ]  # 9 more in week 13 and 9 more in week 14
    store(db, "MN", *weekly, *burst)
    assert [r["week"] for r in surges(db, F).rows] == [day(7 * 13), day(7 * 14)]
