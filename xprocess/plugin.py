"""pytest glue: the ``xprocess`` fixture, ``--xshow``/``--xkill``, log sections, end-of-run stops.

The work itself is done by the engine modules; this module only connects it to pytest's hooks.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path
    from types import FrameType

    from xprocess.manager import XProcess
    from xprocess.runs import Run

__all__ = ["is_xdist_worker", "run_id_of"]

XSHOW_HELP = (
    "show a table of the recorded external processes (name, pid, LIVE/STARTING/FAILED/DEAD/"
    "FOREIGN, uptime, held by, data, log) and exit; with -v, each record in full"
)
XKILL_HELP = (
    "terminate every recorded external process tree, forget the records of those that are "
    "gone (their logs stay), and exit; one a test run in progress holds is left running "
    "(see --xforce)"
)
XFORCE_HELP = "with --xkill: also terminate processes that test runs in progress hold"
LOG_SECTION_LIMIT = 64 * 1024

_RUN_ID = pytest.StashKey[str]()
_XPROCESS = pytest.StashKey["XProcess"]()
_MAIN_PID = pytest.StashKey[int]()
_CLEARING = pytest.StashKey[int]()  # the runs lock a --cache-clear holds until configure
_WORKERINPUT_KEY = "xprocess_run_id"
_MAIN_PID_KEY = "xprocess_main_pid"


def __getattr__(name: str) -> Any:
    """``config.pluginmanager.getplugin("xprocess").XProcess``: pytest-xprocess's plugin module
    offered these names, and older conftests reach them through the plugin object."""
    if name in ("XProcess", "XProcessInfo"):
        from xprocess import manager

        return getattr(manager, name)
    if name == "getrootdir":
        from xprocess.pytest_xprocess import getrootdir

        return getrootdir
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    group.addoption("--xforce", action="store_true", default=False, help=XFORCE_HELP)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Refuse to run beside pytest-xprocess; answer --xshow/--xkill before any collection,
    and end the run with their exit code."""
    from xprocess.migration import conflicting_distribution

    conflict = conflicting_distribution()
    if conflict is not None:
        raise pytest.UsageError(conflict)
    commands = config.option.xshow or config.option.xkill  # they return before any clearing
    if getattr(config.option, "cacheclear", False) and not commands:
        if is_xdist_worker(config):
            config.option.cacheclear = False  # the controller cleared it, records carried over
        else:
            from xprocess.paths import set_records_aside

            # Put back by pytest_configure, after the cache is cleared; refused while another
            # run works on the records.
            held = set_records_aside(config)
            if held is not None:
                config.stash[_CLEARING] = held
    if not commands:
        return None
    refuse_if_unsupported("--xkill" if config.option.xkill else "--xshow")
    from xprocess.commands import kill, show, terminal_width
    from xprocess.paths import candidate_roots, records_root

    roots = candidate_roots(config)
    rootdir, looked_in = config.rootpath, [records_root(config, create=False)]

    def write(line: str) -> None:
        print(line, flush=True)

    if config.option.xkill:
        return kill(roots, write, rootdir=rootdir, looked_in=looked_in, force=config.option.xforce)
    full = config.option.verbose > 0
    width = terminal_width()
    return show(roots, write, rootdir=rootdir, looked_in=looked_in, width=width, full=full)


