"""Shapes found in public projects' conftests written for pytest-xprocess 1.0.2, run unchanged.

Each test writes its conftest the way those projects do (the imports, what they do with the log
``ensure`` returns, how they retry), under ``-n 4`` where xdist changes what happens.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support import HEADER, count_lines, live_records, working_in
from xprocess import free_port

# A server that says which port it took, as many public servers do; conftests find the port
# again by searching the log ``ensure`` returned.
PORT_SERVER = (
    HEADER
    + """
import re
from xprocess import free_port

ROOT = Path(__file__).parent

class Server(ProcessStarter):
    pattern = r"serving on port \\d+"
    def args(self):
        port = free_port()
        return child("--listen", port, "--ready", f"serving on port {port}",
                     "--count-file", ROOT / "starts")
"""
)

TALK = """
import socket

def greeted(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(10) == b"hello\\n"
"""


def nothing_left(pytester: pytest.Pytester) -> None:
    assert live_records(pytester.path) == []


def test_the_pytest_xprocess_module_paths_import_the_real_names(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        PORT_SERVER
        + """
from xprocess.xprocess import ProcessStarter as OldStarter, XProcess, XProcessInfo
from xprocess.pytest_xprocess import getrootdir

@pytest.fixture(scope="session")
def server(xprocess: XProcess) -> XProcessInfo:
    xprocess.ensure("server", Server)
    yield xprocess.getinfo("server")
    xprocess.getinfo("server").terminate()
"""
    )
    pytester.makepyfile(
        """
import xprocess as package
from conftest import OldStarter, XProcess, XProcessInfo, getrootdir

def test_same_names(server, xprocess, request):
    assert OldStarter is package.ProcessStarter
    assert XProcess is package.XProcess and isinstance(xprocess, XProcess)
    assert isinstance(server, XProcessInfo) and server.isrunning()
    assert getrootdir(request.config) == xprocess.rootdir
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


@pytest.mark.parametrize("autoload", [True, False], ids=["autoload", "no-autoload"])
@pytest.mark.parametrize("how", ["pytest_plugins", "-p"])
def test_naming_the_old_plugin_module_loads_the_plugin_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str, autoload: bool
) -> None:
    if not autoload:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins = 'pytest_plugins = ["xprocess.pytest_xprocess"]\n' if how == "pytest_plugins" else ""
    pytester.makeconftest(
        plugins
        + PORT_SERVER
        + """
@pytest.fixture
def server(xprocess):
    xprocess.ensure("server", Server)
    yield
    xprocess.getinfo("server").terminate()
"""
    )
    pytester.makepyfile(
        "def test_up(server, xprocess):\n    assert xprocess.getinfo('server').pid\n"
    )
    args = ["-p", "xprocess.pytest_xprocess"] if how == "-p" else []
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess(*args, "--xshow")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    nothing_left(pytester)


def test_the_log_ensure_returns_is_read_the_py_path_way_to_find_the_port(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        PORT_SERVER
        + TALK
        + """
@pytest.fixture(scope="session")
def port(xprocess):
    _, logfile = xprocess.ensure("server", Server)
    port = int(re.search(r"serving on port (\\d+)", logfile.read()).group(1))
    yield port
    xprocess.getinfo("server").terminate()
"""
    )
    pytester.makepyfile(
        "import pytest\nfrom conftest import greeted\n"
        "@pytest.mark.parametrize('i', range(8))\n"
        "def test_talks(port, i):\n    assert greeted(port)\n"
    )
    # The log keeps the first run's port; the second run's server has another one.
    for _ in range(2):
        pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=8)
    assert count_lines(pytester.path / "starts") >= 2
    nothing_left(pytester)


