"""The benchmark scenarios: each writes a small pytest project and runs it with one tool.

The generated tests use only what xprocess and pytest-xprocess 1.0.2 have in common: the
``xprocess`` fixture, ``ensure(name, Starter, restart=...)``, ``getinfo(name).terminate()`` and
``ProcessStarter`` subclasses with ``args``, ``pattern``, ``timeout`` and ``max_read_lines``.
They time themselves (``time.perf_counter``, or ``time.time`` where a child's own clock is compared)
and append their samples to ``results.json`` in the project, which the harness reads.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _harness import (
    PYTEST_XPROCESS_KIND,
    ROOT,
    Tool,
    alive,
    pytest_env,
    tagged_pids,
)

__all__ = ["SCENARIOS", "BenchError", "Project", "Scenario", "Settings", "settings_for"]

CHILD = ROOT / "tests" / "helpers" / "child.py"
Samples = dict[str, list[float]]


class BenchError(Exception):
    """A scenario could not be measured (a generated test failed, a run timed out, ...)."""


@dataclass(frozen=True)
class Settings:
    """How much of each scenario to do; ``--quick`` shrinks everything."""

    readiness_samples: int
    early_exit_samples: int
    noisy_lines: int
    noisy_samples: int
    restart_sizes_mb: tuple[int, ...]
    restart_samples: int
    terminate_samples: int
    reuse_calls: int
    xdist_workers: int
    xdist_tests: int
    xshow_counts: tuple[int, ...]
    xshow_runs: int
    startup_pairs: int
    scaling_counts: tuple[int, ...]
    scaling_samples: int
    scaling_reuse_calls: int


FULL = Settings(
    readiness_samples=10,
    early_exit_samples=3,
    noisy_lines=200_000,
    noisy_samples=3,
    restart_sizes_mb=(1, 10),
    restart_samples=5,
    terminate_samples=5,
    reuse_calls=500,
    xdist_workers=4,
    xdist_tests=16,
    xshow_counts=(10, 100),
    xshow_runs=3,
    startup_pairs=10,
    scaling_counts=(1, 10, 50),
    scaling_samples=5,
    scaling_reuse_calls=200,
)

QUICK = Settings(
    readiness_samples=3,
    early_exit_samples=1,
    noisy_lines=20_000,
    noisy_samples=1,
    restart_sizes_mb=(1,),
    restart_samples=2,
    terminate_samples=2,
    reuse_calls=50,
    xdist_workers=2,
    xdist_tests=4,
    xshow_counts=(3, 10),
    xshow_runs=1,
    startup_pairs=2,
    scaling_counts=(1, 3),
    scaling_samples=2,
    scaling_reuse_calls=20,
)


def settings_for(quick: bool) -> Settings:
    return QUICK if quick else FULL


# --- the generated project ---------------------------------------------------------------------

PYTEST_INI = "[pytest]\n"

# Imported by every generated test module. @@NAME@@ markers are filled in by Project.setup().
BENCHHELP = '''\
"""Helpers of the generated benchmark tests (written by benchmarks/run.py)."""

import json
import re
import sys
from pathlib import Path

from xprocess import ProcessStarter

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
COUNT_FILE = HERE / "started.txt"
CHILD = @@CHILD@@
SEED = @@SEED@@
# Ready at once, and cheap to start (about 1 ms), so its own start-up does not hide the
# plugin's cost.
SHELL_READY = ["/bin/sh", "-c", "echo ready; exec sleep 600"]


def child(*flags, buffered=False):
    """The helper child's command; buffered=True keeps Python's stdout block-buffered."""
    return [sys.executable, *([] if buffered else ["-u"]), CHILD, *map(str, flags)]


def starter(command, ready="^ready", wait=30.0, read_lines=50):
    """A ProcessStarter subclass for ``command``, ready when a line matches ``ready``."""

    class Starter(ProcessStarter):
        args = list(command)
        pattern = ready
        timeout = wait
        max_read_lines = read_lines

    return Starter


def ready_stamp(logpath, text):
    """The wall-clock time the child printed after ``text`` in its latest ready line."""
    with open(str(logpath), "rb") as log:
        size = log.seek(0, 2)
        log.seek(max(0, size - 16384))
        tail = log.read().decode("utf-8", "replace")
    stamps = re.findall(re.escape(text) + r" (\\d+\\.\\d+)", tail)
    assert stamps, f"no {text!r} line with a time stamp at the end of {logpath}"
    return float(stamps[-1])


def save(key, values):
    """Append ``values`` to the samples of ``key`` in results.json."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data.setdefault(key, []).extend(float(v) for v in values)
    RESULTS.write_text(json.dumps(data))
