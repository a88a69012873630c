"""Start ``python -m http.server`` once for the whole test run, on a free port.

The server is *kept*: it is not stopped when the run ends. The next run finds it through its
record and reuses it instead of starting another one; ``pytest --xshow`` lists it and
``pytest --xkill`` stops it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from xprocess import ProcessStarter, XProcess, free_port, probes

NAME = "http_server"
SITE = Path(__file__).parent / "site"


class HttpServer(ProcessStarter):
    # Ready once a file is served; "{port}" is filled from self.data when the probe runs.
    startup_check = probes.http("http://127.0.0.1:{port}/hello.txt", status=200)
    timeout = 30
    # Kept on purpose (this is also the default): starting it again in every run would gain
    # nothing, since it holds no state that a run could change.
    terminate_at_end = False

    def args(self) -> list[object]:
        # Called only when a new server is started; the port goes into the record, where every
        # xdist worker (and every later run that reuses the server) reads it.
        port = free_port()
        self.data["port"] = port
        # Its output goes to a file, which Python buffers; xprocess sets PYTHONUNBUFFERED=1 so
        # that the log shows each request as it is served.
        return [
            sys.executable,
            "-m",
            "http.server",
            port,
            "--bind",
            "127.0.0.1",
            "--directory",
            SITE,
        ]


@pytest.fixture(scope="session")
def server_url(xprocess: XProcess) -> str:
    """The base URL of the server, e.g. ``http://127.0.0.1:40123``; the same in every worker."""
    xprocess.ensure(NAME, HttpServer)
    port = xprocess.getinfo(NAME).data["port"]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def site() -> Path:
    """The directory the server serves."""
    return SITE
