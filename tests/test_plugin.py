"""The pytest side: --xshow, --xkill, python -m xprocess, log sections, interruption, old forms."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import HEADER, wait_for

STARTERS = (
    HEADER
    + """
class Alpha(ProcessStarter):
    pattern = "ready"
    args = child("--children", 2)

class Beta(ProcessStarter):
    pattern = "ready"
    args = child()
"""
)


def start_two(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(STARTERS)
    pytester.makepyfile(
        test_start="""
def test_start(xprocess):
    from conftest import Alpha, Beta
    xprocess.ensure("alpha", Alpha)
    xprocess.ensure("beta", Beta)
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def pid_of(pytester: pytest.Pytester, name: str) -> int:
    from xprocess.manager import XProcessInfo

    pid = XProcessInfo(pytester.path / ".pytest_cache" / "d" / ".xprocess", name).pid
    assert pid is not None
    return pid


def test_xshow_lists_each_process_without_running_tests(pytester: pytest.Pytester) -> None:
    start_two(pytester)
    pytester.makepyfile(test_broken="this is not python")
    alpha, beta = pid_of(pytester, "alpha"), pid_of(pytester, "beta")
    result = pytester.runpytest_subprocess("--xshow")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "NAME *PID *STATUS *UPTIME *HELD BY *DATA *LOG",
            f"alpha *{alpha} *LIVE *:*:* *- *- *.pytest_cache/d/.xprocess/alpha/xprocess.log",
            f"beta *{beta} *LIVE *:*:* *- *- *.pytest_cache/d/.xprocess/beta/xprocess.log",
        ]
    )
    result.stdout.no_fnmatch_line("*collected*")
    assert pytester.runpytest_subprocess("--xkill").ret == 0


def test_xkill_terminates_every_tree_and_reports_each(pytester: pytest.Pytester) -> None:
    start_two(pytester)
    alpha, beta = pid_of(pytester, "alpha"), pid_of(pytester, "beta")
    result = pytester.runpytest_subprocess("--xkill")
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"{alpha} alpha TERMINATED", f"{beta} beta TERMINATED"])
    # What is gone is forgotten: no DEAD records left behind, the logs kept.
    result = pytester.runpytest_subprocess("--xshow")
    result.stdout.fnmatch_lines(["nothing recorded under *"])
    root = pytester.path / ".pytest_cache" / "d" / ".xprocess"
    assert (root / "alpha" / "xprocess.log").read_text().strip()


def test_xshow_with_nothing_recorded_says_where_it_looked(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--xshow")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [f"nothing recorded under .pytest_cache/d/.xprocess (rootdir {pytester.path})"]
    )


def test_xshow_aligns_its_columns_under_the_header(pytester: pytest.Pytester) -> None:
    start_two(pytester)
    lines = pytester.runpytest_subprocess("--xshow").outlines
    header = next(i for i, line in enumerate(lines) if line.startswith("NAME"))
    rows = lines[header : header + 3]
    for column in ("PID", "STATUS", "UPTIME", "HELD BY", "DATA", "LOG"):
        start = rows[0].index(column)
        for line in rows[1:]:
            assert line[start - 2 : start] == "  " and line[start] != " ", (column, rows)
    assert pytester.runpytest_subprocess("--xkill").ret == 0


