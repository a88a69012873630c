"""Making sure a named process runs: decide (reuse, replay a failure, start), then do it.

:func:`~xprocess.decisions.decide` (decisions.py) is the whole policy; :func:`ensure_process` is
the mechanism around it: the per-name lock that makes concurrent callers
(xdist workers, parallel runs) start a process once, the spawn, the wait for readiness and the
record of each step.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from xprocess.capabilities import HAVE_PIDFD
from xprocess.decisions import Action, Decision, decide

# The modules of a start (spawn, readiness, daemons, endpoints) are imported by the start itself:
# the workers that find the process running, most of them under xdist, never pay for them.
from xprocess.errors import (
    AddressInUseError,
    InvalidStarterError,
    StartupTimeoutError,
    rebuild_error,
)
from xprocess.layout import keep_blocks
from xprocess.liveness import Identity, identify
from xprocess.locking import NameLock
from xprocess.records import READY, ProcessRecord, RecordStore
from xprocess.runs import Run, add_holder, add_user, holder_entry, holds, running_users, uses
from xprocess.seams import hold_at
from xprocess.starter import LaunchPlan, StarterDescription
from xprocess.termination import abandon_on_error, stop_record
from xprocess.tokens import allowed_uids, new_token, process_uid
from xprocess.validation import check_json_data
from xprocess.watchdog import start_watchdog

__all__ = ["Caller", "Outcome", "ensure_process", "settle"]

# Extra time a waiting caller allows beyond the starter's timeout: the holder of the lock may first
# have to stop an old process (20 s of grace, then SIGKILL sweeps) before it starts the new one.
LOCK_SLACK = 60.0

# How often a caller waiting for the holders of another definition looks at the record again.
RELEASE_POLL = 0.25

_logger = logging.getLogger("xprocess")


@dataclass
class Caller:
    """Who asks: the records, the run, the xdist worker id ("" outside a worker), whether it
    holds what it uses until its teardown releases it (every process of a pytest run does), and
    where to say that a start is slow."""

    store: RecordStore
    run: Run
    worker: str = ""
    pid: int = field(default_factory=os.getpid)
    notify: Callable[[str], None] | None = None  # where a slow start is announced
    in_run: bool = False

    @property
    def holds(self) -> bool:
        """Whether this caller is noted as a holder of the processes it uses."""
        return self.in_run or bool(self.worker)

    def needs_claim(self, record: ProcessRecord, description: StarterDescription) -> bool:
        """Whether reusing ``record`` must first note this caller as one of its users."""
        return self._needs_claim(record, stops=description.stops)

    def _needs_claim(self, record: ProcessRecord, *, stops: bool) -> bool:
        return (stops and not uses(record.users, self.run.id)) or (
            self.holds and not holds(record.holders, self.pid)
        )

    def reusable(self, name: str, *, fingerprint: str, stops: bool) -> ProcessRecord | None:
        """The record of a ready process of ``name`` this caller may use as it is (started from
        a starter of ``fingerprint``, alive, and already claimed by this caller if it must be),
        else None. Without the lock: the common case of ``ensure``, made cheap."""
        record = self.store.read_unchanged(name)
        if (
            record is not None
            and record.state == READY
            and (not record.fingerprint or record.fingerprint == fingerprint)
            and record.is_alive()
            and not self._needs_claim(record, stops=stops)
        ):
            return record
        return None

    def claim(self, record: ProcessRecord, description: StarterDescription) -> None:
        """Note this run as a user (the end of the run may stop the process) and this worker
        as a holder (its teardown releases it)."""
        if description.stops:
            record.users = add_user(record.users, self.run)
            record.terminate_at_end = description.terminate_at_end
            record.terminate_on_interrupt = description.terminate_on_interrupt
        if self.holds:
            record.holders = add_holder(record.holders, holder_entry(self.run, self.worker))
        self.store.write(record)
        if description.stops:
            start_watchdog(self.store.root, self.run)  # stops it if the whole run is killed


@dataclass
class Outcome:
    """What ``ensure_process`` did: the ready record, and the Popen and log offset if this call
    started the process."""

    record: ProcessRecord
    popen: subprocess.Popen[bytes] | None = None
    offset: int | None = None
    reason: str = ""


def ensure_process(
    caller: Caller,
    description: StarterDescription,
    *,
    restart: bool = False,
    persist_logs: bool = True,
) -> Outcome:
    """Make sure ``description.name`` runs and is ready; start it at most once for all callers."""
    __tracebackhide__ = True
    name = description.name
    store = caller.store
    if not restart:  # the common case, without the lock: a ready process of that name runs
        ready = caller.reusable(name, fingerprint=description.fingerprint, stops=description.stops)
        if ready is not None:
            return Outcome(ready)
    deadline = time.monotonic() + description.timeout
    while True:
        try:
            store.ensure_dirs(name)
            lock = NameLock(store.lock_path(name), name, description.timeout + LOCK_SLACK)
            lock.acquire()
        except OSError as exc:
            reused = _reuse_read_only(store, name, exc)
            if reused is None:
                raise
            return reused
        with lock:
            record = store.read(name)
            alive = record is not None and record.is_alive()
            decision = decide(
                record,
                alive=alive,
                restart=restart,
                run_id=caller.run.id,
                caller=caller.pid,
                label=description.label,
                fingerprint=description.fingerprint,
                held_by_others=record is not None and _held_by_others(record, caller.pid),
            )
            if decision.action is not Action.WAIT:
                return _act(caller, description, record, decision, persist_logs)
            assert record is not None
        _wait_for_release(record, description, caller, deadline)


def _act(
    caller: Caller,
    description: StarterDescription,
    record: ProcessRecord | None,
    decision: Decision,
    persist_logs: bool,
) -> Outcome:
    """Do what ``decision`` says, under the name's lock."""
    __tracebackhide__ = True
    store = caller.store
    if decision.action is Action.REUSE:
        assert record is not None
        if caller.needs_claim(record, description):
            caller.claim(record, description)
        return Outcome(record)
    if decision.action is Action.REPLAY:
        assert record is not None
        record.replayed_to.append(caller.pid)
        store.write(record)
        raise rebuild_error(record.error_type, record.error_message, description.name)
    description.check_command()  # a missing executable: refused before anything is stopped
    if decision.stop_first and record is not None:
        # A restart, a start its caller abandoned (it crashed mid-start), or what a dead
        # process left behind: nothing of the old one may outlive the new one, and the
        # starter's args() (which may prepare files) runs only once it is gone.
        stop_record(record)
    elif record is None:
        _stop_moved(store, description.name)
    plan = _plan(caller, description)
    started = _start(caller, description, plan, persist_logs, record)
    started.reason = decision.reason
    return started


