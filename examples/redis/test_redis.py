"""Tests that talk to the shared Redis server over a plain socket.

Workers share one server, so every test uses keys of its own (named after the test).
"""

from __future__ import annotations

import socket

import pytest
from redis_client import Redis, RedisError

from xprocess import XProcess


def test_ping_over_a_raw_socket(redis_port: int) -> None:
    with socket.create_connection(("127.0.0.1", redis_port), timeout=10) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"


def test_set_and_get(redis: Redis, request: pytest.FixtureRequest) -> None:
    key = request.node.name
    assert redis("SET", key, "hello") == "OK"
    assert redis("GET", key) == b"hello"
    assert redis("DEL", key) == 1
    assert redis("GET", key) is None


def test_counter_and_error_reply(redis: Redis, request: pytest.FixtureRequest) -> None:
    key = request.node.name
    assert [redis("INCR", key) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(RedisError, match="wrong number of arguments"):
        redis("INCR")


def test_the_server_is_the_recorded_one(redis: Redis, xprocess: XProcess) -> None:
    info = redis("INFO", "server")
    assert isinstance(info, bytes)
    fields = dict(line.split(":", 1) for line in info.decode().splitlines() if ":" in line)
    recorded = xprocess.getinfo("redis")
    assert int(fields["tcp_port"]) == recorded.data["port"]
    assert int(fields["process_id"]) == recorded.pid
