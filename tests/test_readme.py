"""The README's quick start does what its words say, run as a user would copy it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import live_records

README = Path(__file__).resolve().parent.parent / "README.rst"


def quick_start_files() -> dict[str, str]:
    """The code blocks of the quick start, by the file name in their first-line comment."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\nQuick start\n-----------\n", 1)[1].split("\nHow it works\n", 1)[0]
    files = {}
    for block in re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", section):
        code = "\n".join(line[4:] for line in block.splitlines())
        first, _, rest = code.partition("\n")
        files[first.removeprefix("# ").strip()] = rest
    return files


def test_the_quick_start_has_a_conftest_and_a_test() -> None:
    assert set(quick_start_files()) == {"conftest.py", "test_server.py"}


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "xdist"])
def test_the_quick_start_runs_and_stops_its_server_at_the_end(
    pytester: pytest.Pytester, workers: int
) -> None:
    for name, code in quick_start_files().items():
        (pytester.path / name).write_text(code, encoding="utf-8")
    result = pytester.runpytest_subprocess(*(["-n", str(workers)] if workers else []))
    result.assert_outcomes(passed=1)
    assert live_records(pytester.path) == [], "terminate_at_end did not stop the server"
    shown = pytester.runpytest_subprocess("--xshow")
    shown.stdout.fnmatch_lines(["server *DEAD *port=*"])