def _stop_moved(store: RecordStore, name: str) -> None:
    """Stop what ``name`` left running when the project was moved from its old place (see
    ``xprocess.origin``): this project's process, whose paths are gone."""
    moved = store.moved(name)
    if moved is not None:
        _logger.warning(
            "%r: stopping pid %s, started at %s before the project was moved here",
            name,
            moved.pid,
            moved.root,
        )
        stop_record(moved)


def _held_by_others(record: ProcessRecord, pid: int) -> bool:
    """Whether a live process other than ``pid`` holds the process of ``record``."""
    return bool(running_users([h for h in record.holders if h.get("pid") != pid]))


def _wait_for_release(
    record: ProcessRecord, description: StarterDescription, caller: Caller, deadline: float
) -> None:
    """Wait (without the lock) until the process of ``record``, started from another definition
    than ``description``, exits or may have been released; past ``deadline`` raise
    StartupTimeoutError naming both definitions."""
    __tracebackhide__ = True
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        holders = ", ".join(
            f"{h.get('worker') or 'pid ' + str(h.get('pid'))} of run {str(h.get('run'))[:8]}"
            for h in running_users(record.holders)
            if h.get("pid") != caller.pid
        )
        raise StartupTimeoutError(
            f"{description.name!r} runs (pid {record.pid}) from another definition of its "
            f"starter than the one asked for: it was started from {record.starter} "
            f"(fingerprint {record.fingerprint}), this caller's is {description.label} "
            f"(fingerprint {description.fingerprint}). Waited {description.timeout:g} s for "
            f"its holders ({holders or 'none left'}) to release it. Give each definition a "
            "name of its own, or release the process (terminate() in the fixture's teardown) "
            "before asking for another definition.",
            name=description.name,
        )
    # Woken at once when the process exits; a release that leaves it running (or a start of
    # the caller's definition elsewhere) is seen at the next look.
    _wait_for_exit(record.pid, min(remaining, RELEASE_POLL))


