"""Public conftests written for pytest-xprocess 1.0.2: how they start, restart and stop their
processes (from pytest_configure, with a positional restart, a SIGKILL in a finalizer, an
XProcess of their own as a context manager) and what they do at the session's end."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import (
    CHILD,
    HEADER,
    PORT_SERVER,
    TALK,
    count_lines,
    nothing_left,
    working_in,
)
from xprocess import free_port


def test_a_process_started_from_pytest_configure_through_the_plugin_object(
    pytester: pytest.Pytester,
) -> None:
    # Older conftests start their server before the session, from the plugin pytest hands out.
    pytester.makeconftest(
        HEADER
        + """
pytest_plugins = "xprocess"

def pytest_configure(config):
    def preparefunc(cwd):
        return ("Started", child("--ready", "Started"))

    xprocess_plugin = config.pluginmanager.getplugin("xprocess")
    xprocess = xprocess_plugin.XProcess(config)
    xprocess.ensure("jagare", preparefunc)

def pytest_unconfigure(config):
    xprocess_plugin = config.pluginmanager.getplugin("xprocess")
    info = xprocess_plugin.XProcess(config).getinfo("jagare")
    if info.pid:
        info.terminate()
"""
    )
    pytester.makepyfile(
        "def test_up(xprocess):\n    assert xprocess.getinfo('jagare').isrunning()\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


def test_a_positional_restart_starts_a_new_process_and_returns_it(
    pytester: pytest.Pytester,
) -> None:
    # pytest-xprocess's own fixtures: ensure(proc_name, Starter, restart), then a terminator
    # that checks isrunning() first.
    pytester.makeconftest(
        PORT_SERVER
        + """
@pytest.fixture
def xprocess_starter(xprocess):
    def _runner(proc_name, restart=False):
        return xprocess.ensure(proc_name, Server, restart)
    return _runner

@pytest.fixture
def xprocess_terminate(xprocess):
    def _terminator(name, **kwargs):
        proc = xprocess.getinfo(name)
        if proc.isrunning():
            return proc.terminate(**kwargs)
    return _terminator
"""
    )
    pytester.makepyfile(
        """
def test_restart(xprocess_starter, xprocess_terminate):
    first, log = xprocess_starter("s1")
    again, _ = xprocess_starter("s1")
    restarted, log = xprocess_starter("s1", True)
    assert first == again != restarted
    assert log.read().count("serving on port") == 1
    assert xprocess_terminate("s1") == 1
    assert xprocess_terminate("s1") is None
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


def test_a_preparefunc_that_sets_the_environment_and_a_pid_killed_by_the_finalizer(
    pytester: pytest.Pytester,
) -> None:
    # whatsmyrank, vdirsyncer: preparefunc(cwd) sets os.environ and returns a callable (not a
    # pattern) that polls the port; the finalizer SIGKILLs the pid ensure returned.
    port = free_port()
    pytester.makeconftest(
        HEADER
        + f"""
import signal, socket, time

ROOT = Path(__file__).parent
PORT = {port}

def wait():
    for i in range(200):
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False

@pytest.fixture(scope="session")
def test_server(xprocess, request):
    def preparefunc(cwd):
        os.environ["QUEST_DATABASE_URL"] = str(ROOT / "test.shelve")
        return wait, child("--delay", 0.3, "--listen", PORT, "--show-env", "QUEST_DATABASE_URL",
                           "--count-file", ROOT / "starts")

    pid, log = xprocess.ensure("server", preparefunc)

    def fin():
        os.kill(pid, signal.SIGKILL)

    request.addfinalizer(fin)
    return pid, log
"""
    )
    pytester.makepyfile(
        """
import socket
from conftest import PORT, ROOT

def test_served(test_server, xprocess):
    pid, log = test_server
    assert pid == xprocess.getinfo("server").pid
    assert f"env QUEST_DATABASE_URL={ROOT / 'test.shelve'}" in log.read()
    socket.create_connection(("127.0.0.1", PORT), timeout=5).close()
"""
    )
    for _ in range(2):  # the second run starts it again: the killed one is not taken as running
        pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert count_lines(pytester.path / "starts") == 2
    result = pytester.runpytest_subprocess("--xshow")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    nothing_left(pytester)


