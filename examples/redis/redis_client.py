"""A minimal client for the Redis protocol (RESP 2) over a plain socket: no dependency needed."""

from __future__ import annotations

import socket
from typing import TypeAlias

Reply: TypeAlias = "str | int | bytes | list[Reply] | None"


class RedisError(Exception):
    """An error reply from the server (a RESP ``-ERR ...`` line)."""


class Redis:
    """A minimal client for the Redis protocol (RESP 2): send a command, read its reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.stream = self.sock.makefile("rb")

    def __call__(self, *args: str | int | bytes) -> Reply:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        request = b"*%d\r\n" % len(parts)
        for part in parts:
            request += b"$%d\r\n%s\r\n" % (len(part), part)
        self.sock.sendall(request)
        return self.read_reply()

    def read_reply(self) -> Reply:
        line = self.stream.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"connection closed by the server (read {line!r})")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.stream.read(size + 2)[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self.read_reply() for _ in range(count)]
        raise RedisError(f"unexpected reply {line!r}")

    def close(self) -> None:
        self.stream.close()
        self.sock.close()
