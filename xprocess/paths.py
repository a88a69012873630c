"""Where records live for a pytest configuration."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from xprocess.cache_clear import hold_records, runs_lock_path
from xprocess.locking import flock

__all__ = [
    "NO_CACHE_DIRNAME",
    "candidate_roots",
    "hold_records",
    "records_root",
    "restore_records",
    "run_marker",
    "runs_lock_path",
    "set_records_aside",
]

NO_CACHE_DIRNAME = ".xprocess"
_IGNORE_ALL = "# created by xprocess: records and logs of managed processes\n*\n"


def _cache_dir(config: pytest.Config) -> Path | None:
    """The pytest cache directory, or None when the cache plugin is disabled."""
    if config.pluginmanager.is_blocked("cacheprovider"):
        return None
    try:
        value = config.getini("cache_dir")
    except ValueError:
        return None
    path = Path(os.path.expandvars(str(value))).expanduser()
    return path if path.is_absolute() else config.rootpath / path


def _cached_root(cache: Path) -> Path:
    return cache / "d" / ".xprocess"


def records_root(config: pytest.Config, *, create: bool = True) -> Path:
    """``<cache_dir>/d/.xprocess``, or ``<rootdir>/.xprocess`` without the cache plugin."""
    cache = _cache_dir(config)
    root = config.rootpath / NO_CACHE_DIRNAME if cache is None else _cached_root(cache)
    if create and not root.is_dir():
        top = root if cache is None else cache
        existed = top.exists()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise pytest.UsageError(
                f"xprocess cannot create its records directory {root}: {exc}. "
                "Make the directory writable, or set another location with "
                "'-o cache_dir=DIR'."
            ) from exc
        if not existed:
            # Keep records and logs out of version control, as pytest does for its cache.
            (top / ".gitignore").write_text(_IGNORE_ALL, encoding="utf-8")
    return root


# Where the records wait while ``--cache-clear`` empties ``<cache_dir>/d``: beside it, in the
# cache directory, which pytest does not clear.
_ASIDE = "xprocess-records-during-cache-clear"


def set_records_aside(config: pytest.Config) -> int | None:
    """Move the records out of ``<cache_dir>/d`` before ``--cache-clear`` empties it.

    Clearing the cache must not forget running processes (a second copy would start, the first
    would run on unrecorded): their records, logs and control dirs are carried over, by rename,
    so running processes keep their working directory and log. Never from under another run:
    while one works on the records (it holds the runs lock), the clear is refused with a
    UsageError. Returns the runs lock, held exclusively until ``restore_records``.
    """
    cache = _cache_dir(config)
    if cache is None or not cache.is_dir():
        return None
    root = _cached_root(cache)
    try:
        held = hold_records(root, exclusive=True)
    except BlockingIOError:
        raise pytest.UsageError(
            f"--cache-clear would move the records of running processes ({root}) from under "
            "another pytest run on this rootdir that is using them (or its watchdog, cleaning "
            "up after it was killed). Run with --cache-clear once that run has finished, or "
            "without it now."
        ) from None
    if root.is_dir() and not root.is_symlink() and not (cache / _ASIDE).exists():
        os.rename(root, cache / _ASIDE)
    return held


def restore_records(config: pytest.Config, held: int | None = None) -> None:
    """Put records set aside by ``set_records_aside`` back in place, then let other runs in:
    ``held``, the runs lock it took, becomes this run's shared hold."""
    cache = _cache_dir(config)
    try:
        if cache is None or not (cache / _ASIDE).is_dir():
            return
        root = _cached_root(cache)
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(cache / _ASIDE, root)
        except OSError as exc:  # made meanwhile by a run without xprocess: keep both
            raise pytest.UsageError(
                f"xprocess could not move its records back from {cache / _ASIDE} to {root}: "
                f"{exc}. Move the directory back by hand once no run uses {root}."
            ) from exc
    finally:
        if held is not None:
            with contextlib.suppress(OSError):
                flock(held, exclusive=False)


def run_marker(root: Path, run_id: str) -> Path:
    """An empty file that says run ``run_id`` used the records under ``root``."""
    from xprocess.layout import Layout

    return Layout(root).run_marker(run_id)


def candidate_roots(config: pytest.Config) -> list[Path]:
    """Every records root that may hold records for this rootdir (for show and kill)."""
    roots = [records_root(config, create=False), config.rootpath / NO_CACHE_DIRNAME]
    unique: list[Path] = []
    for root in roots:
        if root not in unique and root.is_dir():
            unique.append(root)
    return unique