def test_a_control_dir_removed_by_hand_at_the_end_of_the_session(
    pytester: pytest.Pytester,
) -> None:
    # mupifDB: mongod keeps its data in its cwd ("--dbpath=./", the control dir), function-scoped
    # fixtures depending on each other, and a session fixture that removes
    # .pytest_cache/d/.xprocess/<name> when the session ends.
    pytester.makeconftest(
        HEADER
        + """
import shutil

class Database(ProcessStarter):
    env = {"PYTHONUNBUFFERED": "1"}
    args = child("--ready", "Waiting for connections", "--count-file", "./db.data")
    timeout = 5
    max_read_lines = 100
    pattern = "Waiting for connections"
    terminate_on_interrupt = True

class Api(ProcessStarter):
    args = child("--ready", "Application startup complete.")
    pattern = "Application startup complete."
    terminate_on_interrupt = True

@pytest.fixture
def mongodb(xprocess):
    xprocess.ensure("mongodb", Database)
    yield xprocess.getinfo("mongodb")
    xprocess.getinfo("mongodb").terminate()

@pytest.fixture
def rest_api(xprocess, mongodb):
    xprocess.ensure("restApi", Api)
    yield mongodb
    xprocess.getinfo("restApi").terminate()

@pytest.fixture(autouse=True, scope="session")
def test_suite_cleanup():
    yield
    shutil.rmtree(".pytest_cache/d/.xprocess/mongodb", ignore_errors=True)
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.parametrize("i", range(2))
def test_workflow(rest_api, i):
    # mongod's data, in the control dir it ran in (each start of this run appends its pid)
    assert (rest_api.controldir / "db.data").read_text().split()[-1] == str(rest_api.pid)
"""
    )
    for _ in range(2):
        pytester.runpytest_subprocess().assert_outcomes(passed=2)
        assert not (pytester.path / ".pytest_cache/d/.xprocess/mongodb").exists()
    result = pytester.runpytest_subprocess("--xshow")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    nothing_left(pytester)


def test_the_log_path_kept_at_teardown_is_printed_in_the_terminal_summary(
    pytester: pytest.Pytester,
) -> None:
    # HERA-Team/librarian: an env without PATH (the program given by its full path), a port
    # drawn anew each run under the same name, the log's path kept at teardown and printed by
    # pytest_terminal_summary after the process was stopped.
    pytester.makeconftest(
        HEADER
        + """
import sys
from xprocess import free_port

SERVER_LOG_PATH = None

@pytest.fixture(scope="package")
def server(xprocess):
    port = str(free_port())

    class Starter(ProcessStarter):
        pattern = "Uvicorn running on"
        args = child("--listen", port, "--ready", f"Uvicorn running on port {port}",
                     "--show-env", "PORT", "--show-env", "PATH")
        timeout = 10
        env = {"PORT": port, "VIRTUAL_ENV": sys.prefix}

    xprocess.ensure("server", Starter)
    yield port
    global SERVER_LOG_PATH
    SERVER_LOG_PATH = str(xprocess.getinfo("server").logpath)
    xprocess.getinfo("server").terminate()

def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.section("integration test temporary files")
    terminalreporter.write_line("Server log: " + str(SERVER_LOG_PATH))
"""
    )
    pytester.makepyfile(
        "def test_up(server, xprocess):\n"
        "    assert 'env PATH=<unset>' in xprocess.getinfo('server').logpath.read()\n"
        "    assert f'env PORT={server}' in xprocess.getinfo('server').logpath.read()\n"
    )
    ports = []
    for _ in range(2):
        result = pytester.runpytest_subprocess()
        result.assert_outcomes(passed=1)
        line = next(x for x in result.stdout.lines if x.startswith("Server log: "))
        log = Path(line.removeprefix("Server log: "))
        ports.append(re.findall(r"Uvicorn running on port (\d+)", log.read_text())[-1])
    assert ports[0] != ports[1]  # the second run's server, not the first one's
    nothing_left(pytester)


