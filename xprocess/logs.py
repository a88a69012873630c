"""Reading parts of a process's log without reading all of it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["WatchedLogs", "log_size", "read_since", "read_tail"]

_TAIL_BYTES = 64 * 1024


def log_size(logpath: Path | str) -> int:
    """The current size of the log in bytes (0 when it does not exist)."""
    try:
        return os.stat(logpath).st_size
    except OSError:
        return 0


def read_tail(logpath: Path | str, offset: int, count: int) -> list[str]:
    """The last ``count`` non-blank lines written at or after byte ``offset``.

    Reads at most the last 64 KiB, however long the log is.
    """
    try:
        with open(logpath, "rb") as log:
            end = log.seek(0, os.SEEK_END)
            if end < offset:  # truncated since (copytruncate, or a fresh start): take it all
                offset = 0
            start = max(offset, end - _TAIL_BYTES)
            log.seek(start)
            data = log.read(end - start)
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if start > offset and lines:
        lines = lines[1:]  # the first line was cut by the 64 KiB window
    return [line.rstrip() for line in lines if line.strip()][-count:]


def read_since(logpath: Path | str, offset: int, limit: int) -> tuple[str, bool]:
    """What was written from byte ``offset`` on, at most its last ``limit`` bytes.

    Returns the text and whether the beginning was cut off.
    """
    try:
        with open(logpath, "rb") as log:
            end = log.seek(0, os.SEEK_END)
            if end < offset:  # the log was truncated (a fresh start): take it all
                offset = 0
            start = max(offset, end - limit)
            log.seek(start)
            data = log.read(end - start)
    except OSError:
        return "", False
    return data.decode("utf-8", "replace"), start > offset


class WatchedLogs:
    """The logs of the processes a session uses, each with the offset where the current test's
    part of it begins: what a failing test's report shows."""

    def __init__(self) -> None:
        self._offsets: dict[str, tuple[Path, int]] = {}

    def watch(self, name: str, logpath: Path, offset: int | None = None) -> None:
        """Follow ``name``'s log from ``offset`` (a start's first byte), or from its end now if
        it is not followed yet."""
        if offset is not None or name not in self._offsets:
            self._offsets[name] = (logpath, log_size(logpath) if offset is None else offset)

    def mark(self) -> None:
        """A test begins: from now on, only what is written from here on is its part."""
        for name, (logpath, _) in list(self._offsets.items()):
            self._offsets[name] = (logpath, log_size(logpath))

    def sections(self, limit: int, *, skip: str | None = None) -> list[tuple[str, str]]:
        """(``"<name> log"``, text) for each log that grew since the mark, at most ``limit`` bytes
        of each (with a note where the beginning was cut); none for ``skip``, whose failed start
        already shows its log tail."""
        sections = []
        for name, (logpath, offset) in sorted(self._offsets.items()):
            if name == skip:
                continue
            text, cut = read_since(logpath, offset, limit)
            if text:
                if cut:
                    text = f"[... earlier output cut; whole log: {logpath}]\n{text}"
                sections.append((f"{name} log", text))
        return sections

    def __contains__(self, name: object) -> bool:
        return name in self._offsets
