"""`compact patterns … --plot FILE.png|svg`: one picture per pattern report.

- `surges`: the weekly timeline of each place the report carries (the places with a
  flagged week, most significant first, or with none flagged the busiest), with the
  baseline each week was tested against and the flagged weeks marked;
- `conduct`: each row's rate against the rate in every other group, flagged rows first;
- `repeat`: the agents with the most incidents, their incidents per state stacked;
- `units`: each team's movement, a bar per state from its first to its last day there;
- `unidentified`: each provisional team's span of days, with its states.

The picture is drawn from the report as printed, after `--publish` if given (the rows
and timelines `federation.patterns.suppress` left), with the report's notes (the test
used, what was suppressed) beneath it. Drawn with matplotlib's object API on its Agg
(PNG) and SVG backends, never pyplot: no display, no global figure state. The file is
written beside FILE under a temporary name and renamed into place, so FILE is either the
whole picture or untouched. SVG output is reproducible (no date, a fixed id salt).
"""

from __future__ import annotations

import os
import secrets
import textwrap
from collections.abc import Callable, Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final

from federation.patterns import Report

FORMATS: Final = (".png", ".svg")
MOST_ROWS: Final = 20  # rows drawn; the caption says when there are more
WIDTH: Final = 11.0  # inches
DPI: Final = 120


class PlotError(ValueError):
    """The plot cannot be written where asked; the message names the option."""


def check_target(path: Path) -> None:
    """Refuse a FILE the plot cannot be written to, before any report is computed."""
    if path.suffix.lower() not in FORMATS:
        raise PlotError(f"--plot: FILE must end in {' or '.join(FORMATS)}, not {path.name!r}")
    try:
        if not path.parent.is_dir():
            raise PlotError(f"--plot: no such folder: {path.parent}")
        if path.is_dir():
            raise PlotError(f"--plot: {path} is a folder")
    except OSError as e:  # a name the file system refuses, a folder it may not enter
        raise PlotError(f"--plot: cannot write {path}: {e.strerror or e}") from None


def write_plot(report: Report, path: Path) -> None:
    """Draw `report` and write it to `path` (.png or .svg) whole, or not at all."""
    import matplotlib

    check_target(path)
    fig = DRAW[report.name](report)
    _caption(fig, report, shown=min(len(_drawn_rows(report)), MOST_ROWS))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    kind = path.suffix.lower()[1:]
    try:
        with matplotlib.rc_context({"svg.hashsalt": "compact", "svg.fonttype": "path"}):
            fig.savefig(
                tmp,
                format=kind,
                dpi=DPI,
                bbox_inches="tight",
                metadata={"Date": None} if kind == "svg" else {"Software": None},
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --- the figures ----------------------------------------------------------------------------


def _figure(rows: int, per_row: float = 0.34, minimum: float = 3.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH, max(minimum, 1.6 + per_row * rows)), layout="constrained")


def _rows_figure(report: Report, rows: int) -> tuple[Any, Any, list[int]]:
    """A titled figure with one axes for `rows` horizontal rows, and each row's y, the
    first row at the top."""
    fig = _figure(rows)
    fig.suptitle(report.title)
    return fig, fig.add_subplot(), list(range(rows))[::-1]


def _colors(states: Iterable[str]) -> dict[str, Any]:
    """A colour per state, in alphabetical order (tab20, repeating after 20)."""
    from matplotlib import colormaps

    return {s: colormaps["tab20"](i % 20) for i, s in enumerate(sorted(states))}


def _drawn_rows(report: Report) -> Sequence[dict[str, Any]]:
    """The rows a picture draws (for conduct: those with a rate, suppression left none)."""
    if report.name == "conduct":
        return [r for r in report.rows if r["rate"] is not None]
    if report.name == "surges":
        return []
    return report.rows


def _caption(fig: Any, report: Report, shown: int) -> None:
    """The report's notes beneath the picture, and how many rows it left out."""
    lines = list(report.notes)
    drawn = _drawn_rows(report)
    if len(drawn) > shown:
        lines.insert(0, f"the first {shown} of {len(drawn)} rows are drawn (--json lists all)")
    if report.name == "conduct" and len(drawn) < len(report.rows):
        lines.insert(0, f"{len(report.rows) - len(drawn)} suppressed rows are not drawn")
    text = "\n".join(textwrap.fill(f"note: {n}", 150) for n in lines)
    if text:
        fig.supxlabel(text, fontsize=7, ha="left", x=0.01, multialignment="left")


def _empty(fig: Any, report: Report) -> Any:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(report.title)
    ax.text(0.5, 0.5, "nothing found (with these filters)", ha="center", va="center")
    return fig


