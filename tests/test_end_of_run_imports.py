"""The end of a run that shares no value does not import the values' module."""

from __future__ import annotations

import pytest

from tests.support import running
from tests.test_watchdog import CONFTEST, started_pid

PROBE = """

def pytest_unconfigure(config):
    import sys
    from pathlib import Path

    Path(config.rootpath, "imported").write_text(str("xprocess.values" in sys.modules))
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_the_end_of_a_run_without_values_leaves_their_module_unimported(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    if workers:
        pytest.importorskip("xdist", reason="-n needs pytest-xdist: pip install pytest-xdist")
    pytester.makeconftest(CONFTEST + PROBE)
    pytester.makepyfile(
        """
        from conftest import Server

        def test_uses(xprocess):
            xprocess.ensure("server", Server)
        """
    )
    pytester.runpytest_subprocess(*workers).assert_outcomes(passed=1)
    # The main process's end (the last to unconfigure) did its work without the module: the
    # server (terminate_at_end) is stopped and the run's marker gone.
    assert (pytester.path / "imported").read_text() == "False"
    runs = pytester.path / ".pytest_cache" / "d" / ".xprocess" / ".runs"
    assert [p.name for p in runs.iterdir() if "." not in p.name] == []
    assert not running(started_pid(pytester))
