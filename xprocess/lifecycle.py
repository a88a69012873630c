"""What happens to managed processes when a test run ends."""

from __future__ import annotations

from pathlib import Path

from xprocess.errors import StartupTimeoutError
from xprocess.locking import NameLock
from xprocess.records import RecordStore
from xprocess.runs import remove_user, uses
from xprocess.termination import stop_record

__all__ = ["END_OF_RUN_LOCK_TIMEOUT", "stop_run_processes"]

# How long the end of a run waits for a name that another run is starting.
END_OF_RUN_LOCK_TIMEOUT = 60.0


def stop_run_processes(root: Path, run_id: str, *, interrupted: bool) -> list[str]:
    """Let go of the processes run ``run_id`` used; stop those no other run still uses.

    ``terminate_at_end`` processes are stopped at every end of run; ``terminate_on_interrupt``
    ones only when ``interrupted``. A process another live run also uses is left to that run.
    Returns the names that could not be terminated.
    """
    failed = []
    store = RecordStore(root)
    for name in store.names():
        try:
            with NameLock(store.lock_path(name), name, END_OF_RUN_LOCK_TIMEOUT):
                record = store.read(name)
                if record is None or not uses(record.users, run_id):
                    continue
                record.users = remove_user(record.users, run_id)
                wanted = record.terminate_at_end or (interrupted and record.terminate_on_interrupt)
                if wanted and not record.users:
                    if stop_record(record) < 0:
                        failed.append(name)
                else:
                    store.write(record)
        except StartupTimeoutError:
            failed.append(name)
    return failed
