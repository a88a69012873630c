"""``XProcess`` and ``XProcessInfo``: the ``xprocess`` fixture's face.

Starting lives in ``starting.py``, stopping in ``termination.py`` and ``release.py``; this module
turns the calls users know from pytest-xprocess into calls of those.
"""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xprocess.capabilities import require_supported
from xprocess.localpath import LogPath, local_path, log_path
from xprocess.locking import NameLock
from xprocess.logs import WatchedLogs
from xprocess.records import STARTING, ProcessRecord, RecordStore, validate_name
from xprocess.release import drop_hold, release_process
from xprocess.runs import Run, holds
from xprocess.starter import ProcessStarter, describe_starter
from xprocess.starting import Caller, ensure_process, settle
from xprocess.termination import stop_record
from xprocess.watchdog import reap_launchers, start_watchdog

__all__ = ["XProcess", "XProcessInfo"]

_logger = logging.getLogger("xprocess")
_UNSET: Any = object()

# How long ``isrunning`` waits for a start under way elsewhere: pytest-xprocess's default timeout.
SETTLE_TIMEOUT = 120.0


def _describes_alike(starter: object) -> bool:
    """Whether every ``ensure`` describes ``starter`` alike: a ProcessStarter subclass that
    leaves ``__init__`` to ProcessStarter, so making an instance runs none of its code and gives
    it no settings of its own (its class's are read once per process anyway)."""
    return (
        isinstance(starter, type)
        and issubclass(starter, ProcessStarter)
        and starter.__init__ is ProcessStarter.__init__
    )


class XProcessInfo:
    """What is recorded of the process ``name``: its pid, log, control dir and shared data.

    Values the starter recorded in ``data`` are also readable as attributes (``info.port``).
    """

    def __init__(
        self,
        path: Path | str,
        name: str,
        record: ProcessRecord | None = None,
        *,
        owner: XProcess | None = None,
    ) -> None:
        self.name = validate_name(name)
        self.store = RecordStore(Path(path))
        self.record = record if record is not None else self.store.read(name)
        # Paths that are pathlib.Path and answer py.path.local's calls (``logpath.read()``).
        self.controldir = local_path(self.store.controldir(name))
        offset = self.record.log_offset if self.record is not None else 0
        self.logpath = log_path(self.store.log_path(name), offset)
        self.pidpath = local_path(self.store.record_path(name))
        self._owner = owner
        self._assigned = False  # a pid was assigned: this info no longer follows the record

    def sibling(self) -> XProcessInfo:
        """A new info of the same process, sharing this one's paths (which never change)."""
        twin = object.__new__(XProcessInfo)
        twin.__dict__.update(self.__dict__)
        return twin

    def _current(self, *, unless_alive: bool) -> ProcessRecord | None:
        """The record to answer from: this info's own, unless it has none (or, with
        ``unless_alive``, its process has ended) and no pid was assigned; then the one on disk
        now. So an info taken before ``ensure`` (conftests take one to print the log around
        the start) sees, and stops, what ``ensure`` started."""
        record = self.record
        if self._assigned or (record is not None and not unless_alive):
            return record
        if record is not None and record.is_alive():
            return record
        latest = self.store.read(self.name)
        if latest is not None and (record is None or latest.is_alive()):
            self.record = record = latest
        return record

    @property
    def pid(self) -> int | None:
        """The recorded pid; None when no process was ever spawned under this name.

        Assignable, as in pytest-xprocess: another pid is not the recorded process, so it is
        not reported running and not signalled; None forgets the process in this object.
        """
        record = self._current(unless_alive=False)
        return record.pid if record is not None and record.pid > 0 else None

    @pid.setter
    def pid(self, pid: int | None) -> None:
        self._assigned = True
        if pid is None:
            self.record = None
        elif self.record is None and _recorded_pid(self.store.read(self.name)) == int(pid):
            # ``pid, info.pid = info.pid, None`` then ``info.pid = pid``: the recorded process.
            self.record = self.store.read(self.name)
        elif self.record is None:
            self.record = ProcessRecord(self.name, int(pid), -1.0, [], "", str(self.logpath), 0, 0)
        elif int(pid) != self.record.pid:
            # Another pid with the recorded start time: never the process that was recorded.
            self.record = replace(
                self.record, pid=int(pid), create_time=-1.0, start_since_boot=-1.0, token=""
            )

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.record.data) if self.record is not None else {}

    def __getattr__(self, attr: str) -> Any:
        record = self.__dict__.get("record")
        if record is None and "_assigned" in self.__dict__:
            record = self._current(unless_alive=False)
        if record is not None and attr in record.data:
            return record.data[attr]
        raise AttributeError(
            f"{type(self).__name__} of {self.__dict__.get('name')!r} has no attribute {attr!r}"
            + (f"; recorded data keys: {sorted(record.data)}" if record is not None else "")
        )

    def isrunning(self, ignore_zombies: bool = True) -> bool:
        """Whether the recorded process still runs (a recycled pid does not count).

        A start under way in another process (another xdist worker, another run) is waited for
        first, so ``if not info.isrunning(): xprocess.ensure(...)`` never goes on with a server
        that is not ready yet.
        """
        record = self._current(unless_alive=True)
        if record is None:
            return False
        if record.state == STARTING and record.started_by != os.getpid():
            record = self._settled() or record
        return record.is_alive(ignore_zombies=ignore_zombies)

    def _settled(self) -> ProcessRecord | None:
        """The record once no start holds the name's lock (the start's own deadline, at most);
        None when the lock cannot be had (a read-only records root, a start that hangs)."""
        try:
            with NameLock(self.store.lock_path(self.name), self.name, SETTLE_TIMEOUT):
                pass
        except (TimeoutError, OSError):
            return None
        self.record = self.store.read(self.name)
        return self.record

    def terminate(self, *, kill_proc_tree: bool = True, timeout: float = 20) -> int:
        """Stop the process and, by default, its descendants.

        SIGTERM goes to the leaves of the tree first, then SIGKILL to what is left after
        ``timeout`` seconds. Returns 1 (terminated), 0 (nothing to do) or -1 (could not, or a
        negative ``timeout``). In a fixture teardown of a pytest run, it releases this process's
        use instead, and only the last holder of any run to release it stops it (not while
        another run on the same rootdir still uses it).
        """
        record = self._current(unless_alive=True)
        if record is None or (record.pid <= 0 and not record.token):
            return 0  # nothing was spawned (a start whose pid is not known yet has its token)
        if timeout < 0:
            return -1
        owner = self._owner
        if owner is not None and owner.holds and owner.in_teardown():
            return release_process(
                self.store,
                record,
                run_id=owner.run.id,
                pid=os.getpid(),
                kill_proc_tree=kill_proc_tree,
                timeout=timeout,
            )
        result = stop_record(record, kill_proc_tree=kill_proc_tree, timeout=timeout)
        if (
            owner is not None
            and owner.holds
            and holds(record.holders, os.getpid())
            and record.is_alive()
        ):
            # Still running (it could not be stopped): let a caller of another definition, who
            # waits while it has holders, go on. A stopped process is waited for by nobody, so
            # its record is not written again here (a replace costs milliseconds on a busy disk).
            drop_hold(self.store, record, os.getpid())
        return result

    def __repr__(self) -> str:
        return f"<XProcessInfo {self.name!r} pid={self.pid} log={self.logpath}>"


