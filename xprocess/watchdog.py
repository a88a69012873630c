"""A watchdog per test run that has something to stop at its end, for runs that never reach it.

A CI job that hits its time limit SIGKILLs pytest and its workers at once: no end-of-run hook
runs, and ``terminate_at_end`` processes and the cleanups of shared values would wait for
``--xkill``. So the first process of a run that records such a thing starts one watchdog for the
whole run (``start_watchdog``): a small process in a session of its own, out of reach of a signal
to the run's process group, that waits for the run's main process (the xdist controller) to exit.

* The run ended normally: its end removed the run's marker ``<root>/.runs/<run id>``; the
  watchdog sees that (inotify, or polling) and exits, even before the main process does.
* The main process is gone and the marker is still there: the watchdog does what the end of the
  run would have done (cleanups of shared values, then stopping the run's processes, as for an
  interrupted run) and exits.

Runs without such processes start none. ``<root>/.runs/<run id>.watchdog`` says a watchdog was
started for the run (it is made exclusively, so there is one per run) and holds what it reported;
after a killed run it stays as ``<run id>.killed.log``.

The watchdog starts while the run's workers start, on the same cores, and nearly always only
waits: so where the kernel gives process descriptors (Linux 5.3+), the process that starts it
opens what it waits on (a pidfd of the main process, checked to be that process, an inotify
watch on the markers, the shared runs lock) and hands them over, and the watchdog runs without
``site`` (``python -S``), importing nothing but this module until the run turns out killed. Then
it loads ``site`` and the engine, as the run had them. Elsewhere it checks the main process
itself, polling (``wait_for_end``).
"""

from __future__ import annotations

# Nothing else at the top: the watchdog imports this module with ``site`` turned off (see the
# docstring), so every other import is made where it is needed (``contextlib`` is loaded by
# ``-m`` already).
import contextlib
import os
import select
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from pathlib import Path
    from typing import Any

__all__ = ["reap_launchers", "start_watchdog", "watchdog_flag"]

_IN_DELETE = 0x00000200
_IN_MOVED_FROM = 0x00000040
_POLL_INTERVAL = 0.2
_started: set[tuple[str, str]] = set()
_launchers: list[subprocess.Popen[bytes]] = []


def watchdog_flag(root: Path, run_id: str) -> Path:
    """The file that says run ``run_id`` has a watchdog."""
    from xprocess.layout import Layout

    return Layout(root).watchdog_flag(run_id)