def _wait_for_exit(pid: int, timeout: float) -> None:
    """Return when ``pid`` exits or ``timeout`` seconds have passed, whichever comes first."""
    try:
        pidfd = os.pidfd_open(pid) if HAVE_PIDFD else -1
    except OSError:
        return  # already gone
    if pidfd < 0:
        time.sleep(timeout)  # no pidfd (old kernel): look again after a short while
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(timeout * 1000)
    finally:
        os.close(pidfd)


def settle(store: RecordStore, name: str, popen: subprocess.Popen[bytes]) -> None:
    """Once the launcher this process started for ``name`` has exited 0 after its ready line
    (``pg_ctl start``), hand the record over to the daemon it left, so that later runs know the
    process by the daemon's pid. Called when this process reaps what it started."""
    if popen.poll() != 0:
        return
    record = store.read(name)
    if record is None or record.pid != popen.pid or not record.token or record.state != READY:
        return
    from xprocess.daemons import find_daemon

    daemon = find_daemon(record.token, allowed_uids([record.uid]))
    identity = identify(daemon.pid) if daemon is not None else None
    if daemon is None or identity is None:
        return
    with NameLock(store.lock_path(name), name, LOCK_SLACK):
        fresh = store.read(name)
        if fresh is None or (fresh.pid, fresh.create_time) != (record.pid, record.create_time):
            return
        _adopt(fresh, daemon.pid, identity)
        store.write(fresh)


def _adopt(record: ProcessRecord, pid: int, identity: Identity) -> None:
    record.pid, record.create_time = pid, identity.create_time
    record.start_since_boot = identity.since_boot
    record.leads_session = bool(identity.leads_session)
    record.uid = process_uid(pid)


def _intended_uid(plan: LaunchPlan) -> int:
    """The uid the process of ``plan`` will run as: this user's, or ``popen_kwargs["user"]``."""
    user = plan.popen_kwargs.get("user")
    if user is None:
        return os.getuid()
    if isinstance(user, int):
        return user
    try:
        import pwd

        return pwd.getpwnam(str(user)).pw_uid
    except (ImportError, KeyError):
        return -1  # Popen refuses it with a clear error


# A test seam: with this variable naming a file, a start writes the new pid there right after
# the spawn and waits until the file is removed, so that a test can kill the starting process
# between the spawn and the record naming the pid.
HOLD_AFTER_SPAWN_VAR = "XPROCESS_TEST_HOLD_AFTER_SPAWN"


def _reuse_read_only(store: RecordStore, name: str, error: OSError) -> Outcome | None:
    """A records root this user cannot write to: a ready process there is reused as it is (its
    record cannot be changed, so not restarted, nor claimed); anything else is the error."""
    if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
        return None
    record = store.read(name)
    if record is None or record.state != READY or not record.is_alive():
        return None
    _logger.warning("records root %s is read-only: reusing %r as it is", store.root, name)
    return Outcome(record)


def _plan(caller: Caller, description: StarterDescription) -> LaunchPlan:
    __tracebackhide__ = True
    try:
        return description.make_plan()
    except (InvalidStarterError, TypeError):
        raise  # bad input: said at once, in every worker, and nothing is written
    except Exception as exc:  # the starter's args() failed: the other workers fail the same way
        _record_not_started(caller, description, exc)
        raise


