"""The recipes of the documentation, each a real starter or fixture that test_recipes.py runs.

The docs include these lines (between the ``# [name]`` and ``# [end name]`` comments) as they
are here. Each server is ``python -m http.server``, standing in for your own.
"""

from __future__ import annotations

import http.client
import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

from xprocess import ProcessStarter, XProcess, XProcessInfo, free_port, probes

HTTP_SERVER = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]


# [free-port]
class Server(ProcessStarter):
    pattern = "Serving HTTP on"
    terminate_at_end = True

    def args(self) -> list[object]:
        # Runs only when the server is really started; the port is recorded with it.
        self.data["port"] = free_port()
        return [*HTTP_SERVER, self.data["port"]]


@pytest.fixture(scope="session")
def server_port(xprocess: XProcess) -> int:
    xprocess.ensure("server", Server)
    return int(xprocess.getinfo("server").port)


# [end free-port]


# [quiet]
class Quiet(ProcessStarter):
    timeout = 30
    startup_check = probes.tcp("{port}")  # no pattern: ready once the port accepts
    terminate_at_end = True

    def args(self) -> list[object]:
        self.data["port"] = free_port()
        return [*HTTP_SERVER, self.data["port"]]


class Answering(ProcessStarter):
    timeout = 30
    terminate_at_end = True

    def args(self) -> list[object]:
        self.data["port"] = free_port()
        return [*HTTP_SERVER, self.data["port"]]

    def startup_check(self) -> bool:  # a request, not just an open port
        connection = http.client.HTTPConnection("127.0.0.1", self.data["port"], timeout=2)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status == 200
        finally:
            connection.close()


# [end quiet]


@pytest.fixture(scope="session")
def quiet_port(xprocess: XProcess) -> int:
    xprocess.ensure("quiet", Quiet)
    return int(xprocess.getinfo("quiet").port)


@pytest.fixture(scope="session")
def answering_port(xprocess: XProcess) -> int:
    xprocess.ensure("answering", Answering)
    return int(xprocess.getinfo("answering").port)


# [api-probe]
class Api(ProcessStarter):
    startup_check = probes.http("http://127.0.0.1:{port}/")
    terminate_at_end = True

    def args(self) -> list[object]:
        self.data["port"] = free_port()
        return [*HTTP_SERVER, self.data["port"]]


# [end api-probe]


@pytest.fixture(scope="session")
def api_port(xprocess: XProcess) -> int:
    xprocess.ensure("api", Api)
    return int(xprocess.getinfo("api").port)


class Kept(ProcessStarter):
    """Kept after the run (the default): only the fixture's teardown below stops it."""

    pattern = "Serving HTTP on"

    def args(self) -> list[object]:
        self.data["port"] = free_port()
        return [*HTTP_SERVER, self.data["port"]]


# [teardown]
@pytest.fixture(scope="session")  # or function scope: one use per test
def kept(xprocess: XProcess) -> Iterator[XProcessInfo]:
    xprocess.ensure("kept", Kept)
    yield xprocess.getinfo("kept")
    xprocess.getinfo("kept").terminate()  # under xdist: this worker's release


# [end teardown]


# [shared]
def make_scratch() -> str:
    return tempfile.mkdtemp(prefix="scratch-")


def remove_scratch(path: str) -> None:  # module level: the xdist controller calls it
    shutil.rmtree(path)


@pytest.fixture(scope="session")
def scratch(xprocess: XProcess) -> str:
    return xprocess.shared("scratch", make_scratch, cleanup=remove_scratch)


# [end shared]