def start_watchdog(root: Path, run: Any) -> None:
    """Start the watchdog of ``run`` (a ``runs.Run``) unless it has one; a no-op outside a run.

    Only a pytest run has an end to stand in for: its ``xprocess`` fixture makes the run's marker,
    and without the marker nothing is started.
    """
    import json
    import subprocess

    from xprocess.layout import Layout

    key = (str(root), run.id)
    if key in _started:
        return
    layout = Layout(root)
    marker = layout.run_marker(run.id)
    if not marker.exists():
        return
    flag = layout.watchdog_flag(run.id)
    try:
        fd = os.open(flag, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileExistsError:
        _started.add(key)  # another process of this run started it
        return
    except OSError:
        return  # a read-only records root: nothing of this run can be recorded either
    _started.add(key)
    package_parent = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    env.pop("XPROCESS_TOKEN", None)  # it is no managed process
    # The cleanups it may run are the project's: they import what the run could import, from
    # where the run was (a conftest importing a module beside it).
    try:
        cwd = os.getcwd()
    except OSError:  # the run's working directory was removed
        cwd = "/"
    handles = _handles(root, run.entry(), marker)
    light = ["-S"] if handles else []
    passed = [str(marker), str(flag), ",".join(map(str, handles))] if handles else []
    try:
        with os.fdopen(fd, "wb") as log:
            launcher = subprocess.Popen(
                [
                    sys.executable,
                    *light,
                    "-m",
                    "xprocess.watchdog",
                    str(root),
                    json.dumps(run.entry()),
                    json.dumps({"sys_path": sys.path, "cwd": cwd}),
                    *passed,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",  # not the project's: ``-m`` would import a package of that name from it
                env=env,
                start_new_session=True,
                close_fds=True,
                pass_fds=[h for h in handles if h >= 0],
            )
    finally:
        for handle in handles:
            if handle >= 0:
                os.close(handle)  # the watchdog has its own copies
    # Waited for at the end of this process's session (``reap_launchers``), not here: the start
    # need not wait for the fork. In a session of its own, the launcher survives a kill of the
    # run's process group, and its watchdog then finds the run's main process gone.
    _launchers.append(launcher)


def _handles(root: Path, entry: dict[str, Any], marker: Path) -> tuple[int, ...]:
    """What the watchdog waits on, opened here: a pidfd of the run's main process, an inotify
    descriptor on the run markers (or -1), the runs lock held shared (or -1); or () where there
    are no pidfds, or the main process is already gone (the watchdog then checks it itself)."""
    from xprocess.cache_clear import hold_records
    from xprocess.capabilities import HAVE_PIDFD

    if not HAVE_PIDFD:
        return ()
    try:
        pidfd = os.pidfd_open(int(entry["pid"]))
    except OSError:
        return ()
    # Checked after the pidfd was opened: a pid reused before would point it at a stranger.
    if _main_is_gone(entry):
        os.close(pidfd)
        return ()
    inotify = _inotify_on(marker.parent)
    try:
        lock = hold_records(root)
    except BaseException:
        for handle in (pidfd, inotify):
            if handle >= 0:
                os.close(handle)
        raise
    return (pidfd, inotify, -1 if lock is None else lock)


def reap_launchers(timeout: float = 10.0) -> None:
    """Wait for the watchdog launchers this process started (long gone by the end of a session:
    each forks its watchdog and exits), so that none is left a zombie or a child."""
    import subprocess

    while _launchers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _launchers[-1].wait(timeout)
        _launchers.pop()


def _main_is_gone(entry: dict[str, Any]) -> bool:
    from xprocess.liveness import is_alive

    return not is_alive(
        int(entry["pid"]),
        float(entry["create_time"]),
        entry.get("since_boot"),
        str(entry.get("boot_id", "")),
    )


def _inotify_on(directory: Path) -> int:
    """An inotify descriptor that wakes when an entry of ``directory`` goes, or -1."""
    from xprocess.capabilities import inotify_watch

    return inotify_watch(directory, _IN_DELETE | _IN_MOVED_FROM)


def _wait(marker: str, pidfd: int, inotify: int, main_is_gone: Any = None) -> bool:
    """Wait until the marker goes or the main process exits (its pidfd, if >= 0, wakes, or
    ``main_is_gone()`` says so); True when the run ended normally (its marker was removed)."""
    poller = select.poll()
    for fd in (pidfd, inotify):
        if fd >= 0:
            poller.register(fd, select.POLLIN)
    while os.path.exists(marker) and not (main_is_gone is not None and main_is_gone()):
        events = poller.poll(_POLL_INTERVAL * 1000)
        if inotify >= 0 and any(fd == inotify for fd, _ in events):
            with contextlib.suppress(BlockingIOError):
                os.read(inotify, 65536)
        if pidfd >= 0 and any(fd == pidfd for fd, _ in events):
            break
    return not os.path.exists(marker)


def wait_for_end(entry: dict[str, Any], marker: Path) -> bool:
    """Wait until the run ends; True when it ended normally (its marker was removed)."""
    from xprocess.capabilities import HAVE_PIDFD

    pidfd = -1
    if HAVE_PIDFD:
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(int(entry["pid"]))
    inotify = _inotify_on(marker.parent)
    try:
        # Checked after the pidfd was opened: a pid reused before would point it at a stranger.
        return _wait(str(marker), pidfd, inotify, lambda: _main_is_gone(entry))
    finally:
        for fd in (pidfd, inotify):
            if fd >= 0:
                os.close(fd)


def stand_in_for_end(root: Path, run_id: str) -> None:
    """What the end of run ``run_id`` would have done, for a run that was killed."""
    from xprocess.end_of_run import finish_run

    def report(line: str) -> None:
        print(line, flush=True)

    finish_run(root, run_id, interrupted=True, report=report)


def main(argv: list[str]) -> int:
    """The watchdog: ``root entry where`` (JSON: the run's ``Run.entry()``, and its ``sys.path``
    and working directory), then, where ``start_watchdog`` opened what the watchdog waits on,
    ``marker flag pidfd,inotify,lock`` (``-1`` for what it could not open)."""
    import time

    if os.fork() > 0:
        os._exit(0)  # the caller reaps this parent at once; the watchdog is no one's child
    started = time.time()
    if len(argv) > 3:
        # The runs lock stays held, by the descriptor handed over, until this process exits.
        marker, flag = argv[3], argv[4]
        pidfd, inotify, _lock = (int(fd) for fd in argv[5].split(","))
        ended = _wait(marker, pidfd, inotify)
    else:
        ended, flag = _wait_alone(argv[0], argv[1])
    if not ended:
        _stand_in(argv, flag, started)
        return 0
    with contextlib.suppress(OSError):
        os.unlink(flag)
    return 0


def _wait_alone(root_text: str, entry_text: str) -> tuple[bool, str]:
    """Wait for the run's end with nothing handed over (no pidfds here): whether it ended
    normally, and the watchdog's flag."""
    import json
    from pathlib import Path

    from xprocess.cache_clear import hold_records
    from xprocess.layout import Layout

    root, entry = Path(root_text), json.loads(entry_text)
    layout = Layout(root)
    # Held for its whole life: a --cache-clear elsewhere must not move the records it watches
    # (the run's marker) and may need for the run's end.
    hold_records(root)
    run_id = str(entry["run"])
    return wait_for_end(entry, layout.run_marker(run_id)), str(layout.watchdog_flag(run_id))


def _stand_in(argv: list[str], flag: str, started: float) -> None:
    """Do what the end of the killed run would have done, from where it ran."""
    import time

    if sys.flags.no_site:  # turned off for the wait: the run had its paths and import hooks
        import site

        site.main()
    import json
    from pathlib import Path

    from xprocess.layout import Layout

    root, run_id = Path(argv[0]), str(json.loads(argv[1])["run"])
    where = json.loads(argv[2]) if len(argv) > 2 else {}
    print(
        f"xprocess watchdog: run {run_id} was killed (watched since {time.ctime(started)}); "
        "doing what its end would have done",
        flush=True,
    )
    # The cleanups are the project's: they import what the run imported, from where it ran.
    run_path = [str(p) for p in where.get("sys_path", [])]
    sys.path[:] = [*run_path, *(p for p in sys.path if p not in run_path)]
    with contextlib.suppress(OSError):
        os.chdir(str(where.get("cwd", "/")))
    stand_in_for_end(root, run_id)
    with contextlib.suppress(OSError):  # what it did stays readable, beside the run markers
        os.rename(flag, Layout(root).killed_run_log(run_id))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
