"""xprocess.probes: one-line readiness checks as ``startup_check``, against real processes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import child_args, count_lines, wait_for
from xprocess import (
    AddressInUseError,
    InvalidStarterError,
    ProcessExitedError,
    ProcessStarter,
    StartupTimeoutError,
    XProcess,
    free_port,
    probes,
)
from xprocess.probes import BoundProbe


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


class OnAPort(ProcessStarter):
    """The helper child listening on a port chosen in args(), probed by a template."""

    startup_check = probes.tcp("{port}")
    flags: tuple[object, ...] = ()

    def args(self) -> list[str]:
        self.data["port"] = free_port()
        return child_args("--delay", 0.2, "--listen", self.data["port"], *self.flags)


def test_a_tcp_probe_fills_its_port_from_data_and_waits_for_the_listener(xp: XProcess) -> None:
    xp.ensure("srv", OnAPort)
    log = xp.getinfo("srv").logpath.read_text()
    assert "ready" in log, "the probe passed before the child listened"
    assert xp.getinfo("srv").terminate() == 1


def test_the_timeout_names_the_probe_and_its_last_failure(xp: XProcess) -> None:
    class Closed(ProcessStarter):
        startup_check = probes.tcp("{port}")
        timeout = 0.5

        def args(self) -> list[str]:
            self.data["port"] = free_port()
            return child_args()  # never listens

    with pytest.raises(StartupTimeoutError) as excinfo:
        xp.ensure("srv", Closed)
    port = xp.getinfo("srv").record.data["port"]  # type: ignore[union-attr]
    assert f"tcp 127.0.0.1:{port}: connection refused" in str(excinfo.value)
    assert not xp.getinfo("srv").isrunning()


def test_a_server_that_accepts_but_never_answers_fails_the_attempt_at_the_deadline(
    xp: XProcess,
) -> None:
    class Mute(OnAPort):
        startup_check = probes.http("http://127.0.0.1:{port}/")
        flags = ("--mute",)
        timeout = 1

    with pytest.raises(StartupTimeoutError) as excinfo:
        xp.ensure("srv", Mute)
    message = str(excinfo.value)
    assert "last failure: http http://127.0.0.1:" in message
    assert "no answer within" in message
    assert "abandoned" not in message, "the attempt had no socket timeout"
    assert not xp.getinfo("srv").isrunning()


def _http_server(directory: Path) -> type[ProcessStarter]:
    class Http(ProcessStarter):
        def args(self) -> list[object]:
            self.data["port"] = free_port()
            return [
                sys.executable,
                "-m",
                "http.server",
                self.data["port"],
                "--bind",
                "127.0.0.1",
                "--directory",
                directory,
            ]

    return Http


def test_an_http_probe_passes_once_the_url_answers(xp: XProcess, tmp_path: Path) -> None:
    (tmp_path / "health").write_text("ok")
    server = type(
        "Server",
        (_http_server(tmp_path),),
        {"startup_check": probes.http("http://127.0.0.1:{port}/health")},
    )
    xp.ensure("web", server)
    assert xp.getinfo("web").terminate() == 1


def test_an_http_probe_reports_an_unexpected_status(xp: XProcess, tmp_path: Path) -> None:
    server = type(
        "Server",
        (_http_server(tmp_path),),
        {"startup_check": probes.http("http://127.0.0.1:{port}/missing", status=200), "timeout": 2},
    )
    with pytest.raises(StartupTimeoutError, match=r"/missing: status 404 \(expected 200\)"):
        xp.ensure("web", server)
    assert not xp.getinfo("web").isrunning()


def test_a_unix_socket_probe_takes_a_relative_path_from_the_control_dir(xp: XProcess) -> None:
    class Unix(ProcessStarter):
        startup_check = probes.unix_socket("server.sock")
        args = child_args("--delay", 0.2, "--unix", "server.sock")

    xp.ensure("unix", Unix)
    assert (xp.getinfo("unix").controldir / "server.sock").exists()
    assert xp.getinfo("unix").terminate() == 1


def test_a_file_probe_waits_for_a_non_empty_file(xp: XProcess) -> None:
    class PidFile(ProcessStarter):
        startup_check = probes.file("server.pid")
        args = child_args("--delay", 0.2, "--pidfile", "server.pid")

    pid, _ = xp.ensure("pidfile", PidFile)
    assert (xp.getinfo("pidfile").controldir / "server.pid").read_text().strip() == str(pid)
    assert xp.getinfo("pidfile").terminate() == 1


def test_an_empty_file_does_not_pass_a_file_probe(xp: XProcess) -> None:
    class PidFile(ProcessStarter):
        startup_check = probes.file("server.pid")
        args = child_args()
        timeout = 0.5

    (xp.getinfo("pidfile").controldir / "server.pid").touch()
    with pytest.raises(StartupTimeoutError, match=r"server\.pid: is empty"):
        xp.ensure("pidfile", PidFile)


def test_all_of_passes_when_every_probe_passes(xp: XProcess) -> None:
    class Both(OnAPort):
        startup_check = probes.all_of(probes.tcp("{port}"), probes.file("server.pid"))
        flags = ("--pidfile", "server.pid")

    xp.ensure("both", Both)
    assert xp.getinfo("both").terminate() == 1


def test_a_combined_probe_reports_the_one_that_failed(xp: XProcess) -> None:
    class Both(OnAPort):
        startup_check = probes.tcp("{port}") & probes.file("never.pid")
        timeout = 0.7

    with pytest.raises(
        StartupTimeoutError, match=r"last failure: file .*never\.pid: does not exist"
    ):
        xp.ensure("both", Both)


def test_a_probe_works_with_a_pattern_the_pattern_first(xp: XProcess, tmp_path: Path) -> None:
    class Patterned(OnAPort):
        pattern = "listening"
        flags = ("--ready", "listening", "--count-file", tmp_path / "starts")

    xp.ensure("srv", Patterned)
    assert count_lines(tmp_path / "starts") == 1
    assert xp.getinfo("srv").terminate() == 1


def test_a_template_naming_missing_data_is_refused_before_anything_starts(
    xp: XProcess, tmp_path: Path
) -> None:
    class Typo(ProcessStarter):
        startup_check = probes.tcp("{prot}")

        def args(self) -> list[str]:
            self.data["port"] = free_port()
            return child_args("--count-file", tmp_path / "starts")

    with pytest.raises(InvalidStarterError) as excinfo:
        xp.ensure("srv", Typo)
    message = str(excinfo.value)
    assert "'srv'" in message and "probes.tcp('{prot}')" in message
    assert "no 'prot'" in message and "['port']" in message
    assert count_lines(tmp_path / "starts") == 0


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: probes.tcp("{port}"), "data has no 'port'"),
        (lambda: probes.http("ftp://example.org/"), "http:// or https://"),
        (lambda: probes.tcp(70000), "1 to 65535"),
    ],
    ids=["template-without-data", "not-http", "port-out-of-range"],
)
def test_a_probe_that_cannot_run_is_refused_at_the_start(
    xp: XProcess, make: object, expected: str
) -> None:
    assert callable(make)
    starter = type("Bad", (ProcessStarter,), {"startup_check": make(), "args": child_args()})
    with pytest.raises(InvalidStarterError, match=expected):
        xp.ensure("srv", starter)


def test_a_probe_reads_as_what_it_probes() -> None:
    assert repr(probes.tcp("{port}")) == "probes.tcp('{port}')"
    assert repr(probes.http("http://h/", status=200)) == "probes.http('http://h/', status=200)"
    combined = probes.tcp(5432) & probes.file("pid")
    assert repr(combined) == "probes.all_of(probes.tcp(5432), probes.file('pid'))"
    starter = OnAPort(Path("/srv"))
    starter.data["port"] = 5432
    assert isinstance(starter.startup_check, BoundProbe)
    assert starter.startup_check.description == "tcp 127.0.0.1:5432"
    assert OnAPort.startup_check == probes.tcp("{port}")


def test_a_directory_does_not_pass_a_file_probe(xp: XProcess) -> None:
    class Marker(ProcessStarter):
        startup_check = probes.file("marker")
        args = child_args()
        timeout = 0.5

    (xp.getinfo("marker").controldir / "marker").mkdir()
    with pytest.raises(StartupTimeoutError, match=r"marker: is not a regular file"):
        xp.ensure("marker", Marker)


def test_a_fixed_port_taken_before_the_start_is_an_error_naming_it_and_its_holder(
    xp: XProcess, tmp_path: Path
) -> None:
    port = free_port()
    stranger = subprocess.Popen(child_args("--listen", port, "--ready", "listening"))
    try:
        wait_for(lambda: _accepts(port) or stranger.poll() is not None, what="the stranger")
        assert stranger.poll() is None

        class Fixed(ProcessStarter):
            startup_check = probes.tcp(port)
            args = child_args("--listen", port, "--count-file", tmp_path / "starts")

        with pytest.raises(AddressInUseError) as excinfo:
            xp.ensure("srv", Fixed)
        message = str(excinfo.value)
        assert f"port {port} (tcp 127.0.0.1:{port})" in message
        assert f"held by pid {stranger.pid} (" in message
        assert count_lines(tmp_path / "starts") == 0, "a process was started"
        assert not xp.getinfo("srv").isrunning()
        assert isinstance(excinfo.value, RuntimeError)
    finally:
        stranger.kill()
        stranger.wait()


def test_a_check_that_passes_once_the_process_has_exited_is_no_readiness(xp: XProcess) -> None:
    """What the check reached was not what was started: it died meanwhile (as a server does
    on "address already in use" while the probe reaches the program holding the port)."""

    class DiesFirst(ProcessStarter):
        def args(self) -> list[str]:
            return ["/bin/sh", "-c", "echo 'cannot bind'; exit 3"]

        def startup_check(self) -> bool:
            # True only once everything this test process spawned has exited.
            return all(kid.status() == psutil.STATUS_ZOMBIE for kid in psutil.Process().children())

    with pytest.raises(ProcessExitedError, match="exited with code 3"):
        xp.ensure("srv", DiesFirst)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
