"""``LocalPath``: a :class:`pathlib.Path` that also answers the calls of ``py.path.local``.

pytest-xprocess handed out ``py.path.local`` objects (the log ``ensure`` returns,
``XProcessInfo.logpath`` and ``controldir``, a preparefunc's ``cwd``), and conftests call
``logfile.read()``, ``.strpath`` or ``cwd.join("redis.conf").write(...)`` on them. A LocalPath is a
real ``pathlib.Path`` (``isinstance``, ``os.fspath``, ``/``, ``read_text``) that offers those
calls too, so both kinds of conftest run unchanged. Where the two disagree on a name
(``mkdir``, ``parts``, ``open``'s second argument), pathlib's meaning is kept.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

__all__ = ["LocalPath", "LogPath", "local_path", "log_path"]

if TYPE_CHECKING:
    _ConcretePath = Path
else:  # PosixPath here; a subclass of Path itself cannot be instantiated before Python 3.12
    _ConcretePath = type(Path())


class LocalPath(_ConcretePath):
    """A ``pathlib.Path`` with the methods of ``py.path.local`` that conftests use.

    Without ``__slots__``: code written for py.path sets attributes on its paths
    (``info.logpath.open = functools.partial(info.logpath.open, "rb")``).
    """

    # -- names -------------------------------------------------------------------------------
    @property
    def strpath(self) -> str:
        """The path as a string (``py.path``'s name for ``str(path)``)."""
        return str(self)

    @property
    def basename(self) -> str:
        """The last component (``name``)."""
        return self.name

    @property
    def purebasename(self) -> str:
        """The last component without its extension (``stem``)."""
        return self.stem

    @property
    def ext(self) -> str:
        """The extension with its dot (``suffix``)."""
        return self.suffix

    @property
    def dirname(self) -> str:
        """The directory part, as a string."""
        return str(self.parent)

    def join(self, *parts: str | os.PathLike[str]) -> LocalPath:
        """This path with ``parts`` appended: ``controldir.join("redis.conf")``."""
        return self.joinpath(*parts)

    def chdir(self) -> LocalPath:
        """Make this directory the current one; return the one that was."""
        old = LocalPath.cwd()
        os.chdir(self)
        return old

    def dirpath(self, *parts: str | os.PathLike[str]) -> LocalPath:
        """The parent directory, with ``parts`` appended if given."""
        return self.parent.joinpath(*parts)

    def relto(self, other: str | os.PathLike[str]) -> str:
        """This path relative to ``other``, or "" when it does not lie under it."""
        try:
            return str(self.relative_to(other))
        except ValueError:
            return ""

    def realpath(self) -> LocalPath:
        """The path with symlinks resolved."""
        return self.resolve()

    def new(self, **parts: str) -> LocalPath:
        """This path with ``basename=``, ``ext=`` or ``dirname=`` replaced."""
        directory = parts.get("dirname", self.dirname)
        base = parts.get("basename")
        if base is None:
            base = parts.get("purebasename", self.stem) + parts.get("ext", self.suffix)
        return type(self)(directory, base)

    # -- questions ---------------------------------------------------------------------------
    def check(self, **conditions: object) -> bool:
        """Whether the path exists (``check()``), or is a ``file``, ``dir`` or ``link``, or not
        (``check(file=0)``), for each condition given."""
        tests: dict[str, Callable[[], bool]] = {
            "exists": self.exists,
            "file": self.is_file,
            "dir": self.is_dir,
            "link": self.is_symlink,
        }
        unknown = sorted(set(conditions) - set(tests))
        if unknown:
            raise TypeError(f"check() got unknown conditions {unknown}; known: {sorted(tests)}")
        if not conditions:
            conditions = {"exists": True}
        return all(tests[name]() == bool(wanted) for name, wanted in conditions.items())

    def isfile(self) -> bool:
        return self.is_file()

    def isdir(self) -> bool:
        return self.is_dir()

    def islink(self) -> bool:
        return self.is_symlink()

    def size(self) -> int:
        """The size in bytes."""
        return self.stat().st_size

    def mtime(self) -> float:
        """The time of the last change, in seconds since the epoch."""
        return self.stat().st_mtime

    # -- reading and writing -----------------------------------------------------------------
    def read(self, mode: str = "r") -> Any:
        """The whole file: text (``mode="r"``) or bytes (``mode="rb"``)."""
        if "b" in mode:
            return self.read_bytes()
        return self.read_text()

    def read_binary(self) -> bytes:
        return self.read_bytes()

    def readlines(self, cr: bool = True) -> list[str]:
        """The lines of the file, with their line ends unless ``cr`` is false."""
        text = self.read_text()
        return text.splitlines(keepends=True) if cr else text.splitlines()

    def write(self, data: str | bytes, mode: str = "w", ensure: bool = False) -> None:
        """Write ``data`` (text, or bytes with ``mode="wb"``; ``"a"`` appends), making the parent
        directories first with ``ensure=True``."""
        if ensure:
            self.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes) and "b" not in mode:
            mode += "b"
        with super().open(mode) as f:
            f.write(data)

    def write_binary(self, data: bytes, ensure: bool = False) -> None:
        self.write(data, "wb", ensure=ensure)

    def ensure(self, *parts: str | os.PathLike[str], dir: bool = False) -> LocalPath:
        """The path ``parts`` below this one, created (as an empty file, or a directory with
        ``dir=True``) with its parents if it does not exist."""
        target = self.joinpath(*parts)
        if dir:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        return target

    def listdir(self, fil: str | None = None, sort: bool = False) -> list[LocalPath]:
        """The entries of this directory (matching the glob ``fil`` if given)."""
        entries = list(self.glob(fil) if fil else self.iterdir())
        return sorted(entries) if sort else entries

    def remove(self, rec: bool = True, ignore_errors: bool = False) -> None:
        """Delete the file, or the directory (with what it holds unless ``rec`` is false)."""
        if self.is_dir() and not self.is_symlink():
            if rec:
                shutil.rmtree(self, ignore_errors=ignore_errors)
            else:
                self.rmdir()
        else:
            self.unlink()

    def copy(self, target: str | os.PathLike[str]) -> None:
        """Copy the file (or directory tree) to ``target``."""
        if self.is_dir():
            shutil.copytree(self, target, dirs_exist_ok=True)
        else:
            shutil.copy2(self, target)

    def move(self, target: str | os.PathLike[str]) -> None:
        shutil.move(os.fspath(self), os.fspath(target))


