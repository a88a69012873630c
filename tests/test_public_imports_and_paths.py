"""Public conftests written for pytest-xprocess 1.0.2: its module paths, its plugin module,
py.path calls on the paths it returns, subclasses of its classes, and the error when it is
installed beside xprocess.

Each test writes its conftest the way those projects do, under ``-n 4`` where xdist changes
what happens.
"""

from __future__ import annotations

import os

import pytest

from tests.support import HEADER, PORT_SERVER, TALK, count_lines, nothing_left, records_roots
from xprocess import free_port


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


def test_files_copied_into_the_control_dir_from_rootdir_before_the_start(
    pytester: pytest.Pytester,
) -> None:
    # trifonova-n/comic-translate: ``xprocess.rootdir / server_name`` is removed and filled
    # with ``shutil.copytree`` before ``ensure`` (the server runs there and reads those files); a
    # name per ``request.param``; ``pattern`` also matching "Traceback"; a ``log_line`` override;
    # a Path for the executable and an env without PATH. The test terminates the server, then
    # reads its log with ``os.read(open(info.logpath).fileno(), 20000)``.
    port = free_port()
    source = pytester.mkdir("gcfunction")
    (source / "config.json").write_text("{}")
    pytester.makeconftest(
        HEADER
        + f"""
import pathlib, shutil

PORT = {port}
SOURCE = pathlib.Path({str(source)!r})

def copy_gcfunction_files(deployment_dir):
    deployment_dir = pathlib.Path(deployment_dir)
    if deployment_dir.exists():
        shutil.rmtree(deployment_dir)
    shutil.copytree(SOURCE, deployment_dir / "comic")

@pytest.fixture
def localserver(xprocess, request):
    function_name = getattr(request, "param", "detect_text")
    server_name = "localserver_" + function_name
    copy_gcfunction_files(xprocess.rootdir / server_name)

    class Starter(ProcessStarter):
        pattern = r"(Listening for {{}})|(Traceback)".format(function_name)
        args = [pathlib.Path(sys.executable), "-u", child()[2], "--wait-file", "comic/config.json",
                "--listen", PORT, "--ready", f"Listening for {{function_name}}"]
        env = {{"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TARGET": function_name}}

        def log_line(self, line):
            line = line.replace("%", "%%")
            self.process.log.debug(line)
            return line

    xprocess.ensure(server_name, Starter)
    return server_name
"""
    )
    pytester.makepyfile(
        f"""
import os, re, socket
import pytest

def served(xprocess, localserver):
    with socket.create_connection(("127.0.0.1", {port}), timeout=5) as conn:
        greeting = conn.recv(10)
    xprocess.getinfo(localserver).terminate()
    logfile = open(xprocess.getinfo(localserver).logpath, "r")
    error_data = os.read(logfile.fileno(), 20000).decode("utf-8")
    logfile.close()
    assert greeting == b"hello\\n"
    assert not re.search("Traceback", error_data)
    return error_data

def test_default(xprocess, localserver):
    assert "Listening for detect_text" in served(xprocess, localserver)

@pytest.mark.parametrize("localserver", ["translate", "detect_text"], indirect=True)
def test_named(xprocess, localserver):
    assert localserver.startswith("localserver_")
    assert "Listening for" in served(xprocess, localserver)
"""
    )
    pytester.runpytest_subprocess("-p", "no:randomly").assert_outcomes(passed=3)
    assert (records_roots(pytester.path)[0] / "localserver_translate" / "comic").is_dir()
    nothing_left(pytester)
