"""Fixtures written for pytest-xprocess 1.0.2, unchanged, work; under xdist they become safe.

Each conftest here has the shape public projects give their xprocess fixtures: ``terminate()``
in a fixture's teardown, a skip on a missing executable, a retry loop around ``ensure``.
"""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from tests.support import HEADER, count_lines, live_records, nothing_left, running, wait_for
from xprocess.manager import XProcessInfo

# The server the fixtures below start, and what their tests call, from tests/helpers/projects.py.
SERVER = (
    HEADER
    + """
from projects import listening_server, talk, wait_for

ROOT = Path(__file__).parent
Server = listening_server(ROOT / "starts")
"""
)

SESSION_FIXTURE = """
@pytest.fixture(scope="session")
def server(xprocess):
    xprocess.ensure("server", Server)
    yield
    xprocess.getinfo("server").terminate()
"""

FUNCTION_FIXTURE = """
@pytest.fixture
def server(xprocess):
    xprocess.ensure("server", Server)
    yield
    xprocess.getinfo("server").terminate()
"""

# Fixtures ``server`` for a conftest made by starter_conftest(): the default one starts
# ``Server``; SERVER_PID's value is the pid ensure returned; SESSION_SERVER is session-scoped.
ENSURE_SERVER = """
@pytest.fixture
def server(xprocess):
    xprocess.ensure("server", Server)
"""

SERVER_PID = """
@pytest.fixture
def server(xprocess):
    return xprocess.ensure("server", Server)[0]
"""

SESSION_SERVER = """
@pytest.fixture(scope="session")
def server(xprocess):
    xprocess.ensure("server", Server)
"""


def starter_conftest(starter: str, fixture: str = ENSURE_SERVER) -> str:
    """A conftest defining ``ROOT`` (the project's directory), then ``starter`` (the test's own
    ``class Server(ProcessStarter)``, which may count its starts in ``ROOT / "starts"``), then
    ``fixture``."""
    return HEADER + "\nROOT = Path(__file__).parent\n\n" + starter + "\n" + fixture


# Each worker says when its session is over (after its fixtures were torn down).
WORKER_DONE_HOOK = """
def pytest_unconfigure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        (ROOT / f"done-{worker}").write_text("")
"""


def test_terminate_in_a_session_fixture_teardown_waits_for_the_last_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SERVER + SESSION_FIXTURE + WORKER_DONE_HOOK)
    pytester.makepyfile(
        """
import os
from pathlib import Path
from conftest import talk, wait_for

ROOT = Path(__file__).parent

def test_talks(server, xprocess):
    # Every worker uses the server before any finishes (each is sent two tests at first).
    (ROOT / f"holding-{os.environ['PYTEST_XDIST_WORKER']}").write_text("")
    wait_for(lambda: len(list(ROOT.glob("holding-*"))) == 4,
             timeout=60, what="all four workers to use it")
    for _ in range(5):
        talk(xprocess)

test_a, test_b, test_c, test_d, test_e, test_f, test_g = (test_talks,) * 7
test_h, test_i, test_j, test_k, test_l, test_m, test_n, test_o = (test_talks,) * 8

def test_z_last(server, xprocess):
    # Last of the run: it runs while the other workers end their sessions.
    me = os.environ["PYTEST_XDIST_WORKER"]
    wait_for(lambda: [p for p in ROOT.glob("done-*") if p.name != f"done-{me}"],
             timeout=60, what="another worker to end its session")
    talk(xprocess)
"""
    )
    result = pytester.runpytest_subprocess("-n", "4", "-p", "no:randomly")
    result.assert_outcomes(passed=17)
    assert count_lines(pytester.path / "starts") == 1
    nothing_left(pytester)


