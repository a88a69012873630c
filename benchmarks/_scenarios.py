"""The benchmark scenarios: each writes a small pytest project, runs it, and declares its rows.

The generated tests use only what xprocess and pytest-xprocess 1.0.2 have in common: the
``xprocess`` fixture, ``ensure(name, Starter, restart=...)``, ``getinfo(name).terminate()`` and
``ProcessStarter`` subclasses with ``args``, ``pattern``, ``timeout`` and ``max_read_lines``.
They time themselves and save their samples through ``benchhelp.save``.

A scenario's ``size`` holds its parameters, full or ``--quick``; ``rows(size)`` says what the
table shows of its samples.
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
from _harness import PYTEST_XPROCESS, BenchError, Project, Samples, tagged, tail

Size = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One line of the table, computed from the samples of ``metrics``.

    ``time``: median / worst of one metric, against ``limits`` ((statistic, seconds), the fast
    path's targets). ``count``: the values of each metric, which must all equal ``expect``.
    """

    label: str
    metrics: tuple[str, ...]
    kind: str = "time"
    unit: str = "ms"
    limits: tuple[tuple[str, float], ...] = ()
    expect: tuple[float, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[Project, Size], Samples]
    rows: Callable[[Size], list[Row]]
    full: Size
    quick: Size
    cleanup: Callable[[Project], None] | None = None


def _fill(text: str, **values: object) -> str:
    for key, value in values.items():
        text = text.replace(f"@@{key.upper()}@@", repr(value))
    return text


def _tests(name: str, text: str) -> Callable[[Project, Size], Samples]:
    """A scenario body that writes ``test_<name>.py`` (``@@KEY@@`` filled from the size)."""

    def run(project: Project, size: Size) -> Samples:
        project.write(f"test_{name}.py", _fill(text, **size))
        return project.run_tests()

    return run


READY_LIMITS = (("median", 0.0015), ("worst", 0.010))
REUSE_LIMITS = (("median", 40e-6),)

READINESS = """\
import random, time
from benchhelp import SEED, child, ready_stamp, save, starter

def test_readiness(xprocess):
    rng, latencies = random.Random(SEED), []
    for _ in range(@@SAMPLES@@):
        delay = rng.uniform(0.0, 0.2)
        command = child("--ready", "ready at", "--delay", f"{delay:.4f}", "--print-time")
        _, logpath = xprocess.ensure("ready", starter(command, "^ready at"), restart=True)
        latencies.append(time.time() - ready_stamp(logpath, "ready at"))
    assert xprocess.getinfo("ready").terminate() == 1
    save("ready_latency", latencies)
"""

EARLY_EXIT = """\
import re, time
import pytest
from benchhelp import child, ready_stamp, save, starter

FATAL = "fatal: cannot bind to port 8080"

def test_early_exit(xprocess):
    for i in range(@@SAMPLES@@):
        command = child("--ready", FATAL, "--delay", "0.05", "--exit-code", "3", "--print-time")
        start = time.perf_counter()
        with pytest.raises(Exception) as excinfo:
            xprocess.ensure(f"early{i}", starter(command, "^listening", wait=10.0))
        save("early_exit", [time.perf_counter() - start])
        logpath = xprocess.getinfo(f"early{i}").logpath
        save("early_exit_after_exit", [time.time() - ready_stamp(logpath, FATAL)])
        message = str(excinfo.value)
        save("early_exit_code", [bool(re.search(r"(?i)\\bexit\\w*\\b\\D{0,20}\\b3\\b", message))])
        save("early_exit_tail", [FATAL in message])
"""

NOISY = """\
import time
from benchhelp import child, save, starter

def test_noisy(xprocess):
    for i in range(@@SAMPLES@@):
        noisy = starter(child("--before", @@LINES@@, buffered=True), "^ready$", read_lines=10**7)
        start = time.perf_counter()
        xprocess.ensure(f"noisy{i}", noisy)
        save("noisy", [time.perf_counter() - start])
        assert xprocess.getinfo(f"noisy{i}").terminate() == 1
"""

