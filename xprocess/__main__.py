"""``python -m xprocess show`` / ``python -m xprocess kill [NAME ...]``, outside a test run.

Runs pytest's own start-up (ini files, rootdir, cache_dir) without collecting anything, so the
records found are exactly those ``pytest --xshow`` would find.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import pytest

__all__ = ["main"]


class _KillByName:
    """A one-off plugin: answers the command line before xprocess's own --xshow/--xkill."""

    def __init__(self, names: list[str], force: bool) -> None:
        self.names = names
        self.force = force

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> int:
        from xprocess.plugin import refuse_if_unsupported

        refuse_if_unsupported("kill")
        from xprocess.commands import kill
        from xprocess.paths import candidate_roots

        return kill(
            candidate_roots(config),
            lambda line: print(line, flush=True),
            self.names,
            rootdir=config.rootpath,
            force=self.force,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xprocess",
        description="Show or stop the processes xprocess recorded for a pytest rootdir.",
    )
    parser.add_argument(
        "--rootdir",
        metavar="DIR",
        help="the pytest rootdir whose records to use (default: found from the current directory,"
        " as pytest finds it)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "show", help="a table of the recorded processes: name, pid, status, uptime, data, log"
    )
    kill = sub.add_parser("kill", help="terminate recorded process trees (all when no NAME)")
    kill.add_argument("names", nargs="*", metavar="NAME")
    kill.add_argument(
        "--force",
        action="store_true",
        help="also terminate processes that test runs in progress hold",
    )
    args = parser.parse_args(argv)

    # No conftest is loaded, so addopts naming options that conftests define would be refused.
    pytest_args = ["--noconftest", "-q", "-o", "addopts="]
    if args.rootdir:
        pytest_args += ["--rootdir", args.rootdir, args.rootdir]
    plugins: list[object] = []
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        import xprocess.plugin

        plugins.append(xprocess.plugin)
    if args.command == "show":
        pytest_args.append("--xshow")
    elif args.names:
        plugins.append(_KillByName(list(args.names), args.force))
    else:
        pytest_args += ["--xkill", *(["--xforce"] if args.force else [])]
    return int(pytest.main(pytest_args, plugins=plugins))


if __name__ == "__main__":
    sys.exit(main())
