"""The starter of ``redis-server``, apart from ``redis`` so that importing that costs no engine."""

from __future__ import annotations

from xprocess.ports import free_port
from xprocess.servers.redis import DEFAULT_DATABASES, HOST, find_redis_server
from xprocess.starter import ProcessStarter

__all__ = ["RedisStarter"]


class RedisStarter(ProcessStarter):
    """``redis-server`` on a free port of 127.0.0.1, keeping nothing on disk.

    The fixture factory makes a subclass with ``program``, ``databases`` and ``options`` set.
    """

    # Redis 7 says "Ready to accept connections", older ones "... is now ready to accept ...".
    pattern = "(?i)ready to accept connections"
    timeout = 30
    terminate_at_end = True
    program: str = ""
    databases: int = DEFAULT_DATABASES
    options: tuple[str, ...] = ()
    port: int | None = None  # None: a free port

    def args(self) -> list[object]:
        program = self.program or str(find_redis_server())
        port = self.port or free_port()
        self.data.update(host=HOST, port=port, databases=self.databases)
        return [
            program,
            "--port",
            port,
            "--bind",
            HOST,
            # No persistence: nothing is written next to the server.
            "--save",
            "",
            "--appendonly",
            "no",
            "--databases",
            self.databases,
            *self.options,
        ]
