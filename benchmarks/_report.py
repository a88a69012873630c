"""Turning samples into the table: one row per measured quantity, with its target for xprocess.

A target names the statistic it applies to. ``worst`` means every sample of every repeat; where
the goal is a median (readiness, reuse) the row says ``median``. Targets are checked
against the xprocess column only; pytest-xprocess is shown for comparison.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _scenarios import Settings

__all__ = ["Row", "build_rows", "render_table", "row_json"]

Samples = dict[str, list[float]]
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_UNIT_TEXT = {"s": "s", "ms": "ms", "us": "µs"}


@dataclass
class Row:
    """One line of the table."""

    scenario: str
    label: str
    kind: str  # "time", "flags", "counts" or "per-record"
    metrics: list[str]
    unit: str = "ms"
    limits: list[tuple[str, float]] = field(default_factory=list)  # (statistic, seconds)
    target_text: str = ""


def _fmt(value: float, unit: str) -> str:
    scaled = value / _UNITS[unit]
    if abs(scaled) >= 100:
        return f"{scaled:.0f}"
    if abs(scaled) >= 10:
        return f"{scaled:.1f}"
    return f"{scaled:.2f}"


def _limit_text(row: Row) -> str:
    if row.target_text:
        return row.target_text
    parts = [
        f"{stat} ≤ {_fmt(limit, row.unit)} {_UNIT_TEXT[row.unit]}" for stat, limit in row.limits
    ]
    return ", ".join(parts) if parts else "—"


def build_rows(s: Settings) -> list[Row]:
    """The table's rows, in order, for these settings."""
    rows = [
        Row(
            "readiness",
            "readiness: ready line printed → ensure() returns",
            "time",
            ["ready_latency"],
            "ms",
            [("median", 0.002), ("worst", 0.010)],
        ),
        Row(
            "early-exit",
            "early exit (exit 3 after 50 ms, timeout 10 s): ensure() raises",
            "time",
            ["early_exit"],
            "s",
            [("worst", 0.1)],
        ),
        Row(
            "early-exit",
            "early exit: raised after the child's last line",
            "time",
            ["early_exit_after_exit"],
            "ms",
        ),
        Row(
            "early-exit",
            "early exit: error has exit code / log tail",
            "flags",
            ["early_exit_code", "early_exit_tail"],
            target_text="yes / yes",
        ),
        Row(
            "noisy",
            f"noisy start: {s.noisy_lines:,} lines before the pattern",
            "time",
            ["noisy"],
            "s",
            [("worst", 0.3)],
        ),
    ]
    rows += [
        Row(
            "restart",
            f"restart=True after a {mb} MB persisted log",
            "time",
            [f"restart_{mb}mb"],
            "ms",
            [("worst", 0.020)],
        )
        for mb in s.restart_sizes_mb
    ]
    rows += [
        Row(
            "terminate",
            "terminate() of a process with 3 children",
            "time",
            ["terminate"],
            "ms",
            [("worst", 0.100)],
        ),
        Row(
            "terminate",
            "terminate(): processes of the tree left running",
            "counts",
            ["terminate_survivors"],
            target_text="0",
        ),
        Row(
            "reuse",
            f"ensure() of a live process (median of {s.reuse_calls} calls)",
            "time",
            ["reuse"],
            "us",
            [("median", 150e-6)],
        ),
        Row(
            "xdist",
            f"xdist -n {s.xdist_workers}, {s.xdist_tests} tests share one process: "
            "started / orphans after --xkill",
            "counts",
            ["xdist_started", "xdist_orphans"],
            target_text="1 / 0",
        ),
    ]
    rows += [
        Row(
            "xshow",
            f"pytest --xshow, {n} recorded processes",
            "time",
            [f"xshow_{n}"],
            "s",
            [("worst", 1.0)],
        )
        for n in s.xshow_counts
    ]
    if len(s.xshow_counts) >= 2:
        low, high = s.xshow_counts[0], s.xshow_counts[-1]
        rows.append(
            Row(
                "xshow",
                f"pytest --xshow: cost of each record ({low} → {high})",
                "per-record",
                [f"xshow_{low}", f"xshow_{high}"],
                "ms",
                target_text="linear",
            )
        )
    rows.append(
        Row(
            "startup",
            "pytest start-up overhead of the installed plugin",
            "time",
            ["startup_overhead"],
            "ms",
            [("worst", 0.020)],
        )
    )
    for n in s.scaling_counts:
        rows.append(
            Row(
                "scaling",
                f"scaling, {n} alive: readiness latency",
                "time",
                [f"scale{n}_ready"],
                "ms",
                [("median", 0.002), ("worst", 0.010)],
            )
        )
        rows.append(
            Row(
                "scaling",
                f"scaling, {n} alive: ensure() of a live process",
                "time",
                [f"scale{n}_reuse"],
                "us",
                [("median", 150e-6)],
            )
        )
    return rows


