"""Tests that use the shared Redis server through redis-py, each on its worker's own database."""

from __future__ import annotations

import socket

import pytest
import redis

from xprocess import XProcess
from xprocess.servers.redis import RedisServer


def test_ping_over_a_raw_socket(redis_proc: RedisServer) -> None:
    with socket.create_connection((redis_proc.host, redis_proc.port), timeout=10) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"


def test_starts_from_an_empty_database(redisdb: redis.Redis) -> None:
    assert redisdb.dbsize() == 0
    assert redisdb.set("greeting", "hello")
    assert redisdb.get("greeting") == "hello"


def test_counter_and_error_reply(redisdb: redis.Redis) -> None:
    assert [redisdb.incr("counter") for _ in range(3)] == [1, 2, 3]
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        redisdb.execute_command("INCR")


def test_the_server_is_the_recorded_one(
    redisdb: redis.Redis, redis_proc: RedisServer, xprocess: XProcess
) -> None:
    info = redisdb.info("server")
    recorded = xprocess.getinfo("redis")
    assert info["tcp_port"] == recorded.data["port"]
    assert info["process_id"] == recorded.pid
    # The database leased to this worker: its number (gwN gets N) unless another run holds it.
    assert redisdb.connection_pool.connection_kwargs["db"] == redis_proc.db