def refuse_if_unsupported(option: str) -> None:
    """End the run with a usage error naming ``option`` where xprocess cannot work (Windows)."""
    from xprocess.capabilities import require_supported
    from xprocess.errors import UnsupportedPlatformError

    try:
        require_supported(f"answer {option}")
    except UnsupportedPlatformError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Give the run an id shared with every xdist worker, so records know which run owns them.

    Last, so that records carried over a ``--cache-clear`` go back after the cache plugin cleared.
    """
    if not is_xdist_worker(config):
        from xprocess.paths import hold_records, records_root, restore_records

        held = config.stash.get(_CLEARING, None)
        if held is None:  # not clearing: wait for a clear in progress elsewhere to finish
            held = hold_records(records_root(config, create=False))
        try:
            restore_records(config, held)  # also after a run that stopped before it could
        finally:
            if held is not None:
                os.close(held)
        from xprocess.notices import PLUGIN_NAME, NoticeWriter

        config.pluginmanager.register(NoticeWriter(config), PLUGIN_NAME)
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
def xprocess(request: pytest.FixtureRequest) -> Iterator[XProcess]:
    """Start and find the external processes a run needs: ``xprocess.ensure(name, Starter)``."""

    from xprocess.paths import hold_records, records_root
    from xprocess.runs import Run

    config = request.config
    run = Run.of(run_id_of(config), config.stash[_MAIN_PID])
    root = records_root(config)
    # Held while this process works on the records: a --cache-clear elsewhere is refused
    # instead of moving them from under it.
    held = hold_records(root)
    try:
        yield from _manager(config, root, run)
    finally:
        if held is not None:
            os.close(held)


def _manager(config: pytest.Config, root: Path, run: Run) -> Iterator[XProcess]:
    """The fixture's XProcess, with this run's marker made."""
    from xprocess.manager import XProcess
    from xprocess.notices import notifier
    from xprocess.paths import run_marker

    # Tells the end of the run (in the xdist controller) that this run has something to stop.
    marker = run_marker(root, run.id)
    try:
        marker.parent.mkdir(exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a read-only records root: running processes can still be found and reused
    worker = str(getattr(config, "workerinput", {}).get("workerid", ""))
    with XProcess(config, root, run=run, worker=worker, notify=notifier(config)) as manager:
        manager.in_teardown = lambda: manager.tearing_down or _in_fixture_finalizer()
        config.stash[_XPROCESS] = manager
        yield manager


def _in_fixture_finalizer() -> bool:
    """Whether a fixture's finalizer is running now: in a teardown, or when a parametrized
    fixture is finalized during the setup of a test that needs another of its params."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "finish" and code.co_filename.endswith(_FIXTURES_MODULE):
            return True
        frame = frame.f_back
    return False


_FIXTURES_MODULE = os.path.join("_pytest", "fixtures.py")


def _failed_start_of(call: pytest.CallInfo[None]) -> str | None:
    """The process whose failed start ``call`` raised: its error already holds its log tail."""
    if call.excinfo is None:
        return None
    from xprocess.errors import XProcessError

    error = call.excinfo.value
    return error.name if isinstance(error, XProcessError) else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note where each managed log ends, so a failure report shows only what this test caused."""
    manager = item.config.stash.get(_XPROCESS, None)
    if manager is not None:
        manager.watched.mark()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """Let ``terminate()`` know it is called from a fixture's teardown (see XProcessInfo)."""
    manager = item.config.stash.get(_XPROCESS, None)
    if manager is None:
        return (yield)
    manager.tearing_down = True
    try:
        return (yield)
    finally:
        manager.tearing_down = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add a "<name> log" section per managed process to a failing test's report."""
    report = yield
    manager = item.config.stash.get(_XPROCESS, None)
    if manager is None or not report.failed:
        return report
    report.sections.extend(manager.watched.sections(LOG_SECTION_LIMIT, skip=_failed_start_of(call)))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """After the whole run, stop what was asked to stop: ``terminate_at_end`` processes always,
    ``terminate_on_interrupt`` ones when the run was interrupted (Ctrl-C, internal error).

    A wrapper, so that it runs after fixture teardown and after xdist has shut its workers down;
    in a worker it does nothing, since other workers may still use the processes. Fixtures
    still set up when a run is cut short are torn down inside it.
    """
    manager = session.config.stash.get(_XPROCESS, None)
    if manager is not None:
        manager.tearing_down = True
    try:
        return (yield)
    finally:
        if not is_xdist_worker(session.config):
            _end_of_run(session.config, exitstatus)


def _end_of_run(config: pytest.Config, exitstatus: int) -> None:
    from xprocess.paths import hold_records, records_root, run_marker

    root = records_root(config, create=False)
    held = hold_records(root)  # no --cache-clear moves the records away meanwhile
    try:
        if run_marker(root, run_id_of(config)).exists():
            _finish(config, root, exitstatus)
        # else: no process of this run used xprocess: nothing to do, nothing to import
    finally:
        if held is not None:
            os.close(held)


def _finish(config: pytest.Config, root: Path, exitstatus: int) -> None:
    from xprocess.end_of_run import finish_run

    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def report(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)

    interrupted = exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
    finish_run(root, run_id_of(config), interrupted=interrupted, report=report)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Reap processes this session started that have exited, so none is left a zombie."""
    manager = config.stash.get(_XPROCESS, None)
    if manager is not None:
        manager.release()