def _record_not_started(caller: Caller, description: StarterDescription, exc: Exception) -> None:
    store = caller.store
    name = description.name
    store.write(
        ProcessRecord.not_started(
            name,
            description.label,
            cwd=store.controldir(name),
            logpath=store.log_path(name),
            run_id=caller.run.id,
            error=exc,
        )
    )


def _spawn_recorded(
    caller: Caller,
    description: StarterDescription,
    plan: LaunchPlan,
    persist_logs: bool,
    previous: ProcessRecord | None,
) -> tuple[ProcessRecord, subprocess.Popen[bytes], int]:
    """Spawn ``plan``'s process with a fresh token, recorded (name, command, token, starter)
    before the spawn; return the record, the Popen and the log offset."""
    __tracebackhide__ = True
    from xprocess.launch import spawn
    from xprocess.occupied import refuse_answered_endpoints

    store = caller.store
    name = plan.name
    controldir = store.controldir(name)
    logpath = store.log_path(name)
    _logger.debug("%s$ %s", controldir, " ".join(plan.argv))
    try:
        refuse_answered_endpoints(name, plan.check)  # a probe must not pass against a stranger
    except AddressInUseError as exc:
        _record_not_started(caller, description, exc)
        raise
    token = new_token()
    record = ProcessRecord.before_spawn(
        plan,
        cwd=controldir,
        logpath=logpath,
        run=caller.run,
        holder=holder_entry(caller.run, caller.worker) if caller.holds else None,
        token=token,
        uid=_intended_uid(plan),
    )
    record.fingerprint = description.fingerprint
    store.write(record)  # the token on disk before a process carries it
    try:
        popen, offset = spawn(plan, controldir, logpath, persist_logs=persist_logs, token=token)
    except InvalidStarterError:
        # Bad input (a missing executable): nothing was spawned, and nothing is recorded of it.
        if previous is not None:
            store.write(previous)
        else:
            store.record_path(name).unlink(missing_ok=True)
        raise
    except Exception as exc:
        _record_not_started(caller, description, exc)
        raise
    return record, popen, offset


def _start(
    caller: Caller,
    description: StarterDescription,
    plan: LaunchPlan,
    persist_logs: bool,
    previous: ProcessRecord | None,
) -> Outcome:
    __tracebackhide__ = True
    from xprocess.readiness import wait_until_ready

    store = caller.store
    name = plan.name
    logpath = store.log_path(name)
    record, popen, offset = _spawn_recorded(caller, description, plan, persist_logs, previous)
    token = record.token
    hold_at(HOLD_AFTER_SPAWN_VAR, popen.pid)
    # Whatever fails once the process exists (readiness, a full disk writing the record, Ctrl-C),
    # everything that carries its token is stopped: nothing spawned outlives this call.
    with abandon_on_error(token, popen):
        record.spawned(popen.pid, offset)
        record.uid = process_uid(popen.pid)
        store.write(record)
        keep_blocks(store.record_path(name))  # the "ready" write, when it comes, is fast
        if record.users:
            start_watchdog(store.root, caller.run)

        def adopt(pid: int) -> None:  # the launcher daemonized: its daemon is the process now
            moved = identify(pid)
            if moved is not None:
                _adopt(record, pid, moved)
                store.write(record)

        try:
            wait_until_ready(
                plan, popen, logpath, offset, caller.notify, token=token, on_daemon=adopt
            )
            record.ready(check_json_data(name, plan.data))
            store.write(record)
        except BaseException as exc:
            stop_record(record, timeout=5)  # the daemon it handed over to, if any
            record.failed(exc)
            with contextlib.suppress(OSError):
                store.write(record)
            raise
    _logger.debug("%s process startup detected (pid %s)", name, popen.pid)
    return Outcome(record, popen, offset)
