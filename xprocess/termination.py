"""Stopping what xprocess started: SIGTERM to the leaves first, a grace period, then SIGKILL.

What is signalled is decided per record: the recorded process while its pid and start time match
(a recycled pid never does), every process carrying the record's token (see ``xprocess.tokens``)
wherever it went (a daemon that left the session too), and the live descendants of those. Nothing
else: no sweep of a session, whose number a stranger may hold by now. A process of another user is
reported, never signalled; so are pid 1, this process and its ancestors, whatever a record says.
Records written without a token get the same treatment minus the token search.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING

import psutil

from xprocess.liveness import find_process
from xprocess.tokens import Verdict, allowed_uids, carriers, process_uid, protected_pids, verify

if TYPE_CHECKING:
    from xprocess.records import ProcessRecord

__all__ = [
    "KILL_GRACE",
    "Report",
    "abandon_on_error",
    "reap_if_child",
    "stop_carriers",
    "stop_record",
    "wait_gone",
]

Report = Callable[[str], None]
_logger = logging.getLogger("xprocess")

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
    protected = protected_pids()
    for proc in procs:
        if proc.pid in protected:
            continue
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _carrier_processes(token: str, uids: Collection[int]) -> list[psutil.Process]:
    """Handles of the processes carrying ``token``. Each handle is made before the check, so a pid
    that changes hands after the check is refused by psutil when signalled."""
    found: list[psutil.Process] = []
    if not token:
        return found
    for pid in carriers(token, uids):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if verify(pid, token, uids) is Verdict.CARRIES:
                found.append(proc)
    return found


def _with_descendants(procs: list[psutil.Process]) -> list[psutil.Process]:
    """``procs`` and their live descendants, each tree deepest first, without protected pids."""
    protected = protected_pids()
    seen: dict[int, psutil.Process] = {}
    for proc in procs:
        if proc.pid in seen:
            continue
        for member in [*_depth_first_leaves(proc), proc]:
            if member.pid not in protected:
                seen.setdefault(member.pid, member)
    # A process that is some other one's descendant was reached twice; keep the deepest order.
    ordered = sorted(seen.values(), key=lambda p: -_depth(p))
    return [p for p in ordered if not _is_gone(p)]


def _depth(proc: psutil.Process) -> int:
    try:
        return len(proc.parents())
    except psutil.Error:
        return 0


def stop_carriers(token: str, *, uids: Collection[int] = (), timeout: float = 20) -> int:
    """Stop every process carrying ``token`` and their descendants; 0 if there is none.

    The start path calls this when anything fails after a spawn, so nothing it spawned survives.
    """
    allowed = allowed_uids(uids)
    procs = _with_descendants(_carrier_processes(token, allowed))
    if not procs:
        return 0
    return _terminate(
        procs, lambda: _carrier_processes(token, allowed), kill_proc_tree=True, timeout=timeout
    )


@contextlib.contextmanager
def abandon_on_error(token: str, popen: subprocess.Popen[bytes]) -> Iterator[None]:
    """Stop everything a start spawned when what follows the spawn fails (writing its record on
    a full disk, waiting for it, an interrupt): nothing spawned outlives a start that failed."""
    uid = process_uid(popen.pid)
    try:
        yield
    except BaseException:
        stop_carriers(token, uids=[uid], timeout=5)
        popen.poll()
        raise


def _terminate(
    procs: list[psutil.Process],
    rescan: Callable[[], list[psutil.Process]],
    *,
    kill_proc_tree: bool,
    timeout: float,
) -> int:
    _signal_all(procs, signal.SIGTERM)
    try:
        alive = wait_gone(procs, timeout)
    except KeyboardInterrupt:
        # Ctrl-C during the grace period: no more waiting, SIGKILL for what is left.
        _terminate(procs, rescan, kill_proc_tree=kill_proc_tree, timeout=0)
        raise
    # A process killed now may have forked a moment before: sweep again until nothing is new.
    for _ in range(_SWEEPS):
        if kill_proc_tree:
            alive = _with_descendants([*alive, *rescan()])
        if not alive:
            return 1
        _signal_all(alive, signal.SIGKILL)
        alive = wait_gone(alive, KILL_GRACE)
        if not kill_proc_tree:
            break
    return -1 if alive else 1


def _warn(message: str) -> None:
    _logger.warning("%s", message)


def stop_record(
    record: ProcessRecord,
    *,
    kill_proc_tree: bool = True,
    timeout: float = 20,
    report: Report | None = None,
) -> int:
    """Stop the process ``record`` describes and, by default, what it started.

    Signalled are: the recorded process while its pid and start time match, every process that
    carries the record's token, and the live descendants of those. Never pid 1, this process or
    its ancestors, nor a process of another user. Returns 1 (terminated), 0 (nothing of it runs)
    or -1 (could not, or a process could not be verified as ours and was left alone); why a
    process was left alone goes to ``report`` (default: the ``xprocess`` logger).
    """
    say = report or _warn
    uids = allowed_uids([record.uid])
    unverified = False
    root = record.find_process() if record.pid > 0 else None
    unproven = _unproven(record, root)
    if unproven:
        say(unproven)
        return -1
    if root is not None and root.pid in protected_pids():
        say(_refused(record, root.pid))
        root = None
    if root is not None and process_uid(root.pid) not in uids:
        say(
            f"{record.name!r}: pid {root.pid} runs as uid {process_uid(root.pid)}, not as this "
            "user or the user it was started as: cannot be verified, not signalled"
        )
        unverified = True
        root = None
    if not kill_proc_tree:
        if root is None:
            return -1 if unverified else 0
        return _terminate([root], lambda: [], kill_proc_tree=False, timeout=timeout)
    token = record.token
    procs = _with_descendants([*([root] if root else []), *_carrier_processes(token, uids)])
    if not procs:
        return -1 if unverified else 0
    result = _terminate(
        procs, lambda: _carrier_processes(token, uids), kill_proc_tree=True, timeout=timeout
    )
    return -1 if unverified else result


def _unproven(record: ProcessRecord, root: psutil.Process | None) -> str:
    """Why the process of a record without a token is not taken for ours ("" if it is).

    Such a record proves only a pid and a start time, which a tool imitating the format (or a
    hand) can copy from any process: it must also show a session leader, as every process
    xprocess starts is, and the process must be one (a record that does not say counts as
    saying so).
    """
    if record.token or record.pid <= 0:
        return ""
    if root is not None and record.leads_session:
        return ""
    if root is None and not find_process(
        record.pid, record.create_time, record.start_since_boot, record.boot_id
    ):
        return ""  # nothing has that pid and start time: nothing to report
    why = (
        "the record does not show a session leader"
        if root is not None
        else "it does not lead its own session, as every process xprocess starts does"
    )
    return (
        f"{record.name!r}: pid {record.pid} has the recorded start time, but the record has no "
        f"token and {why}: it cannot be verified as the process xprocess started, not signalled"
    )


def _refused(record: ProcessRecord, pid: int) -> str:
    return (
        f"{record.name!r}: its record names pid {pid}, which is pid 1, this process or one of "
        "its ancestors: never signalled"
    )
