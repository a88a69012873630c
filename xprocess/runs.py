"""Test runs as users of a process: which runs still need a process that stops when they end."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from xprocess.liveness import BOOT_ID, identify, is_alive

__all__ = [
    "Run",
    "add_holder",
    "add_user",
    "drop_run",
    "holder_entry",
    "holds",
    "others_hold",
    "others_use",
    "release_holder",
    "remove_user",
    "running_users",
    "uses",
]


@dataclass(frozen=True)
class Run:
    """A test run: its id (shared by the xdist controller and workers) and its main process."""

    id: str
    pid: int
    create_time: float
    since_boot: float | None
    boot_id: str

    @classmethod
    def of(cls, run_id: str, pid: int | None = None) -> Run:
        """The run ``run_id`` whose main process is ``pid`` (default: this process)."""
        pid = pid or os.getpid()
        identity = identify(pid)
        if identity is None:
            return cls(run_id, pid, 0.0, None, "")
        return cls(run_id, pid, identity.create_time, identity.since_boot, BOOT_ID)

    def entry(self) -> dict[str, Any]:
        return {
            "run": self.id,
            "pid": self.pid,
            "create_time": self.create_time,
            "since_boot": self.since_boot,
            "boot_id": self.boot_id,
        }


def _running(entry: dict[str, Any]) -> bool:
    try:
        return is_alive(
            int(entry["pid"]),
            float(entry["create_time"]),
            entry.get("since_boot"),
            str(entry.get("boot_id", "")),
        )
    except (KeyError, TypeError, ValueError):
        return False


def add_user(users: list[dict[str, Any]], run: Run) -> list[dict[str, Any]]:
    """``users`` with ``run`` added and runs whose main process has gone dropped."""
    kept = [u for u in users if u.get("run") != run.id and _running(u)]
    return [*kept, run.entry()]


def remove_user(users: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """``users`` without ``run_id`` and without runs whose main process has gone."""
    return [u for u in users if u.get("run") != run_id and _running(u)]


def uses(users: list[dict[str, Any]], run_id: str) -> bool:
    return any(u.get("run") == run_id for u in users)


# Holders: the processes of the runs that use a process (each xdist worker, or the one process of
# a run without xdist), from their ``ensure`` until their teardown releases it. A process is stopped
# by a release only when no live holder of any run is left and no other live run uses it: what a
# run that died held is no hold.


def holder_entry(run: Run, worker: str) -> dict[str, Any]:
    """This process, a worker (``gw0``, or ``""`` for a run without xdist) of ``run``, as a
    holder of a process."""
    return {**Run.of(run.id, os.getpid()).entry(), "worker": worker}


def holds(holders: list[dict[str, Any]], pid: int) -> bool:
    return any(h.get("pid") == pid for h in holders)


def add_holder(holders: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``holders`` with ``entry`` added and holders whose process has gone dropped."""
    kept = [h for h in holders if h.get("pid") != entry["pid"] and _running(h)]
    return [*kept, entry]


def release_holder(
    holders: list[dict[str, Any]], users: list[dict[str, Any]], run_id: str, pid: int
) -> tuple[list[dict[str, Any]], bool]:
    """Holder ``pid`` of run ``run_id`` lets go: the holders left (gone ones dropped), and whether
    it was the last (no live holder of any run is left, and no other live run uses the process),
    so that the process is to be stopped now."""
    left = [h for h in holders if h.get("pid") != pid and _running(h)]
    return left, not left and not others_use(users, run_id)


def others_use(users: list[dict[str, Any]], run_id: str) -> bool:
    """Whether a live run other than ``run_id`` uses the process (its end is to stop it)."""
    return any(u.get("run") != run_id and _running(u) for u in users)


def others_hold(holders: list[dict[str, Any]], run_id: str) -> str:
    """The id of a live run other than ``run_id`` that holds the process ("" if none)."""
    for h in holders:
        if h.get("run") != run_id and _running(h):
            return str(h.get("run", ""))
    return ""


def drop_run(holders: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """``holders`` without those of run ``run_id`` (it has ended) and without gone ones."""
    return [h for h in holders if h.get("run") != run_id and _running(h)]


def running_users(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of ``users`` whose run's main process still runs."""
    return [u for u in users if _running(u)]
