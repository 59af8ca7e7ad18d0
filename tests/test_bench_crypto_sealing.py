"""The sealed-stream benchmark at 4 MiB: it measures what it says it measures.

No timing is asserted (figures belong in the report of a full run); these tests
check that every part ran over every byte, that the memory probes ran in child
processes, and that the command line writes what it prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import crypto_sealing as bench
from crypto.sealing import DEFAULT_CHUNK_SIZE

PARTS = {"raw_push", "seal", "seal_floor", "raw_pull", "open", "open_floor"}


def test_smoke_at_4_mib() -> None:
    results = bench.run(4, repeats=1, probes=(1, 4))
    assert results["bytes"] == 4 * bench.MiB
    assert results["chunk_size"] == DEFAULT_CHUNK_SIZE
    assert set(results["mb_per_s"]) == PARTS
    assert all(value > 0 for value in results["mb_per_s"].values())
    assert all(len(values) == 1 for values in results["samples_mb_per_s"].values())
    assert set(results["ratios"]) >= {"seal_vs_raw_push", "open_vs_raw_pull"}
    assert set(results["goal_met"]) == {"seal", "open"}
    probes = results["memory"]["probes"]
    assert [p["mib"] for p in probes] == [1, 4]
    assert all(p["vmhwm_kib"] > 0 for p in probes)
    assert isinstance(results["memory"]["growth_kib"], int)
    table = bench.render(results)
    assert "seal / raw push" in table and "open / raw pull" in table and "4 MiB" in table


@pytest.mark.parametrize("chunk_size", [64 * 1024, bench.MiB, 2 * bench.MiB])
def test_every_part_covers_the_same_bytes(chunk_size: int) -> None:
    plain = bench.Plaintext(4 * bench.MiB, chunk_size)
    chunks = plain.iter_chunks()
    assert {len(c) for c in chunks} == {chunk_size}
    assert b"".join(chunks) == b"".join(plain.iter_blocks())
    assert len(b"".join(chunks)) == 4 * bench.MiB
    for part in bench.PARTS.values():
        assert part(plain) > 0  # the seal and open parts check their own byte counts


def test_plaintext_refuses_sizes_that_do_not_divide() -> None:
    with pytest.raises(ValueError, match="whole number"):
        bench.Plaintext(bench.MiB + 1, bench.MiB)
    with pytest.raises(ValueError, match="whole number"):
        bench.Plaintext(bench.MiB, 2 * bench.MiB)


def test_pattern_source_yields_the_plaintext() -> None:
    plain = bench.Plaintext(3 * bench.MiB, 64 * 1024)
    source = bench._PatternSource(plain)
    pieces = []
    while piece := source.read(300_000):
        pieces.append(piece)
    assert b"".join(pieces) == b"".join(plain.iter_blocks())


def test_memory_probe_in_this_process() -> None:
    probe = bench.memory_probe(2, 64 * 1024)
    assert probe["mib"] == 2
    assert probe["vmhwm_kib"] >= probe["vmhwm_kib_before"] > 0


def test_main_prints_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    assert bench.main(["--mib", "4", "--repeats", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["mib"] == 4 and set(figures["mb_per_s"]) == PARTS
    assert f"{figures['ratios']['seal_vs_raw_push']:.2f}" in printed


@pytest.mark.parametrize(
    "argv", [["--chunk-size", "1000"], ["--chunk-size", "512"], ["--mib", "0"], ["--repeats", "0"]]
)
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
