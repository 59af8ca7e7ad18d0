"""The cross-state analysis benchmark at tiny sizes: every figure reported, matches found.

No timing is asserted here; figures come from `python -m bench.patterns`. These tests
check that it builds the replica it describes and that each report found what the raw
group-by says is there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from bench import patterns as bench


def test_split_keeps_the_total() -> None:
    assert bench.split(10, [1.0, 1.0, 2.0]) == [3, 2, 5]
    assert sum(bench.split(1_000_003, [0.5, 1.7, 0.9, 2.0])) == 1_000_003


def test_the_population_is_deterministic_and_has_travellers() -> None:
    states = bench.US_STATES[:5]
    pop = bench.make_population(random.Random(3), 4_000, states)
    again = bench.make_population(random.Random(3), 4_000, states)
    assert pop == again
    assert sum(pop.entries.values()) == 4_000
    assert pop.agents == 2_000 and pop.travellers == 100
    seen_in: dict[int, set[str]] = {}
    for state, pool in pop.pools.items():
        for a in pool:
            seen_in.setdefault(a.number, set()).add(state)
    assert len(seen_in) == pop.agents
    assert sum(1 for s in seen_in.values() if len(s) > 1) == pop.travellers


def test_entries_carry_sha512_pseudonyms_of_agency_scoped_keys() -> None:
    rng = random.Random(5)
    pool = bench.make_population(rng, 2_000, bench.US_STATES[:3]).pools["AK"]
    entries = [bench.make_entry(rng, "AK", i, pool) for i in range(300)]
    agents = [a for e in entries if e.content for a in e.content.agents]
    assert all(1 <= len(e.content.agents) <= 3 for e in entries if e.content)
    assert any(not a.pseudonyms for a in agents)  # masked, no key at all
    for a in agents:
        assert all(len(p) == 128 and p == p.lower() for p in a.pseudonyms.values())
        if a.agency is None:
            assert not {"badge", "name_agency", "unit"} & set(a.pseudonyms)
    assert {k for a in agents for k in a.pseudonyms} == set(bench.KEY_SHARE) | {"name_agency"}


def test_run_smoke(tmp_path: Path) -> None:
    out = tmp_path / "patterns.json"
    lines: list[str] = []
    argv = ["--entries", "2000,4000", "--states", "5", "--rounds", "2"]
    argv += ["--work", str(tmp_path), "--json", str(out)]
    assert bench.main(argv, out=lines.append) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result) == {
        "states", "seed", "rounds", "long_run_seconds", "backend", "raw_sql", "sizes", "growth",
        "machine", "command",
    }  # fmt: skip
    assert result["states"] == ["AK", "AL", "AR", "AZ", "CA"]
    assert [r["entries"] for r in result["sizes"]] == [2000, 4000]
    for r in result["sizes"]:
        assert set(r) == {"entries", "build", "reports"}
        build = r["build"]
        assert set(build) == {
            "entries", "seconds", "entries_per_second", "store_seconds", "generate_seconds",
            "rows", "population",
        }  # fmt: skip
        assert build["rows"]["replica_incidents"] == r["entries"]
        assert build["rows"]["replica_pseudonyms"] > build["rows"]["replica_agents"] > r["entries"]
        assert build["entries_per_second"] > 0 and build["population"]["travelling_agents"] > 0
        assert set(r["reports"]) == {bench.BASELINE, *bench.REPORTS}
        raw = r["reports"][bench.BASELINE]
        assert raw["cross_state_pseudonyms"] > 0 and len(raw["runs_seconds"]) == 2
        matches = r["reports"]["agents matches"]
        assert set(matches) == {
            "warmup_seconds", "warmup_only", "runs_seconds", "best_seconds", "ratio", "goal_ratio",
            "goal_met", "matches", "matches_by_entity", "agents_with_ambiguous_name_agency",
            "incidents_in_matches",
        }  # fmt: skip
        assert len(matches["runs_seconds"]) == 2
        assert matches["best_seconds"] == min(matches["runs_seconds"])
        assert isinstance(matches["ratio"], float) and matches["ratio"] > 0
        assert matches["ratio"] == pytest.approx(raw["best_seconds"] / matches["best_seconds"])
        assert matches["goal_met"] is (matches["ratio"] >= 0.5)
        assert set(matches["matches_by_entity"]) == {"agent", "name", "unit", "vehicle"}
        assert matches["matches_by_entity"]["agent"] > 0 and matches["matches"] > 0
        for name in bench.REPORTS:
            if name.startswith("patterns "):
                f = r["reports"][name]
                assert set(f) == {
                    "warmup_seconds", "warmup_only", "runs_seconds", "best_seconds", "ratio",
                    "rows", "global_ids_behind_rows",
                }  # fmt: skip
                assert f["ratio"] == pytest.approx(raw["best_seconds"] / f["best_seconds"])
        assert r["reports"]["patterns surges"]["rows"] >= 0
        assert r["reports"]["patterns repeat"]["rows"] > 0  # agents seen about 4 times each
        assert r["reports"]["patterns conduct"]["rows"] > 0
    for name in (bench.BASELINE, *bench.REPORTS):
        g = result["growth"][name]
        assert set(g) == {"from_entries", "to_entries", "ratio", "goal_at_most", "goal_met"}
        assert isinstance(g["ratio"], float) and g["ratio"] > 0
        assert g["goal_at_most"] == pytest.approx(2.4)
    assert len(lines) == 1 and "agents matches" in lines[0] and "growth" in lines[0]
    assert "patterns units" in lines[0] and "patterns conduct:" in lines[0]
    assert (tmp_path / "patterns-4000.db").is_file()  # --work keeps the databases


def test_json_alone_prints_the_figures_and_long_runs_are_not_repeated(tmp_path: Path) -> None:
    lines: list[str] = []
    argv = ["--entries", "500", "--states", "2", "--rounds", "2", "--work", str(tmp_path)]
    assert bench.main([*argv, "--long-run", "0", "--json"], out=lines.append) == 0
    result = json.loads(lines[0])
    assert result["growth"] == {} and result["sizes"][0]["entries"] == 500
    for figures in result["sizes"][0]["reports"].values():  # every warm-up was "long"
        assert figures["warmup_only"] is True
        assert figures["runs_seconds"] == [figures["warmup_seconds"]]
