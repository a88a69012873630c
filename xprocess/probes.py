"""Ready-made readiness checks: a port that accepts, a URL that answers, a socket, a file.

A probe is a ``startup_check`` written in one line::

    from xprocess import ProcessStarter, free_port, probes

    class Server(ProcessStarter):
        startup_check = probes.http("http://127.0.0.1:{port}/health")

        def args(self):
            self.data["port"] = free_port()
            return ["myserver", "--port", self.data["port"]]

Arguments may be templates (``"{port}"``) filled from the starter's ``data`` when the probe runs,
so a port chosen in ``args()`` is the one probed. Relative paths are taken from the process's
control dir (its working directory). Each attempt gives up when the time left before the
starter's ``timeout`` has passed (socket timeouts), so no attempt hangs. ``probes.all_of(a, b)``
(or ``a & b``) passes once all of them pass, in order.
"""

from __future__ import annotations

import os
import socket
import string
import urllib.parse
from collections.abc import Container, Mapping
from pathlib import Path
from stat import S_ISREG
from typing import Any

from xprocess.errors import InvalidStarterError

__all__ = [
    "BoundProbe",
    "Probe",
    "ProbeFailed",
    "all_of",
    "file",
    "http",
    "tcp",
    "unix_socket",
]

# No single attempt waits longer than this, so a request lost during start-up is sent again.
ATTEMPT_TIMEOUT = 5.0


class ProbeFailed(Exception):
    """One attempt of a probe did not pass; the message says what was seen.

    The process is not ready yet: the probe is tried again until the starter's timeout.
    """


