"""node.plots: every pattern report draws, published pictures hide what the table hides,
and a plot file is written whole or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import patterns as bench
from federation.patterns import REPORTS, PatternFilter, Report, Series, suppress
from node import plots


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Report]]:
    """Each report over a small synthetic replica (bench.patterns, 3 states)."""
    with bench.fresh_database(3_000, tmp_path_factory.mktemp("plots"), None) as db:
        bench.fill_replica(db, 3_000, bench.US_STATES[:3], seed=2)
        yield {name: run(db, PatternFilter()) for name, run in REPORTS.items()}


def _texts(fig: Any) -> str:
    """Every text the figure shows: titles, labels, tick labels, legends, notes."""
    found = [t.get_text() for t in fig.findobj(match=lambda a: hasattr(a, "get_text"))]
    return "\n".join(found)


def test_every_report_draws_to_png_and_svg(reports: dict[str, Report], tmp_path: Path) -> None:
    assert set(plots.DRAW) == set(REPORTS)
    for name, report in reports.items():
        assert report.rows or report.series, name  # something to draw
        png, svg = tmp_path / f"{name}.png", tmp_path / f"{name}.svg"
        plots.write_plot(report, png)
        plots.write_plot(report, svg)
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
        assert b"<svg" in svg.read_bytes()[:500], name
        fig = plots.DRAW[name](report)
        assert report.title in _texts(fig), name
    assert sorted(p.suffix for p in tmp_path.iterdir()).count(".png") == len(REPORTS)


def test_svg_is_reproducible(reports: dict[str, Report], tmp_path: Path) -> None:
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    plots.write_plot(reports["conduct"], first)
    plots.write_plot(reports["conduct"], second)
    assert first.read_bytes() == second.read_bytes()


def test_the_notes_and_the_rows_left_out_are_in_the_picture(reports: dict[str, Report]) -> None:
    report = reports["repeat"]
    assert len(report.rows) > plots.MOST_ROWS
    fig = plots.DRAW["repeat"](report)
    plots._caption(fig, report, shown=plots.MOST_ROWS)
    text = _texts(fig)
    assert f"the first {plots.MOST_ROWS} of {len(report.rows)} rows are drawn" in text
    assert "joined by badge or by name and agency" in text
    ax = fig.axes[0]
    top_down = sorted(zip(ax.get_yticks(), ax.get_yticklabels(), strict=True), key=lambda t: -t[0])
    assert [t.get_text() for _, t in top_down] == [r["agent"] for r in report.rows[:20]]


def _surge_report(counts: tuple[int, ...]) -> Report:
    weeks = tuple(f"2025-03-{3 + 7 * i:02d}" for i in range(len(counts)))
    line = Series("Cook (IL)", weeks, counts, (None, 1.5, 1.0, 2.0), tuple(n > 6 for n in counts))
    return Report(
        "surges", "Surges", ("state", "county", "week", "count"), (), ("the test",),
        count_columns=("count",), derived_columns=(), series=(line,),
    )  # fmt: skip


def test_a_published_timeline_shows_no_small_count_and_no_baseline() -> None:
    report = _surge_report((0, 2, 7, 1))
    ax = plots.DRAW["surges"](report).axes[0]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [0, 1, 2, 7] and len(ax.get_lines()) == 1  # the baseline
    published = suppress(report, 5)
    fig = plots.DRAW["surges"](published)
    ax = fig.axes[0]
    shown = sorted(p.get_height() for p in ax.patches if not p.get_hatch())
    hatched = sorted(p.get_height() for p in ax.patches if p.get_hatch())
    assert shown == [0, 7] and hatched == [4, 4]  # 2 and 1: drawn as the band 1 to 4
    assert ax.get_lines() == []  # no baseline
    assert "1 to 4 (suppressed)" in _texts(fig)


def test_a_published_conduct_picture_leaves_out_suppressed_rows() -> None:
    rows = tuple(
        {"agency": a, "conduct": "force", "incidents": n, "of": 40, "rate": n / 40,
         "rate_elsewhere": 0.1, "p_value": 0.5, "flagged": False, "global_ids": [], "more_ids": 0}
        for a, n in (("CBP-USBP", 20), ("FBI", 2))
    )  # fmt: skip
    report = Report(
        "conduct", "Conduct by agency", ("agency", "conduct", "incidents", "of", "rate",
        "rate_elsewhere", "p_value", "flagged"), rows, count_columns=("incidents", "of"),
        derived_columns=("rate", "p_value", "flagged"),
    )  # fmt: skip
    published = suppress(report)
    fig = plots.DRAW["conduct"](published)
    plots._caption(fig, published, shown=1)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["CBP-USBP · force (20/40)"]
    assert "1 suppressed rows are not drawn" in _texts(fig)


def test_an_empty_report_says_so(tmp_path: Path) -> None:
    for name in REPORTS:
        report = Report(name, f"Empty {name}", ("x",), ())
        assert "nothing found" in _texts(plots.DRAW[name](report))
        plots.write_plot(report, tmp_path / f"{name}.png")


def test_a_target_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.png").mkdir()
    for target, message in [
        (tmp_path / "x.pdf", "must end in .png or .svg, not 'x.pdf'"),
        (tmp_path / "x", "must end in"),
        (tmp_path / "missing" / "x.svg", "no such folder"),
        (tmp_path / "dir.png", "is a folder"),
        (tmp_path / ("x" * 300 + ".png"), "cannot write .*: File name too long"),
    ]:
        with pytest.raises(plots.PlotError, match=message):
            plots.check_target(target)
    plots.check_target(tmp_path / "UPPER.PNG")


def test_a_failed_write_leaves_the_old_file_and_no_part(
    reports: dict[str, Report], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.figure import Figure

    target = tmp_path / "report.png"
    target.write_bytes(b"the previous picture")

    def broken(self: Figure, fname: Path, **kwargs: Any) -> None:
        Path(fname).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.write_plot(reports["conduct"], target)
    assert target.read_bytes() == b"the previous picture"
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]
