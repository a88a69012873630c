"""A process waiting for a name's lock takes it when the holder lets go, not at its next poll."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from tests.support import wait_for
from xprocess import locking
from xprocess.capabilities import HAVE_INOTIFY
from xprocess.locking import NameLock


def _waiter(path: Path) -> tuple[threading.Thread, threading.Event]:
    taken = threading.Event()

    def take() -> None:
        with NameLock(path, "server", 3600):
            taken.set()

    thread = threading.Thread(target=take, daemon=True)  # a failing test leaves it asleep
    thread.start()
    return thread, taken


def _holder(path: Path) -> int:
    """The lock taken through a descriptor of its own (flock locks are per open file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locking.flock(fd, wait=False)
    return fd


@pytest.fixture
def polls_an_hour_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiter's timer would wake it after an hour: only the release can wake it in time."""
    monkeypatch.setattr(locking, "_FIRST_POLL", 3600.0, raising=False)
    monkeypatch.setattr(locking, "_MAX_POLL", 3600.0)
    hour = threading.Event()
    clock = types.SimpleNamespace(monotonic=time.monotonic, sleep=lambda _: hour.wait(3600))
    monkeypatch.setattr(locking, "time", clock)


def _count_tries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    tries = [0]
    real = locking.flock

    def counting(fd: int, *, exclusive: bool = True, wait: bool = True) -> None:
        tries[0] += 1
        real(fd, exclusive=exclusive, wait=wait)

    monkeypatch.setattr(locking, "flock", counting)
    return tries


@pytest.mark.skipif(not HAVE_INOTIFY, reason="the waiter is woken by inotify (Linux)")
@pytest.mark.usefixtures("polls_an_hour_apart")
def test_a_waiter_takes_the_lock_as_soon_as_the_holder_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".locks" / "server.lock"
    fd = _holder(path)
    tries = _count_tries(monkeypatch)
    thread, taken = _waiter(path)
    # Tried once, then once more with the watch in place: it now waits on the watch.
    wait_for(lambda: tries[0] >= 2, timeout=30, what="the waiter to try the lock")
    assert not taken.is_set()
    os.close(fd)
    wait_for(taken.is_set, timeout=30, what="the waiter to take the released lock")
    thread.join(timeout=30)


@pytest.mark.skipif(not HAVE_INOTIFY, reason="the waiter is woken by inotify (Linux)")
@pytest.mark.usefixtures("polls_an_hour_apart")
def test_a_waiter_takes_the_lock_of_a_holder_that_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".locks" / "server.lock"
    path.parent.mkdir(parents=True)
    held = tmp_path / "held"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "open(sys.argv[2], 'w').close()\n"
            "time.sleep(600)\n",
            str(path),
            str(held),
        ]
    )
    try:
        wait_for(held.exists, timeout=30, what="the holder to take the lock")
        tries = _count_tries(monkeypatch)
        thread, taken = _waiter(path)
        wait_for(lambda: tries[0] >= 2, timeout=30, what="the waiter to try the lock")
        holder.kill()  # the kernel closes its descriptor: that wakes the waiter too
        wait_for(taken.is_set, timeout=30, what="the waiter to take the dead holder's lock")
        thread.join(timeout=30)
    finally:
        holder.kill()
        holder.wait()