class Probe:
    """A readiness check described by data, usable as ``startup_check`` on a starter class.

    Read through a starter instance (``starter.startup_check``) it is a :class:`BoundProbe`,
    which fills its templates from that starter's ``data``.
    """

    kind = "probe"

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundProbe(self, instance)

    def __call__(self) -> bool:
        """Run one attempt with no ``data`` to fill templates from; True when it passes."""
        return BoundProbe(self, None)()

    def __and__(self, other: Probe) -> Probe:
        return all_of(self, other)

    def describe(self, data: Mapping[str, Any], base: Path | None) -> str:
        """What is probed, templates filled: ``tcp 127.0.0.1:5432``."""
        raise NotImplementedError

    def attempt(self, data: Mapping[str, Any], base: Path | None, timeout: float) -> None:
        """Return if the probe passes, else raise ProbeFailed; wait at most ``timeout``."""
        raise NotImplementedError

    def validate(self, data: Mapping[str, Any], base: Path | None) -> None:
        """Raise InvalidStarterError if the probe cannot be run with ``data``."""
        self.describe(data, base)

    def endpoints(self, data: Mapping[str, Any], base: Path | None) -> list[Endpoint]:
        """Where the probe connects: ``("tcp", host, port)`` or ``("unix", path, 0)``."""
        return []

    def _arguments(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"probes.{self.kind}({self._arguments()})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self)

    def __hash__(self) -> int:
        return hash(repr(self))


# Where a probe connects: ("tcp", host, port) or ("unix", path, 0).
Endpoint = tuple[str, str, int]


class BoundProbe:
    """A probe read through a starter: a callable ``startup_check`` that uses its ``data``."""

    def __init__(self, probe: Probe, starter: object) -> None:
        self.probe = probe
        self.starter = starter

    def _context(self) -> tuple[Mapping[str, Any], Path | None]:
        data = getattr(self.starter, "data", None)
        base = getattr(self.starter, "control_dir", None)
        return (
            data if isinstance(data, Mapping) else {},
            Path(base) if isinstance(base, (str, os.PathLike)) else None,
        )

    @property
    def description(self) -> str:
        """What is probed, templates filled (the template itself when they cannot be)."""
        data, base = self._context()
        try:
            return self.probe.describe(data, base)
        except InvalidStarterError:
            return repr(self.probe)

    def validate(self, name: str) -> None:
        """Raise InvalidStarterError (naming process ``name``) if the probe cannot run."""
        __tracebackhide__ = True
        data, base = self._context()
        try:
            self.probe.validate(data, base)
        except InvalidStarterError as exc:
            raise InvalidStarterError(
                f"cannot start {name!r}: startup_check {self.probe!r}: {exc}", name=name
            ) from None

    def endpoints(self) -> list[Endpoint]:
        """Where the probe connects, templates filled ([] when they cannot be)."""
        data, base = self._context()
        try:
            return self.probe.endpoints(data, base)
        except InvalidStarterError:
            return []

    def attempt(self, timeout: float) -> bool:
        """One attempt waiting at most ``timeout`` seconds; True, or ProbeFailed."""
        data, base = self._context()
        self.probe.attempt(data, base, max(0.001, min(timeout, ATTEMPT_TIMEOUT)))
        return True

    def __call__(self) -> bool:
        return self.attempt(ATTEMPT_TIMEOUT)

    def __repr__(self) -> str:
        return f"<{self.description}>"


def _fill(template: object, data: Mapping[str, Any], what: str) -> str:
    text = str(template)
    try:
        return text.format_map(data)
    except KeyError as exc:
        raise InvalidStarterError(
            f"{what} {text!r} names {{{exc.args[0]}}}, but the starter's data has no "
            f"{exc.args[0]!r} (data keys: {sorted(data)}); set self.data[{exc.args[0]!r}] "
            "in args()"
        ) from None
    except (ValueError, IndexError, AttributeError) as exc:
        raise InvalidStarterError(f"{what} {text!r} is not a valid template: {exc}") from None


def _check_template(template: object, what: str) -> None:
    if not isinstance(template, (str, int, os.PathLike)) or isinstance(template, bool):
        raise InvalidStarterError(f"{what} must be a string or a number, got {template!r}")
    try:
        list(string.Formatter().parse(str(template)))
    except ValueError as exc:
        raise InvalidStarterError(
            f"{what} {str(template)!r} is not a valid template: {exc}"
        ) from None


def _port(template: object, data: Mapping[str, Any]) -> int:
    text = _fill(template, data, "port")
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise InvalidStarterError(f"port must be a number from 1 to 65535, got {text!r}")
    return port


def _path(template: object, data: Mapping[str, Any], base: Path | None, what: str) -> Path:
    path = Path(
        _fill(os.fspath(template) if isinstance(template, os.PathLike) else template, data, what)
    )
    return base / path if base is not None and not path.is_absolute() else path


def _failure(exc: OSError, timeout: float) -> str:
    if isinstance(exc, socket.timeout):
        return f"no answer within {timeout:.3g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


class _Tcp(Probe):
    kind = "tcp"

    def __init__(self, port: int | str, host: str) -> None:
        _check_template(port, "port")
        _check_template(host, "host")
        self.port, self.host = port, host

    def _address(self, data: Mapping[str, Any]) -> tuple[str, int]:
        return _fill(self.host, data, "host"), _port(self.port, data)

    def describe(self, data: Mapping[str, Any], base: Path | None) -> str:
        host, port = self._address(data)
        return f"tcp {host}:{port}"

    def endpoints(self, data: Mapping[str, Any], base: Path | None) -> list[Endpoint]:
        return [("tcp", *self._address(data))]

    def attempt(self, data: Mapping[str, Any], base: Path | None, timeout: float) -> None:
        host, port = self._address(data)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            raise ProbeFailed(f"tcp {host}:{port}: {_failure(exc, timeout)}") from None

    def _arguments(self) -> str:
        return f"{self.port!r}" + (f", host={self.host!r}" if self.host != "127.0.0.1" else "")


def _status_text(status: int | Container[int]) -> str:
    if isinstance(status, range) and status.step == 1:
        return f"{status.start}-{status.stop - 1}"
    if isinstance(status, int):
        return str(status)
    return repr(status)


class _Http(Probe):
    kind = "http"

    def __init__(self, url: str, status: int | Container[int], verify: bool) -> None:
        _check_template(url, "url")
        if isinstance(status, bool) or not isinstance(status, (int, Container)):
            raise InvalidStarterError(
                f"status must be a status code or a container of them, got {status!r}"
            )
        self.url = url
        self.status: Container[int] = (status,) if isinstance(status, int) else status
        self._status_arg = status
        self.verify = verify

    def _parts(self, data: Mapping[str, Any]) -> urllib.parse.SplitResult:
        url = _fill(self.url, data, "url")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidStarterError(
                f"url must be an http:// or https:// URL with a host, got {url!r}"
            )
        try:
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as exc:
            raise InvalidStarterError(f"url {url!r} has an invalid port: {exc}") from None
        return parts

    def describe(self, data: Mapping[str, Any], base: Path | None) -> str:
        return f"http {self._parts(data).geturl()}"

    def endpoints(self, data: Mapping[str, Any], base: Path | None) -> list[Endpoint]:
        parts = self._parts(data)
        default = 443 if parts.scheme == "https" else 80
        return [("tcp", parts.hostname or "", parts.port or default)]

    def attempt(self, data: Mapping[str, Any], base: Path | None, timeout: float) -> None:
        import ssl  # imported when used: it costs milliseconds
        from http import client as http_client

        parts = self._parts(data)
        url = parts.geturl()
        connection: http_client.HTTPConnection
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if not self.verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            connection = http_client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout, context=context
            )
        else:
            connection = http_client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=timeout
            )
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            connection.request("GET", target, headers={"Connection": "close"})
            response = connection.getresponse()
            response.read()
        except OSError as exc:
            raise ProbeFailed(f"http {url}: {_failure(exc, timeout)}") from None
        except http_client.HTTPException as exc:
            raise ProbeFailed(f"http {url}: {type(exc).__name__} {exc}".rstrip()) from None
        finally:
            connection.close()
        if response.status not in self.status:
            raise ProbeFailed(
                f"http {url}: status {response.status} (expected {_status_text(self._status_arg)})"
            )

    def _arguments(self) -> str:
        extra = ""
        if self._status_arg != range(200, 400):
            extra += f", status={self._status_arg!r}"
        if not self.verify:
            extra += ", verify=False"
        return f"{self.url!r}{extra}"


