"""Measure xprocess through real pytest runs, on its fast and its portable paths.

Usage::

    python benchmarks/run.py                                # every scenario, 5 repeats
    python benchmarks/run.py --quick --only reuse,terminate  # a smoke test
    python benchmarks/run.py --against pytest-xprocess --json results.json

Each scenario writes a small pytest project into a temporary directory and runs it with this
interpreter (which must have this checkout installed) twice: as is, and with
``XPROCESS_PORTABLE=1``, the paths macOS takes. ``--against pytest-xprocess`` also runs it with
pytest-xprocess 1.0.2, installed in ``benchmarks/.venvs/pytest-xprocess`` on first use (both
plugins provide the ``xprocess`` module, so they cannot share a venv). Scenarios run
interleaved: for each repeat, each scenario runs on each side in turn. Cells give median / worst
over all samples of all repeats. The targets are xprocess's own goals for its fast path; the
portable path's are ten times theirs.

Nothing is left running: after each project ``pytest --xkill`` runs in it, then every process
that still carries the project's token in its environment is killed (and reported).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import (
    PYTEST_XPROCESS,
    BenchError,
    Project,
    Samples,
    Side,
    describe,
    kill_all,
    say,
    sides,
    tagged,
    versions,
)
from _scenarios import SCENARIOS, Row, Scenario

PORTABLE_FACTOR = 10
_UNITS = {"s": (1.0, "s"), "ms": (1e-3, "ms"), "us": (1e-6, "µs")}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = {s.name: s for s in SCENARIOS}
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="scenarios:\n" + "\n".join(f"  {s.name:<11} {s.summary}" for s in SCENARIOS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeat", type=int, metavar="N", help="default 5; 1 with --quick")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for smoke tests")
    parser.add_argument("--only", metavar="SCENARIO[,..]", help="run only these scenarios")
    parser.add_argument(
        "--against",
        choices=[PYTEST_XPROCESS],
        help="also measure pytest-xprocess 1.0.2 (in a venv built on first use)",
    )
    parser.add_argument("--no-portable", action="store_true", help="skip the portable paths")
    parser.add_argument("--json", metavar="FILE", help="also write every sample to FILE")
    parser.add_argument(
        "--python",
        default=getattr(sys, "_base_executable", sys.executable),
        help="the interpreter the pytest-xprocess venv is built from",
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the pytest-xprocess venv")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 5)
    chosen = [n.strip() for n in (args.only or ",".join(names)).split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown or not chosen:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(names)}")
    args.scenarios = [names[n] for n in chosen]
    return args


class Bench:
    """Runs the scenarios on every side, keeps every sample, and cleans up after each project."""

    def __init__(self, sides: list[Side], quick: bool) -> None:
        self.sides, self.quick = sides, quick
        self.run_id = uuid.uuid4().hex[:12]
        self.workdir = Path(tempfile.mkdtemp(prefix="xprocess-bench-"))
        self.samples: dict[str, Samples] = {side.name: {} for side in sides}
        self.failed: set[tuple[str, str]] = set()
        self.messages: list[str] = []
        self.counter = 0

    def run(self, scenarios: list[Scenario], repeat: int) -> None:
        try:
            for seed in range(repeat):
                for scenario in scenarios:
                    for side in self.sides:
                        if (side.name, scenario.name) not in self.failed:
                            self.run_one(scenario, side, seed)
        finally:
            left = tagged(self.run_id + "/")
            if left:
                say(f"killing {len(left)} process(es) still running")
                kill_all(left)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def run_one(self, scenario: Scenario, side: Side, seed: int) -> None:
        self.counter += 1
        name = f"{self.counter:03d}-{scenario.name}-{side.name}"
        project = Project(side, self.workdir / name, f"{self.run_id}/{name}", seed)
        say(f"[{time.strftime('%H:%M:%S')}] {scenario.name} on {side.name} (run {seed + 1})")
        size = scenario.quick if self.quick else scenario.full
        try:
            project.setup()
            got = scenario.run(project, size)
            wanted = {m for row in scenario.rows(size) for m in row.metrics}
            if wanted - set(got):
                raise BenchError(f"no samples for {', '.join(sorted(wanted - set(got)))}")
            for key, values in got.items():
                self.samples[side.name].setdefault(key, []).extend(values)
        except Exception as exc:
            detail = str(exc) if isinstance(exc, BenchError) else traceback.format_exc()
            say(f"  FAILED: {detail}")
            self.failed.add((side.name, scenario.name))
            self.messages.append(f"error in {scenario.name} on {side.name}:\n{detail}")
        finally:
            self.clean(project, scenario)
        self.messages += [f"note ({scenario.name}, {side.name}): {note}" for note in project.notes]

    def clean(self, project: Project, scenario: Scenario) -> None:
        """--xkill in the project, then kill (and report) whatever of it still runs."""
        try:
            if scenario.cleanup is not None:
                scenario.cleanup(project)
            project.xkill()
        except Exception:
            say(f"  cleanup of {project.path} failed:\n{traceback.format_exc()}")
        left = tagged(project.token)
        if left:
            listed = "\n  ".join(describe(proc) for proc in left)
            self.messages.append(
                f"left running by {scenario.name} on {project.side.name} after --xkill, "
                f"killed:\n  {listed}"
            )
            kill_all(left)
        shutil.rmtree(project.path, ignore_errors=True)


def _fmt(seconds: float, unit: str) -> str:
    scale, _ = _UNITS[unit]
    value = seconds / scale
    return (
        f"{value:.0f}"
        if abs(value) >= 100
        else f"{value:.1f}"
        if abs(value) >= 10
        else f"{value:.2f}"
    )


def _stat(values: list[float], name: str) -> float:
    return statistics.median(values) if name == "median" else max(values)


def cell(
    row: Row, samples: Samples, failed: bool, factor: float
) -> tuple[str, float | None, bool | None]:
    """(text, median, met) of ``row``'s metrics; ``factor`` scales the time targets."""
    if failed:
        return "error", None, False
    series = [samples.get(metric, []) for metric in row.metrics]
    if not all(series):
        return "no data", None, False
    if row.kind == "count":
        texts = [f"{min(v):g}" if min(v) == max(v) else f"{min(v):g}-{max(v):g}" for v in series]
        exact = all(set(v) == {want} for v, want in zip(series, row.expect, strict=True))
        return " / ".join(texts), None, exact
    values = series[0]
    median, unit = statistics.median(values), _UNITS[row.unit][1]
    met = (
        all(_stat(values, stat) <= limit * factor for stat, limit in row.limits)
        if row.limits
        else None
    )
    return f"{_fmt(median, row.unit)} / {_fmt(max(values), row.unit)} {unit}", median, met


