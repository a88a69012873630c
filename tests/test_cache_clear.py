"""``pytest --cache-clear`` empties the cache but carries the records of running processes over."""

from __future__ import annotations

import pytest

from tests.support import HEADER, count_lines

CONFTEST = (
    HEADER
    + """
class Server(ProcessStarter):
    pattern = "ready"
    args = child("--count-file", Path(__file__).parent / "started")
"""
)
TEST = """
from conftest import Server

def test_uses(xprocess):
    xprocess.ensure("server", Server)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_cache_clear_keeps_running_processes_recorded(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    if workers:
        pytest.importorskip("xdist", reason="-n needs pytest-xdist: pip install pytest-xdist")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_uses=TEST)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    other = pytester.path / ".pytest_cache" / "d" / "other-plugin"
    other.mkdir()
    try:
        pytester.runpytest_subprocess("--cache-clear", *workers).assert_outcomes(passed=1)
        assert not other.exists(), "the cache was not cleared"
        assert count_lines(pytester.path / "started") == 1, "a second copy was started"
        result = pytester.runpytest_subprocess("--xshow")
        result.stdout.fnmatch_lines(["server * LIVE *"])
    finally:
        pytester.runpytest_subprocess("--xkill")
