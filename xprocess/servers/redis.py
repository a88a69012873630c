"""Redis for tests: one server for every xdist worker, a logical database of each worker's own.

In ``conftest.py``::

    from xprocess.servers import redis

    redis_proc = redis.redis_proc()
    redisdb = redis.redisdb("redis_proc")

``redis_proc`` (session scope) starts ``redis-server`` once for the whole run, through
``xprocess.ensure``, on a free port of 127.0.0.1 with no persistence. ``redisdb`` (function scope)
gives each test a ``redis.Redis`` client on its worker's own logical database, flushed before and
after the test. A database is leased to one live worker of one run at a time (a file lock under
the records root, see ``xprocess.leases``): worker ``gwN`` gets database N when it is free, and
two runs on one project at once get different ones. The server is started with enough databases
for many workers (``databases=``, 256 by default).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from xprocess.errors import InvalidStarterError
from xprocess.record_fields import validate_name
from xprocess.servers._common import (
    find_program,
    flag_setting,
    require_extra,
    text_setting,
    worker_id,
)
from xprocess.servers.existing import redis_databases
from xprocess.servers.failures import server_fixture_value, worded_setup
from xprocess.servers.settings import REDIS as SETTINGS
from xprocess.servers.settings import choose
from xprocess.servers.warm_up import needs

if TYPE_CHECKING:
    import redis

    from xprocess.leases import Lease
    from xprocess.manager import XProcess
    from xprocess.servers._redis_starter import RedisStarter

__all__ = [
    "RedisServer",
    "RedisStarter",
    "find_redis_server",
    "redis_proc",
    "redisdb",
    "redisdb_async",
]

SEARCH_DIRS: tuple[str, ...] = ("/usr/bin", "/usr/local/bin", "/opt/homebrew/bin", "/usr/sbin")
INSTALL = "apt-get install redis-server, or brew install redis"
EXEC_SETTING = "xredis_exec"
KEEP_SETTING = "xredis_keep"
HOST = "127.0.0.1"
EXISTING_PORT = 6379  # an existing server's port when only its host is given
DEFAULT_DATABASES = 256
_WORKER_NUMBER = re.compile(r"gw(\d+)")


def __getattr__(name: str) -> Any:
    """``RedisStarter`` on first use: a conftest importing this module (as every xdist worker
    and the controller do) then does not import the engine it needs only to start a server."""
    if name == "RedisStarter":
        from xprocess.servers._redis_starter import RedisStarter

        return RedisStarter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def require_redis() -> ModuleType:
    """The redis client module, or an error saying to install ``xprocess[redis]``."""
    return require_extra("redis", "redis", "xprocess.servers.redis")


def find_redis_server(configured: str | os.PathLike[str] | None = None) -> Path:
    """The ``redis-server`` program: configured, on PATH, or in the usual places."""
    return find_program(
        "redis-server",
        configured=os.fspath(configured) if configured is not None else None,
        setting=EXEC_SETTING,
        search=SEARCH_DIRS,
        install=INSTALL,
    )


@dataclass(frozen=True)
class RedisServer:
    """The running server, as the ``redis_proc`` fixture gives it.

    ``db`` is the logical database leased to this worker for the run; ``password`` is the one
    of an existing server (``xredis_password``), None for one xprocess started.
    """

    name: str
    host: str
    port: int
    databases: int
    db: int = 0
    password: str | None = None
    # The connections ``redisdb`` reuses from test to test, one pool per ``decode``: a test then
    # costs no connect and no handshake. Closed when the server fixture ends.
    _pools: dict[bool, Any] = field(default_factory=dict, compare=False, repr=False)

    def worker_db(self) -> int:
        """The logical database leased to this worker (see ``db``)."""
        return self.db

    def client(self, db: int | None = None, **kwargs: Any) -> redis.Redis:
        """A ``redis.Redis`` client on database ``db`` (default: this worker's)."""
        module = require_redis()
        number = self.worker_db() if db is None else db
        client: redis.Redis = module.Redis(
            host=self.host, port=self.port, db=number, password=self.password, **kwargs
        )
        return client

    def pooled_client(self, decode: bool) -> redis.Redis:
        """A client on this worker's database whose connections stay open for the next test."""
        module = require_redis()
        pool = self._pools.get(decode)
        if pool is None:
            pool = self._pools[decode] = module.ConnectionPool(
                host=self.host,
                port=self.port,
                db=self.worker_db(),
                password=self.password,
                decode_responses=decode,
            )
        client: redis.Redis = module.Redis(connection_pool=pool)
        return client

    def close_pools(self) -> None:
        """Close the connections ``pooled_client`` kept open."""
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            pool.disconnect()


def preferred_db() -> int:
    """The database a worker asks for first: N for xdist worker ``gwN``, 0 without xdist."""
    match = _WORKER_NUMBER.fullmatch(worker_id())
    return int(match.group(1)) if match else 0


def lease_db(root: Path, name: str, databases: int) -> Lease:
    """Lease a database of the server ``name`` to this worker: its preferred one if free."""
    __tracebackhide__ = True
    from xprocess.leases import NoFreeSlotError, lease_slot

    try:
        return lease_slot(root, name, databases, preferred_db())
    except NoFreeSlotError:
        raise NoFreeSlotError(
            f"redis_proc {name!r}: all {databases} databases of the server are leased to live "
            "workers of this run and of other runs on this project; pass a larger databases= to "
            "redis_proc (a kept server must then be restarted: pytest --xkill)",
            name=name,
        ) from None


def _start_redis(
    config: pytest.Config,
    xprocess: XProcess,
    name: str,
    executable: str | os.PathLike[str] | None,
    keep: bool | None,
    databases: int,
    arguments: tuple[str, ...] | None,
    address: dict[str, Any],
) -> RedisServer:
    """Start (or reuse) the server ``name``; the server as recorded, before any lease."""
    __tracebackhide__ = True
    from xprocess.servers._redis_starter import RedisStarter

    program = find_redis_server(executable or text_setting(config, EXEC_SETTING))
    stays = keep if keep is not None else flag_setting(config, KEEP_SETTING)
    starter = type(
        "RedisStarter",
        (RedisStarter,),
        {
            "program": str(program),
            "databases": databases,
            "options": tuple(choose(arguments, config, SETTINGS["options"], ())),
            "terminate_at_end": not stays,
            "port": address["port"],
        },
    )
    xprocess.ensure(name, starter)
    data = xprocess.getinfo(name).data
    return RedisServer(name, data["host"], data["port"], data["databases"])


def redis_proc(
    name: str = "redis",
    *,
    executable: str | os.PathLike[str] | None = None,
    keep: bool | None = None,
    databases: int = DEFAULT_DATABASES,
    options: Sequence[str] | None = None,
    host: str | None = None,
    port: int | None = None,
    password: str | None = None,
) -> Any:
    """A session fixture: the Redis server ``name``, one for every xdist worker.

    ``executable``: the ``redis-server`` program (default: the ``xredis_exec`` setting, then PATH,
    then the usual places). ``keep``: leave it running after the run (default: the
    ``xredis_keep`` setting, else stopped at the end). ``databases``: how many logical databases
    it has (one per worker). ``options``: more ``redis-server`` arguments (``"--maxmemory"``,
    ``"64mb"``). ``port``: the port to listen on (default: a free one). ``host``: use the server
    already running there instead of starting one (with ``port``, default 6379, and
    ``password``). Each argument left out is taken from its setting (``--xredis-<argument>``,
    ``xredis_<argument>`` in the ini file), else its default.
    """
    validate_name(name)
    if isinstance(databases, bool) or not isinstance(databases, int) or databases < 1:
        raise InvalidStarterError(
            f"redis_proc {name!r}: databases must be a positive number, got {databases!r}",
            name=name,
        )
    arguments = None if options is None else tuple(str(option) for option in options)

    @pytest.fixture(scope="session")
    @needs("redis", "xprocess.servers._redis_starter")
    @worded_setup
    def redis_proc_fixture(
        request: pytest.FixtureRequest, xprocess: XProcess
    ) -> Iterator[RedisServer]:
        __tracebackhide__ = True
        config = request.config
        require_redis()
        address = {
            "host": choose(host, config, SETTINGS["host"], None),
            "port": choose(port, config, SETTINGS["port"], None),
            "password": choose(password, config, SETTINGS["password"], None),
        }
        if address["host"] is not None:
            at = int(address["port"] or EXISTING_PORT)
            count = redis_databases(name, address["host"], at, address["password"])
            server = RedisServer(name, address["host"], at, count)
        else:
            server = _start_redis(
                config, xprocess, name, executable, keep, databases, arguments, address
            )
        lease = lease_db(xprocess.rootdir, name, server.databases)
        leased = RedisServer(
            server.name, server.host, server.port, server.databases, lease.slot, address["password"]
        )
        try:
            yield leased
        finally:
            try:
                leased.close_pools()
            finally:
                lease.release()

    return redis_proc_fixture


def redisdb(proc_fixture_name: str = "redis_proc", *, decode: bool = False) -> Any:
    """A function fixture: a ``redis.Redis`` client on this worker's database, flushed around it.

    ``decode``: replies as ``str`` instead of ``bytes`` (``decode_responses``).
    """
    if not isinstance(proc_fixture_name, str) or not proc_fixture_name:
        raise InvalidStarterError(
            f"redisdb(): pass the name of the server fixture (as a string), got "
            f"{proc_fixture_name!r}"
        )

    @pytest.fixture
    @needs("redis", "xprocess.servers._redis_starter")
    def redisdb_fixture(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
        __tracebackhide__ = True
        server: RedisServer = server_fixture_value(request, proc_fixture_name)
        client = server.pooled_client(decode)
        try:
            # Before as well as after: a crashed worker of an earlier run, or a test using the
            # server without this fixture, may have left keys.
            client.flushdb()
            yield client
            # On the worker's database even if the test SELECTed another on this connection,
            # which goes back to the pool for the next test: one round trip for both.
            reset = client.pipeline(transaction=False)
            reset.select(server.db)
            reset.flushdb()
            reset.execute()
        finally:
            client.close()

    return redisdb_fixture


def redisdb_async(proc_fixture_name: str = "redis_proc", *, decode: bool = False) -> Any:
    """Like :func:`redisdb`, for ``async def`` tests: a ``redis.asyncio.Redis`` client.

    Needs pytest-asyncio (``pip install "xprocess[asyncio]"``); the fixture is a pytest-asyncio
    fixture, so it works in its strict mode too.
    """
    if not isinstance(proc_fixture_name, str) or not proc_fixture_name:
        raise InvalidStarterError(
            f"redisdb_async(): pass the name of the server fixture (as a string), got "
            f"{proc_fixture_name!r}"
        )
    pytest_asyncio = require_extra("pytest_asyncio", "asyncio", "redisdb_async()")
    async_fixture: Callable[[Callable[..., Any]], Any] = pytest_asyncio.fixture

    @async_fixture
    @needs("redis", "redis.asyncio", "xprocess.servers._redis_starter")
    async def redisdb_async_fixture(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
        __tracebackhide__ = True
        require_redis()
        import redis.asyncio

        server: RedisServer = server_fixture_value(request, proc_fixture_name)
        client = redis.asyncio.Redis(
            host=server.host,
            port=server.port,
            db=server.db,
            password=server.password,
            decode_responses=decode,
        )
        try:
            await client.flushdb()
            yield client
            await client.flushdb()
        finally:
            await client.aclose()

    return redisdb_async_fixture