def test_terminate_in_a_function_fixture_teardown_keeps_it_for_the_other_workers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SERVER + FUNCTION_FIXTURE)
    pytester.makepyfile(
        """
from pathlib import Path
from xprocess import XProcessInfo
from conftest import talk, wait_for

ROOT = Path(__file__).parent
RECORDS = ROOT / ".pytest_cache" / "d" / ".xprocess"

def test_0_lingers(server, xprocess):
    # Holds the server while the other workers' teardowns let go of it.
    (ROOT / "holding").write_text("")
    wait_for(lambda: XProcessInfo(RECORDS, "server").record.released_in,
             timeout=60, what="another worker's teardown to release the server")
    talk(xprocess)

def test_talks(server, xprocess):
    wait_for(lambda: (ROOT / "holding").exists(),
             timeout=60, what="the lingering test to hold the server")
    talk(xprocess)

test_a, test_b, test_c, test_d, test_e, test_f, test_g = (test_talks,) * 7
test_h, test_i, test_j, test_k = (test_talks,) * 4
"""
    )
    result = pytester.runpytest_subprocess("-n", "4", "-p", "no:randomly")
    result.assert_outcomes(passed=13)
    nothing_left(pytester)


def test_a_worker_killed_while_holding_the_server_does_not_keep_it_running(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SERVER + SESSION_FIXTURE)
    pytester.makepyfile(
        """
import os, signal
from pathlib import Path
from conftest import talk

ROOT = Path(__file__).parent

def test_talks(server, xprocess):
    talk(xprocess)

test_a, test_b, test_c, test_d, test_e, test_f = (test_talks,) * 6

def test_dies(server, xprocess):
    talk(xprocess)
    if not (ROOT / "killed").exists():
        (ROOT / "killed").write_text("")
        os.kill(os.getpid(), signal.SIGKILL)   # the worker dies holding the server
"""
    )
    result = pytester.runpytest_subprocess("-n", "3", "-p", "no:randomly")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed*"])
    nothing_left(pytester)


def test_a_test_body_that_terminates_on_purpose_stops_it_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        SERVER
        + """
@pytest.fixture(scope="session")
def server(xprocess):
    xprocess.ensure("server", Server)
"""
    )
    pytester.makepyfile(
        """
def test_stops_it(server, xprocess):
    info = xprocess.getinfo("server")
    assert info.isrunning()
    assert info.terminate() == 1
    assert not xprocess.getinfo("server").isrunning()
"""
    )
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=1)
    nothing_left(pytester)


