"""The threshold OPRF benchmark at a tiny size: it runs end to end and reports every figure.

No timing is asserted here; figures come from `python -m bench.crypto_oprf`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import crypto_oprf as bench
from crypto import oprf


def test_multiplication_count() -> None:
    # blind 1, per holder 1 + 1 (proof composite), per answer 2 (verify), combine t, unblind 1
    assert bench.mults_per_input(1) == 7
    assert bench.mults_per_input(2) == 12
    assert bench.mults_per_input(3) == 17


def test_inputs_are_distinct_and_stable() -> None:
    assert bench.make_inputs(50) == bench.make_inputs(50)
    assert len(set(bench.make_inputs(50))) == 50


def test_run_smoke_50_inputs() -> None:
    result = bench.run(50)
    assert (result["inputs"], result["t"], result["n"]) == (50, 2, 3)
    assert result["scalarmults_per_input"] == 12
    assert result["outputs_checked"] == 5
    assert set(result["phases_seconds"]) == {
        "blind",
        "evaluate (all holders)",
        "combine (verify + interpolate)",
        "finalize",
    }
    assert result["total_seconds"] == pytest.approx(sum(result["phases_seconds"].values()))
    assert result["pseudonyms_per_second"] > 0 and result["bound_pseudonyms_per_second"] > 0
    assert result["ratio_ours_to_bound"] == pytest.approx(
        result["pseudonyms_per_second"] / result["bound_pseudonyms_per_second"]
    )
    assert isinstance(result["goal_met"], bool)
    table = bench.format_table(result)
    assert "pseudonyms/s" in table and "ratio" in table


def test_main_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "oprf.json"
    bench.main(["--inputs", "12", "--t", "3", "--n", "5", "--json", str(out)])
    figures = json.loads(out.read_text())
    assert (figures["inputs"], figures["t"], figures["n"]) == (12, 3, 5)
    assert figures["scalarmults_per_input"] == 17
    assert "threshold OPRF 3-of-5, 12 inputs" in capsys.readouterr().out


def test_run_refuses_no_inputs() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        bench.run(0)


def test_inputs_beyond_one_proof_are_split_into_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oprf, "MAX_BATCH", 16)  # 50 inputs: batches of 16, 16, 16, 2
    result = bench.run(50)
    assert result["inputs"] == 50 and result["outputs_checked"] == 5
