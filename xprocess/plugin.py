"""pytest glue: the ``xprocess`` fixture, ``--xshow``/``--xkill``, log sections, end-of-run stops.

The work itself is done by the engine modules; this module only connects it to pytest's hooks.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from xprocess.logs import log_size, read_since

__all__ = ["is_xdist_worker", "run_id_of"]

XSHOW_HELP = "show every recorded external process (pid, name, LIVE/DEAD, uptime, log) and exit"
XKILL_HELP = "terminate every recorded external process tree and exit"
LOG_SECTION_LIMIT = 64 * 1024

_RUN_ID = pytest.StashKey[str]()
_XPROCESS = pytest.StashKey[Any]()
_MAIN_PID = pytest.StashKey[int]()
_WORKERINPUT_KEY = "xprocess_run_id"
_MAIN_PID_KEY = "xprocess_main_pid"


def is_xdist_worker(config: pytest.Config) -> bool:
    """True in a pytest-xdist worker process, False in the controller or without xdist."""
    return hasattr(config, "workerinput")


def run_id_of(config: pytest.Config) -> str:
    """The id of this test run, the same in the xdist controller and all its workers."""
    return config.stash[_RUN_ID]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register --xshow and --xkill."""
    group = parser.getgroup("xprocess", "external processes managed across test runs (xprocess)")
    group.addoption("--xshow", action="store_true", default=False, help=XSHOW_HELP)
    group.addoption("--xkill", action="store_true", default=False, help=XKILL_HELP)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Answer --xshow/--xkill before any collection, and end the run with their exit code."""
    commands = config.option.xshow or config.option.xkill  # they return before any clearing
    if getattr(config.option, "cacheclear", False) and not commands:
        if is_xdist_worker(config):
            config.option.cacheclear = False  # the controller cleared it, records carried over
        else:
            from xprocess.paths import set_records_aside

            set_records_aside(config)  # put back by pytest_configure, after the cache is cleared
    if not commands:
        return None
    from xprocess.commands import kill, show
    from xprocess.paths import candidate_roots

    roots = candidate_roots(config)

    def write(line: str) -> None:
        print(line, flush=True)

    if config.option.xkill:
        return kill(roots, write)
    return show(roots, write)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Give the run an id shared with every xdist worker, so records know which run owns them.

    Last, so that records carried over a ``--cache-clear`` go back after the cache plugin cleared.
    """
    if not is_xdist_worker(config):
        from xprocess.paths import restore_records

        restore_records(config)  # also after a run that stopped before it could
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _WORKERINPUT_KEY in workerinput:
        config.stash[_RUN_ID] = str(workerinput[_WORKERINPUT_KEY])
        config.stash[_MAIN_PID] = int(workerinput[_MAIN_PID_KEY])
    else:
        config.stash[_RUN_ID] = uuid.uuid4().hex
        config.stash[_MAIN_PID] = os.getpid()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: hand the run id to each worker before it starts."""
    node.workerinput[_WORKERINPUT_KEY] = run_id_of(node.config)
    node.workerinput[_MAIN_PID_KEY] = node.config.stash[_MAIN_PID]


@pytest.fixture(scope="session")
def xprocess(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start and find the external processes a run needs: ``xprocess.ensure(name, Starter)``."""
    from xprocess.manager import XProcess
    from xprocess.paths import records_root, run_marker
    from xprocess.runs import Run

    config = request.config
    run = Run.of(run_id_of(config), config.stash[_MAIN_PID])
    root = records_root(config)
    # Tells the end of the run (in the xdist controller) that this run has something to stop.
    marker = run_marker(root, run.id)
    try:
        marker.parent.mkdir(exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a read-only records root: running processes can still be found and reused
    with XProcess(config, root, run=run) as manager:
        config.stash[_XPROCESS] = manager
        yield manager


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note where each managed log ends, so a failure report shows only what this test caused."""
    manager = item.config.stash.get(_XPROCESS, None)
    if manager is not None:
        for name, (logpath, _) in list(manager.watched.items()):
            manager.watched[name] = (logpath, log_size(logpath))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add a "<name> log" section per managed process to a failing test's report."""
    report = yield
    manager = item.config.stash.get(_XPROCESS, None)
    if manager is None or not report.failed:
        return report
    for name, (logpath, offset) in sorted(manager.watched.items()):
        text, cut = read_since(logpath, offset, LOG_SECTION_LIMIT)
        if text:
            if cut:
                text = f"[... earlier output cut; whole log: {logpath}]\n{text}"
            report.sections.append((f"{name} log", text))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """After the whole run, stop what was asked to stop: ``terminate_at_end`` processes always,
    ``terminate_on_interrupt`` ones when the run was interrupted (Ctrl-C, internal error).

    A wrapper, so that it runs after fixture teardown and after xdist has shut its workers down;
    in a worker it does nothing, since other workers may still use the processes.
    """
    try:
        return (yield)
    finally:
        if not is_xdist_worker(session.config):
            _end_of_run(session.config, exitstatus)


def _end_of_run(config: pytest.Config, exitstatus: int) -> None:
    from xprocess.paths import records_root, run_marker

    root = records_root(config, create=False)
    run_id = run_id_of(config)
    marker = run_marker(root, run_id)
    if not marker.exists():
        return  # no worker of this run used xprocess: nothing to do, nothing to import
    from xprocess.lifecycle import stop_run_processes
    from xprocess.values import cleanup_run_values

    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def report(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)

    # Values first: cleaning one up may need a process (drop a database in a server).
    try:
        cleanup_run_values(root, run_id, report)
    finally:
        interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        for name in stop_run_processes(root, run_id, interrupted=interrupted):
            report(
                f"xprocess: could not terminate {name!r} at the end of the run; "
                "see pytest --xshow, and stop it with pytest --xkill"
            )
        marker.unlink(missing_ok=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Reap processes this session started that have exited, so none is left a zombie."""
    manager = config.stash.get(_XPROCESS, None)
    if manager is not None:
        manager.release()
