"""pytest glue for ``xprocess.servers``: the settings of the ready-made servers.

Registered as a plugin of its own so that it costs a run nothing beyond these options: the server
modules are imported only by a conftest that uses them.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from xprocess.servers import warm_up
from xprocess.servers.isolation import FAILED, MARKER, kept_lines
from xprocess.servers.settings import POSTGRESQL, REDIS, register
from xprocess.servers.startup_checks import check_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register every setting of the servers, each as an option and an ini key."""
    register(parser, POSTGRESQL)
    register(parser, REDIS)


def pytest_configure(config: pytest.Config) -> None:
    """Register the isolation marker; refuse a setting that cannot be right before anything
    starts (once, not in each worker)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(mode): how xprocess.servers.postgresql isolates this test: 'database' "
        "(a fresh database) or 'transaction' (rolled back at its end)",
    )
    config.pluginmanager.register(KeptDatabases(), "xprocess-servers-kept-databases")
    if not hasattr(config, "workerinput") and not (
        config.getoption("xshow", False) or config.getoption("xkill", False)
    ):
        check_settings(config)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """In the run's main process: begin what the servers' fixtures would wait for (a new
    PostgreSQL cluster), while the xdist workers boot and the tests are collected."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    # Runs that set no fixture up: collecting, listing fixtures, planning setups, --xshow/--xkill.
    looks_only = ("collectonly", "showfixtures", "show_fixtures_per_test", "setupplan")
    if any(getattr(config.option, name, False) for name in looks_only):
        return
    if config.getoption("xshow", False) or config.getoption("xkill", False):
        return
    warm_up.begin_ahead(config.pluginmanager.get_plugins(), config)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run ends with the cache copies its main process began made (see ``_pgcache``)."""
    cache = sys.modules.get("xprocess.servers._pgcache")
    if cache is not None:
        cache.finish_fills()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """In an xdist worker, once its collection is sent: import what its tests' server
    fixtures need while it waits for its first test (see ``warm_up``)."""
    if hasattr(session.config, "workerinput"):
        warm_up.start(warm_up.imports_of(_fixture_functions(session.items)))


def _fixture_functions(items: list[pytest.Item]) -> Iterator[Any]:
    """The function of every fixture the ``items`` use, each once."""
    seen: set[int] = set()
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        for definitions in getattr(info, "name2fixturedefs", {}).values():
            for definition in definitions:
                if id(definition) not in seen:
                    seen.add(id(definition))
                    yield definition.func


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The warm-up's imports are done before a test's own begin."""
    warm_up.finish()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Note a failed phase, so the database fixture's teardown knows to keep the database."""
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


class KeptDatabases:
    """Collects the databases kept for failed tests and names them in the run's summary."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Reports of xdist workers arrive here too, with the teardown's user properties."""
        if report.when == "teardown":
            self.lines.extend(kept_lines(report.user_properties, report.nodeid))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Say how to connect to each kept database."""
        if self.lines:
            terminalreporter.section("databases kept for failed tests (xprocess)")
            for line in self.lines:
                terminalreporter.line(line)
