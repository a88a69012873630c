"""One Redis server for the whole run, shared by every xdist worker; a database per worker."""

from __future__ import annotations

from xprocess.servers import redis

redis_proc = redis.redis_proc()
redisdb = redis.redisdb("redis_proc", decode=True)
