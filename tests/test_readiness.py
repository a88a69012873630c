"""Readiness: pattern, max_read_lines, startup_check, early exit and timeout, with their errors.

These drive the engine directly (an XProcess on a temporary directory) with real child processes.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from tests.support import child_args, wait_for
from xprocess import (
    PatternNotFoundError,
    ProcessExitedError,
    ProcessStarter,
    StartupError,
    StartupTimeoutError,
    XProcess,
)


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


def starter(**attrs: object) -> type[ProcessStarter]:
    return type("Starter", (ProcessStarter,), attrs)


def test_pattern_found_within_max_read_lines_is_ready(xp: XProcess) -> None:
    xp.ensure("srv", starter(pattern="ready", max_read_lines=11, args=child_args("--before", 10)))
    assert xp.getinfo("srv").terminate() == 1


def test_pattern_beyond_max_read_lines_raises_runtime_error_with_log_tail(xp: XProcess) -> None:
    with pytest.raises(PatternNotFoundError) as excinfo:
        xp.ensure(
            "srv", starter(pattern="ready", max_read_lines=5, args=child_args("--before", 10))
        )
    assert isinstance(excinfo.value, RuntimeError)
    message = str(excinfo.value)
    assert "'ready'" in message and "5 non-blank lines" in message
    assert "noise line 4" in message
    assert not xp.getinfo("srv").isrunning()


def test_blank_lines_do_not_count_towards_max_read_lines(xp: XProcess) -> None:
    script = "import time; print('\\n\\n  \\n\\nready', flush=True); time.sleep(60)"
    xp.ensure(
        "srv", starter(pattern="ready", max_read_lines=1, args=[sys.executable, "-c", script])
    )
    assert xp.getinfo("srv").terminate() == 1


def test_a_ready_line_without_newline_is_seen(xp: XProcess) -> None:
    script = "import sys, time; sys.stdout.write('prompt> '); sys.stdout.flush(); time.sleep(60)"
    xp.ensure("srv", starter(pattern="prompt>", args=[sys.executable, "-c", script]))
    assert xp.getinfo("srv").terminate() == 1


def _calls_until(n: int, calls: list[int]) -> Callable[[ProcessStarter], bool]:
    def startup_check(self: ProcessStarter) -> bool:
        calls.append(1)
        return len(calls) >= n

    return startup_check


def test_pattern_and_check_both_must_pass_the_pattern_first(xp: XProcess) -> None:
    calls: list[str] = []

    def startup_check(self: ProcessStarter) -> bool:
        calls.append((self.control_dir / "xprocess.log").read_text())
        return len(calls) >= 3

    args = child_args("--delay", 0.2, "--ready", "listening")
    xp.ensure("srv", starter(pattern="listening", args=args, startup_check=startup_check))
    assert len(calls) == 3
    assert all("listening" in log for log in calls), "the check ran before the pattern was seen"
    assert xp.getinfo("srv").terminate() == 1


def test_a_passing_check_does_not_excuse_a_missing_pattern(xp: XProcess) -> None:
    with pytest.raises(StartupTimeoutError, match="pattern 'never' not seen"):
        xp.ensure(
            "srv",
            starter(
                pattern="never", timeout=0.5, args=child_args(), startup_check=lambda self: True
            ),
        )
    assert not xp.getinfo("srv").isrunning()


def test_check_alone_is_enough(xp: XProcess) -> None:
    calls: list[int] = []
    xp.ensure("srv", starter(args=child_args(), startup_check=_calls_until(2, calls)))
    assert len(calls) == 2
    assert xp.getinfo("srv").terminate() == 1


def test_an_exception_from_the_check_means_not_ready_yet(xp: XProcess) -> None:
    calls: list[int] = []

    def startup_check(self: ProcessStarter) -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not listening yet")
        return True

    xp.ensure("srv", starter(args=child_args(), startup_check=startup_check))
    assert len(calls) == 3
    assert xp.getinfo("srv").terminate() == 1


def test_the_last_check_exception_is_chained_to_the_timeout(xp: XProcess) -> None:
    def startup_check(self: ProcessStarter) -> bool:
        raise ConnectionRefusedError("port 1 refused")

    with pytest.raises(StartupTimeoutError) as excinfo:
        xp.ensure("srv", starter(args=child_args(), timeout=0.3, startup_check=startup_check))
    assert isinstance(excinfo.value, TimeoutError)
    assert isinstance(excinfo.value.__cause__, ConnectionRefusedError)
    assert "port 1 refused" in str(excinfo.value)
    assert not xp.getinfo("srv").isrunning()


def test_early_exit_fails_at_once_with_exit_code_command_and_log_tail(xp: XProcess) -> None:
    args = child_args("--before", 30, "--ready", "fatal: config broken", "--exit-code", 3)
    with pytest.raises(ProcessExitedError) as excinfo:
        xp.ensure("srv", starter(pattern="never printed", timeout=60, args=args))
    message = str(excinfo.value)
    assert isinstance(excinfo.value, RuntimeError)
    assert "'srv' exited with code 3" in message
    assert "child.py" in message and str(xp.getinfo("srv").logpath) in message
    assert "fatal: config broken" in message and "noise line 29" in message
    assert "noise line 5\n" not in message  # only the tail, about 20 lines
    assert xp.getinfo("srv").record is not None
    assert xp.getinfo("srv").record.state == "failed"  # type: ignore[union-attr]


def test_early_exit_is_noticed_while_a_check_is_retried(xp: XProcess) -> None:
    args = child_args("--exit-code", 5)
    with pytest.raises(ProcessExitedError, match="code 5"):
        xp.ensure("srv", starter(args=args, timeout=60, startup_check=lambda self: False))


def test_timeout_raises_timeout_error_with_log_tail(xp: XProcess) -> None:
    with pytest.raises(StartupTimeoutError) as excinfo:
        xp.ensure(
            "srv", starter(pattern="never", timeout=0.3, args=child_args("--ready", "booting"))
        )
    assert "within 0.3 s" in str(excinfo.value) and "booting" in str(excinfo.value)
    assert not xp.getinfo("srv").isrunning()


def test_an_unexpected_exception_from_the_check_propagates_and_stops_the_process(
    xp: XProcess,
) -> None:
    def startup_check(self: ProcessStarter) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        xp.ensure("srv", starter(args=child_args(), startup_check=startup_check))
    assert not xp.getinfo("srv").isrunning()


def test_error_types_subclass_the_builtins_callers_catch() -> None:
    assert issubclass(ProcessExitedError, StartupError)
    assert issubclass(PatternNotFoundError, StartupError)
    assert issubclass(StartupError, RuntimeError)
    assert issubclass(StartupTimeoutError, TimeoutError)
    assert not issubclass(StartupTimeoutError, RuntimeError)


def test_readiness_works_with_more_than_1024_open_files(xp: XProcess) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit of open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        xp.ensure("srv", starter(pattern="ready", args=child_args()))
        xp.ensure("chk", starter(args=child_args(), startup_check=lambda self: True))
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert xp.getinfo("srv").terminate() == 1
    assert xp.getinfo("chk").terminate() == 1


def test_a_check_that_blocks_is_abandoned_at_the_timeout(xp: XProcess) -> None:
    never = threading.Event()

    def startup_check(self: ProcessStarter) -> bool:
        never.wait()  # a recv() on a server that never answers
        return True

    try:
        with pytest.raises(StartupTimeoutError) as excinfo:
            xp.ensure("srv", starter(args=child_args(), timeout=0.5, startup_check=startup_check))
    finally:
        never.set()  # let the abandoned thread end
    message = str(excinfo.value)
    assert "was still running at the deadline and was abandoned" in message
    assert "give every socket or client it uses a timeout" in message
    assert not xp.getinfo("srv").isrunning()


def test_an_exit_is_noticed_while_a_check_blocks(xp: XProcess) -> None:
    never = threading.Event()

    def startup_check(self: ProcessStarter) -> bool:
        never.wait()
        return True

    try:
        with pytest.raises(ProcessExitedError, match="code 4"):
            xp.ensure(
                "srv",
                starter(args=child_args("--exit-code", 4), timeout=60, startup_check=startup_check),
            )
    finally:
        never.set()


@pytest.mark.parametrize(
    "bug",
    [
        KeyError("port"),
        AttributeError("no attribute 'dta'"),
        NameError("socket"),
        TypeError("x"),
        ImportError("No module named 'redis'"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_a_bug_in_the_check_fails_at_once_with_its_own_exception(
    xp: XProcess, bug: Exception
) -> None:
    calls: list[int] = []

    def startup_check(self: ProcessStarter) -> bool:
        calls.append(1)
        raise bug

    with pytest.raises(type(bug)) as excinfo:
        xp.ensure("srv", starter(args=child_args(), timeout=60, startup_check=startup_check))
    assert calls == [1]
    assert excinfo.value is bug
    assert "a bug in the check" in "".join(getattr(bug, "__notes__", []))
    assert excinfo.traceback[-1].name == "startup_check", "the traceback lost the check's frame"
    assert not xp.getinfo("srv").isrunning()


def _library_error(module: str, name: str, base: type[Exception] = Exception) -> type[Exception]:
    """An exception class as a client library defines it, without importing the library."""
    return type(name, (base,), {"__module__": module})


@pytest.mark.parametrize(
    "error",
    [
        _library_error("psycopg", "OperationalError"),
        _library_error("redis.exceptions", "ConnectionError"),
        _library_error("redis.exceptions", "BusyLoadingError"),
        # A subclass of a programming error that says by its name that it is a connection error.
        _library_error("somedb", "ConnectionLostError", base=KeyError),
    ],
    ids=lambda cls: f"{cls.__module__}.{cls.__name__}",
)
def test_a_client_library_connection_error_means_not_ready_yet(
    xp: XProcess, error: type[Exception]
) -> None:
    calls: list[int] = []

    def startup_check(self: ProcessStarter) -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise error("the server is starting up")
        return True

    xp.ensure("srv", starter(args=child_args(), startup_check=startup_check))
    assert len(calls) == 3
    assert xp.getinfo("srv").terminate() == 1


def test_a_failed_assertion_in_the_check_means_not_ready_yet(xp: XProcess) -> None:
    calls: list[int] = []

    def startup_check(self: ProcessStarter) -> bool:
        calls.append(1)
        assert len(calls) >= 2, "not answering yet"
        return True

    xp.ensure("srv", starter(args=child_args(), startup_check=startup_check))
    assert len(calls) == 2
    assert xp.getinfo("srv").terminate() == 1


def test_checks_run_in_one_reused_thread_not_the_caller(xp: XProcess) -> None:
    threads: list[threading.Thread] = []

    def startup_check(self: ProcessStarter) -> bool:
        threads.append(threading.current_thread())
        return True

    xp.ensure("one", starter(args=child_args(), startup_check=startup_check))
    xp.ensure("two", starter(args=child_args(), startup_check=startup_check))
    assert len(threads) == 2
    assert threads[0] is threads[1] and threads[0] is not threading.current_thread()
    assert threads[0].daemon
    assert xp.getinfo("one").terminate() == 1
    assert xp.getinfo("two").terminate() == 1


PRINTS_READY = "import time; print('ready'); time.sleep(60)"


def test_a_python_child_without_minus_u_is_unbuffered(xp: XProcess) -> None:
    xp.ensure("py", starter(pattern="ready", args=[sys.executable, "-c", PRINTS_READY]))
    assert xp.getinfo("py").terminate() == 1


def test_pythonunbuffered_set_by_the_starter_env_is_kept(xp: XProcess) -> None:
    script = (
        "import os, time; print(repr(os.environ['PYTHONUNBUFFERED']), flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": ""}
    xp.ensure("py", starter(pattern="^''$", env=env, args=[sys.executable, "-c", script]))
    assert xp.getinfo("py").terminate() == 1


def test_a_silent_python_child_that_times_out_is_said_to_be_buffered(xp: XProcess) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": ""}
    args = [sys.executable, "-c", PRINTS_READY]
    with pytest.raises(StartupTimeoutError) as excinfo:
        xp.ensure("py", starter(pattern="never", timeout=0.5, env=env, args=args))
    message = str(excinfo.value)
    assert "It is a Python interpreter that wrote nothing" in message
    assert "waiting in its buffer" in message and "-u" in message


def test_a_silent_python_child_with_the_default_environment_is_said_to_buffer_itself(
    xp: XProcess,
) -> None:
    args = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(StartupTimeoutError) as excinfo:
        xp.ensure("py", starter(pattern="never", timeout=0.5, args=args))
    message = str(excinfo.value)
    assert (
        "PYTHONUNBUFFERED is set, so the likely cause is a buffer of the program's own" in message
    )
    assert "sets PYTHONUNBUFFERED to an empty value" not in message


def test_a_silent_child_that_is_not_python_gets_no_buffering_hint(xp: XProcess) -> None:
    with pytest.raises(StartupTimeoutError) as excinfo:
        xp.ensure("sh", starter(pattern="never", timeout=0.3, args=["sleep", "60"]))
    assert "wrote nothing to its log" in str(excinfo.value)
    assert "buffer" not in str(excinfo.value)


def test_a_log_truncated_while_waiting_is_read_again_from_its_start(
    xp: XProcess, tmp_path: Path
) -> None:
    """As logrotate's copytruncate does: the ready line comes after the log was emptied."""
    go = tmp_path / "go"
    args = child_args("--before", 200, "--wait-file", go)
    logpath = xp.getinfo("srv").logpath
    result: list[object] = []

    def start() -> None:
        try:
            result.append(
                xp.ensure(
                    "srv", starter(pattern="^ready$", args=args, timeout=30, max_read_lines=1000)
                )
            )
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    wait_for(lambda: logpath.exists() and "noise line 199" in logpath.read_text(), what="the noise")
    os.truncate(logpath, 0)
    go.touch()
    thread.join(60)
    assert isinstance(result[0], tuple), result
    assert xp.getinfo("srv").terminate() == 1