def test_info_paths_answer_py_path_and_pathlib_calls(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        PORT_SERVER
        + """
@pytest.fixture
def info(xprocess):
    pid, logfile = xprocess.ensure("server", Server)
    yield pid, logfile, xprocess.getinfo("server")
    xprocess.getinfo("server").terminate()
"""
    )
    pytester.makepyfile(
        """
import os
from pathlib import Path

def test_paths(info):
    pid, logfile, info = info
    assert pid == info.pid
    # py.path.local's calls
    assert logfile.strpath == str(info.logpath)
    assert logfile.check() and logfile.check(file=1) and not logfile.check(dir=1)
    assert "serving on port" in logfile.read()
    assert any("serving" in line for line in info.logpath.readlines())
    assert info.logpath.basename == logfile.basename == info.logpath.name
    assert info.logpath.dirpath() == info.controldir.dirpath(info.controldir.basename)
    config = info.controldir.join("server.conf")
    config.write("port = 1\\n")
    assert config.check(file=1) and config.read() == "port = 1\\n"
    assert info.controldir.join("a", "b").strpath == os.path.join(info.controldir, "a", "b")
    with info.logpath.open() as f:
        assert "serving" in f.read()
    # pathlib's
    assert isinstance(logfile, Path) and isinstance(info.controldir, Path)
    assert "serving on port" in Path(os.fspath(logfile)).read_text()
    assert (info.controldir / "server.conf").read_text() == "port = 1\\n"
    assert info.logpath.parent == info.controldir and info.logpath.exists()
    with open(info.logpath) as f:
        assert f.read() == logfile.read_text()
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


def test_an_old_style_preparefunc_writes_its_config_through_the_control_dir(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
ROOT = Path(__file__).parent

def prepare_server(cwd):
    cwd.join("server.conf").write("greeting = ready on conf\\n")
    assert cwd.join("server.conf").check()
    return "ready on conf", child("--ready", "ready on conf", "--count-file", ROOT / "starts")

@pytest.fixture
def server(xprocess):
    logfile = xprocess.ensure("server", prepare_server)
    yield logfile
    xprocess.getinfo("server").terminate()
"""
    )
    pytester.makepyfile(
        "def test_up(server, xprocess):\n"
        "    pid, log = server\n"
        "    assert 'ready on conf' in log.read()\n"
        "    assert xprocess.getinfo('server').controldir.join('server.conf').check()\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


def test_a_retry_loop_on_timeout_error_survives_a_server_that_dies_at_start_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
import time

ROOT = Path(__file__).parent

class Flaky(ProcessStarter):
    pattern = "ready"
    timeout = 60
    args = child("--fail-once", ROOT / "failed-once", "--count-file", ROOT / "starts")

@pytest.fixture(scope="session")
def flaky(xprocess):
    max_retries = 6
    for attempt in range(max_retries):
        try:
            xprocess.ensure("flaky", Flaky)
            break
        except TimeoutError:
            if attempt == max_retries - 1:
                raise
            time.sleep(0.1)
    yield xprocess.getinfo("flaky")
    xprocess.getinfo("flaky").terminate()
"""
    )
    pytester.makepyfile(
        "import pytest\n@pytest.mark.parametrize('i', range(8))\n"
        "def test_up(flaky, i):\n    assert flaky.isrunning()\n"
    )
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=8)
    # The failed start and one that worked (or more: a worker done with its tests before the
    # others hold the server releases it, and the next starts it again).
    assert count_lines(pytester.path / "starts") >= 2
    nothing_left(pytester)


LIBRARY = '''
"""A client library with errors named like builtins."""

class ConnectionError(ConnectionError):
    """The library's own, as in requests or redis."""

class SyntaxError(Exception):
    """As psycopg's: not a builtin SyntaxError."""

def connect(where):
    raise ConnectionError(f"cannot reach {where}")
'''


def test_a_library_error_of_a_shared_value_keeps_its_class_in_every_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(mylib=LIBRARY)
    pytester.makeconftest(
        """
import pytest
import mylib

def create_schema():
    raise mylib.SyntaxError("syntax error at or near 'TABLEE'")

@pytest.fixture(scope="session")
def schema(xprocess):
    return xprocess.shared("schema", create_schema)
"""
    )
    pytester.makepyfile(
        """
import pytest
import mylib

@pytest.mark.parametrize("i", range(8))
def test_schema(request, i):
    with pytest.raises(mylib.SyntaxError, match="near 'TABLEE'"):
        request.getfixturevalue("schema")
"""
    )
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=8)


def test_a_library_error_of_a_failed_start_keeps_its_class_in_every_worker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(mylib=LIBRARY)
    pytester.makeconftest(
        HEADER
        + """
import mylib

ROOT = Path(__file__).parent

class Server(ProcessStarter):
    pattern = "ready"
    def args(self):
        with open(ROOT / "tries", "a") as f:
            f.write("try\\n")
        mylib.connect("the license server")
"""
    )
    pytester.makepyfile(
        """
import pytest
import mylib
from conftest import Server

@pytest.mark.parametrize("i", range(8))
def test_start(xprocess, i):
    with pytest.raises(mylib.ConnectionError, match="license server"):
        xprocess.ensure("server", Server)
"""
    )
    pytester.runpytest_subprocess("-n", "4").assert_outcomes(passed=8)


def test_a_shared_value_error_shows_the_compute_not_xprocess(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest

def create_database():
    raise ValueError("no database server")

@pytest.fixture(scope="session")
def database(xprocess):
    return xprocess.shared("database", create_database)
"""
    )
    pytester.makepyfile("def test_db(database):\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*raise ValueError*", "E *ValueError: no database server"])
    shown = result.stdout.str()
    for frame in ("xprocess/manager.py", "xprocess/values.py", "in shared_value"):
        assert frame not in shown, shown


def fake_distribution(where: os.PathLike[str], *, entry_point: bool) -> None:
    """What ``pip install pytest-xprocess`` leaves in site-packages, as far as metadata goes."""
    info = os.path.join(where, "pytest_xprocess-1.0.2.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: pytest-xprocess\nVersion: 1.0.2\n")
    if entry_point:  # pytest-xprocess's own plugin entry point, under the same name as ours
        with open(os.path.join(info, "entry_points.txt"), "w") as f:
            f.write("[pytest11]\nxprocess = xprocess.pytest_xprocess\n")


@pytest.mark.parametrize("entry_point", [False, True], ids=["metadata", "with-entry-point"])
def test_pytest_xprocess_installed_beside_stops_the_run_with_the_fix(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, entry_point: bool
) -> None:
    site = pytester.mkdir("site")
    fake_distribution(site, entry_point=entry_point)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError\n")
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*pytest-xprocess 1.0.2 is installed beside xprocess*",
            "*pip uninstall -y pytest-xprocess && pip install --force-reinstall xprocess*",
        ]
    )
    assert len(result.stderr.lines) < 25
    result.stdout.no_fnmatch_line("*test_never_runs*")


def test_a_generated_app_fixture_with_popen_kwargs_and_a_port_check_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    # The shape of many app test suites: a named Starter with env, popen_kwargs (cwd, text),
    # a socket startup_check, its log printed around the start, terminate() at the end.
    project = pytester.mkdir("project")
    pytester.makeconftest(
        HEADER
        + f"""
import socket

PROJECT_DIR = {str(project)!r}
PORT = {free_port()}  # a fixed port, as in those suites

@pytest.fixture(scope="session")
def start_app(xprocess):
    class Starter(ProcessStarter):
        name = "api_server"
        args = child("--listen", PORT, "--count-file", "starts")
        env = os.environ.copy()
        popen_kwargs = {{"cwd": PROJECT_DIR, "text": True}}
        timeout = 180
        terminate_on_interrupt = True

        def startup_check(self):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                return s.connect_ex(("127.0.0.1", PORT)) == 0

    info = xprocess.getinfo(Starter.name)
    printed = 0

    def capture_logs(tag):
        nonlocal printed
        try:
            with open(info.logpath, "r") as f:
                all_lines = f.readlines()
        except FileNotFoundError:
            all_lines = []
        print(f"[{{tag}}]", "".join(all_lines[printed:]))
        printed = len(all_lines)

    started = False
    try:
        xprocess.ensure(Starter.name, Starter)
        started = True
    finally:
        capture_logs("STARTED" if started else "FAILED")
    yield PORT
    capture_logs("TEARDOWN")
    info.terminate()
"""
    )
    pytester.makepyfile(
        TALK + "import pytest\n@pytest.mark.parametrize('i', range(6))\n"
        "def test_app(start_app, i):\n    assert greeted(start_app)\n"
    )
    pytester.runpytest_subprocess("-n", "2").assert_outcomes(passed=6)
    assert count_lines(project / "starts") >= 1  # it ran in PROJECT_DIR, not its control dir
    nothing_left(pytester)


def test_subclasses_of_xprocess_and_xprocessinfo_written_for_py_path(
    pytester: pytest.Pytester,
) -> None:
    # A plugin's own XProcess and XProcessInfo subclasses (as in pytest-xdocker): a file of its
    # own in the control dir, an attribute set on the log path, a factory taking *args.
    pytester.makeconftest(
        HEADER
        + """
from functools import partial
import psutil
from xprocess import XProcess, XProcessInfo

class ProcessInfo(XProcessInfo):
    def __init__(self, path, name):
        super().__init__(path, name)
        self.stime_path = self.controldir.join("xprocess.STIME")
        self.logpath.open = partial(self.logpath.open, "rb")
        if self.stime_path.check() and self.stime_path.size() > 0:
            self.stime = int(self.stime_path.read())
        else:
            self.stime = None

    def isrunning(self):
        if not super().isrunning() or self.stime is None:
            return False
        return self.stime == int(psutil.Process(self.pid).create_time())

class Process(XProcess):
    def getinfo(self, name):
        return ProcessInfo(self.rootdir, name)

    def ensure(self, name, prepare_func, restart=None):
        pid, log_path = super().ensure(name, prepare_func, restart)
        info = self.getinfo(name)
        info.stime_path.write(str(int(psutil.Process(pid).create_time())))
        return pid, log_path

def prepare_func(controldir, *args, **kwargs):
    class Starter(ProcessStarter):
        pattern = "ready"
        args = child()
        max_read_lines = 100000
    return Starter(controldir, *args, **kwargs)

@pytest.fixture
def server(request, xprocess):
    process = Process(request.config, str(xprocess.rootdir))
    yield process.ensure("server", prepare_func, False)
    process.resources[0].fhandles = []
    process.getinfo("server").terminate()
    assert not process.getinfo("server").isrunning()
"""
    )
    pytester.makepyfile(
        """
def test_up(server, request):
    pid, log = server
    from conftest import Process
    info = Process(request.config, str(log.dirpath().dirpath())).getinfo("server")
    assert info.isrunning() and info.pid == pid
    with info.logpath.open() as f:
        assert b"ready" in f.read()
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


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


def test_a_starter_with_names_and_methods_of_its_own_starts(pytester: pytest.Pytester) -> None:
    # Starters carry their own helpers: a name, a script path, a method that is not a hook.
    pytester.makeconftest(
        HEADER
        + """
import sys

class Starter(ProcessStarter):
    name = "http_server"
    pattern = "Uvicorn running"  # type: ignore
    server_path = Path(sys.modules["projects"].__file__).with_name("child.py")
    args = [sys.executable, "-u", server_path, "--ready", "Uvicorn running"]  # type: ignore

    def check(self, stdout, stderr):
        return self.pattern in stdout + stderr

@pytest.fixture
def http_server(xprocess):
    xprocess.ensure(Starter.name, Starter)
    yield xprocess.getinfo(Starter.name)
    xprocess.getinfo(Starter.name).terminate()
"""
    )
    pytester.makepyfile("def test_up(http_server):\n    assert http_server.isrunning()\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    nothing_left(pytester)


WAIT_FOR_PORT = """
import socket, time

def wait_for_port(port, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"port {port} is not accepting connections")
            time.sleep(0.05)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_an_overridden_wait_tells_readiness_and_a_kept_process_is_used_again(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    # home-assistant-cli: no pattern, ``wait(log_file)`` overridden to wait for the port; the
    # process is never terminated, and the next run uses it when ``isrunning()`` says so.
    port = free_port()
    pytester.makeconftest(
        HEADER
        + WAIT_FOR_PORT
        + TALK
        + f"""
ROOT = Path(__file__).parent
PORT = {port}

@pytest.fixture(scope="session")
def home(xprocess):
    if xprocess.getinfo("home").isrunning():
        return
    class Starter(ProcessStarter):
        args = child("--delay", 0.5, "--listen", PORT, "--count-file", ROOT / "starts")

        def wait(self, log_file):
            wait_for_port(PORT)
            return True

    xprocess.ensure("home", Starter)
"""
    )
    pytester.makepyfile(
        "import pytest\n"
        "from conftest import greeted, PORT\n"
        "@pytest.mark.parametrize('i', range(4))\n"
        "def test_up(home, xprocess, i):\n"
        "    assert greeted(PORT)\n"
        "    assert xprocess.getinfo('home').isrunning()\n"
    )
    for _ in range(2):
        pytester.runpytest_subprocess(*workers).assert_outcomes(passed=4)
    assert count_lines(pytester.path / "starts") == 1
    assert pytester.runpytest_subprocess("--xkill").ret == 0
    nothing_left(pytester)


def test_a_shell_command_with_shell_true_starts_and_its_tree_is_stopped(
    pytester: pytest.Pytester,
) -> None:
    # Araneid: popen_kwargs {"shell": True}, args a one-item tuple holding the whole command
    # line ("cd dir; run ..."), pattern ".*", terminate() in a finally.
    port = free_port()
    pytester.makeconftest(
        HEADER
        + TALK
        + f"""
import shlex

ROOT = Path(__file__).parent
PORT = {port}

@pytest.fixture
def script_runner(xprocess):
    command = " ".join(shlex.quote(a) for a in child("--listen", PORT, "--count-file", "starts"))
    start_script_cmd = f"cd {{shlex.quote(str(ROOT))}}; {{command}}"

    class ScriptStarter(ProcessStarter):
        terminate_on_interrupt = True
        pattern = ".*"
        popen_kwargs = {{"shell": True}}
        env = None
        args = (start_script_cmd,)

    try:
        server_process_pid, _ = xprocess.ensure("script_starter", ScriptStarter)
        yield server_process_pid
    finally:
        xprocess.getinfo("script_starter").terminate()
"""
    )
    pytester.makepyfile(
        "from conftest import greeted, PORT\n"
        "def test_served(script_runner):\n"
        "    assert greeted(PORT)\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    assert count_lines(pytester.path / "starts") == 1  # it ran in the directory it cd'd to
    assert working_in(pytester.path) == []  # the shell's child went with the shell
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


def test_an_env_without_path_and_a_startup_check_that_raises_until_it_answers(
    pytester: pytest.Pytester,
) -> None:
    # zobtube: an autouse function-scoped fixture, no pattern, env of the server's settings
    # only, a startup_check whose request raises until the server listens.
    port = free_port()
    pytester.makeconftest(
        HEADER
        + f"""
import socket

ROOT = Path(__file__).parent
PORT = {port}

@pytest.fixture(autouse=True)
def zobtube_server(xprocess):
    class Starter(ProcessStarter):
        # pattern = "PATTERN"
        args = child("--delay", 0.3, "--listen", PORT, "--show-env", "ZT_SERVER_BIND",
                     "--count-file", ROOT / "starts")
        env = {{"ZT_SERVER_BIND": f"127.0.0.1:{{PORT}}", "ZT_DB_DRIVER": "sqlite"}}

        def startup_check(self):
            with socket.create_connection(("127.0.0.1", PORT), timeout=1) as conn:
                return conn.recv(10) == b"hello\\n"

    logfile = xprocess.ensure("zobtube", Starter)
    yield
    xprocess.getinfo("zobtube").terminate()
"""
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.parametrize("i", range(3))
def test_page(xprocess, i):
    assert "env ZT_SERVER_BIND=127.0.0.1:" in xprocess.getinfo("zobtube").logpath.read()
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=3)
    assert count_lines(pytester.path / "starts") == 3
    nothing_left(pytester)


def test_a_path_in_env_and_a_name_per_test_function(pytester: pytest.Pytester) -> None:
    # lxi-rs: env = {"CARGO_TARGET_DIR": pytestconfig.cache.mkdir("target"), **os.environ},
    # a process named after the test function, started and stopped by each test.
    pytester.makeconftest(
        HEADER
        + """
@pytest.fixture
def example(xprocess, request, pytestconfig):
    class Starter(ProcessStarter):
        pattern = "Running server"
        env = {"RUSTFLAGS": "-Awarnings", "CARGO_TARGET_DIR": pytestconfig.cache.mkdir("target"),
               **os.environ}
        args = child("--ready", "Running server", "--show-env", "CARGO_TARGET_DIR")

    name = request.function.__name__
    xprocess.ensure(f"example-{name}", Starter)
    yield xprocess.getinfo(f"example-{name}")
    xprocess.getinfo(f"example-{name}").terminate()
"""
    )
    pytester.makepyfile(
        """
def test_one(example, pytestconfig):
    assert f"env CARGO_TARGET_DIR={pytestconfig.cache.mkdir('target')}" in example.logpath.read()

def test_two(example):
    assert example.name == "example-test_two" and example.isrunning()
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
    nothing_left(pytester)


def test_a_relative_popen_cwd_and_the_latest_block_of_the_log_at_teardown(
    pytester: pytest.Pytester,
) -> None:
    # bpm-ai-connectors-camunda-8: popen_kwargs {"cwd": "."} (where pytest runs), an int among
    # the args, ``_, log_path = ensure(...)`` and, at teardown, the log after the last
    # "@@__xproc_block_delimiter__@@" (xprocess writes none: the whole log of the start).
    pytester.makeconftest(
        HEADER
        + """
import logging

logger = logging.getLogger("test")

@pytest.fixture
def connector_runtime(xprocess):
    class Starter(ProcessStarter):
        pattern = "Starting connector worker"
        popen_kwargs = {"cwd": "."}
        args = [*child("--ready", "Starting connector worker", "--before"), 3,
                "--count-file", "starts"]

    _, log_path = xprocess.ensure("connector_runtime", Starter)
    yield
    full_logs = Path(log_path).read_text().split("@@__xproc_block_delimiter__@@")
    latest_logs = full_logs[-1] if full_logs else ""
    print("LATEST:", latest_logs.count("Starting connector worker"))
    xprocess.getinfo("connector_runtime").terminate()
"""
    )
    pytester.makepyfile("def test_runtime(connector_runtime):\n    pass\n")
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*LATEST: 1*"])
    assert count_lines(pytester.path / "starts") == 1  # "." is where pytest runs
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


def test_a_class_scoped_redis_with_its_port_in_one_argument_and_an_env_without_path(
    pytester: pytest.Pytester,
) -> None:
    # cachelib: a class-scoped redis_server fixture, "--port N" as one argument, an env that
    # only sets PYTHONUNBUFFERED (redis-server is found on the default search path).
    port = free_port()
    pytester.makeconftest(
        HEADER
        + f"""
@pytest.fixture(scope="class")
def redis_server(xprocess):
    package_name = "redis"

    class Starter(ProcessStarter):
        env = {{"PYTHONUNBUFFERED": "1"}}
        pattern = "[Rr]eady to accept connections"
        args = ["redis-server", "--port {port}", "--bind", "127.0.0.1", "--save", ""]

    xprocess.ensure(package_name, Starter)
    yield {port}
    xprocess.getinfo(package_name).terminate()
"""
    )
    pytester.makepyfile(
        """
import socket

def pong(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"PING\\r\\n")
        return conn.recv(10) == b"+PONG\\r\\n"

class TestRedisCache:
    def test_ping(self, redis_server):
        assert pong(redis_server)

class TestAgain:
    def test_ping(self, redis_server, xprocess):
        assert pong(redis_server) and xprocess.getinfo("redis").isrunning()
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
    nothing_left(pytester)
