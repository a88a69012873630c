"""Text snippets the pytester-driven tests put into the test projects they create."""

from __future__ import annotations

from pathlib import Path

CHILD = Path(__file__).parent / "helpers" / "child.py"

# Imported by the generated conftest/test files: ``child(*flags)`` builds the helper command.
HEADER = f"""
import os, sys
from pathlib import Path
import pytest
from xprocess import ProcessStarter

CHILD = {str(CHILD)!r}

def child(*flags):
    return [sys.executable, "-u", CHILD, *map(str, flags)]
"""


def count_lines(path: Path) -> int:
    """How many starts a --count-file recorded (0 when it does not exist)."""
    return len(path.read_text().split()) if path.exists() else 0


def module_using(fixture: str, count: int, *, note: bool = False, check: str = "") -> str:
    """A test module of ``count`` tests that each use ``fixture`` (and the ``xprocess`` fixture).

    With ``note`` each test records what it saw through the generated conftest's ``note()``;
    ``check`` is a line of code each test runs after that.
    """
    body = [f"    note({fixture}, xprocess)"] if note else []
    if check:
        body.append(f"    {check}")
    return "\n".join(
        [
            "import pytest",
            "from conftest import note" if note else "",
            "",
            f"@pytest.mark.parametrize('i', range({count}))",
            f"def test_uses({fixture}, xprocess, i):",
            *(body or ["    pass"]),
            "",
        ]
    )
