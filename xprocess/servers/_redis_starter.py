"""The starter of ``redis-server``, apart from ``redis`` so that importing that costs no engine."""

from __future__ import annotations

from xprocess.ports import free_port
from xprocess.servers.redis import DEFAULT_DATABASES, HOST, find_redis_server
from xprocess.starter import ProcessStarter

__all__ = ["STOPPING_HZ", "RedisStarter"]

STOPPING_HZ = 100  # the timer's rate of a server stopped at the end of the run (see args)


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
        # A SIGTERM is acted on by the server's timer, which runs ``hz`` times a second: at the
        # default of 10, the end of the run waits up to 100 ms for an idle server to exit, at
        # 100 about 5 ms. A kept server stays at the default, which costs least while idle.
        ticks = ["--hz", STOPPING_HZ] if self.terminate_at_end else []
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
            *ticks,
            *self.options,
        ]
