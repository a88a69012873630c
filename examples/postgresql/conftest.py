"""One PostgreSQL server for the whole run, shared by every xdist worker; a database per test."""

from __future__ import annotations

from xprocess.servers import postgresql as pg

postgresql_proc = pg.postgresql_proc(load=["schema.sql"])
postgresql = pg.postgresql("postgresql_proc")
