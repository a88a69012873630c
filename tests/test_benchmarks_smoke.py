"""The benchmark harness runs and prints its table (xprocess side only: no venv is built)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="the harness needs /proc")
def test_benchmark_harness_prints_its_table(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--xprocess-only",
            "--only",
            "reuse,terminate",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    header = next(line for line in out.splitlines() if line.startswith("scenario"))
    columns = ["scenario", "pytest-xprocess", "xprocess", "ratio", "target", "(xprocess)", "met"]
    assert header.split() == columns
    assert "ensure() of a live process" in out
    assert "terminate() of a process with 3 children" in out
    assert "readiness" not in out  # only the chosen scenarios are run and shown

    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["errors"] == []
    assert data["leftovers"] == []
    assert {row["scenario"] for row in data["rows"]} == {"reuse", "terminate"}
    assert data["samples"]["xprocess"]["reuse"]
    assert data["samples"]["xprocess"]["terminate"]
