"""pytest glue: the lines xprocess writes to the terminal while tests run (a slow start, a
restart), each on a line of its own between pytest's results, as pytest's terminal reporter
writes its own lines.

Only one process writes to the terminal: pytest itself, or under xdist the controller. A worker
hands its line to the controller through the one channel xdist forwards at once, recorded
warnings (a ``Notice``); the controller writes it as a line and drops it from the warnings
summary.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

__all__ = ["Notice", "NoticeWriter", "notifier"]

PLUGIN_NAME = "xprocess-notices"


class Notice(UserWarning):
    """A worker's line for the terminal, on its way to the xdist controller."""


def notifier(config: pytest.Config) -> Callable[[str], None]:
    """Where the engine says what a user should see at once: the terminal, past pytest's
    capturing (from an xdist worker: through the controller)."""
    writer = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if isinstance(writer, NoticeWriter):
        return writer.write

    def send(line: str) -> None:
        notice = warnings.WarningMessage(Notice(line), Notice, __file__, 0)
        kwargs = {"warning_message": notice, "when": "runtest", "nodeid": "", "location": None}
        config.hook.pytest_warning_recorded.call_historic(kwargs=kwargs)

    return send


class NoticeWriter:
    """Registered where the terminal is written (not in xdist workers): writes each line on a
    line of its own. The line of results under way is ended first (with its progress, as when
    a file's results end); the prefix it had (the file, or the test under ``-v``) is written
    again before the next result, so no line of results is cut in two."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._owed: tuple[str, object] | None = None  # (prefix, reporter.currentfspath)

    def write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        uncaptured = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with uncaptured:
            if reporter is None:
                print(line, file=sys.stderr, flush=True)
                return
            writer = self.config.get_terminal_writer()
            if self._owed is None:
                resume = reporter.currentfspath
                if isinstance(resume, Path):  # a file's results
                    self._owed = (os.path.relpath(resume, reporter.startpath) + " ", resume)
                elif isinstance(resume, str):  # -v: the location of the test under way
                    self._owed = (resume, resume)
                if writer.width_of_current_line:
                    self._end_results_line(reporter, resume)
                    writer.line()
            reporter.currentfspath = None
            writer.line(line)

    @staticmethod
    def _end_results_line(reporter: object, resume: object) -> None:
        # pytest's own step when a file's results end; private, hence looked up with care.
        fill = getattr(reporter, "_write_progress_information_filling_space", None)
        results = isinstance(resume, Path) or (
            resume is None and getattr(reporter, "verbosity", 0) <= 0  # xdist's dots
        )
        if results and getattr(reporter, "_show_progress_info", False) and fill is not None:
            fill()

    def _pay_prefix(self) -> None:
        if self._owed is None:
            return
        prefix, resume = self._owed
        self._owed = None
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and reporter.currentfspath is None:
            self.config.get_terminal_writer().write(prefix, flush=True)
            reporter.currentfspath = resume

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self) -> None:
        """Before pytest writes the next test's prefix: take up the interrupted line again."""
        self._pay_prefix()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self) -> None:
        """Before pytest writes a result: take up the interrupted line again."""
        self._pay_prefix()

    @pytest.hookimpl(trylast=True)  # after the terminal reporter recorded it as a warning
    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage) -> None:
        """In the xdist controller: a worker's line, written as a line, not as a warning."""
        if warning_message.category is Notice:
            line = str(warning_message.message)
            self._unrecord(line)
            self.write(line)

    def _unrecord(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        recorded = getattr(reporter, "stats", {}).get("warnings", [])
        for i in range(len(recorded) - 1, -1, -1):
            if line in str(getattr(recorded[i], "message", "")):
                del recorded[i]
                break
        if not recorded and reporter is not None:
            reporter.stats.pop("warnings", None)
            recolour = getattr(reporter, "_set_main_color", None)
            if recolour is not None:
                recolour()  # the summary line is not yellow for a notice
