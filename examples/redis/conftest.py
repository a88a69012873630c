"""Start one ``redis-server`` for the whole test run, shared by every xdist worker.

The server keeps nothing on disk and is stopped when the run ends (``terminate_at_end``), so each
run starts from an empty database. Tests talk to it over a plain socket: no client library needed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from redis_client import Redis

from xprocess import ProcessStarter, XProcess, free_port

NAME = "redis"
PROGRAM = "redis-server"
INSTALL = "apt-get install redis-server"


def in_ci() -> bool:
    """True when the CI environment variable is set (as CI services do): a missing server fails."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(program: str, install: str) -> None:
    """Skip the tests that need ``program`` when it is not installed; fail instead on CI."""
    if shutil.which(program) is None:
        message = f"{program} is not installed (not found on PATH); install it: {install}"
        if in_ci():
            pytest.fail(f"{message} [CI is set, so this is a failure, not a skip]", pytrace=False)
        pytest.skip(message)


class RedisServer(ProcessStarter):
    pattern = "Ready to accept connections"
    timeout = 30
    # Stopped when the run ends (after the last xdist worker): it is cheap to start, and a fresh
    # server means no run sees the keys an earlier run left behind.
    terminate_at_end = True

    def args(self) -> list[object]:
        port = free_port()
        self.data["port"] = port
        # --save "" and --appendonly no: no persistence, nothing written next to the server.
        return [
            PROGRAM,
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]


@pytest.fixture(scope="session")
def redis_port(xprocess: XProcess) -> int:
    """The port of the shared server, the same in every worker."""
    require(PROGRAM, INSTALL)
    xprocess.ensure(NAME, RedisServer)
    port: int = xprocess.getinfo(NAME).data["port"]
    return port


@pytest.fixture
def redis(redis_port: int) -> Iterator[Redis]:
    """A connection to the shared server, closed after the test."""
    client = Redis(redis_port)
    yield client
    client.close()