@dataclass
class Cell:
    text: str
    median: float | None = None
    worst: float | None = None
    met: bool | None = None


def _stat(values: list[float], name: str) -> float:
    return statistics.median(values) if name == "median" else max(values)


def _cell(row: Row, samples: Samples | None, failed: bool) -> Cell:
    if samples is None:
        return Cell("—")
    if failed:
        return Cell("error")
    series = [samples.get(metric) for metric in row.metrics]
    if any(not values for values in series):
        return Cell("no data")
    data = [values for values in series if values]
    if row.kind == "time":
        values = data[0]
        med, worst = statistics.median(values), max(values)
        met = (
            all(_stat(values, stat) <= limit for stat, limit in row.limits) if row.limits else None
        )
        text = f"{_fmt(med, row.unit)} / {_fmt(worst, row.unit)} {_UNIT_TEXT[row.unit]}"
        return Cell(text, med, worst, met)
    if row.kind == "flags":
        answers = ["yes" if all(v > 0 for v in values) else "no" for values in data]
        return Cell(" / ".join(answers), met=all(a == "yes" for a in answers))
    if row.kind == "counts":
        parts = []
        for values in data:
            low, high = int(min(values)), int(max(values))
            parts.append(str(low) if low == high else f"{low}-{high}")
        wanted = [1, 0] if len(data) == 2 else [0]
        met = all(min(v) == want == max(v) for v, want in zip(data, wanted, strict=True))
        return Cell(" / ".join(parts), met=met)
    # per-record: (median at the high count - median at the low count) / added records
    low_count, high_count = (int(metric.rsplit("_", 1)[1]) for metric in row.metrics)
    per = (statistics.median(data[1]) - statistics.median(data[0])) / (high_count - low_count)
    return Cell(f"{_fmt(per, row.unit)} {_UNIT_TEXT[row.unit]}", median=per)


def _ratio(theirs: Cell, ours: Cell) -> str:
    if theirs.median is None or ours.median is None or ours.median <= 0 or theirs.median <= 0:
        return "—"
    ratio = theirs.median / ours.median
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _met_text(cell: Cell) -> str:
    if cell.met is None:
        return "—" if cell.text not in ("error", "no data") else "no"
    return "yes" if cell.met else "NO"


def row_json(row: Row, by_tool: dict[str, Samples | None], failed: set[tuple[str, str]]) -> Any:
    """A row's numbers for --json."""
    out: dict[str, Any] = {
        "scenario": row.scenario,
        "label": row.label,
        "metrics": row.metrics,
        "unit": row.unit,
        "target": _limit_text(row),
        "limits_seconds": dict(row.limits),
    }
    for tool, samples in by_tool.items():
        cell = _cell(row, samples, (tool, row.scenario) in failed)
        out[tool] = {
            "text": cell.text,
            "median_seconds": cell.median,
            "worst_seconds": cell.worst,
            "met": cell.met,
        }
    return out


def render_table(
    rows: list[Row],
    theirs: Samples | None,
    ours: Samples | None,
    failed: set[tuple[str, str]],
    wanted: Callable[[str], bool],
) -> str:
    """A reStructuredText simple table: scenario, pytest-xprocess, xprocess, ratio, target, met."""
    header = ["scenario", "pytest-xprocess", "xprocess", "ratio", "target (xprocess)", "met"]
    lines = [header]
    for row in rows:
        if not wanted(row.scenario):
            continue
        their_cell = _cell(row, theirs, ("pytest-xprocess", row.scenario) in failed)
        our_cell = _cell(row, ours, ("xprocess", row.scenario) in failed)
        lines.append(
            [
                row.label,
                their_cell.text,
                our_cell.text,
                _ratio(their_cell, our_cell),
                _limit_text(row),
                _met_text(our_cell),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [rule, fmt(lines[0]), rule, *(fmt(line) for line in lines[1:]), rule]
    return "\n".join(out)
