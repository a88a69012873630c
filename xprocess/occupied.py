"""Before a start: is the address its probe connects to already answered by another program?

A ``startup_check`` probe (``probes.tcp(8080)``) passes as soon as anything accepts there. If a
program xprocess did not start already listens on that port, the new server fails with "address
already in use", the probe passes against the stranger, and the tests run against it. So a start
whose probe's address already accepts connections is refused before anything is spawned
(:class:`~xprocess.errors.AddressInUseError`), naming the address and, where the OS tells (psutil's
``net_connections``; another user's sockets may need root), the program holding it.

Only local addresses are looked at (loopback, ``localhost``, the wildcard): what a remote host
serves is not something a local start could be confused with.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from xprocess.errors import AddressInUseError
from xprocess.probes import BoundProbe, Endpoint

__all__ = ["refuse_answered_endpoints"]

# A connection to a local address is accepted or refused at once; this only bounds a stuck one.
_CONNECT_TIMEOUT = 0.5


def refuse_answered_endpoints(name: str, check: object) -> None:
    """Raise AddressInUseError if an address the probe ``check`` connects to already answers."""
    __tracebackhide__ = True
    if not isinstance(check, BoundProbe):
        return
    answered = [endpoint for endpoint in check.endpoints() if _answers(endpoint)]
    if not answered:
        return
    lines = [f"  {_what(endpoint)}: {_holder(endpoint)}" for endpoint in answered]
    raise AddressInUseError(
        f"cannot start {name!r}: its startup_check {check.description} would connect to an "
        "address that another program already answers, before anything was started:\n"
        + "\n".join(lines)
        + "\n  The probe would pass against that program, not against the process of "
        f"{name!r}. Stop it, or let the starter choose a free port (xprocess.free_port() in "
        "args(), probed as probes.tcp('{port}')).",
        name=name,
    )


def _what(endpoint: Endpoint) -> str:
    kind, where, port = endpoint
    return f"unix socket {where}" if kind == "unix" else f"port {port} (tcp {where}:{port})"


def _is_local(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _answers(endpoint: Endpoint) -> bool:
    kind, where, port = endpoint
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_CONNECT_TIMEOUT)
            sock.connect(where)
        except OSError:
            return False
        finally:
            sock.close()
        return True
    if not _is_local(where):
        return False
    try:
        socket.create_connection((where or "127.0.0.1", port), timeout=_CONNECT_TIMEOUT).close()
    except OSError:
        return False
    return True


def _holder(endpoint: Endpoint) -> str:
    """Who listens at ``endpoint``, as far as the OS tells."""
    import psutil

    kind, where, port = endpoint
    try:
        connections = psutil.net_connections(kind="unix" if kind == "unix" else "tcp")
    except (psutil.Error, OSError):
        connections = []
    pids = set()
    for conn in connections:
        address = conn.laddr
        if kind == "unix":
            if str(address) == where and conn.pid:
                pids.add(conn.pid)
        elif conn.status == psutil.CONN_LISTEN and address and address[1] == port and conn.pid:
            pids.add(conn.pid)
    if not pids:
        return "held by a process the OS does not name to this user"
    described = []
    for pid in sorted(pids):
        command = ""
        with contextlib.suppress(psutil.Error):
            command = " ".join(psutil.Process(pid).cmdline())[:120]
        described.append(f"pid {pid}" + (f" ({command})" if command else ""))
    return "held by " + ", ".join(described)
