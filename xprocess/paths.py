"""Where records live for a pytest configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

__all__ = [
    "NO_CACHE_DIRNAME",
    "candidate_roots",
    "records_root",
    "restore_records",
    "run_marker",
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


def set_records_aside(config: pytest.Config) -> None:
    """Move the records out of ``<cache_dir>/d`` before ``--cache-clear`` empties it.

    Clearing the cache must not forget running processes (a second copy would start, the first
    would run on unrecorded): their records, logs and control dirs are carried over, by rename,
    so running processes keep their working directory and log.
    """
    cache = _cache_dir(config)
    if cache is None:
        return
    root = _cached_root(cache)
    if root.is_dir() and not root.is_symlink() and not (cache / _ASIDE).exists():
        os.rename(root, cache / _ASIDE)


def restore_records(config: pytest.Config) -> None:
    """Put records set aside by ``set_records_aside`` back in place."""
    cache = _cache_dir(config)
    if cache is None or not (cache / _ASIDE).is_dir():
        return
    root = _cached_root(cache)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(cache / _ASIDE, root)
    except OSError as exc:  # another run made a new root meanwhile: keep both, say where
        raise pytest.UsageError(
            f"xprocess could not move its records back from {cache / _ASIDE} to {root}: "
            f"{exc}. Move the directory back by hand once no run uses {root}."
        ) from exc


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
