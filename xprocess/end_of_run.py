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
from xprocess.records import ProcessRecord, RecordStore
from xprocess.runs import drop_run, others_hold, remove_user, running_users, uses
from xprocess.termination import stop_record

__all__ = ["END_OF_RUN_LOCK_TIMEOUT", "finish_run", "stop_run_processes"]

# How long the end of a run waits for a name that another run is starting.
END_OF_RUN_LOCK_TIMEOUT = 60.0


def finish_run(
    root: Path, run_id: str, *, interrupted: bool, report: Callable[[str], None]
) -> None:
    """Do what the end of run ``run_id`` must: value cleanups, then processes; then forget it."""
    try:
        # Most runs share no value: the values' module (about 5 ms to import, at the end of
        # the run's critical path) is loaded only for a run that has some.
        if next(Layout(root).value_files(run_id), None) is not None:
            from xprocess.values import cleanup_run_values

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

    To stop are: ``terminate_at_end`` processes; ``terminate_on_interrupt`` ones when
    ``interrupted``; and processes a holder of this run released in its teardown while another
    still held them (that one crashed, or never got to its teardown). One that another live run
    still holds or uses is not stopped under it: the stop passes to that run's end. Names this
    run never used are not waited for. Each gets ``grace`` seconds after SIGTERM before SIGKILL.
    Returns the names that could not be terminated.
    """
    failed = []
    store = RecordStore(root)
    for name in store.names():
        if not _concerns(store.read(name), run_id):
            continue  # read without the lock: another run may hold it for minutes (a start)
        try:
            with NameLock(store.lock_path(name), name, END_OF_RUN_LOCK_TIMEOUT):
                record = store.read(name)
                if record is None or not _concerns(record, run_id):
                    continue
                if _let_go(record, run_id, interrupted=interrupted, grace=grace) < 0:
                    failed.append(name)
                store.write(record)
        except StartupTimeoutError:
            failed.append(name)
    return failed


def _concerns(record: ProcessRecord | None, run_id: str) -> bool:
    """Whether run ``run_id`` uses, holds or released the process of ``record``."""
    return record is not None and (
        uses(record.users, run_id)
        or any(h.get("run") == run_id for h in record.holders)
        or record.released_in == run_id
    )


def _let_go(record: ProcessRecord, run_id: str, *, interrupted: bool, grace: float = 20) -> int:
    """Forget run ``run_id`` in ``record`` and stop its process if the run is the last to want
    it and wants it stopped; what ``stop_record`` returns, or 0 when nothing was stopped."""
    used = uses(record.users, run_id)
    wanted = record.released_in == run_id or (
        used and (record.terminate_at_end or (interrupted and record.terminate_on_interrupt))
    )
    record.users = remove_user(record.users, run_id)
    record.holders = drop_run(record.holders, run_id)
    if not wanted:
        return 0
    other = others_hold(record.holders, run_id) or next(
        (str(u.get("run", "")) for u in running_users(record.users)), ""
    )
    if other:
        record.released_in = other  # the last run to let go stops it
        return 0
    record.released_in = ""
    return stop_record(record, timeout=grace)
