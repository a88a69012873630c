"""Platforms: XPROCESS_PORTABLE takes the paths macOS runs; Windows is refused in one sentence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import HEADER, HELPERS, child_args
from xprocess import ProcessStarter, XProcess
from xprocess.capabilities import PORTABLE, PORTABLE_VARIABLE
from xprocess.liveness import identify

REFUSAL = "Windows is not supported, since xprocess needs POSIX sessions and signals"


def _env(portable: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env[PORTABLE_VARIABLE] = "1" if portable else "0"
    return env


PORTABLE_TEST = """
from pathlib import Path

from xprocess import capabilities


def _inotify_or_pidfd_open():
    fds = Path("/proc/self/fd")
    links = [str(fd.readlink()) for fd in fds.iterdir() if fd.exists()]
    return [link for link in links if "inotify" in link or "pidfd" in link]


def test_portable_paths(xprocess):
    assert capabilities.PORTABLE
    flags = ["HAVE_PROC", "HAVE_PROC_STAT", "HAVE_INOTIFY", "HAVE_PIDFD"]
    assert [name for name in flags if getattr(capabilities, name)] == []

    class Server(ProcessStarter):
        pattern = "ready"
        args = child("--delay", "0.1")

    pid, _ = xprocess.ensure("srv", Server)
    info = xprocess.getinfo("srv")
    assert info.isrunning()
    assert info.record.start_since_boot is None and info.record.boot_id.startswith("boot-")
    assert _inotify_or_pidfd_open() == []
    assert info.terminate() == 1
"""


def test_the_portable_switch_waits_without_inotify_pidfd_or_proc(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_portable=HEADER + PORTABLE_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_portable.py"],
        cwd=pytester.path,
        env=_env(portable=True),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


class Server(ProcessStarter):
    pattern = "ready"
    args = child_args()


def test_a_record_written_on_one_path_reads_as_live_on_the_other(xp: XProcess) -> None:
    xp.ensure("srv", Server)
    probe = [sys.executable, str(HELPERS / "liveness_probe.py"), str(xp.rootdir), "srv"]
    other = not PORTABLE
    result = subprocess.run(
        probe, env=_env(other), capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["portable" if other else "fast", "live"]
    assert xp.getinfo("srv").terminate() == 1


def test_a_pid_with_the_same_start_time_but_not_leading_a_session_is_not_ours(
    xp: XProcess, stranger: subprocess.Popen[bytes]
) -> None:
    xp.ensure("srv", Server)
    assert xp.getinfo("srv").terminate() == 1
    record = xp.getinfo("srv").record
    identity = identify(stranger.pid)
    assert record is not None and identity is not None
    # As if the pid had been handed out again within the same clock tick.
    record.pid, record.create_time = stranger.pid, identity.create_time
    record.start_since_boot = identity.since_boot
    record.leads_session = False
    xp.store.write(record)
    assert xp.getinfo("srv").isrunning(), "start times alone cannot tell them apart"
    record.leads_session = True
    xp.store.write(record)
    assert not xp.getinfo("srv").isrunning()
    assert xp.getinfo("srv").terminate() == 0
    assert stranger.poll() is None, "the stranger was signalled"


def test_a_started_process_is_recorded_as_leading_its_session(xp: XProcess) -> None:
    xp.ensure("srv", Server)
    record = xp.getinfo("srv").record
    assert record is not None and record.leads_session
    assert xp.getinfo("srv").terminate() == 1


# --- Windows, simulated: the POSIX-only names removed, sys.platform "win32" at import ----------


def _as_windows(path: Path, *args: str, cache: bool = False) -> subprocess.CompletedProcess[str]:
    plugins = [] if cache else ["-p", "no:cacheprovider"]
    return subprocess.run(
        [sys.executable, str(HELPERS / "as_windows.py"), *plugins, *args],
        cwd=path,
        env=_env(PORTABLE),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


WINDOWS_TEST = """
def test_start(xprocess, tmp_path):
    class Server(ProcessStarter):
        pattern = "ready"
        args = child("--count-file", Path(__file__).parent / "started.txt")

    xprocess.ensure("srv", Server)
"""


def test_on_windows_ensure_fails_with_one_sentence_and_starts_nothing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_windows=HEADER + WINDOWS_TEST)
    result = _as_windows(pytester.path, "-q", "test_windows.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        f"UnsupportedPlatformError: xprocess cannot start 'srv': {REFUSAL} "
        "(run the tests under Linux, macOS or WSL)." in result.stdout
    )
    assert "1 failed" in result.stdout
    assert not (pytester.path / "started.txt").exists()


def test_on_windows_a_project_with_a_pytest_cache_gets_the_same_sentence(
    pytester: pytest.Pytester,
) -> None:
    """The records root's runs lock lies in the pytest cache; Windows has no flock to take it
    (a checkout shared with WSL, where the cache was made)."""
    pytester.makepyfile(test_windows=HEADER + WINDOWS_TEST)
    (pytester.path / ".pytest_cache" / "d" / ".xprocess").mkdir(parents=True)
    (pytester.path / ".pytest_cache" / "xprocess-runs.lock").write_text("")
    result = _as_windows(pytester.path, "-q", "test_windows.py", cache=True)
    assert "INTERNALERROR" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"UnsupportedPlatformError: xprocess cannot start 'srv': {REFUSAL}" in result.stdout


@pytest.mark.parametrize("option", ["--xshow", "--xkill"])
def test_on_windows_xshow_and_xkill_refuse_with_one_sentence(
    pytester: pytest.Pytester, option: str
) -> None:
    result = _as_windows(pytester.path, option)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert f"ERROR: xprocess cannot answer {option}: {REFUSAL}" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