def _target(row: Row) -> str:
    if row.kind == "count":
        return " / ".join(f"{v:g}" for v in row.expect)
    unit = _UNITS[row.unit][1]
    return (
        ", ".join(f"{stat} ≤ {_fmt(limit, row.unit)} {unit}" for stat, limit in row.limits) or "—"
    )


def _ratio(top: float | None, bottom: float | None) -> str:
    if top is None or bottom is None or top <= 0 or bottom <= 0:
        return "—"
    ratio = top / bottom
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _met(value: bool | None) -> str:
    return "—" if value is None else "yes" if value else "NO"


def table(bench: Bench, scenarios: list[Scenario]) -> tuple[str, list[dict[str, Any]]]:
    """A reStructuredText simple table of every row, and the same as JSON-ready dicts."""
    names = [side.name for side in bench.sides]
    header = ["scenario", *names]
    if "portable" in names:
        header.append("portable / xprocess")
    if PYTEST_XPROCESS in names:
        header.append("pytest-xprocess / xprocess")
    header += ["target (xprocess)", "met"]
    lines, report = [header], []
    for scenario in scenarios:
        for row in scenario.rows(scenario.quick if bench.quick else scenario.full):
            cells = {
                name: cell(
                    row,
                    bench.samples[name],
                    (name, scenario.name) in bench.failed,
                    PORTABLE_FACTOR if name == "portable" else 1,
                )
                for name in names
            }
            line = [row.label, *(cells[name][0] for name in names)]
            fast = cells["xprocess"][1]
            if "portable" in names:
                line.append(_ratio(cells["portable"][1], fast))
            if PYTEST_XPROCESS in names:
                line.append(_ratio(cells[PYTEST_XPROCESS][1], fast))
            met = [_met(cells[name][2]) for name in ("xprocess", "portable") if name in names]
            lines.append([*line, _target(row), " / ".join(met)])
            report.append({"scenario": scenario.name, "label": row.label, "cells": cells})
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    rows = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    return "\n".join([rule, rows[0], rule, *rows[1:], rule]), report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = sides(args.against == PYTEST_XPROCESS, args.python, args.rebuild)
    if args.no_portable:
        chosen = [side for side in chosen if side.name != "portable"]
    bench = Bench(chosen, args.quick)
    started = time.time()
    bench.run(args.scenarios, args.repeat)
    have = versions(chosen[-1].python)
    print(
        f"{platform.platform()}, Python {have['python']}, pytest {have.get('pytest', '?')}; "
        f"{args.repeat} repeat(s){' (--quick)' if args.quick else ''}; "
        f"{time.time() - started:.0f} s in all"
    )
    print(
        "cells: median / worst over all samples; ratios of medians; the portable path's "
        f"targets are {PORTABLE_FACTOR}x these; met: xprocess / portable\n"
    )
    text, rows = table(bench, args.scenarios)
    print(text)
    for message in bench.messages:
        print(f"\n{message}")
    if args.json:
        report = {
            "argv": sys.argv[1:],
            "rows": rows,
            "samples": bench.samples,
            "messages": bench.messages,
        }
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    # pytest-xprocess failing a scenario is a measurement like any other (under xdist it can read
    # a PID file another worker is still writing); only xprocess failing one fails the run.
    return 1 if any(side != PYTEST_XPROCESS for side, _ in bench.failed) else 0


if __name__ == "__main__":
    sys.exit(main())
