"""Letting go of a process: a teardown releases its use; the last one stops it.

Under xdist, a fixture's ``terminate()`` in its teardown runs when *one* worker is done with the
process, while others may still use it; and another run on the same rootdir may use it too. So in
a teardown ``terminate()`` releases this process's hold; the release that leaves no live holder of
any run, and no other live run using it, stops the process at once. Otherwise the end of the run
stops what is still held (a worker crashed, ``-x``), or hands the stop to a run still holding it.
"""

from __future__ import annotations

import contextlib
import errno
import logging

from xprocess.errors import StartupTimeoutError
from xprocess.locking import NameLock
from xprocess.records import ProcessRecord, RecordStore
from xprocess.runs import holds, release_holder
from xprocess.termination import stop_record

__all__ = ["RELEASE_LOCK_TIMEOUT", "drop_hold", "release_process"]

# How long a release waits for a name that another worker is starting or stopping.
RELEASE_LOCK_TIMEOUT = 180.0

# How long dropping a hold after a terminate() waits for the name: it is a courtesy to callers of
# another definition, not worth a test's minutes.
DROP_HOLD_LOCK_TIMEOUT = 10.0

_logger = logging.getLogger("xprocess")


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
    lock = NameLock(store.lock_path(name), name, RELEASE_LOCK_TIMEOUT)
    try:
        lock.acquire()
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        # A records root this user cannot write to: the start reused the process as it was,
        # without holding it, so the release has nothing to let go of and nothing to stop.
        _logger.warning("records root %s is read-only: leaving %r running", store.root, name)
        return 0
    with lock:
        record = store.read(name)
        if record is None or not _same_start(record, seen):
            # Restarted (or forgotten) since the caller looked: stop what the caller saw.
            return stop_record(seen, kill_proc_tree=kill_proc_tree, timeout=timeout)
        left, last = release_holder(record.holders, record.users, run_id, pid)
        record.holders = left
        if last:
            record.released_in = ""
            result = stop_record(record, kill_proc_tree=kill_proc_tree, timeout=timeout)
        else:
            # The end of the run stops it if a holder never lets go (or hands that on to a run
            # still holding it).
            record.released_in = run_id
            result = 1
        store.write(record)
        return result


def drop_hold(store: RecordStore, seen: ProcessRecord, pid: int) -> None:
    """Holder ``pid`` stopped the process ``seen`` describes itself (``terminate()`` outside a
    teardown): it holds it no more, so a caller of another definition need not wait for it
    (what it left running, children spared by ``kill_proc_tree=False``, is still recorded)."""
    name = seen.name
    lock = NameLock(store.lock_path(name), name, DROP_HOLD_LOCK_TIMEOUT)
    with contextlib.suppress(OSError, StartupTimeoutError), lock:
        record = store.read(name)
        if record is not None and _same_start(record, seen) and holds(record.holders, pid):
            record.holders = [h for h in record.holders if h.get("pid") != pid]
            store.write(record)


def _same_start(record: ProcessRecord, seen: ProcessRecord) -> bool:
    """Whether two records describe the same start (the token says so, even after the record
    was handed over to the daemon a launcher left)."""
    if record.token and seen.token:
        return record.token == seen.token
    return (record.pid, record.create_time) == (seen.pid, seen.create_time)
