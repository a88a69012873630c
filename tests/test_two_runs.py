"""Two pytest runs at once on one rootdir: neither stops, moves or restarts what the other uses.

Each test starts real runs (``python -m pytest`` in the pytester directory, each in a session of
its own) at the same moment, with and without xdist. They coordinate through files: a run's test
notes what it reached (``a-holding``) and waits for the outer test's go-ahead (``a-go``); nothing
waits by sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import HEADER, count_lines, running, wait_for
from xprocess import XProcessInfo

pytest.importorskip("xdist", reason="-n needs pytest-xdist: pip install pytest-xdist")

WORKERS = pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
# Generous: two runs and their workers start on a loaded machine.
DEADLINE = 180.0

CONFTEST = (
    HEADER
    + """
from projects import wait_for

ROOT = Path(__file__).parent
RUN = os.environ.get("RUN", "")


def note(what):
    "Tell the outer test that this run reached ``what`` (a file, made whole at once)."
    (ROOT / f".{RUN}-{what}").write_text(str(os.getpid()))
    (ROOT / f".{RUN}-{what}").rename(ROOT / f"{RUN}-{what}")


def await_go():
    wait_for((ROOT / f"{RUN}-go").exists, timeout=300, what=f"{RUN}-go")


class Server(ProcessStarter):
    pattern = "ready"
    # OTHER: another definition of the same name (an edited conftest in the other checkout).
    args = child("--count-file", ROOT / "starts", *(["--before", "1"] * ("OTHER" in os.environ)))
    terminate_at_end = os.environ.get("KEEP") != "1"
    timeout = float(os.environ.get("TIMEOUT", "120"))


@pytest.fixture(scope="session")
def server(xprocess):
    xprocess.ensure("server", Server)
    info = xprocess.getinfo("server")
    yield info
    if os.environ.get("TERMINATE") == "1":
        info.terminate()
"""
)

HOLDING_TEST = """
import pytest
from conftest import await_go, note

@pytest.mark.parametrize("i", range(2))
def test_uses_the_server(server, i):
    assert server.isrunning()
    note(f"holding-{i}")
    await_go()
    assert server.isrunning(), "the other run stopped the server under this one"
"""


class Runs:
    """The pytest runs a test started; whatever still runs at the end is killed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, run: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT_TEST"))
        }
        environ.update(env, RUN=run)
        with open(self.path / f"{run}.out", "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-p", "no:randomly", "-q", *args],
                cwd=self.path,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
                start_new_session=True,
            )
        self.started[run] = proc
        return proc

    def finish(self, run: str) -> str:
        """Wait for ``run`` to end; its output."""
        self.started[run].wait(timeout=DEADLINE)
        return self.output(run)

    def let_finish(self, run: str) -> str:
        """Give ``run`` the go-ahead and wait for it to end; its output."""
        self.go(run)
        return self.finish(run)

    def output(self, run: str) -> str:
        return (self.path / f"{run}.out").read_text(errors="replace")

    def reached(self, run: str, what: str) -> None:
        """Wait until ``run`` noted ``what`` (a glob: ``holding-*``)."""
        proc = self.started[run]

        def seen() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"run {run} ended early:\n{self.output(run)}")
            return any(self.path.glob(f"{run}-{what}"))

        wait_for(seen, timeout=DEADLINE, what=f"run {run} to reach {what}")

    def holding(self, run: str, *args: str, **env: str) -> None:
        """Start ``run`` and wait until its tests hold the server."""
        self.start(run, *args, **env)
        self.reached(run, "holding-*")

    def both_holding(self, workers: list[str], **env_of_b: str) -> None:
        """Runs a, then b (with ``env_of_b``), both holding the server."""
        self.holding("a", *workers, **({"TERMINATE": "1"} if "TERMINATE" in env_of_b else {}))
        self.holding("b", *workers, **env_of_b)

    def both_started(self, workers: list[str]) -> None:
        """Runs a and b started at once, both holding the server."""
        self.start("a", *workers)
        self.start("b", *workers)
        self.reached("a", "holding-*")
        self.reached("b", "holding-*")

    def let_both_finish(self) -> tuple[str, str]:
        """Give runs a and b the go-ahead together, then wait for both to end; their outputs."""
        self.go("a")
        self.go("b")
        return self.finish("a"), self.finish("b")

    def go(self, run: str) -> None:
        (self.path / f"{run}-go").write_text("")

    def kill(self, run: str) -> None:
        os.killpg(self.started[run].pid, signal.SIGKILL)
        self.started[run].wait()

    def close(self) -> None:
        for proc in self.started.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def runs(pytester: pytest.Pytester) -> Iterator[Runs]:
    pytester.makeconftest(CONFTEST)
    made = Runs(pytester.path)
    try:
        yield made
    finally:
        made.close()
        wait_for(lambda: not watchdogs_in(pytester.path), timeout=60, what="watchdogs to exit")
        subprocess.run(
            [sys.executable, "-m", "pytest", "--xkill", "--xforce", "-p", "no:randomly"],
            cwd=pytester.path,
            capture_output=True,
            check=False,
        )


