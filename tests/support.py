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