def _recorded_pid(record: ProcessRecord | None) -> int | None:
    return record.pid if record is not None else None


@dataclass
class StartedProcess:
    """A process ``ensure`` returned; when this XProcess started it, its Popen stays here so it
    can be reaped. One per ``ensure`` call, as pytest-xprocess kept (``xprocess.resources``)."""

    name: str
    popen: subprocess.Popen[bytes] | None
    info: XProcessInfo

    def release(self) -> None:
        """Reap it if it exited; a launcher that exited 0 hands its record to its daemon."""
        if self.popen is not None and self.popen.poll() == 0:
            settle(self.info.store, self.name, self.popen)


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
        run: Run | None = None,
        worker: str | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        if rootdir is None:
            if config is None:
                raise ValueError("XProcess needs a rootdir, or a pytest config to find one")
            from xprocess.paths import records_root

            rootdir = records_root(config)
        self.config = config
        self.rootdir = local_path(rootdir)
        self.store = RecordStore(self.rootdir)
        self.proc_wait_timeout = proc_wait_timeout
        self.log = log if log is not None else _logger
        self.run = run or Run.of(uuid.uuid4().hex)
        self.run_id = self.run.id
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "") if worker is None else worker
        # Where to say what a user should see at once (a slow start, a restart); the plugin
        # writes it to the terminal. None: slow starts say nothing, restarts go to the log.
        self.notify = notify
        # Whether a fixture is being torn down now (see XProcessInfo.terminate): the plugin sets
        # ``tearing_down`` around teardowns and may replace ``in_teardown`` with a finer test.
        self.tearing_down = False
        self.in_teardown: Callable[[], bool] = lambda: self.tearing_down
        self.resources: list[StartedProcess] = []
        self.watched = WatchedLogs()
        # In a pytest run every process holds what it uses, so that another run's release does
        # not stop it under this one.
        self._caller = Caller(
            self.store, self.run, self.worker, notify=notify, in_run=config is not None
        )
        # name -> (starter class, fingerprint, stops) of the last ensure that got it running.
        self._described: dict[str, tuple[object, str, bool]] = {}
        # name -> (record, log path, info) last returned by ensure (see ``_returned``).
        self._returns: dict[str, tuple[ProcessRecord, LogPath, XProcessInfo]] = {}

    @property
    def holds(self) -> bool:
        """Whether this object holds what it uses (see ``XProcessInfo.terminate``)."""
        return self._caller.holds

    def __enter__(self) -> XProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def getinfo(self, name: str) -> XProcessInfo:
        """The recorded state of ``name`` (an empty info when it was never started).

        Creates its control dir, as pytest-xprocess did: fixtures may put files there first.
        """
        info = XProcessInfo(self.rootdir, name, owner=self)
        info.controldir.mkdir(parents=True, exist_ok=True)
        return info

    def ensure(
        self, name: str, preparefunc: Any, restart: bool = False, persist_logs: bool = True
    ) -> tuple[int, LogPath]:
        """Make sure ``name`` runs and is ready; return ``(pid, logpath)``.

        Starts it with the starter ``preparefunc`` (a ProcessStarter subclass or instance, a
        factory called as ``factory(control_dir, xprocess)``, or an old-style
        ``preparefunc(cwd) -> (pattern, args[, env])``) unless a ready process of that name is
        already running, from this run or an earlier one. Under xdist, concurrent callers start it
        once and all get the same pid. ``restart`` stops a running one first; ``persist_logs=False``
        starts a fresh log instead of appending. The log returned is a ``pathlib.Path`` whose
        ``read()`` (a ``py.path`` call) gives only what the running start wrote.
        """
        __tracebackhide__ = True
        known = self._described.get(name) if not restart else None
        if known is not None and known[0] is preparefunc:
            # The same starter class as before, which nothing of its own runs to instantiate:
            # its description is the same, so reuse is checked without reading it again.
            reused = self._caller.reusable(name, fingerprint=known[1], stops=known[2])
            if reused is not None:
                logpath, info = self._returned(name, reused)
                self.resources.append(StartedProcess(name, None, info))
                self.watched.watch(name, logpath)
                return reused.pid, logpath
        validate_name(name)
        require_supported(f"start {name!r}", name)
        controldir = local_path(self.store.controldir(name))
        description = describe_starter(name, preparefunc, controldir, self)
        outcome = ensure_process(
            self._caller, description, restart=restart, persist_logs=persist_logs
        )
        if _describes_alike(preparefunc):
            self._described[name] = (preparefunc, description.fingerprint, description.stops)
        record = outcome.record
        logpath, info = self._returned(name, record)
        self.resources.append(StartedProcess(name, outcome.popen, info))
        self.watched.watch(name, logpath, outcome.offset)
        if outcome.reason:
            say = self.notify or self.log.warning
            say(f"xprocess: restarted {name!r} (pid {record.pid}): {outcome.reason}")
        return record.pid, logpath

    def _returned(self, name: str, record: ProcessRecord) -> tuple[LogPath, XProcessInfo]:
        """The log path ``ensure`` returns for ``record`` and the info kept in ``resources``.

        Reuse asks many times for the same record (read once while its file is unchanged):
        its paths are made once, and each call gets an info of its own that shares them."""
        made = self._returns.get(name)
        if made is not None and made[0] is record:
            return made[1], made[2].sibling()
        logpath = log_path(record.logpath, record.log_offset)
        info = XProcessInfo(self.rootdir, name, record, owner=self)
        self._returns[name] = (record, logpath, info)
        return logpath, info.sibling()

    def shared(
        self,
        name: str,
        compute: Callable[[], Any],
        *,
        cleanup: Callable[[Any], object] | None = None,
        key: str | None = None,
        timeout: float = 300.0,  # values.DEFAULT_TIMEOUT, not imported until a value is shared
        dumps: Callable[[Any], str] | None = None,
        loads: Callable[[str], Any] | None = None,
        process: str | None = None,
    ) -> Any:
        """A value computed once per test run and shared by every xdist worker.

        The first caller runs ``compute()``; every other caller, in any worker, waits for it (up
        to ``timeout`` seconds) and gets the same value, or the same error if it failed.
        ``cleanup(value)`` runs once, after the last worker has finished (also after ``-x``,
        Ctrl-C or a crashed worker); it must be a module-level function. With ``key``, the value
        is kept across runs while the key stays the same, and recomputed (after ``cleanup`` of
        the old one) when it changes. Values are stored as JSON unless ``dumps``/``loads`` turn
        them into a string and back. With ``process`` (the name of a running process), the value
        belongs to that process's instance: it is computed again once the process was restarted.

        Example::

            @pytest.fixture(scope="session")
            def database_url(xprocess):
                return xprocess.shared("database", create_database, cleanup=drop_database)
        """
        __tracebackhide__ = True
        if cleanup is not None:
            start_watchdog(self.rootdir, self.run)  # cleans up if the whole run is killed
        from xprocess.values import shared_value

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
            worker=self.worker,
            process=process,
        )

    def release(self) -> None:
        """Reap processes this object started that have exited; running ones keep running."""
        for resource in self.resources:
            resource.release()
        reap_launchers()

    # Names pytest-xprocess used for the same job; some suites call them.
    _force_clean_up = release
    _clean_up_resources = release
