"""What a person sees in the terminal: a slow start announced, a failed start on one screen."""

from __future__ import annotations

import re

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


def test_under_xdist_a_slow_start_is_announced_by_the_controller(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SLOW)
    pytester.makepyfile("def test_uses(slow): pass")
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([WAITING, READY])
    result.stderr.no_fnmatch_line("*xprocess:*")
    result.stdout.no_fnmatch_line("*warning*")  # a notice, not a warning


# Results before and after the slow start, in one file: the notices come mid-line.
AROUND = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_before(i): pass

def test_slow(slow): pass

@pytest.mark.parametrize("i", range(6))
def test_after(i): pass
"""


def notices_and_results(result: pytest.RunResult) -> tuple[list[int], list[str]]:
    lines = result.outlines
    notices = [i for i, line in enumerate(lines) if "xprocess:" in line]
    for i in notices:
        assert lines[i].startswith("xprocess: "), f"a line was cut in two: {lines[i]!r}"
    return notices, lines


@pytest.mark.parametrize("verbose", [False, True], ids=["dots", "verbose"])
def test_a_notice_takes_a_line_of_its_own_between_the_results(
    pytester: pytest.Pytester, verbose: bool
) -> None:
    pytester.makeconftest(SLOW)
    pytester.makepyfile(test_around=AROUND)
    result = pytester.runpytest_subprocess("-p", "no:randomly", *(["-v"] if verbose else []))
    result.assert_outcomes(passed=13)
    notices, lines = notices_and_results(result)
    assert [lines[i] for i in notices] == [
        line for line in lines if line.startswith("xprocess:")
    ] and len(notices) == 2, result.stdout.str()
    before, after = lines[notices[0] - 1], lines[notices[-1] + 1]
    if verbose:
        assert before.rstrip() == "test_around.py::test_slow", before
        assert re.fullmatch(r"test_around.py::test_slow PASSED +\[ *\d+%\]", after), after
    else:
        # The line of results ends with its progress; the next one starts with the file again.
        assert re.fullmatch(r"test_around.py \.{6} +\[ 46%\]", before), before
        assert re.fullmatch(r"test_around.py \.{7} +\[100%\]", after), after


def test_under_xdist_a_notice_takes_a_line_of_its_own_between_the_dots(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(SLOW)
    pytester.makepyfile(test_around=AROUND)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=13)
    notices, lines = notices_and_results(result)
    assert len(notices) == 2, result.stdout.str()
    dots = [line for line in lines if re.fullmatch(r"\.+( +\[ *\d+%\])?", line)]
    assert sum(line.count(".") for line in dots) == 13, result.stdout.str()
    result.stdout.no_fnmatch_line("*warning*")


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
