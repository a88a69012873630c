"""Stopping a process tree: SIGTERM to the leaves first, a grace period, then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING

import psutil

from xprocess.capabilities import HAVE_PROC

if TYPE_CHECKING:
    import subprocess

    from xprocess.records import ProcessRecord

__all__ = [
    "KILL_GRACE",
    "reap_if_child",
    "stop_record",
    "stop_spawned",
    "terminate_orphaned_session",
    "terminate_tree",
    "wait_gone",
]

# How long to wait for processes to vanish after SIGKILL before reporting failure.
KILL_GRACE = 5.0
# Rounds of "find what is left, SIGKILL it" after the grace period.
_SWEEPS = 3


def _depth_first_leaves(root: psutil.Process) -> list[psutil.Process]:
    """Descendants of ``root``, deepest first, so children go before the parents that watch them."""
    ordered: list[tuple[int, psutil.Process]] = []

    def visit(proc: psutil.Process, depth: int) -> None:
        try:
            children = proc.children()
        except psutil.Error:
            return
        for child in children:
            visit(child, depth + 1)
            ordered.append((depth + 1, child))

    visit(root, 0)
    ordered.sort(key=lambda item: -item[0])
    return [proc for _, proc in ordered]


def reap_if_child(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is an exited child of ours, so it is no zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_gone(proc: psutil.Process) -> bool:
    """True once ``proc`` has exited. Reaps it if it is our child; a zombie counts as gone,
    since its parent (or an init that does not reap) may keep it in the table indefinitely."""
    reap_if_child(proc.pid)
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process in ``procs`` has exited; return those alive at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    alive = [p for p in procs if not _is_gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.02)
        alive = [p for p in alive if not _is_gone(p)]
    return alive


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _all_pids() -> list[int]:
    if HAVE_PROC:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    return [pid for pid in psutil.pids() if pid > 0]  # getsid(0) would be our own session


def _session_members(sid: int) -> list[psutil.Process]:
    """Live processes of session ``sid``: those a tree walk misses (re-parented, or forked
    after the walk) but that the managed process started in its own session."""
    members = []
    for pid in _all_pids():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(pid) == sid:
                proc = psutil.Process(pid)
                if not _is_gone(proc):
                    members.append(proc)
    return members


def terminate_tree(
    root: psutil.Process, *, kill_proc_tree: bool = True, timeout: float = 20
) -> int:
    """Terminate ``root`` (and, with ``kill_proc_tree``, its descendants).

    Returns 1 when everything is gone, -1 when something survived SIGKILL. SIGTERM goes to the
    leaves first, then up to ``root``; whatever is left after ``timeout`` seconds gets SIGKILL,
    including processes that appeared meanwhile (a supervisor restarting its child) and, when
    ``root`` leads its own session as xprocess starts it, every process left in that session.
    """
    try:
        leads_session = os.getsid(root.pid) == root.pid
    except OSError:
        leads_session = False
    procs = _depth_first_leaves(root) if kill_proc_tree else []
    procs.append(root)
    sid = root.pid if leads_session and kill_proc_tree else None
    return _terminate(procs, sid, kill_proc_tree=kill_proc_tree, timeout=timeout)


def terminate_orphaned_session(sid: int, *, timeout: float = 20) -> int:
    """Terminate what is left of session ``sid`` after its leader exited; 0 if nothing is.

    A launcher that starts a daemon and exits (``pg_ctl start``, say) leaves the daemon in the
    launcher's session. If a live process holds pid ``sid`` the session is not the one we
    started (the pid was reused), and nothing is touched: while any member of a session lives,
    the OS does not hand out its number as a new pid.
    """
    if sid <= 0 or _holds_pid(sid):
        return 0
    members = _session_members(sid)
    if not members:
        return 0
    return _terminate(members, sid, kill_proc_tree=True, timeout=timeout)


def _holds_pid(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _terminate(
    procs: list[psutil.Process], sid: int | None, *, kill_proc_tree: bool, timeout: float
) -> int:
    _signal_all(procs, signal.SIGTERM)
    alive = wait_gone(procs, timeout)
    # A process killed now may have forked a moment before: sweep again until nothing is new.
    for _ in range(_SWEEPS):
        if kill_proc_tree:
            alive = _with_latecomers(alive, sid)
        if not alive:
            return 1
        _signal_all(alive, signal.SIGKILL)
        alive = wait_gone(alive, KILL_GRACE)
        if not kill_proc_tree:
            break
    return -1 if alive else 1


def _with_latecomers(alive: list[psutil.Process], sid: int | None) -> list[psutil.Process]:
    """``alive`` plus their descendants and the members of session ``sid`` still running."""
    found = {p.pid: p for p in alive}
    for proc in list(alive):
        for child in _depth_first_leaves(proc):
            found.setdefault(child.pid, child)
    if sid is not None:
        for member in _session_members(sid):
            found.setdefault(member.pid, member)
    return [p for p in found.values() if not _is_gone(p)]


def stop_record(record: ProcessRecord, *, kill_proc_tree: bool = True, timeout: float = 20) -> int:
    """Stop the process ``record`` describes and, by default, what it started.

    Returns 1 (terminated), 0 (nothing to do) or -1 (could not).
    """
    if record.pid <= 0:
        return 0
    proc = record.find_process()
    if proc is not None:
        return terminate_tree(proc, kill_proc_tree=kill_proc_tree, timeout=timeout)
    if kill_proc_tree:  # the process is gone; what it started in its session may not be
        return terminate_orphaned_session(record.pid, timeout=timeout)
    return 0


def stop_spawned(
    popen: subprocess.Popen[bytes], record: ProcessRecord | None, *, timeout: float
) -> int:
    """Stop a process this process just spawned (and what it started), then reap it."""
    try:
        if record is not None:
            return stop_record(record, timeout=timeout)
        try:
            root = psutil.Process(popen.pid)
        except psutil.Error:
            return 0
        return terminate_tree(root, timeout=timeout)
    finally:
        popen.poll()
