"""What a person sees in the terminal: a slow start announced, a failed start on one screen."""

from __future__ import annotations

import pytest

from tests.support import HEADER

SLOW = (
    HEADER
    + """
class Slow(ProcessStarter):
    pattern = "ready"
    args = child("--delay", 2.5)
    terminate_at_end = True

class Quick(ProcessStarter):
    pattern = "ready"
    args = child()
    terminate_at_end = True

@pytest.fixture(scope="session")
def slow(xprocess):
    return xprocess.ensure("slow", Slow)

@pytest.fixture(scope="session")
def quick(xprocess):
    return xprocess.ensure("quick", Quick)
"""
)

WAITING = "xprocess: waiting for 'slow' to be ready (pattern 'ready', * s of 120 s)…"
READY = "xprocess: 'slow' is ready after * s"


def test_a_slow_start_says_what_it_waits_for_and_when_it_is_ready(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SLOW)
    pytester.makepyfile("def test_uses(slow): pass")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([WAITING, READY])


def test_a_quick_start_says_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SLOW)
    pytester.makepyfile("def test_uses(quick): pass")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*xprocess:*")
    result.stderr.no_fnmatch_line("*xprocess:*")


def test_under_xdist_a_slow_start_is_announced_on_the_workers_stderr(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SLOW)
    pytester.makepyfile("def test_uses(slow): pass")
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    result.stderr.fnmatch_lines([WAITING, READY])


FAILING = (
    HEADER
    + """
class Missing(ProcessStarter):
    pattern = "ready"
    args = ["no-such-server-binary", "--port", "1"]

class WrongPattern(ProcessStarter):
    pattern = "accepting connections"
    timeout = 1
    args = child("--before", 40, "--ready", "server is up")
"""
)

# A terminal is about 50 lines: a failed start must fit, with pytest's header and summary.
ONE_SCREEN = 50


def run_failing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, starter: str
) -> pytest.RunResult:
    # In CI, pytest prints the whole message again in its short summary; a developer's terminal
    # is what is measured here.
    for variable in ("CI", "BUILD_NUMBER"):
        monkeypatch.delenv(variable, raising=False)
    pytester.makeconftest(FAILING)
    pytester.makepyfile(
        f"""
import pytest
from conftest import {starter}

@pytest.fixture(scope="session")
def server(xprocess):
    return xprocess.ensure("server", {starter})

def test_uses(server):
    pass
"""
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    return result


def test_a_missing_binary_fails_on_one_screen_without_xprocess_source(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_failing(pytester, monkeypatch, "Missing")
    result.stdout.fnmatch_lines(["*executable 'no-such-server-binary' was not found on PATH*"])
    assert len(result.outlines) < ONE_SCREEN, result.stdout.str()
    result.stdout.no_fnmatch_line("*xprocess/*.py:*")


def test_a_wrong_pattern_fails_on_one_screen_with_the_log_tail_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_failing(pytester, monkeypatch, "WrongPattern")
    output = result.stdout.str()
    assert output.count("noise line 39") == 1, output
    assert output.count("last lines of its log") == 1, output
    assert "server log" not in output, "the log section repeats the tail of the error"
    assert len(result.outlines) < ONE_SCREEN, output
    result.stdout.no_fnmatch_line("*xprocess/*.py:*")