def watchdogs_in(path: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        ours = "xprocess.watchdog" in cmdline and any(str(path) in part for part in cmdline)
        if ours and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def records(path: Path) -> Path:
    return path / ".pytest_cache" / "d" / ".xprocess"


def server_pid(path: Path) -> int:
    return int((path / "starts").read_text().split()[0])


def server_runs(path: Path) -> bool:
    return XProcessInfo(records(path), "server").isrunning()


@WORKERS
def test_a_run_releasing_a_server_does_not_stop_it_under_another_run(
    pytester: pytest.Pytester, runs: Runs, workers: list[str]
) -> None:
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.both_holding(workers, TERMINATE="1")
    assert "2 passed" in runs.let_finish("b")
    assert server_runs(pytester.path), "the server stopped when run b released it"
    assert "2 passed" in runs.let_finish("a")
    assert count_lines(pytester.path / "starts") == 1
    assert not running(server_pid(pytester.path)), "the last run's release did not stop it"


@WORKERS
def test_two_runs_starting_the_same_name_at_once_start_it_once(
    pytester: pytest.Pytester, runs: Runs, workers: list[str]
) -> None:
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.both_started(workers)
    assert count_lines(pytester.path / "starts") == 1
    a, b = runs.let_both_finish()
    assert "2 passed" in a
    assert "2 passed" in b
    assert not running(server_pid(pytester.path))


@WORKERS
def test_a_run_ending_first_leaves_its_terminate_at_end_server_to_the_other(
    pytester: pytest.Pytester, runs: Runs, workers: list[str]
) -> None:
    # a stops the server at its end, b keeps it: a ends first, and does not stop it under b;
    # the stop a asked for passes to b's end.
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.both_holding(workers, KEEP="1")
    assert "2 passed" in runs.let_finish("a")
    assert server_runs(pytester.path), "run a's end stopped the server run b holds"
    assert "2 passed" in runs.let_finish("b")
    assert not running(server_pid(pytester.path))


@WORKERS
def test_a_killed_run_does_not_take_the_server_from_the_other(
    pytester: pytest.Pytester, runs: Runs, workers: list[str]
) -> None:
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.both_holding(workers)
    runs.kill("b")
    # b's watchdog stands in for b's end: it must leave the server to a.
    wait_for(
        lambda: any((records(pytester.path) / ".runs").glob("*.killed.log")),
        timeout=DEADLINE,
        what="run b's watchdog to do b's end",
    )
    assert server_runs(pytester.path), "run b's watchdog stopped the server run a holds"
    assert "2 passed" in runs.let_finish("a")
    assert not running(server_pid(pytester.path))


QUICK_AND_SLOW = """
import os
from conftest import ROOT, child, note
from xprocess import ProcessStarter

class Quick(ProcessStarter):
    pattern = "ready"
    args = child()
    terminate_at_end = True

class Slow(ProcessStarter):
    pattern = "ready"
    args = child("--wait-file", ROOT / "slow-may-start")

def test_starts(xprocess):
    if os.environ["RUN"] == "a":
        xprocess.ensure("quick", Quick)
    else:
        note("starting-slow")
        xprocess.ensure("slow", Slow)
"""


def test_the_end_of_a_run_does_not_wait_for_names_it_never_used(
    pytester: pytest.Pytester, runs: Runs
) -> None:
    pytester.makepyfile(test_starts=QUICK_AND_SLOW)
    runs.start("b")
    runs.reached("b", "starting-slow")
    slow = records(pytester.path) / "slow" / "record.json"
    wait_for(slow.exists, timeout=DEADLINE, what="the slow start to be recorded")
    runs.start("a")
    output = runs.finish("a")  # while b still holds the lock of "slow"
    assert runs.started["b"].poll() is None and not (pytester.path / "slow-may-start").exists()
    assert "1 passed" in output
    assert "could not terminate" not in output
    (pytester.path / "slow-may-start").write_text("")
    assert "1 passed" in runs.finish("b")


@WORKERS
def test_cache_clear_while_another_run_works_is_refused_and_moves_nothing(
    pytester: pytest.Pytester, runs: Runs, workers: list[str]
) -> None:
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.holding("a", *workers)
    pid = server_pid(pytester.path)
    runs.start("b", "--cache-clear", *workers)
    output = runs.finish("b")
    assert runs.started["b"].returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "--cache-clear would move the records of running processes" in output
    assert XProcessInfo(records(pytester.path), "server").pid == pid
    assert "2 passed" in runs.let_finish("a")
    assert count_lines(pytester.path / "starts") == 1
    assert not running(pid), "run a's end did not find its server to stop it"


@WORKERS
def test_xkill_leaves_what_a_run_in_progress_holds_unless_forced(
    pytester: pytest.Pytester, runs: Runs, workers: list[str]
) -> None:
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.both_started(workers)
    pid = server_pid(pytester.path)
    result = pytester.runpytest_subprocess("--xkill")
    assert result.ret == 1
    result.stdout.fnmatch_lines([f"{pid} server LEFT RUNNING: held by *--xforce*"])
    assert running(pid)
    a, b = runs.let_both_finish()
    assert "2 passed" in a
    assert "2 passed" in b


def test_xkill_with_xforce_stops_what_a_run_in_progress_holds(
    pytester: pytest.Pytester, runs: Runs
) -> None:
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.holding("a", "-n", "2")
    pid = server_pid(pytester.path)
    result = pytester.runpytest_subprocess("--xkill", "--xforce")
    result.stdout.fnmatch_lines([f"{pid} server TERMINATED"])
    assert not running(pid)
    assert "2 failed" in runs.let_finish("a")


def test_a_kept_server_is_reused_by_a_run_that_stops_it_at_its_end(
    pytester: pytest.Pytester, runs: Runs
) -> None:
    # terminate_at_end is the run's choice (--xpostgresql-keep), not what the server is.
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.go("a")
    runs.start("a", "-n", "2", KEEP="1")
    assert "2 passed" in runs.finish("a")
    pid = server_pid(pytester.path)
    assert running(pid), "a kept server was stopped"
    runs.go("b")
    runs.start("b", "-n", "2")
    output = runs.finish("b")
    assert "2 passed" in output
    assert "restarted" not in output
    assert count_lines(pytester.path / "starts") == 1
    assert not running(pid), "the run that wanted it stopped at its end did not stop it"


def test_a_run_of_another_definition_waits_for_the_holding_run_then_fails_naming_both(
    pytester: pytest.Pytester, runs: Runs
) -> None:
    pytester.makepyfile(test_holding=HOLDING_TEST)
    runs.holding("a", "-n", "2")
    runs.go("b")
    runs.start("b", OTHER="1", TIMEOUT="3")
    output = runs.finish("b")
    assert "2 errors" in output
    assert "'server' runs (pid" in output and "from another definition of its starter" in output
    assert output.count("fingerprint") >= 2, "both definitions are named"
    assert server_runs(pytester.path), "run b restarted the server under run a"
    assert "2 passed" in runs.let_finish("a")
    assert count_lines(pytester.path / "starts") == 1