def test_an_xprocess_of_its_own_as_a_context_manager_stopping_the_process_group(
    pytester: pytest.Pytester,
) -> None:
    # anchorpy: its own XProcess subclass made in a session fixture from getrootdir(config) and
    # used as a context manager, stored on config._xprocess; an XProcessInfo subclass whose
    # terminate() kills the process group of a start_new_session process.
    pytester.makeconftest(
        HEADER
        + """
import signal
import psutil
from xprocess import XProcessInfo, XProcess
from xprocess.pytest_xprocess import getrootdir

ROOT = Path(__file__).parent

class FixedXProcessInfo(XProcessInfo):
    def terminate(self, timeout=60):
        if not self.pid:
            return 0
        try:
            pgid = os.getpgid(self.pid)
        except ProcessLookupError:
            return 0
        try:
            os.killpg(pgid, signal.SIGTERM)
        except OSError as err:
            print(f"Error while terminating process {err}")
            return -1
        return 1

class FixedXProcess(XProcess):
    def getinfo(self, name):
        return FixedXProcessInfo(self.rootdir, name)

@pytest.fixture(scope="session")
def fixed_xprocess(request):
    rootdir = getrootdir(request.config)
    with FixedXProcess(request.config, rootdir) as xproc:
        request.config._xprocess = xproc
        yield xproc

@pytest.fixture(scope="module")
def localnet(fixed_xprocess):
    class Starter(ProcessStarter):
        pattern = "JSON RPC URL"
        terminate_on_interrupt = True
        args = child("--ready", "JSON RPC URL", "--children", 2)
        timeout = 60
        popen_kwargs = {"cwd": ROOT, "start_new_session": True}
        max_read_lines = 1_000

    logfile = fixed_xprocess.ensure("localnet", Starter)
    yield logfile
    info = fixed_xprocess.getinfo("localnet")
    tree = [psutil.Process(info.pid), *psutil.Process(info.pid).children()]
    assert info.terminate() == 1
    psutil.wait_procs(tree, timeout=30)
    assert not info.isrunning()
"""
    )
    pytester.makepyfile(
        "def test_up(localnet, fixed_xprocess):\n"
        "    pid, log = localnet\n"
        "    assert 'JSON RPC URL' in log.read()\n"
        "    assert fixed_xprocess.getinfo('localnet').pid == pid\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert working_in(pytester.path) == []
    nothing_left(pytester)


def test_a_silent_daemon_with_an_empty_pattern_and_an_overridden_wait_and_its_dir_removed(
    pytester: pytest.Pytester,
) -> None:
    # powerline: ``pattern = ""`` beside an overridden ``wait(log_file)`` that alone tells
    # readiness (the daemon writes nothing to its log); a module-scoped autouse fixture; the stop
    # takes ``getinfo(...).controldir``, terminates, and removes that directory.
    short = Path(tempfile.mkdtemp(prefix="pl-"))  # a unix socket's path must be short
    socket_path = short / "ipc"
    pytester.makeconftest(
        HEADER
        + f"""
import shutil, time

ADDRESS = {str(socket_path)!r}

def start_daemon(xprocess, daemon_env):
    class Starter(ProcessStarter):
        env = daemon_env
        pattern = ""
        args = child("--unix", ADDRESS, "--ready", " ", "--count-file",
                     Path(__file__).parent / "starts")

        def wait(self, log_file):
            deadline = time.monotonic() + 60
            while not os.path.exists(ADDRESS) and time.monotonic() < deadline:
                time.sleep(0.01)
            return True

    xprocess.ensure("daemon", Starter)

def stop_daemon(xprocess):
    cleanup_folder = xprocess.getinfo("daemon").controldir
    xprocess.getinfo("daemon").terminate()
    shutil.rmtree(cleanup_folder)
    os.unlink(ADDRESS)

@pytest.fixture(autouse=True, scope="module")
def daemon(xprocess):
    daemon_env = os.environ.copy()
    daemon_env["XDG_CONFIG_DIR"] = str(Path(__file__).parent / "powerline")
    start_daemon(xprocess, daemon_env)
    yield
    stop_daemon(xprocess)
"""
    )
    test = (
        "import socket\n"
        f"def test_talks(xprocess):\n"
        f"    with socket.socket(socket.AF_UNIX) as s:\n"
        f"        s.connect({str(socket_path)!r})\n"
        f"        assert s.recv(10) == b'hello\\n'\n"
        f"    assert xprocess.getinfo('daemon').isrunning()\n"
    )
    pytester.makepyfile(test_one=test, test_two=test)
    try:
        pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=2)
    finally:
        shutil.rmtree(short)
    assert count_lines(pytester.path / "starts") == 2  # one start per module
    assert not (pytester.path / ".pytest_cache" / "d" / ".xprocess" / "daemon").exists()
    nothing_left(pytester)


