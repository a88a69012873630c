"""``XProcess`` and ``XProcessInfo``: ensure a named process runs, look it up, stop it."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xprocess.errors import InvalidStarterError, rebuild_error
from xprocess.launch import spawn
from xprocess.liveness import BOOT_ID, identify
from xprocess.locking import NameLock
from xprocess.logs import log_size
from xprocess.readiness import wait_until_ready
from xprocess.records import (
    FAILED,
    READY,
    STARTING,
    ProcessRecord,
    RecordStore,
    validate_name,
)
from xprocess.runs import Run, add_user, uses
from xprocess.starter import (
    DEFAULT_TIMEOUT,
    check_json_data,
    class_attribute,
    make_plan,
    starter_label,
)
from xprocess.termination import abandon_on_error, stop_record
from xprocess.tokens import new_token, process_uid
from xprocess.values import DEFAULT_TIMEOUT as DEFAULT_VALUE_TIMEOUT
from xprocess.values import shared_value
from xprocess.watchdog import start_watchdog

__all__ = ["XProcess", "XProcessInfo"]

# Extra time a waiting caller allows beyond the starter's timeout: the holder of the lock may first
# have to stop an old process (20 s of grace, then SIGKILL sweeps) before it starts the new one.
LOCK_SLACK = 60.0

_logger = logging.getLogger("xprocess")


def _lock_timeout(starter: Any) -> float:
    """How long to wait for another caller that starts ``starter``: its timeout, and some."""
    timeout = class_attribute(starter, "timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        timeout = DEFAULT_TIMEOUT
    return float(timeout) + LOCK_SLACK


def _restarted_by_sibling(record: ProcessRecord, manager: XProcess) -> bool:
    """Whether another process of this run (an xdist worker) started ``record``'s process."""
    return (
        record.state == READY
        and record.run_id == manager.run_id
        and record.started_by not in (0, os.getpid())
    )


@functools.lru_cache(maxsize=256)
def _stop_flags_of(starter: Any) -> tuple[bool, bool]:
    return (
        bool(class_attribute(starter, "terminate_at_end", False)),
        bool(class_attribute(starter, "terminate_on_interrupt", False)),
    )


def _stop_flags(starter: Any) -> tuple[bool, bool]:
    """(terminate_at_end, terminate_on_interrupt) of a starter class; False for other forms."""
    try:
        return _stop_flags_of(starter)
    except TypeError:  # not hashable
        return _stop_flags_of.__wrapped__(starter)


class XProcessInfo:
    """What is recorded of the process ``name``: its pid, log, control dir and shared data.

    Values the starter recorded in ``data`` are also readable as attributes (``info.port``).
    """

    def __init__(self, path: Path | str, name: str, record: ProcessRecord | None = None) -> None:
        self.name = validate_name(name)
        self.store = RecordStore(Path(path))
        self.controldir = self.store.controldir(name)
        self.logpath = self.store.log_path(name)
        self.pidpath = self.store.record_path(name)
        self.record = record if record is not None else self.store.read(name)

    @property
    def pid(self) -> int | None:
        """The recorded pid; None when no process was ever spawned under this name."""
        record = self.record
        return record.pid if record is not None and record.pid > 0 else None

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.record.data) if self.record is not None else {}

    def __getattr__(self, attr: str) -> Any:
        record = self.__dict__.get("record")
        if record is not None and attr in record.data:
            return record.data[attr]
        raise AttributeError(
            f"{type(self).__name__} of {self.__dict__.get('name')!r} has no attribute {attr!r}"
            + (f"; recorded data keys: {sorted(record.data)}" if record is not None else "")
        )

    def isrunning(self, ignore_zombies: bool = True) -> bool:
        """Whether the recorded process still runs (a recycled pid does not count)."""
        if self.record is None:
            return False
        return self.record.is_alive(ignore_zombies=ignore_zombies)

    def terminate(self, *, kill_proc_tree: bool = True, timeout: float = 20) -> int:
        """Stop the process and, by default, its descendants.

        SIGTERM goes to the leaves of the tree first, then SIGKILL to what is left after
        ``timeout`` seconds. Returns 1 (terminated), 0 (nothing to do) or -1 (could not).
        """
        if self.record is None:
            return 0
        return stop_record(self.record, kill_proc_tree=kill_proc_tree, timeout=timeout)

    def __repr__(self) -> str:
        return f"<XProcessInfo {self.name!r} pid={self.pid} log={self.logpath}>"


@dataclass
class StartedProcess:
    """A process this XProcess started: its Popen stays here so it can be reaped."""

    name: str
    popen: subprocess.Popen[bytes]
    info: XProcessInfo
    fhandles: list[Any] = field(default_factory=list)

    def release(self) -> None:
        self.popen.poll()


