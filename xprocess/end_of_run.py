"""The end of a test run: clean up its shared values, then let go of its processes.

Runs once per run, in the process that outlives every xdist worker (the controller, or the only
process without xdist). Values come first: cleaning one up may need a process (drop a database
in a server).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from xprocess.errors import StartupTimeoutError
from xprocess.layout import Layout
from xprocess.locking import NameLock
from xprocess.records import RecordStore
from xprocess.runs import drop_run, remove_user, uses
from xprocess.termination import stop_record
from xprocess.values import cleanup_run_values

__all__ = ["END_OF_RUN_LOCK_TIMEOUT", "finish_run", "stop_run_processes"]

# How long the end of a run waits for a name that another run is starting.
END_OF_RUN_LOCK_TIMEOUT = 60.0


def finish_run(
    root: Path, run_id: str, *, interrupted: bool, report: Callable[[str], None]
) -> None:
    """Do what the end of run ``run_id`` must: value cleanups, then processes; then forget it."""
    try:
        cleanup_run_values(root, run_id, report)
    finally:
        try:
            failed = stop_run_processes(root, run_id, interrupted=interrupted)
        except KeyboardInterrupt:
            report("xprocess: interrupted while stopping processes: SIGKILL for what is left")
            failed = stop_run_processes(root, run_id, interrupted=interrupted, grace=0)
        for name in failed:
            report(
                f"xprocess: could not terminate {name!r} at the end of the run; "
                "see pytest --xshow, and stop it with pytest --xkill"
            )
        Layout(root).run_marker(run_id).unlink(missing_ok=True)


def stop_run_processes(
    root: Path, run_id: str, *, interrupted: bool, grace: float = 20
) -> list[str]:
    """Let go of the processes run ``run_id`` used; stop those it was asked to stop.

    Stopped: ``terminate_at_end`` processes no other live run uses; ``terminate_on_interrupt``
    ones when ``interrupted``; and processes a worker of this run released in its teardown
    while another worker still held them (that one crashed, or never got to its teardown).
    Each gets ``grace`` seconds after SIGTERM before SIGKILL. Returns the names that could not
    be terminated.
    """
    failed = []
    store = RecordStore(root)
    for name in store.names():
        try:
            with NameLock(store.lock_path(name), name, END_OF_RUN_LOCK_TIMEOUT):
                record = store.read(name)
                if record is None:
                    continue
                used = uses(record.users, run_id)
                held = any(h.get("run") == run_id for h in record.holders)
                released = record.released_in == run_id
                if not (used or held or released):
                    continue
                record.users = remove_user(record.users, run_id) if used else record.users
                record.holders = drop_run(record.holders, run_id)
                wanted = used and (
                    record.terminate_at_end or (interrupted and record.terminate_on_interrupt)
                )
                if released or (wanted and not record.users):
                    record.released_in = ""
                    if stop_record(record, timeout=grace) < 0:
                        failed.append(name)
                store.write(record)
        except StartupTimeoutError:
            failed.append(name)
    return failed