RESTART = """\
import time
from benchhelp import SHELL_READY, save, starter

def test_restart(xprocess):
    ready_at_once = starter(SHELL_READY)
    for megabytes in @@SIZES_MB@@:
        name = f"restart{megabytes}mb"
        _, logpath = xprocess.ensure(name, ready_at_once)
        with open(str(logpath), "a") as log:
            log.write(("x" * 99 + "\\n") * ((megabytes << 20) // 100 + 1))
        for _ in range(@@SAMPLES@@):
            start = time.perf_counter()
            xprocess.ensure(name, ready_at_once, restart=True)
            save(f"restart_{megabytes}mb", [time.perf_counter() - start])
        assert xprocess.getinfo(name).terminate() == 1
"""

TERMINATE = """\
import time
import psutil
from benchhelp import child, save, starter

def running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False

def test_terminate(xprocess):
    for _ in range(@@SAMPLES@@):
        pid, _ = xprocess.ensure("tree", starter(child("--children", 3)), restart=True)
        tree = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
        assert len(tree) == 4, tree
        start = time.perf_counter()
        assert xprocess.getinfo("tree").terminate() == 1
        save("terminate", [time.perf_counter() - start])
        save("terminate_survivors", [sum(running(p) for p in tree)])
"""

REUSE = """\
import statistics, time
from benchhelp import child, save, starter

def test_reuse(xprocess):
    server = starter(child())
    first, _ = xprocess.ensure("reuse", server)
    costs = []
    for _ in range(@@CALLS@@):
        start = time.perf_counter()
        assert xprocess.ensure("reuse", server)[0] == first
        costs.append(time.perf_counter() - start)
    assert xprocess.getinfo("reuse").terminate() == 1
    save("reuse", [statistics.median(costs)])
"""

SCALING = """\
import random, statistics, time
from benchhelp import SEED, SHELL_READY, child, ready_stamp, save, starter

def test_scaling(xprocess):
    rng, others = random.Random(SEED), 0
    for alive in @@COUNTS@@:
        while others < alive - 1:
            xprocess.ensure(f"bg{others}", starter(SHELL_READY))
            others += 1
        for _ in range(@@SAMPLES@@):
            delay = rng.uniform(0.0, 0.2)
            command = child("--ready", "ready at", "--delay", f"{delay:.4f}", "--print-time")
            probe = starter(command, "^ready at")
            _, logpath = xprocess.ensure("probe", probe, restart=True)
            save(f"scale{alive}_ready", [time.time() - ready_stamp(logpath, "ready at")])
        costs = []
        for _ in range(@@CALLS@@):
            start = time.perf_counter()
            xprocess.ensure("probe", probe)
            costs.append(time.perf_counter() - start)
        save(f"scale{alive}_reuse", [statistics.median(costs)])
    for name in ["probe", *(f"bg{i}" for i in range(others))]:
        assert xprocess.getinfo(name).terminate() == 1
"""

XDIST_CONFTEST = """\
import pytest
from benchhelp import COUNT_FILE, child, starter

@pytest.fixture(scope="session")
def shared_server(xprocess):  # 0.2 s to get ready, like a small real server
    return xprocess.ensure("shared", starter(child("--delay", "0.2", "--count-file", COUNT_FILE)))
"""

XDIST_TEST = """\
import pytest

@pytest.mark.parametrize("i", range(@@TESTS@@))
def test_uses_the_shared_server(shared_server, i):
    assert shared_server[0] > 0
"""


def _xdist(project: Project, size: Size) -> Samples:
    project.write("conftest.py", XDIST_CONFTEST)
    project.write("test_shared.py", _fill(XDIST_TEST, tests=size["tests"]))
    project.run_tests("-n", str(size["workers"]))
    count_file = project.path / "started.txt"
    started = [int(w) for w in count_file.read_text().split()] if count_file.exists() else []
    said = project.xkill()
    orphans = [p.pid for p in tagged(project.token) if p.pid in started]
    if orphans:
        project.notes.append(f"pids {orphans} outlived --xkill, which said:\n{said[-2000:]}")
    return {"xdist_started": [len(started)], "xdist_orphans": [len(orphans)]}