'''


@dataclass
class Project:
    """A generated pytest project in ``path``, run with ``tool``."""

    tool: Tool
    path: Path
    token: str
    settings: Settings
    seed: int
    timeout: float = 900.0
    notes: list[str] = field(default_factory=list)

    def setup(self) -> None:
        self.path.mkdir(parents=True)
        self.write("pytest.ini", PYTEST_INI)
        text = BENCHHELP.replace("@@CHILD@@", repr(str(CHILD))).replace("@@SEED@@", repr(self.seed))
        self.write("benchhelp.py", text)

    def write(self, name: str, text: str) -> None:
        (self.path / name).write_text(text, encoding="utf-8")

    @property
    def records_root(self) -> Path:
        return self.path / ".pytest_cache" / "d" / ".xprocess"

    def pytest(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``<tool python> -m pytest ARGS`` in the project."""
        cmd = [str(self.tool.python), "-m", "pytest", *args]
        try:
            return subprocess.run(
                cmd,
                cwd=self.path,
                env=pytest_env(self.token),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=self.timeout if timeout is None else timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{' '.join(cmd)} did not finish within {exc.timeout:g} s") from exc

    def timed(self, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Wall time of one pytest run, from the harness's side."""
        start = time.perf_counter()
        result = self.pytest(*args)
        return time.perf_counter() - start, result

    def run_tests(self, *args: str) -> Samples:
        """Run the project's tests; return what they saved in results.json."""
        result = self.pytest("-q", "-p", "no:randomly", *args)
        if result.returncode != 0:
            raise BenchError(f"pytest exited {result.returncode}:\n{_tail(result.stdout)}")
        return self.results()

    def results(self) -> Samples:
        path = self.path / "results.json"
        if not path.exists():
            return {}
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): [float(v) for v in vs] for k, vs in raw.items()}

    def xkill(self) -> str:
        """Run ``pytest --xkill`` in the project; returns its output."""
        return self.pytest("--xkill", timeout=300).stdout

    def started_pids(self) -> list[int]:
        path = self.path / "started.txt"
        if not path.exists():
            return []
        return [int(word) for word in path.read_text(encoding="utf-8").split()]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Scenario:
    """A named measurement: ``run`` drives a prepared project and returns its samples."""

    name: str
    summary: str
    run: Callable[[Project], Samples]
    metrics: Callable[[Settings], list[str]]
    cleanup: Callable[[Project], None] | None = None


# --- scenarios that run generated tests --------------------------------------------------------

READINESS_TEST = """\
import random
import time

from benchhelp import SEED, child, ready_stamp, save, starter


def test_readiness(xprocess):
    rng = random.Random(SEED)
    latencies = []
    for _ in range(@@N@@):
        delay = rng.uniform(0.0, 0.2)
        command = child("--ready", "ready at", "--delay", f"{delay:.4f}", "--print-time")
        _, logpath = xprocess.ensure("ready", starter(command, "^ready at"), restart=True)
        returned = time.time()
        latencies.append(returned - ready_stamp(logpath, "ready at"))
    assert xprocess.getinfo("ready").terminate() == 1
    save("ready_latency", latencies)
"""


def _readiness(project: Project) -> Samples:
    n = project.settings.readiness_samples
    project.write("test_readiness.py", READINESS_TEST.replace("@@N@@", str(n)))
    return project.run_tests()


EARLY_EXIT_TEST = """\
import re
import time

import pytest

from benchhelp import child, ready_stamp, save, starter

FATAL = "fatal: cannot bind to port 8080"


def test_early_exit(xprocess):
    for i in range(@@N@@):
        command = child("--ready", FATAL, "--delay", "0.05", "--exit-code", "3", "--print-time")
        dies = starter(command, "^listening", wait=10.0)
        start = time.perf_counter()
        try:
            _, logpath = xprocess.ensure(f"early{i}", dies)
        except Exception as exc:
            elapsed = time.perf_counter() - start
            raised = time.time()
            message = str(exc)
        else:
            pytest.fail("ensure() returned for a process that exited with code 3")
        logpath = xprocess.getinfo(f"early{i}").logpath
        save("early_exit", [elapsed])
        save("early_exit_after_exit", [raised - ready_stamp(logpath, FATAL)])
        save("early_exit_code", [bool(re.search(r"(?i)\\bexit\\w*\\b\\D{0,20}\\b3\\b", message))])
        save("early_exit_tail", [FATAL in message])
"""


def _early_exit(project: Project) -> Samples:
    n = project.settings.early_exit_samples
    project.write("test_early_exit.py", EARLY_EXIT_TEST.replace("@@N@@", str(n)))
    return project.run_tests()


NOISY_TEST = """\
import time

from benchhelp import child, save, starter


def test_noisy(xprocess):
    times = []
    for i in range(@@N@@):
        command = child("--before", @@LINES@@, buffered=True)
        noisy = starter(command, "^ready$", read_lines=@@LINES@@ + 100_000)
        start = time.perf_counter()
        xprocess.ensure(f"noisy{i}", noisy)
        times.append(time.perf_counter() - start)
        assert xprocess.getinfo(f"noisy{i}").terminate() == 1
    save("noisy", times)
"""


def _noisy(project: Project) -> Samples:
    s = project.settings
    text = NOISY_TEST.replace("@@N@@", str(s.noisy_samples))
    project.write("test_noisy.py", text.replace("@@LINES@@", str(s.noisy_lines)))
    return project.run_tests()


RESTART_TEST = """\
import time

from benchhelp import SHELL_READY, save, starter

LINE = "x" * 99 + "\\n"


def pad(logpath, size):
    with open(str(logpath), "a") as log:
        missing = size - log.tell()
        if missing > 0:
            log.write(LINE * (missing // len(LINE) + 1))


def test_restart(xprocess):
    ready_at_once = starter(SHELL_READY)
    for megabytes in @@SIZES@@:
        name = f"restart{megabytes}mb"
        _, logpath = xprocess.ensure(name, ready_at_once)
        pad(logpath, megabytes << 20)
        times = []
        for _ in range(@@N@@):
            start = time.perf_counter()
            xprocess.ensure(name, ready_at_once, restart=True)
            times.append(time.perf_counter() - start)
        assert xprocess.getinfo(name).terminate() == 1
        save(f"restart_{megabytes}mb", times)
"""


def _restart(project: Project) -> Samples:
    s = project.settings
    text = RESTART_TEST.replace("@@SIZES@@", repr(s.restart_sizes_mb))
    project.write("test_restart.py", text.replace("@@N@@", str(s.restart_samples)))
    return project.run_tests()


TERMINATE_TEST = """\
import time

import psutil

from benchhelp import child, save, starter


def running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_terminate(xprocess):
    tree_starter = starter(child("--children", 3))
    times = []
    survivors = []
    for _ in range(@@N@@):
        pid, _ = xprocess.ensure("tree", tree_starter, restart=True)
        tree = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
        assert len(tree) == 4, tree
        start = time.perf_counter()
        result = xprocess.getinfo("tree").terminate()
        times.append(time.perf_counter() - start)
        assert result == 1
        survivors.append(sum(running(p) for p in tree))
    save("terminate", times)
    save("terminate_survivors", survivors)
"""


def _terminate(project: Project) -> Samples:
    n = project.settings.terminate_samples
    project.write("test_terminate.py", TERMINATE_TEST.replace("@@N@@", str(n)))
    return project.run_tests()


REUSE_TEST = """\
import statistics
import time

from benchhelp import child, save, starter


def test_reuse(xprocess):
    server = starter(child())
    first, _ = xprocess.ensure("reuse", server)
    costs = []
    for _ in range(@@N@@):
        start = time.perf_counter()
        pid, _ = xprocess.ensure("reuse", server)
        costs.append(time.perf_counter() - start)
        assert pid == first
    assert xprocess.getinfo("reuse").terminate() == 1
    save("reuse", [statistics.median(costs)])
    save("reuse_calls", costs)
"""


def _reuse(project: Project) -> Samples:
    n = project.settings.reuse_calls
    project.write("test_reuse.py", REUSE_TEST.replace("@@N@@", str(n)))
    return project.run_tests()


SCALING_TEST = """\
import random
import statistics
import time

from benchhelp import SEED, SHELL_READY, child, ready_stamp, save, starter


def test_scaling(xprocess):
    rng = random.Random(SEED)
    background = starter(SHELL_READY)
    others = 0
    for alive in @@COUNTS@@:
        while others < alive - 1:
            xprocess.ensure(f"bg{others}", background)
            others += 1
        latencies = []
        for _ in range(@@N@@):
            delay = rng.uniform(0.0, 0.2)
            command = child("--ready", "ready at", "--delay", f"{delay:.4f}", "--print-time")
            probe = starter(command, "^ready at")
            _, logpath = xprocess.ensure("probe", probe, restart=True)
            returned = time.time()
            latencies.append(returned - ready_stamp(logpath, "ready at"))
        costs = []
        for _ in range(@@CALLS@@):
            start = time.perf_counter()
            xprocess.ensure("probe", probe)
            costs.append(time.perf_counter() - start)
        save(f"scale{alive}_ready", latencies)
        save(f"scale{alive}_reuse", [statistics.median(costs)])
    assert xprocess.getinfo("probe").terminate() == 1
    for i in range(others):
        assert xprocess.getinfo(f"bg{i}").terminate() == 1
"""


def _scaling(project: Project) -> Samples:
    s = project.settings
    text = SCALING_TEST.replace("@@COUNTS@@", repr(s.scaling_counts))
    text = text.replace("@@N@@", str(s.scaling_samples))
    project.write("test_scaling.py", text.replace("@@CALLS@@", str(s.scaling_reuse_calls)))
    return project.run_tests()


# --- scenarios driven from the harness ---------------------------------------------------------

XDIST_CONFTEST = """\
import pytest

from benchhelp import COUNT_FILE, child, starter


@pytest.fixture(scope="session")
def shared_server(xprocess):
    # Takes 0.2 s to get ready, like a small real server.
    command = child("--delay", "0.2", "--count-file", COUNT_FILE)
    return xprocess.ensure("shared", starter(command))
"""

XDIST_TEST = """\
import pytest


@pytest.mark.parametrize("i", range(@@N@@))
def test_uses_the_shared_server(shared_server, i):
    pid, _ = shared_server
    assert pid > 0
"""


def _xdist(project: Project) -> Samples:
    s = project.settings
    project.write("conftest.py", XDIST_CONFTEST)
    project.write("test_shared.py", XDIST_TEST.replace("@@N@@", str(s.xdist_tests)))
    project.run_tests("-n", str(s.xdist_workers))
    started = project.started_pids()
    xkill_output = project.xkill()
    still = set(tagged_pids(project.token))
    orphans = [pid for pid in started if pid in still and alive(pid)]
    if orphans:
        project.notes.append(
            f"{len(orphans)} of the {len(started)} started processes outlived --xkill "
            f"(pids {orphans}); --xkill said:\n{_tail(xkill_output, 20)}"
        )
    return {"xdist_started": [float(len(started))], "xdist_orphans": [float(len(orphans))]}


SEED_XPROCESS_RECORDS = """\
import sys
import time
from pathlib import Path

from xprocess.records import READY, ProcessRecord, RecordStore

root, first, pids = Path(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]
store = RecordStore(root)
then = time.time() - 3600
for number, pid in enumerate(pids, first):
    name = f"proc{number:03d}"
    controldir = store.ensure_dirs(name)
    log = store.log_path(name)
    log.write_text("server ready\\n", encoding="utf-8")
    store.write(
        ProcessRecord(
            name=name, pid=pid, create_time=then, argv=["server"], cwd=str(controldir),
            logpath=str(log), log_offset=0, started_at=then, state=READY, run_id="seeded",
        )
    )
"""


def _dead_pids(count: int) -> list[int]:
    """Pids that no process has now, from the top of the pid range (slowest to be reused)."""
    try:
        top = int(Path("/proc/sys/kernel/pid_max").read_text(encoding="ascii"))
    except (OSError, ValueError):
        top = 32768
    pids: list[int] = []
    pid = top - 1
    while len(pids) < count and pid > 300:
        if not os.path.exists(f"/proc/{pid}"):
            pids.append(pid)
        pid -= 1
    return pids


def _seed_records(project: Project, first: int, count: int) -> None:
    """Write ``count`` records of dead processes, named proc<first>..., as the tool writes them."""
    pids = _dead_pids(first + count)[first:]
    root = project.records_root
    if project.tool.kind == PYTEST_XPROCESS_KIND:
        for number, pid in enumerate(pids, first):
            controldir = root / f"proc{number:03d}"
            controldir.mkdir(parents=True, exist_ok=True)
            (controldir / "xprocess.PID").write_text(str(pid), encoding="ascii")
            (controldir / "xprocess.log").write_text("server ready\n", encoding="utf-8")
        return
    root.mkdir(parents=True, exist_ok=True)
    pid_list = ",".join(map(str, pids))
    cmd = [str(project.tool.python), "-c", SEED_XPROCESS_RECORDS, str(root), str(first), pid_list]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchError(f"seeding records failed:\n{result.stdout}{result.stderr}")


def _xshow(project: Project) -> Samples:
    s = project.settings
    samples: Samples = {}
    seeded = 0
    for count in s.xshow_counts:
        _seed_records(project, seeded, count - seeded)
        seeded = count
        project.timed("--xshow")  # warm-up: the first run also writes pytest's cache
        times = []
        for _ in range(s.xshow_runs):
            elapsed, result = project.timed("--xshow")
            listed = sum(" DEAD " in line for line in result.stdout.splitlines())
            if listed != count:
                raise BenchError(
                    f"--xshow listed {listed} dead processes, expected {count}:\n"
                    + _tail(result.stdout)
                )
            times.append(elapsed)
        samples[f"xshow_{count}"] = times
    return samples


def _xshow_cleanup(project: Project) -> None:
    """Remove the seeded records, so the closing --xkill signals none of their (fake) pids."""
    root = project.records_root
    if root.is_dir():
        for controldir in root.glob("proc[0-9]*"):
            for item in controldir.iterdir():
                item.unlink()
            controldir.rmdir()


STARTUP_TEST = """\
def test_one():
    assert 1 + 1 == 2
"""


def _startup(project: Project) -> Samples:
    project.write("test_one.py", STARTUP_TEST)
    plain: tuple[str, ...] = ("-q",)
    without: tuple[str, ...] = ("-q", "-p", "no:xprocess")
    for warm_up in (plain, without):  # caches and compiled test files
        project.timed(*warm_up)
    with_plugin: list[float] = []
    without_plugin: list[float] = []
    for i in range(project.settings.startup_pairs):
        order = [(plain, with_plugin), (without, without_plugin)]
        for args, into in order if i % 2 == 0 else order[::-1]:
            elapsed, result = project.timed(*args)
            if result.returncode != 0:
                raise BenchError(f"pytest {' '.join(args)} failed:\n{_tail(result.stdout)}")
            into.append(elapsed)
    overhead = statistics.median(with_plugin) - statistics.median(without_plugin)
    return {
        "startup_with": with_plugin,
        "startup_without": without_plugin,
        "startup_overhead": [overhead],
    }


def _keys(*keys: str) -> Callable[[Settings], list[str]]:
    return lambda settings: list(keys)


SCENARIOS: list[Scenario] = [
    Scenario(
        "readiness",
        "pattern printed 0-200 ms after start -> ensure() returns",
        _readiness,
        _keys("ready_latency"),
    ),
    Scenario(
        "early-exit",
        "child prints an error and exits 3 after 50 ms; timeout 10 s",
        _early_exit,
        _keys("early_exit", "early_exit_after_exit", "early_exit_code", "early_exit_tail"),
    ),
    Scenario("noisy", "many lines before the pattern", _noisy, _keys("noisy")),
    Scenario(
        "restart",
        "ensure(restart=True) with a large persisted log",
        _restart,
        lambda s: [f"restart_{mb}mb" for mb in s.restart_sizes_mb],
    ),
    Scenario(
        "terminate",
        "terminate() of a process with 3 children",
        _terminate,
        _keys("terminate", "terminate_survivors"),
    ),
    Scenario("reuse", "ensure() of a live process", _reuse, _keys("reuse")),
    Scenario(
        "xdist",
        "-n N workers share one process; starts and orphans after --xkill",
        _xdist,
        _keys("xdist_started", "xdist_orphans"),
    ),
    Scenario(
        "xshow",
        "pytest --xshow with many recorded dead processes",
        _xshow,
        lambda s: [f"xshow_{n}" for n in s.xshow_counts],
        cleanup=_xshow_cleanup,
    ),
    Scenario(
        "startup",
        "pytest start-up with the plugin installed vs -p no:xprocess",
        _startup,
        _keys("startup_overhead"),
    ),
    Scenario(
        "scaling",
        "readiness and reuse with 1, 10, 50 managed processes alive",
        _scaling,
        lambda s: [f"scale{n}_{what}" for n in s.scaling_counts for what in ("ready", "reuse")],
    ),
]
