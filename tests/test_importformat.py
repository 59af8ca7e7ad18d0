"""The import parser is a boundary: it never raises, whatever it is given."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.config import LimitSettings
from node.importformat import decode_line, evidence_path_problem, parse_record
from node.records import IncidentInput, LineError
from tests.helpers import record

LIMITS = LimitSettings()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from([*sorted(record()), "x", "location", "agents", "evidence"])


def check(result: IncidentInput | list[LineError], line: int) -> None:
    if isinstance(result, list):
        assert result
        assert all(isinstance(e, LineError) and e.line_number == line and e.reason for e in result)
    else:
        assert isinstance(result, IncidentInput)


@given(st.binary(max_size=300))
def test_decode_line_never_raises_on_bytes(raw: bytes) -> None:
    result = decode_line(7, raw, LIMITS)
    if isinstance(result, LineError):
        assert result.line_number == 7


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    result = decode_line(1, raw, LIMITS)
    assert isinstance(result, LineError)


@given(json_values)
def test_parse_record_never_raises_on_any_json_value(value: Any) -> None:
    check(parse_record(3, value, node_state="IL", limits=LIMITS), 3)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(field_names, json_values, max_size=8))
def test_parse_record_never_raises_on_records_with_wrong_values(changes: dict[str, Any]) -> None:
    check(parse_record(4, record(**changes), node_state="IL", limits=LIMITS), 4)


@given(st.sampled_from(["agents", "people", "evidence", "location"]), json_values)
def test_parse_record_never_raises_on_wrong_nested_values(field: str, value: Any) -> None:
    rec = record()
    rec[field] = [value] if field != "location" else value
    check(parse_record(5, rec, node_state="IL", limits=LIMITS), 5)


@given(st.text(max_size=60))
def test_evidence_path_check_never_raises(path: str) -> None:
    problem = evidence_path_problem(path)
    if problem is None:
        assert not path.startswith("/") and ".." not in path.split("/") and "\\" not in path


def test_valid_record_round_trips_through_json() -> None:
    result = parse_record(1, json.loads(json.dumps(record())), node_state="IL", limits=LIMITS)
    assert isinstance(result, IncidentInput)
    assert result.location.state == "IL"