SEED_RECORDS = """\
import sys, time
from pathlib import Path
from xprocess.records import READY, ProcessRecord, RecordStore

store, then = RecordStore(Path(sys.argv[1])), time.time() - 3600
for number, pid in enumerate(map(int, sys.argv[3].split(",")), int(sys.argv[2])):
    name = f"proc{number:03d}"
    log = store.log_path(name)
    store.ensure_dirs(name)
    log.write_text("server ready\\n")
    store.write(ProcessRecord(name=name, pid=pid, create_time=then, argv=["server"],
        cwd=str(log.parent), logpath=str(log), log_offset=0, started_at=then, state=READY))
"""


def _seed_records(project: Project, first: int, count: int) -> None:
    """Write records of ``count`` dead processes, named proc<first>..., as the plugin would."""
    # Above the usual pid ranges (32768 on Linux, 99999 on macOS), and checked to be free.
    free = (pid for pid in range(4_000_000, 0, -1) if not psutil.pid_exists(pid))
    pids = list(itertools.islice(free, first, first + count))
    root = project.records_root
    root.mkdir(parents=True, exist_ok=True)
    if project.side.name == PYTEST_XPROCESS:
        for number, pid in enumerate(pids, first):
            controldir = root / f"proc{number:03d}"
            controldir.mkdir()
            (controldir / "xprocess.PID").write_text(str(pid))
            (controldir / "xprocess.log").write_text("server ready\n")
        return
    args = [str(root), str(first), ",".join(map(str, pids))]
    result = subprocess.run(
        [str(project.side.python), "-c", SEED_RECORDS, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"seeding records failed:\n{tail(result)}")


def _xshow(project: Project, size: Size) -> Samples:
    samples: Samples = {}
    seeded = 0
    for count in size["counts"]:
        _seed_records(project, seeded, count - seeded)
        seeded = count
        project.timed("--xshow")  # warm-up: the first run also writes pytest's cache
        samples[f"xshow_{count}"] = [project.timed("--xshow") for _ in range(size["runs"])]
    low, high = size["counts"][0], size["counts"][-1]
    per = statistics.median(samples[f"xshow_{high}"]) - statistics.median(samples[f"xshow_{low}"])
    samples["xshow_per_record"] = [per / (high - low)]
    return samples


def _xshow_cleanup(project: Project) -> None:
    """Remove the seeded records, so the closing --xkill signals none of their (unused) pids."""
    for controldir in project.records_root.glob("proc[0-9]*"):
        for item in controldir.iterdir():
            item.unlink()
        controldir.rmdir()


def _startup(project: Project, size: Size) -> Samples:
    project.write("test_one.py", "def test_one():\n    pass\n")
    plain, without = ("-q",), ("-q", "-p", "no:xprocess")
    project.timed(*plain), project.timed(*without)  # caches and compiled test files
    times: dict[tuple[str, ...], list[float]] = {plain: [], without: []}
    for i in range(size["pairs"]):
        for args in (plain, without) if i % 2 == 0 else (without, plain):
            times[args].append(project.timed(*args))
    return {
        "startup_overhead": [statistics.median(times[plain]) - statistics.median(times[without])]
    }


def _scaling_rows(size: Size) -> list[Row]:
    rows = []
    for n in size["counts"]:
        rows.append(
            Row(f"scaling, {n} alive: readiness latency", (f"scale{n}_ready",), limits=READY_LIMITS)
        )
        rows.append(
            Row(
                f"scaling, {n} alive: ensure() of a live process",
                (f"scale{n}_reuse",),
                unit="us",
                limits=REUSE_LIMITS,
            )
        )
    return rows


SCENARIOS: list[Scenario] = [
    Scenario(
        "readiness",
        "pattern printed 0-200 ms after start -> ensure() returns",
        _tests("readiness", READINESS),
        lambda s: [
            Row(
                "readiness: ready line printed → ensure() returns",
                ("ready_latency",),
                limits=READY_LIMITS,
            )
        ],
        {"samples": 10},
        {"samples": 3},
    ),
    Scenario(
        "early-exit",
        "child prints an error and exits 3 after 50 ms; timeout 10 s",
        _tests("early_exit", EARLY_EXIT),
        lambda s: [
            Row(
                "early exit (exit 3 after 50 ms): ensure() raises",
                ("early_exit",),
                unit="s",
                limits=(("worst", 0.1),),
            ),
            Row("early exit: raised after the child's last line", ("early_exit_after_exit",)),
            Row(
                "early exit: error has exit code / log tail",
                ("early_exit_code", "early_exit_tail"),
                "count",
                expect=(1, 1),
            ),
        ],
        {"samples": 3},
        {"samples": 1},
    ),
    Scenario(
        "noisy",
        "many lines before the pattern",
        _tests("noisy", NOISY),
        lambda s: [
            Row(
                f"noisy start: {s['lines']:,} lines before the pattern",
                ("noisy",),
                unit="s",
                limits=(("worst", 0.3),),
            )
        ],
        {"samples": 3, "lines": 200_000},
        {"samples": 1, "lines": 20_000},
    ),
    Scenario(
        "restart",
        "ensure(restart=True) with a large persisted log",
        _tests("restart", RESTART),
        lambda s: [
            Row(
                f"restart=True after a {mb} MB persisted log",
                (f"restart_{mb}mb",),
                limits=(("worst", 0.020),),
            )
            for mb in s["sizes_mb"]
        ],
        {"samples": 5, "sizes_mb": (1, 10)},
        {"samples": 2, "sizes_mb": (1,)},
    ),
    Scenario(
        "terminate",
        "terminate() of a process with 3 children",
        _tests("terminate", TERMINATE),
        lambda s: [
            Row(
                "terminate() of a process with 3 children",
                ("terminate",),
                limits=(("median", 0.012), ("worst", 0.100)),
            ),
            Row(
                "terminate(): processes of the tree left running",
                ("terminate_survivors",),
                "count",
                expect=(0,),
            ),
        ],
        {"samples": 5},
        {"samples": 2},
    ),
    Scenario(
        "reuse",
        "ensure() of a live process",
        _tests("reuse", REUSE),
        lambda s: [
            Row(
                f"ensure() of a live process (median of {s['calls']} calls)",
                ("reuse",),
                unit="us",
                limits=REUSE_LIMITS,
            )
        ],
        {"calls": 500},
        {"calls": 50},
    ),
    Scenario(
        "xdist",
        "-n N workers share one process; starts and orphans after --xkill",
        _xdist,
        lambda s: [
            Row(
                f"xdist -n {s['workers']}, {s['tests']} tests share one process: started / orphans",
                ("xdist_started", "xdist_orphans"),
                "count",
                expect=(1, 0),
            )
        ],
        {"workers": 4, "tests": 16},
        {"workers": 2, "tests": 4},
    ),
    Scenario(
        "xshow",
        "pytest --xshow with many recorded dead processes",
        _xshow,
        lambda s: [
            *(
                Row(
                    f"pytest --xshow, {n} recorded processes",
                    (f"xshow_{n}",),
                    unit="s",
                    limits=(("worst", 1.0),),
                )
                for n in s["counts"]
            ),
            Row("pytest --xshow: cost of each more record", ("xshow_per_record",)),
        ],
        {"counts": (10, 100), "runs": 3},
        {"counts": (3, 10), "runs": 1},
        cleanup=_xshow_cleanup,
    ),
    Scenario(
        "startup",
        "pytest start-up with the plugin installed vs -p no:xprocess",
        _startup,
        lambda s: [
            Row(
                "pytest start-up overhead of the installed plugin",
                ("startup_overhead",),
                limits=(("worst", 0.020),),
            )
        ],
        {"pairs": 10},
        {"pairs": 2},
    ),
    Scenario(
        "scaling",
        "readiness and reuse with 1, 10, 50 managed processes alive",
        _tests("scaling", SCALING),
        _scaling_rows,
        {"counts": (1, 10, 50), "samples": 5, "calls": 200},
        {"counts": (1, 3), "samples": 2, "calls": 20},
    ),
]