def local_path(path: str | os.PathLike[str]) -> LocalPath:
    """``path`` as a LocalPath (itself when it already is one)."""
    return path if isinstance(path, LocalPath) else LocalPath(path)


class LogPath(LocalPath):
    """The log ``ensure`` returns: ``read()`` and ``readlines()`` give what the running start
    of the process wrote, as they did when pytest-xprocess emptied the logs at each run's start.

    A log here is kept across runs and restarts, so a conftest that searches
    ``logfile.read()`` for the port its server printed finds this start's port, not an earlier
    one. pathlib's ``read_text()`` and ``open()`` still give the whole file.
    """

    _start: int

    def read(self, mode: str = "r") -> Any:
        """What the running start wrote: text, or bytes with ``mode="rb"``."""
        data = self._since_start()
        return data if "b" in mode else data.decode(errors="replace")

    def readlines(self, cr: bool = True) -> list[str]:
        text: str = self.read()
        return text.splitlines(keepends=True) if cr else text.splitlines()

    def _since_start(self) -> bytes:
        start = getattr(self, "_start", 0)  # a path derived from this one has no start
        with super().open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(start if start <= size else 0)  # a log truncated since: all of it
            return log.read()


def log_path(path: str | os.PathLike[str], start: int) -> LogPath:
    """The log at ``path`` whose running start's output begins at byte ``start``."""
    log = LogPath(path)
    log._start = start
    return log
