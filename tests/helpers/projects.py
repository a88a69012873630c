"""What the projects that pytester-driven tests create import, so that code is linted and typed.

A generated conftest or test module starts with ``tests.support.HEADER``, which puts this
directory on ``sys.path`` and imports :func:`child` from here; the same lines work for
``runpytest`` in this process, for ``runpytest_subprocess`` and in every xdist worker. What a
test deliberately writes the way a user would (its fixtures, its own starters) stays in its text.

The outer test suite uses :func:`child` and :func:`wait_for` too, through ``tests.support``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xprocess import ProcessStarter, free_port

CHILD = Path(__file__).resolve().with_name("child.py")


def child(*flags: object) -> list[str]:
    """The command line of the helper child (``child.py``) with ``flags``."""
    return [sys.executable, "-u", str(CHILD), *(str(f) for f in flags)]


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait until ``condition()`` is true, polling with a short back-off, or fail at ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def listening_server(
    count_file: Path, *, delay: float = 0.0, at_end: bool = False
) -> type[ProcessStarter]:
    """A starter of the helper child listening on a free port (kept in ``data["port"]``).

    Each start appends the child's pid to ``count_file``; the child logs "ready" after ``delay``
    seconds and greets each connection with ``hello``. ``at_end`` is ``terminate_at_end``.
    """

    class Server(ProcessStarter):
        pattern = "ready"
        terminate_at_end = at_end

        def args(self) -> list[str]:
            self.data["port"] = free_port()
            return child(
                "--listen", self.data["port"], "--delay", delay, "--count-file", count_file
            )

    return Server


def killed_once(root: Path) -> type[ProcessStarter]:
    """A starter of the helper child (each start appends its pid to ``root / "starts"``) whose
    first startup check SIGKILLs the process making it: the worker, or the whole run, dies
    mid-start, holding the start's lock. ``root / "killed-once"`` (the worker's id) says it did;
    every later check passes."""

    class Starter(ProcessStarter):
        pattern = "ready"
        args = child("--count-file", root / "starts")

        def startup_check(self) -> bool:
            marker = root / "killed-once"
            if not marker.exists():
                marker.write_text(os.environ.get("PYTEST_XDIST_WORKER", "?"))
                os.kill(os.getpid(), signal.SIGKILL)
            return True

    return Starter


def talk(xprocess: Any, name: str = "server") -> None:
    """Connect to the port process ``name`` recorded and check it greets us."""
    port = xprocess.getinfo(name).port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        assert conn.recv(10) == b"hello\n"


def note_seen(seen: Path, name: str, xprocess: Any) -> None:
    """Append "worker name pid port" for process ``name`` to ``seen``, then talk to it."""
    info = xprocess.getinfo(name)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with seen.open("a") as f:
        f.write(f"{worker} {name} {info.pid} {info.port}\n")
    talk(xprocess, name)
