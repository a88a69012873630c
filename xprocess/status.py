"""What ``--xshow`` says of one record: its status, who holds it, its line of the table, all of it.

STATUS is LIVE (ready and running), STARTING (running but never ready: a start in progress, or
one whose starter crashed; or not running yet while a start holds its lock, preparing in the
starter's ``args()``, as ``initdb`` does), FAILED (its last start failed), DEAD (not running, or
its pid now belongs to another process) or FOREIGN (a record copied from another project's
records root, by ``cp -a`` of a project with its cache: it names that project's process, which is
neither used nor stopped from here; DATA says where it came from) or MOVED (written before the
project was moved here with ``mv``: its process, started at the old place, is not reused but
stopped by the next start of its name or by ``--xkill``). DATA takes the room the
terminal leaves (all of it when the output is not a terminal); ``in_full`` shows a record
whole instead, one field a line.

(:mod:`xprocess.commands` lists the records and prints what this module makes of each.)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from xprocess.locking import held_elsewhere
from xprocess.manager import XProcessInfo
from xprocess.records import FAILED, READY, ProcessRecord
from xprocess.runs import running_users

__all__ = [
    "COLUMNS",
    "DEAD",
    "FAILED_STATUS",
    "FOREIGN",
    "LIVE",
    "MIN_DATA_WIDTH",
    "MOVED",
    "STARTING",
    "foreign_note",
    "held_by",
    "in_full",
    "row",
    "shown_path",
    "status_of",
    "table",
    "terminal_width",
]

LIVE = "LIVE"
DEAD = "DEAD"
STARTING = "STARTING"
FAILED_STATUS = "FAILED"
FOREIGN = "FOREIGN"
MOVED = "MOVED"
COLUMNS = ("NAME", "PID", "STATUS", "UPTIME", "HELD BY", "DATA", "LOG")
_DATA = COLUMNS.index("DATA")
# DATA is never cut shorter than this, however narrow the terminal: a line that is too long
# wraps, which is better than a port that cannot be read.
MIN_DATA_WIDTH = 40


def _uptime(record: ProcessRecord, now: float) -> str:
    seconds = max(0, int(now - record.create_time))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def status_of(info: XProcessInfo, *, locked: bool = False) -> str:
    """LIVE, STARTING, FAILED or DEAD (see the module's docstring).

    ``locked``: another process holds the name's lock, so a record of no running process is
    a start still preparing (its ``args()`` runs before there is a process to record).
    """
    record = info.record
    running = record is not None and info.isrunning()
    if not running and locked:
        return STARTING
    if record is None:
        return DEAD
    if record.state == FAILED:
        return FAILED_STATUS
    if not running:
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


def terminal_width() -> int | None:
    """The width to fit the table to: ``COLUMNS`` when set, else the terminal's; None when the
    output is not a terminal (piped, or in a file), where nothing is cut."""
    if os.environ.get("COLUMNS", "").strip().isdigit():
        return int(os.environ["COLUMNS"])
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def _value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _data(record: ProcessRecord) -> str:
    text = ", ".join(f"{key}={_value(value)}" for key, value in sorted(record.data.items()))
    return text or "-"


def shown_path(path: Path, rootdir: Path | None) -> str:
    """``path`` relative to ``rootdir`` when it lies below it, else as it is."""
    if rootdir is not None:
        try:
            return str(Path(path).relative_to(rootdir))
        except ValueError:
            pass
    return str(path)


def _foreign_status(info: XProcessInfo) -> str:
    return MOVED if info.store.moved(info.name) is not None else FOREIGN


def foreign_note(info: XProcessInfo) -> str | None:
    """What is said of ``info``'s record when it was written for another records root (see
    ``xprocess.origin``); None when it was not."""
    if info.record is not None:
        return None
    found = info.store.foreign(info.name)
    if found is None:
        return None
    record, origin = found
    pid = f"pid {record.pid}" if record.pid > 0 else "a start"
    if info.store.moved(info.name) is not None:
        return (
            f"started at {origin}, before the project moved here: {pid} is stopped by the "
            "next start of this name or by --xkill"
        )
    gone = "" if os.path.isdir(origin) else ", which no longer exists"
    return (
        f"copied from {origin}{gone}: names {pid} of that project; neither used nor stopped "
        "from here, the next start here replaces it"
    )


def row(info: XProcessInfo, now: float, rootdir: Path | None = None) -> tuple[str, ...]:
    """The cells of ``info``'s line in the table (see COLUMNS)."""
    record = info.record
    log = shown_path(info.logpath, rootdir)
    foreign = foreign_note(info)
    if foreign is not None:
        return (info.name, "-", _foreign_status(info), "-", "-", foreign, log)
    locked = held_elsewhere(info.store.lock_path(info.name))
    if record is None:
        if locked:
            return (info.name, "-", STARTING, "-", "-", "(preparing its first start)", log)
        return (info.name, "-", DEAD, "-", "-", "(record missing or unreadable)", log)
    status = status_of(info, locked=locked)
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


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[tuple[str, ...]], width: int | None = None) -> list[str]:
    """``rows`` under the header, each column as wide as its widest cell.

    With a ``width`` (the terminal's), DATA is cut to the room the other columns leave on a line
    of that width, but never to less than MIN_DATA_WIDTH characters.
    """
    if width is not None:
        others = sum(
            max(len(cells[i]) for cells in [COLUMNS, *rows])
            for i in range(len(COLUMNS))
            if i != _DATA
        )
        room = max(MIN_DATA_WIDTH, width - others - 2 * (len(COLUMNS) - 1))
        rows = [(*cells[:_DATA], _cut(cells[_DATA], room), *cells[_DATA + 1 :]) for cells in rows]
    lines = [COLUMNS, *rows]
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in lines
    ]


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def in_full(info: XProcessInfo, now: float) -> list[str]:
    """Every field of ``info``'s record worth reading, one a line, nothing cut."""
    record = info.record
    foreign = foreign_note(info)
    if foreign is not None:
        status = _foreign_status(info)
        return [info.name, f"  status   {status}: {foreign}", f"  log      {info.logpath}"]
    locked = held_elsewhere(info.store.lock_path(info.name))
    if record is None:
        if locked:
            what = f"  status   {STARTING} (preparing its first start)"
        else:
            what = "  (record missing or unreadable)"
        return [info.name, what, f"  log      {info.logpath}"]
    status = status_of(info, locked=locked)
    running = status in (LIVE, STARTING)
    fields = [
        ("pid", str(record.pid)),
        ("status", status),
        ("uptime", _uptime(record, now) if running else "-"),
        ("held by", held_by(record) if running else "-"),
        ("started", f"{_when(record.started_at)} by run {record.run_id[:8] or '?'}"),
        ("command", " ".join(record.argv)),
        ("cwd", record.cwd),
        ("log", str(info.logpath)),
    ]
    if record.state == FAILED and record.error_message:
        fields.append(("error", f"{record.error_type}: {record.error_message}".splitlines()[0]))
    data = sorted(record.data.items()) or [("-", "")]
    lines = [info.name, *(f"  {key:<8} {value}" for key, value in fields)]
    for i, (key, value) in enumerate(data):
        shown = f"{key}={_value(value)}" if key != "-" else "-"
        lines.append(f"  {'data' if i == 0 else '':<8} {shown}")
    return lines