class _UnixSocket(Probe):
    kind = "unix_socket"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        _check_template(path, "path")
        self.path = path

    def describe(self, data: Mapping[str, Any], base: Path | None) -> str:
        return f"unix socket {_path(self.path, data, base, 'path')}"

    def endpoints(self, data: Mapping[str, Any], base: Path | None) -> list[Endpoint]:
        return [("unix", os.fspath(_path(self.path, data, base, "path")), 0)]

    def attempt(self, data: Mapping[str, Any], base: Path | None, timeout: float) -> None:
        path = _path(self.path, data, base, "path")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(os.fspath(path))
        except OSError as exc:
            raise ProbeFailed(f"unix socket {path}: {_failure(exc, timeout)}") from None
        finally:
            sock.close()

    def _arguments(self) -> str:
        return repr(os.fspath(self.path))


class _File(Probe):
    kind = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        _check_template(path, "path")
        self.path = path

    def describe(self, data: Mapping[str, Any], base: Path | None) -> str:
        return f"file {_path(self.path, data, base, 'path')}"

    def attempt(self, data: Mapping[str, Any], base: Path | None, timeout: float) -> None:
        path = _path(self.path, data, base, "path")
        try:
            stat = path.stat()
        except OSError as exc:
            raise ProbeFailed(f"file {path}: {_failure(exc, timeout)}") from None
        if not S_ISREG(stat.st_mode):
            raise ProbeFailed(f"file {path}: is not a regular file")
        if not stat.st_size:
            raise ProbeFailed(f"file {path}: is empty")

    def _arguments(self) -> str:
        return repr(os.fspath(self.path))


class _AllOf(Probe):
    kind = "all_of"

    def __init__(self, probes: tuple[Probe, ...]) -> None:
        flat: list[Probe] = []
        for probe in probes:
            if not isinstance(probe, Probe):
                raise InvalidStarterError(
                    f"all_of() takes probes (probes.tcp(...), probes.http(...)), got {probe!r}"
                )
            flat.extend(probe.probes if isinstance(probe, _AllOf) else [probe])
        if not flat:
            raise InvalidStarterError("all_of() needs at least one probe")
        self.probes: tuple[Probe, ...] = tuple(flat)

    def describe(self, data: Mapping[str, Any], base: Path | None) -> str:
        return " and ".join(probe.describe(data, base) for probe in self.probes)

    def endpoints(self, data: Mapping[str, Any], base: Path | None) -> list[Endpoint]:
        return [found for probe in self.probes for found in probe.endpoints(data, base)]

    def attempt(self, data: Mapping[str, Any], base: Path | None, timeout: float) -> None:
        # The probes share one time budget; BoundProbe already capped it to what is left.
        for probe in self.probes:
            probe.attempt(data, base, timeout)

    def _arguments(self) -> str:
        return ", ".join(repr(probe) for probe in self.probes)


def tcp(port: int | str, host: str = "127.0.0.1") -> Probe:
    """Ready once a TCP connection to ``host:port`` is accepted: ``tcp("{port}")``."""
    return _Tcp(port, host)


def http(url: str, status: int | Container[int] = range(200, 400), *, verify: bool = True) -> Probe:
    """Ready once a GET of ``url`` answers with a status in ``status`` (default 200-399).

    Redirects are not followed (a 3xx counts as an answer). ``verify=False`` accepts any
    certificate of an ``https://`` URL (a test server's self-signed one).
    """
    return _Http(url, status, verify)


def unix_socket(path: str | os.PathLike[str]) -> Probe:
    """Ready once a connection to the unix socket ``path`` is accepted."""
    return _UnixSocket(path)


def file(path: str | os.PathLike[str]) -> Probe:
    """Ready once ``path`` exists and is not empty (a pid file, a "ready" marker)."""
    return _File(path)


def all_of(*probes: Probe) -> Probe:
    """Ready once every probe passes, tried in order; ``a & b`` is the same."""
    return _AllOf(probes)
