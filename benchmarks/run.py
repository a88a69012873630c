"""Measure xprocess side by side with pytest-xprocess 1.0.2, through real pytest runs.

Usage::

    python benchmarks/run.py                       # every scenario, 5 repeats, both tools
    python benchmarks/run.py --repeat 3 --only readiness,reuse --json results.json
    python benchmarks/run.py --quick --xprocess-only --only reuse   # smoke test, no venvs

Both plugins install a module named ``xprocess``, so each gets its own venv under
``benchmarks/.venvs/`` (built on first use, reused afterwards): one with this checkout installed
editable, one with ``pytest-xprocess==1.0.2`` from PyPI. Both get pytest-xdist, and the second
is pinned to the pytest, pytest-xdist and psutil versions the first resolved to.

Each scenario writes a small pytest project into a temporary directory and runs it with
``<venv>/bin/python -m pytest``; the tests time themselves and write their samples to a JSON
file. Scenarios run interleaved: for each repeat, each scenario runs with pytest-xprocess, then
with xprocess. The table gives median / worst over all samples of all repeats.

Nothing is left running: after each project ``pytest --xkill`` runs in it, then every process
that still carries the project's token in its environment is killed (and counted). Linux only
(it reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import (
    ROOT,
    Tool,
    cmdline,
    current_tool,
    kill_and_wait,
    prepare_venvs,
    tagged_pids,
)
from _report import build_rows, render_table, row_json
from _scenarios import SCENARIOS, BenchError, Project, Scenario, Settings, settings_for

Samples = dict[str, list[float]]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = ", ".join(s.name for s in SCENARIOS)
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=(
            "Benchmark xprocess against pytest-xprocess 1.0.2 with the same scenarios, run "
            "through real pytest runs in two venvs under benchmarks/.venvs/. Prints a table: "
            "scenario, pytest-xprocess, xprocess (median / worst), ratio of medians, the "
            "target xprocess must meet, and whether it does. Linux only."
        ),
        epilog="scenarios:\n" + "\n".join(f"  {s.name:<11} {s.summary}" for s in SCENARIOS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="run every scenario N times with each tool, interleaved (default 5; 1 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sample counts and sizes, for smoke tests; the numbers mean little",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE")
    parser.add_argument(
        "--only", metavar="SCENARIO[,..]", help=f"run only these scenarios ({names})"
    )
    parser.add_argument(
        "--xprocess-only",
        "--venv-for-current",
        dest="xprocess_only",
        action="store_true",
        help="build no venv: measure xprocess with the running interpreter (which must have "
        "this checkout and pytest-xdist installed) and skip pytest-xprocess",
    )
    parser.add_argument(
        "--python",
        default=getattr(sys, "_base_executable", sys.executable),
        help="the interpreter the venvs are built from (default: this one's base interpreter)",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild both venvs even if they look current"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated projects (their path is printed)"
    )
    parser.add_argument(
        "--table-from",
        metavar="FILE",
        help="run nothing: print the table again from a file written by --json",
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    valid = {s.name for s in SCENARIOS}
    if args.only:
        chosen = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in valid]
        if unknown or not chosen:
            parser.error(
                f"unknown scenario(s) {', '.join(unknown) or '(none)'}; choose from {names}"
            )
        args.only = chosen
    else:
        args.only = [s.name for s in SCENARIOS]
    return args


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Bench:
    """Runs the scenarios, keeps every sample, and cleans up after each project."""

    def __init__(self, tools: list[Tool], settings: Settings, keep: bool) -> None:
        self.tools = tools
        self.settings = settings
        self.keep = keep
        self.run_id = uuid.uuid4().hex[:12]
        self.workdir = Path(tempfile.mkdtemp(prefix="xprocess-bench-"))
        self.samples: dict[str, Samples] = {tool.kind: {} for tool in tools}
        self.failed: set[tuple[str, str]] = set()
        self.errors: list[dict[str, str]] = []
        self.leftovers: list[dict[str, Any]] = []
        self.notes: list[dict[str, Any]] = []
        self.counter = 0

    def run(self, scenarios: list[Scenario], repeat: int) -> None:
        for index in range(repeat):
            for scenario in scenarios:
                for tool in self.tools:
                    if (tool.kind, scenario.name) in self.failed:
                        continue
                    self.run_one(scenario, tool, seed=index)

    def run_one(self, scenario: Scenario, tool: Tool, seed: int) -> None:
        self.counter += 1
        name = f"{self.counter:03d}-{scenario.name}-{tool.kind}"
        project = Project(
            tool=tool,
            path=self.workdir / name,
            token=f"{self.run_id}/{name}",
            settings=self.settings,
            seed=seed,
        )
        say(f"[{time.strftime('%H:%M:%S')}] {scenario.name} with {tool.kind} (run {seed + 1})")
        try:
            project.setup()
            got = scenario.run(project)
            missing = [key for key in scenario.metrics(self.settings) if key not in got]
            if missing:
                raise BenchError(f"the run produced no samples for {', '.join(missing)}")
            into = self.samples[tool.kind]
            for key, values in got.items():
                into.setdefault(key, []).extend(values)
        except BenchError as exc:
            self.fail(scenario, tool, str(exc))
        except Exception:
            self.fail(scenario, tool, traceback.format_exc())
        finally:
            self.clean(project, scenario)
            self.notes += [
                {"scenario": scenario.name, "tool": tool.kind, "run": seed + 1, "note": note}
                for note in project.notes
            ]

    def fail(self, scenario: Scenario, tool: Tool, message: str) -> None:
        say(f"  FAILED: {scenario.name} with {tool.kind}:\n{message}")
        self.failed.add((tool.kind, scenario.name))
        self.errors.append({"scenario": scenario.name, "tool": tool.kind, "error": message})

    def clean(self, project: Project, scenario: Scenario) -> None:
        """--xkill in the project, then kill (and note) whatever of it still runs."""
        try:
            if scenario.cleanup is not None and project.path.exists():
                scenario.cleanup(project)
            if project.path.exists():
                project.xkill()
        except Exception:
            say(f"  cleanup of {project.path} failed:\n{traceback.format_exc()}")
        left = tagged_pids(project.token)
        if left:
            commands = [f"{pid} {cmdline(pid)}" for pid in left]
            self.leftovers.append(
                {"scenario": scenario.name, "tool": project.tool.kind, "processes": commands}
            )
            survivors = kill_and_wait(left)
            if survivors:
                say(f"  WARNING: could not kill {survivors}")
        if not self.keep:
            shutil.rmtree(project.path, ignore_errors=True)

    def final_sweep(self) -> None:
        """Whatever is still tagged with this invocation's id (after an interruption, say)."""
        left = tagged_pids(self.run_id + "/")
        if left:
            say(f"killing {len(left)} process(es) still running: {left}")
            kill_and_wait(left)
        if self.keep:
            say(f"projects kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _git(*args: str) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def describe_machine(tools: list[Tool]) -> dict[str, Any]:
    versions = {tool.kind: tool.versions for tool in tools}
    return {
        "commit": _git("rev-parse", "HEAD"),
        "xprocess_changed_since_commit": bool(_git("status", "--porcelain", "--", "xprocess")),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
        "checkout": str(ROOT),
    }


def table_from(path: str) -> int:
    """Print the table of an earlier run from its --json file."""
    report = json.loads(Path(path).read_text(encoding="utf-8"))
    samples: dict[str, Samples] = report["samples"]
    failed = {(error["tool"], error["scenario"]) for error in report["errors"]}
    chosen = set(report["scenarios"])
    rows = build_rows(settings_for(bool(report["quick"])))
    print(
        render_table(
            rows,
            samples.get("pytest-xprocess"),
            samples.get("xprocess"),
            failed,
            lambda name: name in chosen,
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table_from:
        return table_from(args.table_from)
    if not Path("/proc/self/environ").exists():
        say("this benchmark needs Linux: it finds the processes it started through /proc")
        return 2
    settings = settings_for(args.quick)
    tools = [current_tool()] if args.xprocess_only else prepare_venvs(args.python, args.rebuild)
    chosen = [s for s in SCENARIOS if s.name in args.only]
    bench = Bench(tools, settings, args.keep)
    started = time.time()
    try:
        bench.run(chosen, args.repeat)
    finally:
        bench.final_sweep()
    elapsed = time.time() - started

    by_kind = {tool.kind: bench.samples.get(tool.kind) for tool in tools}
    theirs = by_kind.get("pytest-xprocess")
    ours = by_kind.get("xprocess")
    rows = build_rows(settings)
    machine = describe_machine(tools)
    pytest_version = next(iter(machine["versions"].values())).get("pytest", "?")
    print(
        f"{machine['cpus']} CPUs, Python {machine['python']}, pytest {pytest_version}, "
        f"{machine['platform']}; {args.repeat} repeat(s)"
        f"{' (--quick)' if args.quick else ''}; {elapsed:.0f} s in all"
    )
    commit = machine["commit"][:10] or "?"
    changed = (
        " (with uncommitted changes to xprocess/)"
        if machine["xprocess_changed_since_commit"]
        else ""
    )
    print(f"checkout {commit}{changed}")
    print(
        "cells: median / worst over all samples of all repeats; "
        "ratio: pytest-xprocess median / xprocess median\n"
    )
    print(render_table(rows, theirs, ours, bench.failed, lambda name: name in args.only))
    killed: dict[tuple[str, str], int] = {}
    for leftover in bench.leftovers:
        key = (leftover["tool"], leftover["scenario"])
        killed[key] = killed.get(key, 0) + len(leftover["processes"])
    if killed:
        print("\nleft running after the closing --xkill, then killed by the harness:")
        for (tool_kind, scenario_name), count in sorted(killed.items()):
            print(f"  {tool_kind}, {scenario_name}: {count} process(es) in all repeats")
    for note in bench.notes:
        print(f"\nnote ({note['tool']}, {note['scenario']}, run {note['run']}): {note['note']}")
    for error in bench.errors:
        print(f"\nerror in {error['scenario']} with {error['tool']}:\n{error['error']}")

    if args.json:
        report = {
            "machine": machine,
            "repeat": args.repeat,
            "quick": args.quick,
            "scenarios": args.only,
            "seconds": elapsed,
            "rows": [
                row_json(row, by_kind, bench.failed) for row in rows if row.scenario in args.only
            ],
            "samples": bench.samples,
            "errors": bench.errors,
            "leftovers": bench.leftovers,
            "notes": bench.notes,
        }
        Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")
    # pytest-xprocess failing a scenario (under xdist it can read a PID file another worker is
    # still writing) is a measurement like any other; only xprocess failing one fails the run.
    return 1 if any(error["tool"] == "xprocess" for error in bench.errors) else 0


if __name__ == "__main__":
    sys.exit(main())