def test_xshow_shows_recorded_data_and_the_runs_that_hold_a_process(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        HEADER
        + """
class Held(ProcessStarter):
    pattern = "ready"
    terminate_at_end = True
    def args(self):
        self.data["port"] = 40123
        return child()
"""
    )
    pytester.makepyfile(
        test_show="""
import subprocess, sys

def test_show_while_held(xprocess):
    from conftest import Held
    xprocess.ensure("held", Held)
    shown = subprocess.run([sys.executable, "-m", "pytest", "--xshow"], capture_output=True,
                           text=True, check=True).stdout
    print(shown)
    assert f"run {xprocess.run_id[:8]}" in shown, shown
    assert "port=40123" in shown, shown
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--xshow")
    result.stdout.fnmatch_lines(["held *DEAD *- *- *port=40123 *.pytest_cache/*"])


def test_xshow_says_failed_for_a_start_that_failed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        HEADER
        + """
class Broken(ProcessStarter):
    pattern = "never"
    args = child("--exit-code", 3)
"""
    )
    pytester.makepyfile(
        test_fail="def test_fail(xprocess):\n"
        "    from conftest import Broken\n"
        "    xprocess.ensure('broken', Broken)\n"
    )
    pytester.runpytest_subprocess().assert_outcomes(failed=1)
    result = pytester.runpytest_subprocess("--xshow")
    result.stdout.fnmatch_lines(["broken *FAILED *- *"])


PREPARING = (
    HEADER
    + """
from projects import wait_for

ROOT = Path(__file__).parent

class Preparing(ProcessStarter):
    # Like initdb before postgres: work in args(), before there is a process to record.
    pattern = "ready"
    terminate_at_end = True
    def args(self):
        (ROOT / "preparing").write_text("")
        wait_for(lambda: (ROOT / "go").exists(), timeout=120, what="the go file")
        return child()
"""
)


@pytest.mark.parametrize("earlier", [False, True], ids=["first-start", "after-a-dead-one"])
def test_xshow_says_starting_while_a_start_prepares_in_args(
    pytester: pytest.Pytester, earlier: bool
) -> None:
    pytester.makeconftest(PREPARING)
    pytester.makepyfile(
        "from conftest import Preparing\n"
        "def test_it(xprocess):\n    xprocess.ensure('server', Preparing)\n"
    )
    if earlier:
        (pytester.path / "go").write_text("")
        pytester.runpytest_subprocess().assert_outcomes(passed=1)
        pytester.runpytest_subprocess("--xshow").stdout.fnmatch_lines(["server *DEAD *"])
        (pytester.path / "go").unlink()
        (pytester.path / "preparing").unlink()
    run = pytester.popen([sys.executable, "-m", "pytest"], stdin=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: (pytester.path / "preparing").exists() or run.poll() is not None,
            timeout=120,
        )
        result = pytester.runpytest_subprocess("--xshow")
    finally:
        (pytester.path / "go").write_text("")
        out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out.decode()
    result.stdout.fnmatch_lines(["server *STARTING *"])
    pytester.runpytest_subprocess("--xshow").stdout.fnmatch_lines(["server *DEAD *"])


def run_module(pytester: pytest.Pytester, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xprocess", *args],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def statuses(table: str) -> dict[str, str]:
    """name -> STATUS, from the table --xshow prints."""
    return {line.split()[0]: line.split()[2] for line in table.splitlines()[1:] if line.strip()}


def test_python_m_xprocess_shows_and_kills_by_name(pytester: pytest.Pytester) -> None:
    start_two(pytester)
    alpha, beta = pid_of(pytester, "alpha"), pid_of(pytester, "beta")
    shown = run_module(pytester, "show")
    assert shown.returncode == 0, shown.stderr
    assert statuses(shown.stdout) == {"alpha": "LIVE", "beta": "LIVE"}
    killed = run_module(pytester, "kill", "alpha")
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.splitlines() == [f"{alpha} alpha TERMINATED"]
    shown = run_module(pytester, "--rootdir", str(pytester.path), "show")
    assert statuses(shown.stdout) == {"beta": "LIVE"}
    unknown = run_module(pytester, "kill", "gamma")
    assert unknown.returncode == 1
    assert "gamma NO RECORD" in unknown.stdout
    everything = run_module(pytester, "kill")
    assert everything.returncode == 0
    assert f"{beta} beta TERMINATED" in everything.stdout


def test_python_m_xprocess_without_a_command_shows_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xprocess"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "show" in result.stderr and "kill" in result.stderr


def test_a_failing_test_report_has_a_log_section_per_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
import socket
from xprocess import free_port

class Starter(ProcessStarter):
    pattern = "ready"
    def args(self):
        self.data["port"] = free_port()
        return child("--ready", "server is ready", "--listen", self.data["port"])

def test_passes(xprocess):
    xprocess.ensure("srv", Starter)

def test_fails(xprocess):
    xprocess.ensure("srv", Starter)
    with socket.create_connection(("127.0.0.1", xprocess.getinfo("srv").port)) as conn:
        assert conn.recv(100) == b"hello\\n"
    assert False, "boom"

def test_cleanup(xprocess):
    xprocess.getinfo("srv").terminate()
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*- srv log -*", "served a connection from port *"])
    # Only what the process wrote during the failing test: it was ready before that test.
    section = result.stdout.str().split("srv log")[1]
    assert "server is ready" not in section.split("short test summary")[0]


def test_the_log_section_shows_output_written_during_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "ready"
    args = child("--ready", "ready and waiting")

def test_fails(xprocess):
    xprocess.ensure("srv", Starter)
    xprocess.getinfo("srv").terminate()
    assert False
"""
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- srv log -*", "ready and waiting"])


@pytest.mark.parametrize(("flag", "survives"), [(True, False), (False, True)])
def test_terminate_on_interrupt(pytester: pytest.Pytester, flag: bool, survives: bool) -> None:
    pytester.makepyfile(
        HEADER
        + f"""
class Starter(ProcessStarter):
    pattern = "ready"
    args = child()
    terminate_on_interrupt = {flag}

def test_interrupted(xprocess):
    xprocess.ensure("srv", Starter)
    raise KeyboardInterrupt
"""
    )
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    from xprocess.manager import XProcessInfo

    info = XProcessInfo(pytester.path / ".pytest_cache" / "d" / ".xprocess", "srv")
    assert info.pid is not None
    assert info.isrunning() is survives
    info.terminate()


def test_the_legacy_preparefunc_form_works(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        HEADER
        + """
def test_two_items(xprocess):
    pid, log = xprocess.ensure("two", lambda cwd: ("ready", child()))
    assert xprocess.getinfo("two").isrunning()
    xprocess.getinfo("two").terminate()

def test_three_items_with_env(xprocess):
    def prepare(cwd):
        assert Path(cwd).name == "three"
        env = dict(os.environ, GREETING="hello-from-env")
        return ("^hello-from-env$", [sys.executable, "-c",
                "import os, time; print(os.environ['GREETING'], flush=True); time.sleep(60)"], env)
    xprocess.ensure("three", prepare)
    xprocess.getinfo("three").terminate()

def test_a_callable_instead_of_a_pattern(xprocess):
    def ready(log):
        return "ready" in log.read()
    xprocess.ensure("call", lambda cwd: (ready, child()))
    xprocess.getinfo("call").terminate()

def test_a_bad_return_value_is_explained(xprocess):
    with pytest.raises(ValueError, match="must return"):
        xprocess.ensure("bad", lambda cwd: "ready")
"""
    )
    pytester.runpytest().assert_outcomes(passed=4)


def test_without_the_cache_plugin_records_go_to_rootdir_xprocess(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "ready"
    args = child()

def test_start(xprocess):
    xprocess.ensure("srv", Starter)
"""
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert (pytester.path / ".xprocess" / "srv" / "record.json").exists()
    assert not (pytester.path / ".pytest_cache").exists()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--xshow")
    result.stdout.fnmatch_lines(["srv * LIVE *"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--xkill")
    result.stdout.fnmatch_lines(["* srv TERMINATED"])


def test_an_unwritable_records_dir_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(xprocess): pass")
    (pytester.path / "blocker").write_text("a file, not a directory")
    result = pytester.runpytest_subprocess("-o", "cache_dir=blocker/cache")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*UsageError: xprocess cannot create its records directory*"])
    assert "AttributeError" not in result.stdout.str() + result.stderr.str()


def test_a_run_that_does_not_use_xprocess_writes_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (pytester.path / ".xprocess").exists()


def test_python_m_xprocess_ignores_addopts_that_need_a_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "def pytest_addoption(parser):\n    parser.addoption('--stage', default='dev')\n"
    )
    pytester.makeini("[pytest]\naddopts = --stage=ci\n")
    result = run_module(pytester, "show")
    assert result.returncode == 0, result.stderr
    assert "nothing recorded under" in result.stdout


def test_getinfo_creates_the_control_dir_for_files_a_fixture_puts_there(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        HEADER
        + """
class Starter(ProcessStarter):
    pattern = "ready"
    args = [sys.executable, "-u", "-c",
            "import time; print(open('settings.conf').read(), flush=True); time.sleep(60)"]

def test_config_file(xprocess):
    (xprocess.getinfo("srv").controldir / "settings.conf").write_text("ready")
    xprocess.ensure("srv", Starter)
    xprocess.getinfo("srv").terminate()
"""
    )
    pytester.runpytest().assert_outcomes(passed=1)
