"""One name, two definitions of its starter: a caller never silently gets the other's process."""

from __future__ import annotations

import pytest

from tests.support import HEADER, count_lines

pytest.importorskip("xdist", reason="-n needs pytest-xdist: pip install pytest-xdist")

# Two tests ask for "srv" with different starters, as pytest-xprocess's own suite does; the
# first holds it until the second is asking (so that, under -n 2, they overlap), then stops it.
TESTS = (
    HEADER
    + """
from projects import wait_for

ROOT = Path(__file__).parent


def starter(which):
    return type(
        f"Starter{which}",
        (ProcessStarter,),
        {"pattern": "ready", "args": child("--count-file", ROOT / f"starts-{which}")},
    )


def recorded(which):
    return [int(line) for line in (ROOT / f"starts-{which}").read_text().split()]


def test_a(xprocess):
    pid, _ = xprocess.ensure("srv", starter("a"))
    assert recorded("a") == [pid]
    wait_for((ROOT / "b-asking").exists, timeout=120, what="test_b to ask for srv")
    assert xprocess.getinfo("srv").terminate() == 1


def test_b(xprocess):
    (ROOT / "b-asking").write_text("")
    pid, _ = xprocess.ensure("srv", starter("b"))
    assert recorded("b") == [pid], "test_b got the process of test_a's starter"
    assert xprocess.getinfo("srv").terminate() == 1
"""
)


def test_a_caller_of_another_definition_waits_for_the_holder_then_starts_its_own(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_two_definitions=TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    assert count_lines(pytester.path / "starts-a") == 1
    assert count_lines(pytester.path / "starts-b") == 1