class XProcess:
    """Starts, finds and stops named processes whose records live under ``rootdir``.

    The ``xprocess`` fixture is one of these. Outside pytest, build one yourself:
    ``XProcess(None, Path(".xprocess"))``.
    """

    def __init__(
        self,
        config: Any = None,
        rootdir: Path | str | None = None,
        log: Any = None,
        proc_wait_timeout: float = 60,
        *,
        run_id: str | None = None,
        run: Run | None = None,
    ) -> None:
        if rootdir is None:
            if config is None:
                raise ValueError("XProcess needs a rootdir, or a pytest config to find one")
            from xprocess.paths import records_root

            rootdir = records_root(config)
        self.config = config
        self.rootdir = Path(rootdir)
        self.store = RecordStore(self.rootdir)
        self.proc_wait_timeout = proc_wait_timeout
        self.log = log if log is not None else _logger
        self.run = run or Run.of(run_id or uuid.uuid4().hex)
        self.run_id = self.run.id
        self.resources: list[StartedProcess] = []
        # name -> (logpath, offset where this session's interest in its log begins)
        self.watched: dict[str, tuple[Path, int]] = {}

    def __enter__(self) -> XProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def getinfo(self, name: str) -> XProcessInfo:
        """The recorded state of ``name`` (an empty info when it was never started).

        Creates its control dir, as pytest-xprocess did: fixtures may put files there first.
        """
        info = XProcessInfo(self.rootdir, name)
        info.controldir.mkdir(parents=True, exist_ok=True)
        return info

    def ensure(
        self, name: str, preparefunc: Any, restart: bool = False, persist_logs: bool = True
    ) -> tuple[int, Path]:
        """Make sure ``name`` runs and is ready; return ``(pid, logpath)``.

        Starts it with ``preparefunc`` (a ProcessStarter subclass, or an old-style
        ``preparefunc(cwd) -> (pattern, args[, env])``) unless a ready process of that name is
        already running, from this run or an earlier one. Under xdist, concurrent callers start it
        once and all get the same pid. ``restart`` stops a running one first; ``persist_logs=False``
        starts a fresh log instead of appending.
        """
        validate_name(name)
        if not restart:
            record = self.store.read(name)
            if record is not None and record.state == READY and record.is_alive():
                return self._reused(name, preparefunc, record)
        controldir = self.store.ensure_dirs(name)
        with NameLock(self.store.lock_path(name), name, _lock_timeout(preparefunc)):
            record = self.store.read(name)
            alive = record is not None and record.is_alive()
            if restart and alive and record is not None and _restarted_by_sibling(record, self):
                restart = False  # another worker of this run restarted it a moment ago
            if record is not None and not restart:
                if record.state == READY and alive:
                    return self._reused(name, preparefunc, record, locked=True)
                if (
                    record.state == FAILED
                    and record.run_id == self.run_id
                    and record.starter == starter_label(preparefunc)
                ):
                    raise rebuild_error(record.error_type, record.error_message, name)
            try:
                plan = make_plan(name, preparefunc, controldir, self)
            except (InvalidStarterError, TypeError):
                raise  # bad input: said at once, in every worker, and nothing is written
            except Exception as exc:
                if not alive:  # let the other workers fail the same way, without retrying
                    self._record_failure(name, preparefunc, controldir, exc)
                raise
            if record is not None:
                # A restart, a start its starter abandoned (it crashed mid-start), or what a dead
                # process left in its session: nothing of the old one may outlive the new one.
                XProcessInfo(self.rootdir, name, record).terminate()
            return self._start(name, plan, controldir, persist_logs)

    def _reused(
        self, name: str, starter: Any, record: ProcessRecord, *, locked: bool = False
    ) -> tuple[int, Path]:
        logpath = Path(record.logpath)
        if name not in self.watched:
            self.watched[name] = (logpath, log_size(logpath))
        if any(_stop_flags(starter)) and not uses(record.users, self.run.id):
            # This run uses it too: its end (or interruption) is now what stops it.
            if locked:
                self._claim(record, starter)
            else:
                with NameLock(self.store.lock_path(name), name, _lock_timeout(starter)):
                    fresh = self.store.read(name)
                    if fresh is not None and fresh.state == READY and fresh.is_alive():
                        self._claim(fresh, starter)
                        record = fresh  # it may have been restarted meanwhile
        return record.pid, logpath

    def _claim(self, record: ProcessRecord, starter: Any) -> None:
        record.users = add_user(record.users, self.run)
        record.terminate_at_end, record.terminate_on_interrupt = _stop_flags(starter)
        self.store.write(record)
        start_watchdog(self.rootdir, self.run)

    def _start(
        self, name: str, plan: Any, controldir: Path, persist_logs: bool
    ) -> tuple[int, Path]:
        logpath = self.store.log_path(name)
        self.log.debug("%s$ %s", controldir, " ".join(plan.argv))
        token = new_token()
        try:
            popen, offset = spawn(plan, controldir, logpath, persist_logs=persist_logs, token=token)
        except InvalidStarterError:
            raise
        except Exception as exc:
            self._record_failure(name, plan.starter, controldir, exc)
            raise
        with abandon_on_error(token, popen):
            return self._follow_start(name, plan, controldir, popen, offset, token)

    def _follow_start(
        self,
        name: str,
        plan: Any,
        controldir: Path,
        popen: subprocess.Popen[bytes],
        offset: int,
        token: str,
    ) -> tuple[int, Path]:
        logpath = self.store.log_path(name)
        identity = identify(popen.pid)  # None only if it is already gone; readiness says why
        create_time = identity.create_time if identity is not None else time.time()
        record = ProcessRecord(
            name=name,
            pid=popen.pid,
            create_time=create_time,
            start_since_boot=identity.since_boot if identity is not None else None,
            boot_id=BOOT_ID,
            started_by=os.getpid(),
            argv=plan.argv,
            cwd=str(controldir),
            logpath=str(logpath),
            log_offset=offset,
            started_at=time.time(),
            state=STARTING,
            run_id=self.run_id,
            starter=plan.starter,
            terminate_at_end=plan.terminate_at_end,
            terminate_on_interrupt=plan.terminate_on_interrupt,
            users=[self.run.entry()]
            if plan.terminate_at_end or plan.terminate_on_interrupt
            else [],
            data=plan.data,
            token=token,
            uid=process_uid(popen.pid),
        )
        self.store.write(record)
        if record.users:
            start_watchdog(self.rootdir, self.run)
        info = XProcessInfo(self.rootdir, name, record)
        self.resources.append(StartedProcess(name, popen, info))
        self.watched[name] = (logpath, offset)

        def adopt(pid: int) -> None:  # the launcher daemonized: its daemon is the process now
            moved = identify(pid)
            if moved is not None:
                record.pid, record.create_time = pid, moved.create_time
                record.start_since_boot = moved.since_boot
                self.store.write(record)

        try:
            wait_until_ready(plan, popen, logpath, offset, token=token, on_daemon=adopt)
        except BaseException as exc:
            info.terminate(timeout=5)
            popen.poll()
            record.state = FAILED
            record.error_type = type(exc).__name__
            record.error_message = str(exc) or repr(exc)
            self.store.write(record)
            raise
        record.state = READY
        record.data = check_json_data(name, plan.data)
        self.store.write(record)
        self.log.debug("%s process startup detected (pid %s)", name, record.pid)
        return record.pid, logpath

    def shared(
        self,
        name: str,
        compute: Callable[[], Any],
        *,
        cleanup: Callable[[Any], object] | None = None,
        key: str | None = None,
        timeout: float = DEFAULT_VALUE_TIMEOUT,
        dumps: Callable[[Any], str] | None = None,
        loads: Callable[[str], Any] | None = None,
    ) -> Any:
        """A value computed once per test run and shared by every xdist worker.

        The first caller runs ``compute()``; every other caller, in any worker, waits for it (up
        to ``timeout`` seconds) and gets the same value, or the same error if it failed.
        ``cleanup(value)`` runs once, after the last worker has finished (also after ``-x``,
        Ctrl-C or a crashed worker); it must be a module-level function. With ``key``, the value
        is kept across runs while the key stays the same, and recomputed (after ``cleanup`` of
        the old one) when it changes. Values are stored as JSON unless ``dumps``/``loads`` turn
        them into a string and back.

        Example::

            @pytest.fixture(scope="session")
            def database_url(xprocess):
                return xprocess.shared("database", create_database, cleanup=drop_database)
        """
        if cleanup is not None:
            start_watchdog(self.rootdir, self.run)
        return shared_value(
            self.rootdir,
            self.run_id,
            name,
            compute,
            cleanup=cleanup,
            key=key,
            timeout=timeout,
            dumps=dumps,
            loads=loads,
            worker=os.environ.get("PYTEST_XDIST_WORKER", ""),
        )

    def _record_failure(self, name: str, starter: Any, controldir: Path, exc: Exception) -> None:
        """Record that preparing the start of ``name`` failed, for the other workers."""
        self.store.write(
            ProcessRecord(
                name=name,
                pid=0,
                create_time=0.0,
                argv=[],
                cwd=str(controldir),
                logpath=str(self.store.log_path(name)),
                log_offset=0,
                started_at=time.time(),
                state=FAILED,
                run_id=self.run_id,
                starter=starter if isinstance(starter, str) else starter_label(starter),
                error_type=type(exc).__name__,
                error_message=str(exc),
            )
        )

    def release(self) -> None:
        """Reap processes this object started that have exited; running ones keep running."""
        for resource in self.resources:
            resource.release()

    # Names pytest-xprocess used for the same job; some suites call them.
    _force_clean_up = release
    _clean_up_resources = release