def test_a_context_manager_server_per_test_class_with_an_env_from_the_class(
    pytester: pytest.Pytester,
) -> None:
    # Akkudoktor-EOS/EOS: a ``@contextmanager`` taking the xprocess fixture, entered by a
    # class-scoped fixture with ``getattr(request.cls, "eos_env", None)`` and by a function-scoped
    # one; the Starter builds its env in the class body (a staticmethod called there), overrides
    # ``wait_callback`` (reading pytest-xprocess's ``self._max_time`` and ``self.process``)
    # beside a polling ``startup_check``; ``Starter.env`` is read after ``pid, logfile =
    # ensure(...)``; each exit terminates the process and removes its temporary directory.
    port = free_port()
    pytester.makeconftest(
        HEADER
        + f"""
import socket, tempfile, time
from contextlib import contextmanager
from datetime import datetime

PORT = {port}
ROOT = Path(__file__).parent

@contextmanager
def server_base(xprocess, extra_env=None):
    eos_tmp_dir = tempfile.TemporaryDirectory(dir=ROOT)
    eos_dir = str(eos_tmp_dir.name)

    class Starter(ProcessStarter):
        env = os.environ.copy()
        env["EOS_DIR"] = eos_dir
        if extra_env:
            env.update(extra_env)

        @staticmethod
        def _ensure_package(env):
            assert env["EOS_DIR"]

        _ensure_package(env)

        args = child("--listen", PORT, "--show-env", "EOS_DIR", "--show-env", "EOS_MODE",
                     "--count-file", ROOT / "starts")
        timeout = 60
        terminate_on_interrupt = True

        def startup_check(self):
            try:
                with socket.create_connection(("127.0.0.1", PORT), timeout=2) as conn:
                    return conn.recv(10) == b"hello\\n"
            except OSError:
                return False

        def wait_callback(self):
            while True:
                time.sleep(1.0)
                if self.startup_check():
                    return True
                if datetime.now() > self._max_time:
                    info = self.process.getinfo("eos")
                    raise TimeoutError(f"not up; log in {{info.logpath}}")

    pid, logfile = xprocess.ensure("eos", Starter)
    print(f"Started EOS ({{pid}}), EOS_DIR: {{Starter.env['EOS_DIR']}}, log: {{logfile}}")
    yield {{"port": PORT, "eos_dir": eos_dir, "pid": pid}}
    xprocess.getinfo("eos").terminate()
    eos_tmp_dir.cleanup()

@pytest.fixture(scope="class")
def server_setup_for_class(request, xprocess):
    extra_env = getattr(request.cls, "eos_env", None)
    with server_base(xprocess, extra_env=extra_env) as result:
        yield result

@pytest.fixture
def server_setup_for_function(xprocess):
    with server_base(xprocess) as result:
        yield result
"""
    )
    pytester.makepyfile(
        """
import os

def logged(xprocess):
    return xprocess.getinfo("eos").logpath.read()  # what the running start wrote

class TestDefault:
    def test_up(self, server_setup_for_class, xprocess):
        assert f"env EOS_DIR={server_setup_for_class['eos_dir']}" in logged(xprocess)
        assert "env EOS_MODE=<unset>" in logged(xprocess)

class TestOtherMode:
    eos_env = {"EOS_MODE": "other"}

    def test_up(self, server_setup_for_class, xprocess):
        assert "env EOS_MODE=other" in logged(xprocess)
        assert xprocess.getinfo("eos").pid == server_setup_for_class["pid"]

    def test_same_server(self, server_setup_for_class, xprocess):
        assert xprocess.getinfo("eos").isrunning()

def test_function(server_setup_for_function, xprocess):
    assert os.path.isdir(server_setup_for_function["eos_dir"])
    assert "env EOS_MODE=<unset>" in logged(xprocess) and "=other" not in logged(xprocess)
"""
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=4)
    assert count_lines(pytester.path / "starts") == 3  # one per class, one for the function
    assert [p.name for p in pytester.path.glob("tmp*")] == []  # each exit removed its directory
    nothing_left(pytester)


@pytest.mark.parametrize("scope", ["function", "session"])
def test_a_port_drawn_per_fixture_in_env_under_xdist_gives_each_worker_its_own_server(
    pytester: pytest.Pytester, scope: str
) -> None:
    # makersacademy's Flask + playwright template (sep-2024-qe-tip-bass and its many forks):
    # ``test_web_address`` draws ``port = str(random.randint(4000, 4999))``, puts it in the
    # Starter's env beside ``**os.environ``, a ``py.path`` in ``args``, and yields
    # ``f"localhost:{port}"`` (function-scoped there, session-scoped in a derived suite).
    # Under xdist each worker draws its own port, so a worker must not be handed another
    # worker's server on the other port: it waits for that one to be released and starts its
    # own (pytest-xprocess handed over the running one).
    pytester.makeconftest(
        HEADER
        + TALK
        + f"""
import py
from xprocess import free_port

ROOT = Path(__file__).parent

@pytest.fixture(scope={scope!r})
def test_web_address(xprocess):
    python_executable = sys.executable
    app_file = py.path.local(__file__).dirpath("app.py")
    port = str(free_port())  # the template draws it with random.randint(4000, 4999)

    class Starter(ProcessStarter):
        env = {{"PORT": port, "APP_ENV": "test", **os.environ}}
        pattern = "Debugger PIN"
        args = [python_executable, "-u", app_file, "--listen", port, "--ready", "Debugger PIN",
                "--count-file", ROOT / "starts"]

    xprocess.ensure("flask_test_server", Starter)
    yield f"localhost:{{port}}"
    xprocess.getinfo("flask_test_server").terminate()

@pytest.fixture
def base_url(test_web_address):
    return f"http://{{test_web_address}}"
"""
    )
    (pytester.path / "app.py").write_text(CHILD.read_text())
    pytester.makepyfile(
        """
import pytest
from conftest import greeted

@pytest.mark.parametrize("i", range(6))
def test_page(base_url, i):
    assert greeted(int(base_url.rsplit(":", 1)[1]))
"""
    )
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=6)
    starts = count_lines(pytester.path / "starts")
    assert starts == 6 if scope == "function" else 1 <= starts <= 2
    nothing_left(pytester)
