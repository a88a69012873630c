"""``python -m xprocess show [NAME ...]`` / ``python -m xprocess kill [NAME ...]``, outside a
test run; ``python -m xprocess --version``.

Runs pytest's own start-up (ini files, rootdir, cache_dir) without collecting anything, so the
records found are exactly those ``pytest --xshow`` would find.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import pytest

from xprocess import __version__

__all__ = ["main"]


class _ByName:
    """A one-off plugin: answers the command line before xprocess's own --xshow/--xkill, for
    the processes ``names`` only."""

    def __init__(self, command: str, names: list[str]) -> None:
        self.command = command
        self.names = names

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> int:
        from xprocess.plugin import refuse_if_unsupported

        refuse_if_unsupported(self.command)
        from xprocess.commands import kill, show
        from xprocess.paths import candidate_roots

        def write(line: str) -> None:
            print(line, flush=True)

        command = kill if self.command == "kill" else show
        return command(candidate_roots(config), write, self.names, rootdir=config.rootpath)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xprocess",
        description="Show or stop the processes xprocess recorded for a pytest rootdir.",
    )
    parser.add_argument("--version", action="version", version=f"xprocess {__version__}")
    parser.add_argument(
        "--rootdir",
        metavar="DIR",
        help="the pytest rootdir whose records to use (default: found from the current directory,"
        " as pytest finds it)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser(
        "show",
        help="a table of the recorded processes: name, pid, status, uptime, data, log; "
        "with NAME, or -v, each record in full",
    )
    show.add_argument("names", nargs="*", metavar="NAME")
    show.add_argument("-v", "--verbose", action="store_true", help="every record in full")
    kill = sub.add_parser("kill", help="terminate recorded process trees (all when no NAME)")
    kill.add_argument("names", nargs="*", metavar="NAME")
    args = parser.parse_args(argv)

    # No conftest is loaded, so addopts naming options that conftests define would be refused.
    pytest_args = ["--noconftest", "-q", "-o", "addopts="]
    if args.rootdir:
        pytest_args += ["--rootdir", args.rootdir, args.rootdir]
    plugins: list[object] = []
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        import xprocess.plugin

        plugins.append(xprocess.plugin)
    if args.names:
        plugins.append(_ByName(args.command, list(args.names)))
    elif args.command == "show":
        pytest_args.append("--xshow")
        if args.verbose:
            pytest_args[pytest_args.index("-q")] = "-v"  # -q would cancel it
    else:
        pytest_args.append("--xkill")
    return int(pytest.main(pytest_args, plugins=plugins))


if __name__ == "__main__":
    sys.exit(main())