def test_terminate_in_a_teardown_without_xdist_stops_it_at_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        SERVER
        + FUNCTION_FIXTURE
        + """
@pytest.fixture
def check_stopped(xprocess):
    yield
    assert not xprocess.getinfo("server").isrunning()
"""
    )
    pytester.makepyfile(
        """
from conftest import talk

def test_one(check_stopped, server, xprocess):
    talk(xprocess)

def test_two(check_stopped, server, xprocess):
    talk(xprocess)
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
    assert count_lines(pytester.path / "starts") == 2  # stopped after each test, as before
    nothing_left(pytester)


def test_a_missing_executable_can_be_skipped_with_errno_enoent(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        HEADER
        + """
import errno

class Memcached(ProcessStarter):
    pattern = "server listening"
    args = ["memcached-that-is-not-installed", "-p", "11299"]

@pytest.fixture(scope="session")
def memcached(xprocess):
    try:
        xprocess.ensure("memcached", Memcached)
    except IOError as e:
        if e.errno == errno.ENOENT:
            pytest.skip(f"memcached not installed: {e.filename}")
        raise
"""
    )
    pytester.makepyfile("def test_cache(memcached):\n    pass\n")
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*memcached not installed: memcached-that-is-not-installed*"])


def test_an_empty_pattern_is_ready_at_the_first_line(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        HEADER
        + """
class Quiet(ProcessStarter):
    pattern = ""
    args = child("--before", 1, "--delay", 30, "--ready", "never seen before the test")

@pytest.fixture
def quiet(xprocess):
    xprocess.ensure("quiet", Quiet)
    yield xprocess.getinfo("quiet")
    xprocess.getinfo("quiet").terminate()
"""
    )
    pytester.makepyfile(
        """
from pathlib import Path

def test_ready_after_one_line(quiet):
    assert quiet.isrunning()
    assert Path(quiet.logpath).read_text().strip() == "noise line 0"
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_a_retry_loop_around_ensure_starts_again(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        HEADER
        + """
ROOT = Path(__file__).parent

class Flaky(ProcessStarter):
    pattern = "ready"
    args = child("--fail-once", ROOT / "failed-once", "--count-file", ROOT / "starts")

@pytest.fixture(scope="session")
def flaky(xprocess):
    for attempt in range(3):
        try:
            xprocess.ensure("flaky", Flaky)
            break
        except (TimeoutError, RuntimeError):
            if attempt == 2:
                raise
    yield xprocess.getinfo("flaky")
    xprocess.getinfo("flaky").terminate()
"""
    )
    pytester.makepyfile("def test_up(flaky):\n    assert flaky.isrunning()\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert count_lines(pytester.path / "starts") == 2


def test_a_failure_is_replayed_once_to_each_other_worker_then_retried(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
ROOT = Path(__file__).parent

class Broken(ProcessStarter):
    pattern = "ready"
    args = child("--ready", "cannot bind", "--exit-code", 3, "--count-file", ROOT / "starts")

@pytest.fixture
def broken(xprocess):
    xprocess.ensure("broken", Broken)
"""
    )
    pytester.makepyfile(
        """
import os
from pathlib import Path

def test_first(broken):
    pass

def test_second(broken):
    pass
"""
    )
    # Without xdist the caller that failed is the one asking again: each test tries anew.
    pytester.runpytest_subprocess().assert_outcomes(errors=2)
    assert count_lines(pytester.path / "starts") == 2


def test_pid_is_assignable_and_another_pid_is_not_the_process(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SERVER + FUNCTION_FIXTURE)
    pytester.makepyfile(
        """
import os

def test_pid(server, xprocess):
    info = xprocess.getinfo("server")
    real = info.pid
    info.pid = os.getpid()
    assert info.pid == os.getpid()
    assert not info.isrunning()
    info.pid = None
    assert info.pid is None and info.terminate() == 0
    assert xprocess.getinfo("server").pid == real
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


def test_terminate_with_a_negative_timeout_returns_minus_one(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SERVER + FUNCTION_FIXTURE)
    pytester.makepyfile(
        """
def test_negative(server, xprocess):
    info = xprocess.getinfo("server")
    assert info.terminate(timeout=-1) == -1
    assert info.isrunning()
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


def test_an_env_value_that_is_not_a_string_is_refused_before_starting(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        starter_conftest(
            """
class Server(ProcessStarter):
    pattern = "ready"
    env = {"PATH": os.environ["PATH"], "SERVER_MODE": None}
    args = child("--count-file", ROOT / "starts")
"""
        )
    )
    pytester.makepyfile("def test_x(server):\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TypeError*'SERVER_MODE' is None*"])
    assert count_lines(pytester.path / "starts") == 0


def test_a_kept_process_is_restarted_when_its_starter_changes(pytester: pytest.Pytester) -> None:
    conftest = starter_conftest(
        """
class Server(ProcessStarter):
    pattern = "ready"
    args = child("--ready", "ready (first edition)", "--count-file", ROOT / "starts")
""",
        SERVER_PID,
    )
    pytester.makeconftest(conftest)
    pytester.makepyfile("def test_x(server):\n    pass\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert count_lines(pytester.path / "starts") == 1  # unchanged: kept and reused
    pytester.makeconftest(conftest.replace("first edition", "second edition"))
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*xprocess: restarted 'server' *its starter has changed*"])
    assert count_lines(pytester.path / "starts") == 2
    [info] = live_records(pytester.path)
    assert "second edition" in " ".join(info.record.argv if info.record else [])
    assert info.terminate() == 1


def test_a_failure_of_a_partial_starter_is_shared_by_the_workers(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
import functools

ROOT = Path(__file__).parent

class Broken(ProcessStarter):
    pattern = "ready"
    def __init__(self, control_dir, xprocess, code=3):
        super().__init__(control_dir, xprocess)
        self.code = code
    def args(self):
        return child("--ready", "cannot bind", "--exit-code", self.code, "--delay", 0.3,
                     "--count-file", ROOT / "starts")

@pytest.fixture(scope="session")
def broken(xprocess):
    xprocess.ensure("broken", functools.partial(Broken, code=4))
"""
    )
    pytester.makepyfile(
        "import pytest\n@pytest.mark.parametrize('i', range(9))\ndef test_x(broken, i):\n    pass\n"
    )
    result = pytester.runpytest_subprocess("-n", "3")
    result.assert_outcomes(errors=9)
    result.stdout.fnmatch_lines(["*'broken' exited with code 4 before it was ready*"])
    assert count_lines(pytester.path / "starts") == 1


def test_xshow_says_which_workers_hold_a_process(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SERVER + SESSION_FIXTURE)
    pytester.makepyfile(
        """
import subprocess, sys

def test_show(server, xprocess):
    out = subprocess.run([sys.executable, "-m", "xprocess", "show"],
                         capture_output=True, text=True, check=True).stdout
    header, line = out.splitlines()[:2]
    held_by = line[header.index("HELD BY"):].split()[0]
    assert held_by.startswith("gw"), out
"""
    )
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=1)
    nothing_left(pytester)


def test_a_finalizer_run_while_switching_params_counts_as_a_teardown(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
import pytest
from pathlib import Path

@pytest.fixture(scope="session", params=["first", "second"])
def server(request, xprocess):
    yield request.param
    with open(Path(__file__).parent / "seen", "a") as f:
        f.write(f"{request.param} {xprocess.in_teardown()}\\n")

@pytest.fixture
def body_sees(xprocess):
    return xprocess.in_teardown()
"""
    )
    pytester.makepyfile("def test_x(server, body_sees):\n    assert body_sees is False\n")
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=2)
    # "first" is finalized while "second" is set up; "second" in the last test's teardown.
    assert (pytester.path / "seen").read_text().split("\n")[:2] == ["first True", "second True"]


def test_a_misspelt_starter_attribute_fails_the_run_before_anything_starts(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        starter_conftest(
            """
class Server(ProcessStarter):
    pattern = "ready"
    timout = 5
    args = child("--count-file", ROOT / "starts")
"""
        )
    )
    pytester.makepyfile("def test_x(server):\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown attribute 'timout'*did you mean 'timeout'?*"])
    assert count_lines(pytester.path / "starts") == 0


def test_a_starter_env_built_from_os_environ_does_not_restart_a_kept_process(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        starter_conftest(
            """
class Server(ProcessStarter):
    pattern = "ready"
    env = dict(os.environ, SERVER_MODE="test")
    args = child("--count-file", ROOT / "starts")
""",
            SESSION_SERVER,
        )
    )
    pytester.makepyfile(
        "import pytest\n@pytest.mark.parametrize('i', range(4))\ndef test_x(server, i):\n    pass\n"
    )
    for _ in range(2):  # xdist puts this run's and this worker's ids into os.environ
        result = pytester.runpytest_subprocess("-n", "2")
        result.assert_outcomes(passed=4)
        result.stdout.no_fnmatch_line("*restarted 'server'*")
    assert count_lines(pytester.path / "starts") == 1
    [info] = live_records(pytester.path)
    assert info.terminate() == 1


def test_a_server_that_crashed_leaving_a_child_is_started_again(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        starter_conftest(
            """
class Server(ProcessStarter):
    pattern = "ready"
    args = child("--children", 1, "--count-file", ROOT / "starts")
""",
            SERVER_PID,
        )
    )
    pytester.makepyfile("def test_x(server):\n    pass\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    [first] = live_records(pytester.path)
    server = first.pid
    assert server is not None
    kids = psutil.Process(server).children()
    os.kill(server, signal.SIGKILL)  # its child lives on, still carrying the start's token
    wait_for(lambda: not running(server), what="the server to die")
    assert any(running(kid.pid) for kid in kids)
    assert not XProcessInfo(first.store.root, "server").isrunning()
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert count_lines(pytester.path / "starts") == 2
    assert not any(running(kid.pid) for kid in kids), "what the crashed server left is stopped"
    [second] = live_records(pytester.path)
    assert second.pid != server and second.terminate() == 1
