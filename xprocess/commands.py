"""``--xshow`` and ``--xkill``: list and stop every recorded process, outside any test run.

``--xshow`` prints a table, one line per recorded process::

    NAME         PID    STATUS  UPTIME   HELD BY       DATA        LOG
    http_server  7168   LIVE    0:00:41  -             port=40123  .pytest_cache/d/.xprocess/...

STATUS is LIVE (ready and running), STARTING (running but never ready: a start in progress, or
one whose starter crashed; or not running yet while a start holds its lock, preparing in the
starter's ``args()``, as ``initdb`` does), FAILED (its last start failed), DEAD (not running, or
its pid now belongs to another process) or FOREIGN (a record copied from another project's
records root, by ``cp -a`` of a project with its cache: it names that project's process, which is
neither used nor stopped from here; DATA says where it came from) or MOVED (written before the
project was moved here with ``mv``: its process, started at the old place, is not reused but
stopped by the next start of its name or by ``--xkill``). DATA takes the room the
terminal leaves (all of it when the output is not a terminal); ``full=True`` shows each record
whole instead, one field a line.

``--xkill`` stops each recorded process, then forgets the record of each one that is gone (its
log and control dir stay), so DEAD records do not pile up.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from xprocess.errors import StartupTimeoutError
from xprocess.layout import Layout
from xprocess.locking import NameLock, held_elsewhere
from xprocess.manager import XProcessInfo
from xprocess.records import FAILED, READY, ProcessRecord, RecordStore
from xprocess.runs import running_users
from xprocess.termination import stop_record
from xprocess.values import clear_values, describe_values

__all__ = ["COLUMNS", "held_by", "kill", "show", "status_of", "terminal_width"]

Write = Callable[[str], None]

_STATUS = {1: "TERMINATED", 0: "NO PROCESS FOUND", -1: "FAILED TO TERMINATE"}

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


def _shown_path(path: Path, rootdir: Path | None) -> str:
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
    log = _shown_path(info.logpath, rootdir)
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


def _infos(
    roots: Iterable[Path], names: list[str] | None, *, starting: bool = False
) -> list[XProcessInfo]:
    """The recorded processes (those in ``names``); with ``starting``, also the names a start
    holds the lock of before it has written a first record."""
    infos = []
    for root in roots:
        store = RecordStore(root)
        recorded = store.names()
        if starting:
            recorded = sorted({*recorded, *_first_starts(Layout(root))})
        for name in recorded:
            if names is None or name in names:
                infos.append(XProcessInfo(root, name))
    return infos


def _first_starts(layout: Layout) -> list[str]:
    """Names without a record whose lock another process holds: a first start preparing."""
    try:
        locks = sorted(layout.locks.glob("*.lock"))
    except OSError:
        return []
    return [
        lock.name.removesuffix(".lock")
        for lock in locks
        if not layout.record(lock.name.removesuffix(".lock")).exists() and held_elsewhere(lock)
    ]


def _nothing_recorded(looked_in: Iterable[Path], rootdir: Path | None) -> str:
    places = " or ".join(_shown_path(Path(p), rootdir) for p in looked_in) or "(no records root)"
    where = f" (rootdir {rootdir})" if rootdir is not None else ""
    return f"nothing recorded under {places}{where}"


def show(
    roots: Iterable[Path],
    write: Write,
    names: list[str] | None = None,
    *,
    rootdir: Path | None = None,
    looked_in: Iterable[Path] | None = None,
    width: int | None = None,
    full: bool = False,
) -> int:
    """Print the table of recorded processes, then the shared values; returns 0 (1 when one of
    ``names`` has no record).

    Log paths are shown relative to ``rootdir``; when nothing is recorded, the line says where
    it looked (``looked_in``, default ``roots``). ``width`` is the terminal's (see
    ``terminal_width``). ``full`` (always, with ``names``) shows each record whole instead of
    a line of the table.
    """
    roots = list(roots)
    infos = _infos(roots, names, starting=True)
    now = time.time()
    if names is not None:
        status = 0
        for missing in sorted(set(names) - {info.name for info in infos}):
            write(f"{missing}: NO RECORD (nothing of that name was started here)")
            status = 1
        for info in infos:
            for line in in_full(info, now):
                write(line)
        return status
    values = [line for root in roots for line in describe_values(root)]
    if not infos and not values:
        write(_nothing_recorded(roots if looked_in is None else looked_in, rootdir))
        return 0
    if full:
        for info in infos:
            for line in in_full(info, now):
                write(line)
    elif infos:
        for line in table([row(info, now, rootdir) for info in infos], width):
            write(line)
    for line in values:
        write(line)
    return 0


def _forget_if_gone(info: XProcessInfo, stopped: ProcessRecord, *, moved: bool = False) -> None:
    """Remove the record of a process that ``--xkill`` left gone; its log and control dir stay.

    Not while a start of that name is under way (its lock is held, as by a concurrent run), nor
    when the record changed since it was read: then the record is another start's. ``moved``:
    the record is one written before the project was moved here.
    """
    store = info.store
    try:
        with NameLock(store.lock_path(info.name), info.name, 0):
            current = store.moved(info.name) if moved else store.read(info.name)
            same = current is not None and (current.pid, current.create_time, current.token) == (
                stopped.pid,
                stopped.create_time,
                stopped.token,
            )
            if same and current is not None and not current.is_alive():
                store.record_path(info.name).unlink(missing_ok=True)
    except (StartupTimeoutError, OSError):
        pass  # kept: shown DEAD until the next --xkill


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
    the processes they may need still run), then the processes are terminated. The record of
    each process that is then gone is removed (see ``_forget_if_gone``). A process that a live
    test run holds or uses is left running, with a line saying so, unless ``force``; and while
    one is, shared values (which may be that run's) are left too.
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
        moved = info.store.moved(info.name) if info.record is None else None
        if moved is not None:
            status = _kill_moved(info, moved, write) or status
            continue
        foreign = foreign_note(info)
        if foreign is not None:
            write(f"- {info.name} FOREIGN (nothing signalled: {foreign})")
            continue
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
        elif label != "NOT SIGNALLED":
            _forget_if_gone(info, info.record)
    return status


def _kill_moved(info: XProcessInfo, moved: ProcessRecord, write: Write) -> int:
    """``--xkill`` of what ``info``'s name left running at the project's old place: 1 when it
    could not be stopped."""
    notes: list[str] = []
    result = stop_record(moved, report=notes.append)
    label = "NOT SIGNALLED" if notes and result <= 0 else _STATUS[result]
    pid = moved.pid if moved.pid > 0 else "-"
    write(f"{pid} {info.name} {label} (started at {moved.root}, before the project moved here)")
    for note in notes:
        write(f"    {note}")
    if result >= 0 and label != "NOT SIGNALLED":
        _forget_if_gone(info, moved, moved=True)
    return 1 if result < 0 else 0


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
