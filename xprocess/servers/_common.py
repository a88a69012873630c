"""What the server modules share: finding programs, reading settings, the xdist worker's id."""

from __future__ import annotations

import glob
import importlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest

from xprocess.errors import ServerNotFoundError
from xprocess.servers.settings import POSTGRESQL, REDIS, Setting, resolve

__all__ = ["find_program", "flag_setting", "require_extra", "text_setting", "worker_id"]


def require_extra(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or say which extra of xprocess installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{what} needs the Python package {module!r}, which is not installed; "
            f'install it with: pip install "xprocess[{extra}]"',
            name=module,
        ) from exc


def _version_order(path: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", path)]


def find_program(
    program: str,
    *,
    configured: str | Path | None,
    setting: str,
    search: Iterable[str],
    install: str,
    companions: Iterable[str] = (),
) -> Path:
    """The path of ``program``: as configured, else on PATH, else in the usual install places.

    ``configured`` may name the program or the directory holding it. ``companions`` are programs
    that must sit next to it (``initdb`` beside ``postgres``). ``search`` holds glob patterns of
    directories; of several matches, the highest version wins.
    """
    companions = tuple(companions)
    search = tuple(search)

    def complete(directory: Path) -> bool:
        return all((directory / name).is_file() for name in (program, *companions))

    if configured:
        path = Path(configured).expanduser()
        directory = path if path.is_dir() else path.parent
        if not complete(directory):
            needed = ", ".join((program, *companions))
            raise ServerNotFoundError(
                f"{setting} is {str(configured)!r}, but {directory} does not hold {needed}; "
                f"point {setting} at the {program} program (or its directory)",
                filename=program,
            )
        return directory / program
    on_path = shutil.which(program)
    if on_path is not None and complete(Path(on_path).parent):
        return Path(on_path)
    candidates = [d for pattern in search for d in glob.glob(pattern)]
    for found in sorted(candidates, key=_version_order, reverse=True):
        if complete(Path(found)):
            return Path(found) / program
    places = ", ".join(["PATH", *search])
    raise ServerNotFoundError(
        f"{program} is not installed (looked in {places}); "
        f"install it ({install}) or set {setting} to where it is",
        filename=program,
    )


def _setting(ini: str) -> Setting:
    for setting in (*POSTGRESQL.values(), *REDIS.values()):
        if setting.ini == ini:
            return setting
    raise KeyError(ini)


def text_setting(config: pytest.Config, ini: str) -> str | None:
    """A text setting (command line, environment, ini file; see ``settings.resolve``)."""
    value = resolve(config, _setting(ini))
    return None if value is None else str(value)


def flag_setting(config: pytest.Config, ini: str) -> bool:
    """A yes/no setting: ``--ini-name`` on the command line, else ``ini = true`` in the ini file."""
    return bool(resolve(config, _setting(ini)))


def worker_id() -> str:
    """The xdist worker this runs in (``gw0``, ...), or ``main`` without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "") or "main"
