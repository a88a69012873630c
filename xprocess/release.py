"""Letting go of a process: an xdist worker's teardown releases its use; the last one stops it.

Under xdist, a fixture's ``terminate()`` in its teardown runs when *one* worker is done with the
process, while others may still use it. So in a worker's teardown ``terminate()`` releases that
worker's hold; the release that leaves no other worker of the run holding it stops the process
at once, and the end of the run stops what is still held (a worker crashed, ``-x``).
"""

from __future__ import annotations

from xprocess.locking import NameLock
from xprocess.records import ProcessRecord, RecordStore
from xprocess.runs import release_holder
from xprocess.termination import stop_record

__all__ = ["RELEASE_LOCK_TIMEOUT", "release_process"]

# How long a release waits for a name that another worker is starting or stopping.
RELEASE_LOCK_TIMEOUT = 180.0


def release_process(
    store: RecordStore,
    seen: ProcessRecord,
    *,
    run_id: str,
    pid: int,
    kill_proc_tree: bool = True,
    timeout: float = 20,
) -> int:
    """Holder ``pid`` of run ``run_id`` lets go of the process ``seen`` describes.

    Returns 1 when it is released (and kept for the other holders) or stopped, 0 when there was
    nothing to stop, -1 when it could not be stopped: what ``terminate()`` returns.
    """
    name = seen.name
    with NameLock(store.lock_path(name), name, RELEASE_LOCK_TIMEOUT):
        record = store.read(name)
        if record is None or not _same_start(record, seen):
            # Restarted (or forgotten) since the caller looked: stop what the caller saw.
            return stop_record(seen, kill_proc_tree=kill_proc_tree, timeout=timeout)
        left, last = release_holder(record.holders, run_id, pid)
        record.holders = left
        if last:
            record.released_in = ""
            result = stop_record(record, kill_proc_tree=kill_proc_tree, timeout=timeout)
        else:
            record.released_in = run_id  # the end of the run stops it if a holder never lets go
            result = 1
        store.write(record)
        return result


def _same_start(record: ProcessRecord, seen: ProcessRecord) -> bool:
    """Whether two records describe the same start (the token says so, even after the record
    was handed over to the daemon a launcher left)."""
    if record.token and seen.token:
        return record.token == seen.token
    return (record.pid, record.create_time) == (seen.pid, seen.create_time)
