"""The benchmark harness runs and prints its table, on the fast and the portable paths.

Slow and not needed by CI, so deselected by default: ``python -m pytest -m benchmark``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"

pytestmark = pytest.mark.benchmark


def test_benchmark_harness_prints_its_table(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--only", "reuse,terminate", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    header = next(line for line in out.splitlines() if line.startswith("scenario"))
    columns = [
        "scenario",
        "xprocess",
        "portable",
        "portable / xprocess",
        "target (xprocess)",
        "met",
    ]
    assert [c.strip() for c in header.split("  ") if c.strip()] == columns
    assert "ensure() of a live process" in out
    assert "terminate() of a process with 3 children" in out
    assert "readiness" not in out  # only the chosen scenarios are run and shown

    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["messages"] == []
    assert {row["scenario"] for row in data["rows"]} == {"reuse", "terminate"}
    for side in ("xprocess", "portable"):
        assert data["samples"][side]["reuse"] and data["samples"][side]["terminate"]