def test_a_timeout_after_much_output_says_how_much_the_log_holds(xp: XProcess) -> None:
    args = child_args("--blob", 200_000, "--ready", "never", "--wait-file", "/nonexistent")
    with pytest.raises(StartupTimeoutError) as excinfo:
        xp.ensure("srv", starter(pattern="ready", args=args, timeout=1))
    message = str(excinfo.value)
    assert "wrote nothing" not in message
    assert "the log holds 200000 bytes from this start" in message


def test_popen_kwargs_that_redirect_stdout_are_named_in_the_error(xp: XProcess) -> None:
    args = child_args("--exit-code", 1)
    kwargs = {"stdout": subprocess.DEVNULL}
    with pytest.raises(ProcessExitedError) as excinfo:
        xp.ensure("srv", starter(pattern="never", args=args, popen_kwargs=kwargs))
    assert "popen_kwargs redirect stdout away from the log" in str(excinfo.value)


def test_an_early_exit_is_caught_by_the_handlers_pytest_xprocess_users_wrote() -> None:
    # pytest-xprocess reported an early exit as a TimeoutError (at the timeout); retry loops
    # catch that, older ones RuntimeError.
    assert issubclass(ProcessExitedError, TimeoutError)
    assert issubclass(ProcessExitedError, RuntimeError)
    error = ProcessExitedError("'srv' exited with code 3 before it was ready", name="srv")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ProcessExitedError and again.name == "srv" and str(again) == str(error)


