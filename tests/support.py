"""Test helpers: finding leftover processes, and the text snippets pytester-driven tests put into
the projects they create. The helper child's command line (``child_args``) and ``wait_for`` come
from ``tests/helpers/projects.py``, which those projects import too."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers.projects import CHILD, child, wait_for
from xprocess import ProcessStarter, XProcess
from xprocess.manager import XProcessInfo
from xprocess.records import RecordStore

__all__ = [
    "CHILD",
    "HEADER",
    "HELPERS",
    "PORT_SERVER",
    "TALK",
    "ReadOnlyRoot",
    "child_args",
    "cmdline_of",
    "count_lines",
    "is_live",
    "live_records",
    "module_using",
    "namespaces_or_skip",
    "nothing_left",
    "pytest_with_read_only",
    "records_roots",
    "running",
    "srv_under_read_only_root",
    "wait_for",
    "working_in",
]

HELPERS = CHILD.parent
child_args = child


def records_roots(base: Path) -> list[Path]:
    return [base / ".pytest_cache" / "d" / ".xprocess", base / ".xprocess"]


def live_records(base: Path) -> list[XProcessInfo]:
    live = []
    for root in records_roots(base):
        for name, record in RecordStore(root).records():
            info = XProcessInfo(root, name, record)
            if info.isrunning():
                live.append(info)
    return live


def working_in(directory: Path) -> list[psutil.Process]:
    prefix = str(directory.resolve())
    me = psutil.Process()
    ours = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter():
        if proc.pid in ours:  # pytester runs tests in its directory, in this very process
            continue
        try:
            cwd = proc.cwd()
        except (psutil.Error, OSError):
            continue
        if (cwd == prefix or cwd.startswith(prefix + "/")) and is_live(proc):
            found.append(proc)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited, unreaped one does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def cmdline_of(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


# The first lines of a generated conftest or test module: the names its code uses, and
# ``child(*flags)``, the helper child's command line, from tests/helpers/projects.py (which the
# code may import more from: ``from projects import talk``).
HEADER = f"""
import os, sys
from pathlib import Path
import pytest
from xprocess import ProcessStarter

HELPERS = {str(HELPERS)!r}
if HELPERS not in sys.path:
    sys.path.insert(0, HELPERS)
from projects import child
"""


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

# A test module's or conftest's ``greeted(port)``: whether the helper child on ``port`` says hello.
TALK = """
import socket

def greeted(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(10) == b"hello\\n"
"""


def nothing_left(pytester: pytest.Pytester) -> None:
    """Assert that no record under the pytester project names a live process."""
    assert live_records(pytester.path) == []


def count_lines(path: Path) -> int:
    """How many starts a --count-file recorded (0 when it does not exist)."""
    return len(path.read_text().split()) if path.exists() else 0


def module_using(fixture: str, count: int, *, note: bool = False, check: str = "") -> str:
    """A test module of ``count`` tests that each use ``fixture`` (and the ``xprocess`` fixture).

    With ``note`` each test records what it saw through the generated conftest's ``note()``;
    ``check`` is a line of code each test runs after that.
    """
    body = [f"    note({fixture}, xprocess)"] if note else []
    if check:
        body.append(f"    {check}")
    return "\n".join(
        [
            "import pytest",
            "from conftest import note" if note else "",
            "",
            f"@pytest.mark.parametrize('i', range({count}))",
            f"def test_uses({fixture}, xprocess, i):",
            *(body or ["    pass"]),
            "",
        ]
    )


def namespaces_or_skip(*flags: str) -> None:
    """Skip unless ``unshare`` with ``flags`` works here (it needs root and a Linux kernel)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to make a PID or mount namespace")
    probe = subprocess.run(["unshare", *flags, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"unshare {' '.join(flags)} is not allowed here: {probe.stderr.decode()!r}")


def pytest_with_read_only(
    directory: Path, cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pytest -q *args`` in ``cwd`` with ``directory`` mounted read-only (in a
    mount namespace of its own: call ``namespaces_or_skip("--mount")`` first)."""
    script = (
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$2" && shift 2 && exec "$@"'
    )
    command = [sys.executable, "-m", "pytest", "-q", *args]
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", str(directory), str(cwd), *command],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@dataclasses.dataclass(frozen=True)
class ReadOnlyRoot:
    """A project whose records root holds ``srv``, running as ``pid``: the helper child, which
    adds its pid to the project's ``started`` file. The project's conftest.py defines
    ``Server``, the starter of that ``srv``."""

    project: Path
    pid: int

    def pytest(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m pytest -q *args`` in the project, its ``.pytest_cache`` read-only."""
        return pytest_with_read_only(self.project / ".pytest_cache", self.project, *args)


@contextlib.contextmanager
def srv_under_read_only_root(project: Path) -> Iterator[ReadOnlyRoot]:
    """Start ``srv`` in ``project``'s records root for runs that see that root read-only, and
    stop it after; skips unless a mount namespace can be made here."""
    namespaces_or_skip("--mount")
    args = child_args("--count-file", project / "started")
    xp = XProcess(None, project / ".pytest_cache" / "d" / ".xprocess")
    pid, _ = xp.ensure("srv", type("S", (ProcessStarter,), {"pattern": "ready", "args": args}))
    (project / "conftest.py").write_text(
        "from xprocess import ProcessStarter\n\n\n"
        f'class Server(ProcessStarter):\n    pattern = "ready"\n    args = {args!r}\n',
        encoding="utf-8",
    )
    try:
        yield ReadOnlyRoot(project, pid)
    finally:
        xp.getinfo("srv").terminate()