def _surges(report: Report) -> Any:
    if not report.series:
        return _empty(_figure(0), report)
    fig = _figure(len(report.series), per_row=1.7)
    axes = fig.subplots(len(report.series), 1, sharex=True, squeeze=False)[:, 0]
    for ax, x in zip(axes, report.series, strict=True):
        weeks = [date.fromisoformat(w) for w in x.weeks]
        rows = list(zip(weeks, x.counts, x.flagged, strict=True))
        for flagged, color, label in ((False, "tab:blue", "incidents"), (True, "red", "surge")):
            bars = [(w, n) for w, n, f in rows if n is not None and f is flagged]
            if bars:
                ax.bar([w for w, _ in bars], [n for _, n in bars], width=6, align="edge",
                       color=color, label=label)  # fmt: skip
        hidden = [w for w, n, _ in rows if n is None]
        if hidden and x.suppressed_below:
            top = x.suppressed_below - 1
            ax.bar(hidden, [top] * len(hidden), width=6, align="edge", color="0.8", hatch="//",
                   label=f"1 to {top} (suppressed)")  # fmt: skip
        base = [(w, b) for w, b in zip(weeks, x.baselines, strict=True) if b is not None]
        if base:
            ax.step([w for w, _ in base], [b for _, b in base], "--", where="post",
                    color="tab:orange", label="baseline")  # fmt: skip
        ax.set_ylabel("incidents / week", fontsize=8)
        ax.set_title(x.label, fontsize=9, loc="left")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(report.title)
    return fig


def _conduct(report: Report) -> Any:
    rows = list(_drawn_rows(report))[:MOST_ROWS]
    if not rows:
        return _empty(_figure(0), report)
    by = report.columns[0]
    fig, ax, ys = _rows_figure(report, len(rows))
    colors = ["tab:red" if r["flagged"] else "tab:blue" for r in rows]
    ax.barh(ys, [r["rate"] for r in rows], color=colors, label="rate (red: flagged)")
    elsewhere = [(y, r["rate_elsewhere"]) for y, r in zip(ys, rows, strict=True)]
    elsewhere = [(y, v) for y, v in elsewhere if v is not None]
    ax.plot([v for _, v in elsewhere], [y for y, _ in elsewhere], "k|", markersize=14,
            label="rate in all other groups")  # fmt: skip
    ax.set_yticks(ys, [f"{r[by]} · {r['conduct']} ({r['incidents']}/{r['of']})" for r in rows])
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("share of the group's incidents")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _repeat(report: Report) -> Any:
    rows = list(report.rows)[:MOST_ROWS]
    if not rows:
        return _empty(_figure(0), report)
    color = _colors({s for r in rows for s in r["per_state"]})
    fig, ax, ys = _rows_figure(report, len(rows))
    left = [0] * len(rows)
    for state, c in color.items():
        widths = [int(r["per_state"].get(state, 0)) for r in rows]
        ax.barh(ys, widths, left=left, color=c, label=state)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(ys, [r["agent"] for r in rows], fontsize=8, family="monospace")
    ax.set_xlabel("incidents, by state")
    ax.legend(fontsize=7, ncols=min(len(color), 10), loc="lower right")
    return fig


def _spans(report: Report) -> Any:
    """Units and unidentified: one line per row, a bar per span of days with its label."""
    rows = list(report.rows)[:MOST_ROWS]
    if not rows:
        return _empty(_figure(0), report)
    label_of = "team" if report.name == "units" else "group"
    color = _colors({state for r in rows for state, _, _ in _row_spans(r)})
    fig, ax, ys = _rows_figure(report, len(rows))
    for y, r in zip(ys, rows, strict=True):
        for state, first, last in _row_spans(r):
            start = date.fromisoformat(first)
            days = (date.fromisoformat(last) - start).days + 1
            ax.barh(y, timedelta(days=days), left=start, height=0.5, color=color[state])
            ax.annotate(state, (start, y), xytext=(2, 7), textcoords="offset points",
                        fontsize=7)  # fmt: skip
    ax.set_yticks(ys, [f"{r[label_of]} ({r['incidents']})" for r in rows], fontsize=8)
    ax.xaxis_date()
    ax.set_xlabel("days present (a bar per state, from its first to its last incident)")
    return fig


def _row_spans(row: dict[str, Any]) -> list[tuple[str, str, str]]:
    if "spans" in row:  # units: a span per state
        return [(x["state"], x["first_day"], x["last_day"]) for x in row["spans"]]
    return [(str(row["states"]), str(row["first_day"]), str(row["last_day"]))]


DRAW: Final[dict[str, Callable[[Report], Any]]] = {
    "surges": _surges,
    "conduct": _conduct,
    "repeat": _repeat,
    "units": _spans,
    "unidentified": _spans,
}