def test_an_overridden_wait_is_called_with_this_starts_log_after_the_pattern(
    xp: XProcess,
) -> None:
    # pytest-xprocess's hook: an override may defer to super().wait(log_file).
    seen: list[str] = []

    class Starter(ProcessStarter):
        pattern = "ready"
        args = child_args("--before", 2)

        def wait(self, log_file: IO[str]) -> bool:
            seen.append(log_file.read())
            return super().wait(log_file)

    xp.ensure("srv", Starter)
    assert len(seen) == 1 and "noise line 1" in seen[0] and "ready" in seen[0]
    assert xp.getinfo("srv").terminate() == 1


def test_an_overridden_wait_that_does_not_defer_alone_tells_readiness(xp: XProcess) -> None:
    # pytest-xprocess's wait() was the whole readiness: its pattern (and startup_check) counted
    # only through super().wait(). A silent daemon beside ``pattern = ""`` is ready by wait().
    checked: list[int] = []

    class Starter(ProcessStarter):
        pattern = "a line this process never writes"
        args = child_args("--ready", " ")
        timeout = 60

        def startup_check(self) -> bool:
            checked.append(1)
            return False

        def wait(self, log_file: IO[str]) -> bool:
            return True

    pid, _ = xp.ensure("srv", Starter)
    assert checked == [] and xp.getinfo("srv").pid == pid
    assert xp.getinfo("srv").terminate() == 1


def test_an_overridden_wait_that_returns_false_is_asked_again_until_true(xp: XProcess) -> None:
    calls: list[int] = []

    class Starter(ProcessStarter):
        args = child_args()

        def wait(self, log_file: IO[str]) -> bool:
            calls.append(1)
            return len(calls) >= 3

    xp.ensure("srv", Starter)
    assert len(calls) == 3
    assert xp.getinfo("srv").terminate() == 1
