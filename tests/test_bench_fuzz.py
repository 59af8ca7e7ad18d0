"""bench.fuzz: the long fuzzing run adds up what every pytest process tried."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import fuzz
from tests import fuzzing


def test_tallies_of_several_processes_are_added_up(tmp_path: Path) -> None:
    (tmp_path / "gw0.json").write_text(
        json.dumps(
            {
                "a": {"inputs": 3, "seconds": 0.5, "outcomes": {"accepted": 1, "Err": 2}},
                "b": {"inputs": 1, "seconds": 0.25, "outcomes": {"INVALID_ARGUMENT": 1}},
            }
        ),
        encoding="utf-8",
    )
    (tmp_path / "gw1.json").write_text(
        json.dumps({"a": {"inputs": 2, "seconds": 1.0, "outcomes": {"Err": 2}}}),
        encoding="utf-8",
    )
    merged = fuzz.merge(tmp_path)
    assert merged == {
        "a": {"inputs": 5, "seconds": 1.5, "outcomes": {"accepted": 1, "Err": 4}},
        "b": {"inputs": 1, "seconds": 0.25, "outcomes": {"INVALID_ARGUMENT": 1}},
    }
    text = fuzz.table(merged)
    assert "| `a` | 5 | 1.5 | 3 | Err 4, accepted 1 |" in text
    assert "| all 2 targets | 6 | 1.8 | | |" in text


def test_trial_counts_times_and_records_each_input(tmp_path: Path) -> None:
    fuzzing.TALLY.pop("test.target", None)
    with fuzzing.trial("test.target") as t:
        t.outcome("accepted")
    with pytest.raises(KeyError), fuzzing.trial("test.target"):
        raise KeyError("escaped")
    tally = fuzzing.TALLY.pop("test.target")
    assert tally.inputs == 2
    assert tally.outcomes == {"accepted": 1, "raised": 1}
    assert tally.seconds >= 0


def test_an_input_past_the_time_limit_fails_as_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv(fuzzing.HANG_ENV, "0.2")
    with pytest.raises(fuzzing.FuzzHang), fuzzing.trial("test.hang"):
        time.sleep(5)
    fuzzing.TALLY.pop("test.hang")


def test_examples_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fuzzing.EXAMPLES_ENV, raising=False)
    assert fuzzing.examples() == fuzzing.DEFAULT_EXAMPLES
    monkeypatch.setenv(fuzzing.EXAMPLES_ENV, "1000")
    assert fuzzing.examples(0.5) == 500
    monkeypatch.setenv(fuzzing.EXAMPLES_ENV, "0")
    with pytest.raises(ValueError, match=fuzzing.EXAMPLES_ENV):
        fuzzing.examples()


@pytest.mark.parametrize("argv", [["--examples", "0"], ["--workers", "-1"]])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        fuzz.parse_args(argv)
    assert e.value.code == 2
