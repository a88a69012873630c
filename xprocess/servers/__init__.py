"""Ready-made servers for tests: PostgreSQL and Redis, one server for every xdist worker.

Each module has a starter and fixture factories in the style of pytest-postgresql and
pytest-redis::

    from xprocess.servers import postgresql as pg

    postgresql_proc = pg.postgresql_proc(load=["schema.sql"])
    postgresql = pg.postgresql("postgresql_proc")

Nothing here is imported until a conftest imports it; the client libraries are extras
(``pip install "xprocess[postgresql]"``, ``"xprocess[redis]"``).
"""
