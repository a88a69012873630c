"""Public conftests written for pytest-xprocess 1.0.2: the starters they write (popen_kwargs,
env, a shell command, an overridden wait, a startup_check, names and methods of their own)
start and are stopped as they expect."""

from __future__ import annotations

import pytest

from tests.support import HEADER, TALK, count_lines, nothing_left, working_in
from xprocess import free_port


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


def test_popen_kwargs_sending_the_output_to_a_file_of_its_own_with_a_port_check(
    pytester: pytest.Pytester,
) -> None:
    # A Reflex app's verifier: ``popen_kwargs`` with ``"stdout": log_fp`` (a file it opened) and
    # ``"stderr": subprocess.STDOUT``, so the server writes there, not to xprocess's log;
    # readiness from a ``startup_check`` on its port; the tests read that file; the fixture
    # closes it after ``terminate()``.
    port = free_port()
    pytester.makeconftest(
        HEADER
        + TALK
        + f"""
import socket, subprocess

APP_LOG_PATH = str(Path(__file__).parent / "app.log")
PORT = {port}

def _port_open(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0

@pytest.fixture(scope="session")
def app_server(xprocess):
    if os.path.exists(APP_LOG_PATH):
        os.remove(APP_LOG_PATH)
    log_fp = open(APP_LOG_PATH, "w")

    class Starter(ProcessStarter):
        name = "app_server"
        args = child("--delay", 0.3, "--listen", PORT, "--ready", "App running")
        env = os.environ.copy()
        popen_kwargs = {{"text": True, "stdout": log_fp, "stderr": subprocess.STDOUT}}
        timeout = 60
        terminate_on_interrupt = True

        def startup_check(self):
            return _port_open(PORT)

    xprocess.ensure(Starter.name, Starter)
    yield PORT
    info = xprocess.getinfo(Starter.name)
    info.terminate()
    log_fp.close()
"""
    )
    pytester.makepyfile(
        """
from pathlib import Path
from conftest import APP_LOG_PATH, greeted

def test_reachable(app_server):
    assert greeted(app_server)

def test_its_log(app_server):
    assert "App running" in Path(APP_LOG_PATH).read_text()
"""
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=2)
    nothing_left(pytester)


def test_a_cwd_class_attribute_is_ignored_as_pytest_xprocess_ignored_it(
    pytester: pytest.Pytester,
) -> None:
    # Two app suites (a FastAPI backend with a Vite frontend, a React admin): ``cwd = ...`` as
    # a Starter class attribute, next to absolute paths in ``args``; a module-scoped fixture
    # that skips without ``--slow``. pytest-xprocess ran the process in its control dir all the
    # same (``cwd`` is no attribute it reads), and so does xprocess: nothing changes for them.
    elsewhere = pytester.mkdir("frontend")
    pytester.makeconftest(
        HEADER
        + f"""
def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true")

@pytest.fixture(scope="module")
def app_server(xprocess, request):
    if not request.config.getoption("--slow"):
        pytest.skip("need --slow option to run")

    class Starter(ProcessStarter):
        pattern = "Local:"
        env = os.environ.copy()
        env["PORT"] = "3005"
        frontend_dir = {str(elsewhere)!r}
        args = child("--ready", "Local: http://localhost:3005", "--count-file", "starts")
        cwd = frontend_dir
        timeout = 15
        print("starting web server in port 3005")

    xprocess.ensure("app_server_pure", Starter)
    yield xprocess.getinfo("app_server_pure")
    xprocess.getinfo("app_server_pure").terminate()
"""
    )
    pytester.makepyfile(
        "def test_runs_in_its_control_dir(app_server):\n"
        "    assert (app_server.controldir / 'starts').exists()\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(skipped=1)
    pytester.runpytest_subprocess("--slow").assert_outcomes(passed=1)
    assert not (elsewhere / "starts").exists()
    nothing_left(pytester)
