"""A pytest plugin that notes, after every test, the recorded processes and their descendants.

tests/test_examples.py copies it into the example it runs and loads it with ``-p``, so it runs
in every xdist worker. Each note is one JSON line appended to ``REPORT`` in the rootdir, written
with a single ``os.write`` so that the lines of several workers do not interleave.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator

import psutil
import pytest

from xprocess.paths import records_root
from xprocess.records import RecordStore

REPORT = "xprocess-report.jsonl"


def _descendants(pid: int) -> list[list[float]]:
    """``[pid, create_time]`` of every descendant of ``pid`` (none once it is gone)."""
    try:
        return [[p.pid, p.create_time()] for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        root = records_root(item.config)
        worker = getattr(item.config, "workerinput", {}).get("workerid", "main")
        lines = []
        for name, record in RecordStore(root).records():
            if record is not None:
                entry = {
                    "worker": worker,
                    "root": str(root),
                    "name": name,
                    "pid": record.pid,
                    "create_time": record.create_time,
                    "data": record.data,
                    "descendants": _descendants(record.pid),
                }
                lines.append(json.dumps(entry) + "\n")
        fd = os.open(item.config.rootpath / REPORT, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, "".join(lines).encode())
        finally:
            os.close(fd)
