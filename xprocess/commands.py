"""``--xshow`` and ``--xkill``: list and stop every recorded process, outside any test run.

``--xshow`` prints a table, one line per recorded process::

    NAME         PID    STATUS  UPTIME   HELD BY       DATA        LOG
    http_server  7168   LIVE    0:00:41  -             port=40123  .pytest_cache/d/.xprocess/...

STATUS is LIVE (ready and running), STARTING (running but never ready: a start in progress, or
one whose starter crashed), FAILED (its last start failed) or DEAD (not running, or its pid now
belongs to another process).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from xprocess.layout import Layout
from xprocess.manager import XProcessInfo
from xprocess.records import FAILED, READY, ProcessRecord, RecordStore
from xprocess.runs import running_users
from xprocess.termination import stop_record
from xprocess.values import clear_values, describe_values

__all__ = ["COLUMNS", "held_by", "kill", "show", "status_of"]

Write = Callable[[str], None]

_STATUS = {1: "TERMINATED", 0: "NO PROCESS FOUND", -1: "FAILED TO TERMINATE"}

LIVE = "LIVE"
DEAD = "DEAD"
STARTING = "STARTING"
FAILED_STATUS = "FAILED"
COLUMNS = ("NAME", "PID", "STATUS", "UPTIME", "HELD BY", "DATA", "LOG")
_DATA_WIDTH = 40


def _uptime(record: ProcessRecord, now: float) -> str:
    seconds = max(0, int(now - record.create_time))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def status_of(info: XProcessInfo) -> str:
    """LIVE, STARTING, FAILED or DEAD (see the module's docstring)."""
    record = info.record
    if record is None:
        return DEAD
    if record.state == FAILED:
        return FAILED_STATUS
    if not info.isrunning():
        return DEAD
    return LIVE if record.state == READY else STARTING


def held_by(record: ProcessRecord) -> str:
    """Who holds the process: the xdist workers using it until their teardown releases it, and
    the runs still going whose end stops it (``-``: nobody)."""
    live = running_users(record.holders)
    workers = [str(h["worker"]) for h in live if h.get("worker")]
    runs = [f"run {str(h.get('run', '?'))[:8]}" for h in live if not h.get("worker")]
    runs += [f"run {str(user.get('run', '?'))[:8]}" for user in running_users(record.users)]
    return ", ".join(workers + list(dict.fromkeys(runs))) or "-"


def _data(record: ProcessRecord) -> str:
    text = ", ".join(
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in sorted(record.data.items())
    )
    if len(text) > _DATA_WIDTH:
        text = text[: _DATA_WIDTH - 1] + "…"
    return text or "-"


def _shown_path(path: Path, rootdir: Path | None) -> str:
    if rootdir is not None:
        try:
            return str(Path(path).relative_to(rootdir))
        except ValueError:
            pass
    return str(path)


def row(info: XProcessInfo, now: float, rootdir: Path | None = None) -> tuple[str, ...]:
    """The cells of ``info``'s line in the table (see COLUMNS)."""
    record = info.record
    log = _shown_path(info.logpath, rootdir)
    if record is None:
        return (info.name, "-", DEAD, "-", "-", "(record missing or unreadable)", log)
    status = status_of(info)
    running = status in (LIVE, STARTING)
    return (
        info.name,
        str(info.pid) if info.pid is not None else "-",
        status,
        _uptime(record, now) if running else "-",
        held_by(record) if running else "-",
        _data(record),
        log,
    )


def table(rows: list[tuple[str, ...]]) -> list[str]:
    """``rows`` under the header, each column as wide as its widest cell."""
    lines = [COLUMNS, *rows]
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in lines
    ]


def _infos(roots: Iterable[Path], names: list[str] | None) -> list[XProcessInfo]:
    infos = []
    for root in roots:
        store = RecordStore(root)
        for name in store.names():
            if names is None or name in names:
                infos.append(XProcessInfo(root, name))
    return infos


def _nothing_recorded(looked_in: Iterable[Path], rootdir: Path | None) -> str:
    places = " or ".join(_shown_path(Path(p), rootdir) for p in looked_in) or "(no records root)"
    where = f" (rootdir {rootdir})" if rootdir is not None else ""
    return f"nothing recorded under {places}{where}"


def show(
    roots: Iterable[Path],
    write: Write,
    *,
    rootdir: Path | None = None,
    looked_in: Iterable[Path] | None = None,
) -> int:
    """Print the table of recorded processes, then the shared values; always returns 0.

    Log paths are shown relative to ``rootdir``; when nothing is recorded, the line says where
    it looked (``looked_in``, default ``roots``).
    """
    roots = list(roots)
    infos = _infos(roots, None)
    values = [line for root in roots for line in describe_values(root)]
    if not infos and not values:
        write(_nothing_recorded(roots if looked_in is None else looked_in, rootdir))
        return 0
    now = time.time()
    if infos:
        for line in table([row(info, now, rootdir) for info in infos]):
            write(line)
    for line in values:
        write(line)
    return 0


def kill(
    roots: Iterable[Path],
    write: Write,
    names: list[str] | None = None,
    *,
    rootdir: Path | None = None,
    looked_in: Iterable[Path] | None = None,
    force: bool = False,
) -> int:
    """Terminate recorded process trees (all, or those in ``names``).

    Without ``names``, shared values are cleared first (their cleanup run where it can be, while
    the processes they may need still run), then the processes are terminated. A process that a
    live test run holds or uses is left running, with a line saying so, unless ``force``; and
    while one is, shared values (which may be that run's) are left too.
    Returns 0 when each is gone, 1 when one could not be terminated, was left running or a name
    has no record.
    """
    roots = list(roots)
    infos = _infos(roots, names)
    status = 0
    if names is not None:
        for missing in sorted(set(names) - {info.name for info in infos}):
            write(f"- {missing} NO RECORD (nothing of that name was started here)")
            status = 1
    elif not infos and not any(describe_values(root) for root in roots):
        write(_nothing_recorded(roots if looked_in is None else looked_in, rootdir))
    held = {} if force else {info.name: _in_use(info) for info in infos}
    if names is None:
        if any(held.values()):
            write("- shared values left as they are: a test run in progress may use them")
        else:
            # Values first, as at the end of a run: cleaning one up may need its server.
            for root in roots:
                status = clear_values(root, write) or status
    for info in infos:
        if info.record is None:
            write(f"- {info.name} UNREADABLE RECORD (nothing signalled; see the warning above)")
            status = 1
            continue
        if held.get(info.name):
            write(
                f"{info.pid} {info.name} LEFT RUNNING: held by {held[info.name]}, a test run "
                "in progress; stop that run first, or add --xforce to stop it anyway"
            )
            status = 1
            continue
        notes: list[str] = []
        result = stop_record(info.record, report=notes.append)
        label = "NOT SIGNALLED" if notes and result <= 0 else _STATUS[result]
        write(f"{info.pid if info.pid is not None else '-'} {info.name} {label}")
        for note in notes:
            write(f"    {note}")
        if result < 0:
            status = 1
    return status


def _in_use(info: XProcessInfo) -> str:
    """Who among live test runs holds or uses the running process of ``info`` ("" if none)."""
    record = info.record
    if record is None or not info.isrunning():
        return ""
    # A test run in progress has its marker; a script's XProcess (no run) holds nothing here.
    layout = Layout(info.store.root)
    in_runs = [
        entry
        for entry in running_users([*record.holders, *record.users])
        if layout.run_marker(str(entry.get("run", ""))).exists()
    ]
    return held_by(record) if in_runs else ""
