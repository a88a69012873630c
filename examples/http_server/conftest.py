"""Start ``python -m http.server`` once for the whole test run, on a free port.

The server is *kept*: it is not stopped when the run ends. The next run finds it through its
record and reuses it instead of starting another one; ``pytest --xshow`` lists it and
``pytest --xkill`` stops it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from xprocess import ProcessStarter, XProcess, free_port

NAME = "http_server"
SITE = Path(__file__).parent / "site"


class HttpServer(ProcessStarter):
    # http.server prints "Serving HTTP on 127.0.0.1 port 8000 (http://...) ..." once it listens.
    pattern = r"Serving HTTP on 127\.0\.0\.1 port \d+"
    timeout = 30
    # Kept on purpose (this is also the default): starting it again in every run would gain
    # nothing, since it holds no state that a run could change.
    terminate_at_end = False

    def args(self) -> list[object]:
        # Called only when a new server is started; the port goes into the record, where every
        # xdist worker (and every later run that reuses the server) reads it.
        port = free_port()
        self.data["port"] = port
        # -u: Python buffers its output when it goes to a file, as here; without -u the
        # "Serving HTTP" line would sit in the buffer and never reach the log.
        return [
            sys.executable,
            "-u",
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
