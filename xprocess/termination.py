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
import select
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING

import psutil

from xprocess.liveness import find_process
from xprocess.process_table import ProcessTable, Target, reap_if_child
from xprocess.tokens import allowed_uids, process_uid, protected_pids

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


def wait_gone(targets: list[Target], timeout: float) -> list[Target]:
    """Wait until every process of ``targets`` has exited; return those alive at the deadline.

    With pidfds (Linux) each exit wakes the waiter at once; elsewhere it polls, from half a
    millisecond backing off to 20 ms.
    """
    deadline = time.monotonic() + timeout
    alive = [t for t in targets if not t.gone()]
    if alive and all(t.fd >= 0 for t in alive):
        return _wait_on_pidfds(alive, deadline)
    delay = 0.0005
    while alive and time.monotonic() < deadline:
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.02)
        alive = [t for t in alive if not t.gone()]
    return alive


def _wait_on_pidfds(targets: list[Target], deadline: float) -> list[Target]:
    """``wait_gone`` on pidfds: a pidfd turns readable when its process exits."""
    poller = select.poll()
    waiting = {t.fd: t for t in targets}
    for fd in waiting:
        poller.register(fd, select.POLLIN)
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        for fd, _ in poller.poll(remaining * 1000):
            poller.unregister(fd)
            reap_if_child(waiting.pop(fd).pid)
    return list(waiting.values())


def _signal_all(targets: list[Target], sig: int, protected: Collection[int]) -> None:
    for target in targets:
        if target.pid not in protected:
            target.send(sig)


def _targets(table: ProcessTable, known: list[Target], made: list[Target]) -> list[Target]:
    """``known`` (handles already verified), the token's carriers, and the live descendants of
    all of them, deepest first (children before the parents that watch them). Handles made
    here are added to ``made``, for the caller to close."""
    handles = {target.pid: target for target in known}
    found = []
    for pid, parent in table.trees([*handles, *sorted(table.carriers)]):
        target = handles.get(pid)
        if target is None:
            target = table.handle(pid, parent)
            if target is not None:
                made.append(target)
        if target is not None and not target.gone():
            found.append(target)
    return found


def stop_carriers(token: str, *, uids: Collection[int] = (), timeout: float = 20) -> int:
    """Stop every process carrying ``token`` and their descendants; 0 if there is none.

    The start path calls this when anything fails after a spawn, so nothing it spawned survives.
    """
    table = ProcessTable(token, allowed_uids(uids), protected_pids())
    return _stop_tree(table, [], timeout=timeout)


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


def _stop_tree(table: ProcessTable, roots: list[psutil.Process], *, timeout: float) -> int:
    """SIGTERM to ``roots``, the carriers of the table's token and all their descendants,
    ``timeout`` seconds of grace, then SIGKILL sweeps; 0 if there was nothing to stop."""
    made = [t for t in map(Target.of, roots) if t is not None]
    try:
        table.refresh()
        targets = _targets(table, made[:], made)
        if not targets:
            return 0
        _signal_all(targets, signal.SIGTERM, table.protected)
        try:
            alive = wait_gone(targets, timeout)
        except KeyboardInterrupt:
            # Ctrl-C during the grace period: no more waiting, SIGKILL for what is left.
            _sweep(table, targets, made)
            raise
        return _sweep(table, alive, made)
    finally:
        for target in made:
            target.close()


def _sweep(table: ProcessTable, alive: list[Target], made: list[Target]) -> int:
    """SIGKILL what is left; a process killed now may have forked a moment before, so look
    again (only at processes not seen before) until nothing is new."""
    for _ in range(_SWEEPS):
        table.refresh()
        alive = _targets(table, alive, made)
        if not alive:
            return 1
        _signal_all(alive, signal.SIGKILL, table.protected)
        alive = wait_gone(alive, KILL_GRACE)
    return -1 if alive else 1


def _stop_one(proc: psutil.Process, protected: Collection[int], *, timeout: float) -> int:
    """SIGTERM to ``proc`` alone, ``timeout`` seconds of grace, then SIGKILL."""
    target = Target.of(proc)
    if target is None:
        return 0
    try:
        _signal_all([target], signal.SIGTERM, protected)
        try:
            alive = wait_gone([target], timeout)
        except KeyboardInterrupt:
            alive = [target]
            raise
        finally:
            if alive:
                _signal_all(alive, signal.SIGKILL, protected)
                alive = wait_gone(alive, KILL_GRACE)
        return -1 if alive else 1
    finally:
        target.close()


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
    protected = protected_pids()
    if root is not None and root.pid in protected:
        say(_refused(record, root.pid))
        root = None
    else:
        unproven = _unproven(record, root)
        if unproven:
            say(unproven)
            return -1
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
        return _stop_one(root, protected, timeout=timeout)
    table = ProcessTable(record.token, uids, protected)
    result = _stop_tree(table, [root] if root is not None else [], timeout=timeout)
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
