"""PostgreSQL and Redis for 40 tests: pytest-postgresql / pytest-redis against xprocess.servers.

Usage::

    python benchmarks/servers.py                      # -n 1, 2, 4; 3 repeats
    python benchmarks/servers.py --repeat 1 --workers 4 --json servers.json

Each side gets a venv under ``benchmarks/.venvs/`` (built on first use, reused afterwards): one
with pytest-postgresql, pytest-redis and pytest-xdist from PyPI, one with this checkout
(``xprocess[postgresql,redis,xdist]``). For each scenario (``postgresql``: every test gets a
database copied from a template loaded from ``schema.sql``; ``redis``: every test gets a clean
database) the same 40 test bodies run with each side's fixtures, at each ``-n``, interleaved:
first in a new project (``new``: nothing cached), then again in the same one (``again``: the run
a user makes every day, the server stopped at the end of the first; xprocess copies its cached
cluster).

Measured per run: wall time; servers started (PostgreSQL postmasters, redis-server processes);
peak PSS of all server processes (sampled every 0.1 s); time from the start of pytest to the start
of the first test; and lines of user code (conftest.py and ini settings). For xprocess, a second
run against a kept server (``--xpostgresql-keep``) gives the time to its first test, without
xdist and at ``-n 4``, beside that of a test with no fixture (pytest and xdist alone). Ratios are
taken within each repeat, where both sides ran one after the other: the table shows their median
and their range across repeats.

PostgreSQL refuses to run as root, and pytest-postgresql starts it as the user running the tests:
so as root every run is made as ``--user`` (default ``postgres``), with venvs built from a Python
that user can execute (``--python``, default ``/usr/bin/python3``). Linux only (it reads /proc).
Every server left behind is killed and reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "benchmarks" / ".venvs"
TESTS = 40
PLUGINS = "pytest-postgresql+pytest-redis"
XPROCESS = "xprocess"
SIDES = (PLUGINS, XPROCESS)
KINDS = ("new", "again")
# Both plugins share a venv: each scenario turns the other off, as a project using one has it.
OTHER = {
    "postgresql": {PLUGINS: ("-p", "no:pytest_redis"), XPROCESS: ()},
    "redis": {PLUGINS: ("-p", "no:pytest_postgresql"), XPROCESS: ()},
}
SERVER_NAMES = ("postgres", "redis-server")
TOKEN_VAR = "XPROCESS_SERVERS_BENCH"
INITDB_MODES = {"--boot", "--single", "--check", "-C"}
# The temporary roots of the runs (see run_pytest), removed at the end.
TEMP_ROOTS: list[Path] = []

PROBE = """
import os, time
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    with open(os.environ["BENCH_FIRST_TEST"], "a") as f:
        f.write(f"{time.time()}\\n")
"""

SCHEMA = """CREATE TABLE item (n int NOT NULL);
INSERT INTO item (n) VALUES (-1), (-2), (-3);
"""

BODIES = {
    "postgresql": f"""
import pytest

@pytest.mark.parametrize("i", range({TESTS}))
def test_database(postgresql, i):
    with postgresql.cursor() as cur:
        cur.execute("INSERT INTO item (n) VALUES (%s)", (i,))
        cur.execute("SELECT count(*) FROM item")
        assert cur.fetchone() == (4,)
    postgresql.commit()
""",
    "redis": f"""
import pytest

@pytest.mark.parametrize("i", range({TESTS}))
def test_keys(redisdb, i):
    assert redisdb.dbsize() == 0
    redisdb.set("key", i)
    assert int(redisdb.get("key")) == i
""",
}

# (conftest.py, ini settings) of each side: the user code being compared.
SETUP: dict[str, dict[str, tuple[str, list[str]]]] = {
    "postgresql": {
        PLUGINS: (
            "from pathlib import Path\n"
            "from pytest_postgresql import factories\n\n"
            'postgresql_proc = factories.postgresql_proc(load=[Path(__file__).parent / "schema.sql"])\n'  # noqa: E501 (as a user writes it)
            'postgresql = factories.postgresql("postgresql_proc")\n',
            ["postgresql_exec = {pg_ctl}"],
        ),
        XPROCESS: (
            "from xprocess.servers import postgresql as pg\n\n"
            'postgresql_proc = pg.postgresql_proc(load=["schema.sql"])\n'
            'postgresql = pg.postgresql("postgresql_proc")\n',
            [],
        ),
    },
    "redis": {
        # pytest-redis registers redis_proc and redisdb itself.
        PLUGINS: ("", []),
        XPROCESS: (
            "from xprocess.servers import redis\n\n"
            "redis_proc = redis.redis_proc()\n"
            'redisdb = redis.redisdb("redis_proc")\n',
            [],
        ),
    },
}


def user_lines(conftest: str, ini: list[str]) -> int:
    code = [line for line in conftest.splitlines() if line.strip() and not line.startswith("#")]
    return len(code) + len(ini)


def build_venvs(python: str) -> dict[str, Path]:
    """The venv of each side, built on first use."""
    wanted = {
        PLUGINS: ["pytest-postgresql", "pytest-redis", "pytest-xdist", "psycopg[binary]"],
        XPROCESS: ["-e", f"{ROOT}[postgresql,redis,xdist]"],
    }
    venvs = {}
    for side, packages in wanted.items():
        venv = VENVS / f"servers-{side.split('+')[0]}"
        ready = venv / ".complete"
        if not ready.exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
            subprocess.run([*pip, *packages], check=True)
            ready.touch()
        venvs[side] = venv
    return venvs


def pg_ctl() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise SystemExit(
            "pg_ctl not found in /usr/lib/postgresql/*/bin: apt-get install postgresql"
        )
    return str(found[-1])


class Sampler(threading.Thread):
    """Samples the server processes carrying ``token`` in their environment."""

    def __init__(self, token: str, places: list[str]) -> None:
        super().__init__(daemon=True)
        self.token = f"{TOKEN_VAR}={token}".encode()
        self.places = places
        self.started = time.time()
        self.stop = threading.Event()
        self.tagged: dict[tuple[int, float], bool] = {}
        self.servers: set[tuple[int, float]] = set()
        self.peak_pss = 0

    def ours(self, proc: psutil.Process, key: tuple[int, float]) -> bool:
        """Whether the process is of this run: by its environment, or (redis-server overwrites
        its environment with its title) by working in one of ``places`` since the run began."""
        if key not in self.tagged:
            try:
                environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
                cwd = proc.cwd()
            except (OSError, psutil.Error):
                return False
            here = key[1] >= self.started - 1 and any(cwd.startswith(p) for p in self.places)
            self.tagged[key] = here or self.token in environ.split(b"\0")
        return self.tagged[key]

    def sample(self) -> list[psutil.Process]:
        found = []
        total = 0
        for proc in psutil.process_iter(["name", "create_time", "ppid", "cmdline"]):
            if proc.info["name"] not in SERVER_NAMES:
                continue
            if set(proc.info["cmdline"] or ()) & INITDB_MODES:
                continue  # the short-lived postgres processes initdb runs
            key = (proc.pid, proc.info["create_time"])
            if not self.ours(proc, key):
                continue
            found.append(proc)
            try:
                parent = psutil.Process(proc.info["ppid"]).name()
                total += proc.memory_full_info().pss
            except psutil.Error:
                continue
            # A server is a postmaster (its command has -D; its children show a title instead)
            # or a redis-server that is not a fork of one; a child orphaned while its server
            # stops is not another server.
            command = proc.info["cmdline"] or []
            if ("-D" in command) if proc.info["name"] == "postgres" else parent not in SERVER_NAMES:
                self.servers.add(key)
        self.peak_pss = max(self.peak_pss, total)
        return found

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(0.1)


def make_project(base: Path, scenario: str, side: str, owner: str | None) -> Path:
    if not base.exists():
        base.mkdir()
        if owner is not None:
            shutil.chown(base, owner)
    project = base / f"{scenario}-{side.split('+', maxsplit=1)[0]}"
    project.mkdir()
    conftest, ini = SETUP[scenario][side]
    (project / "conftest.py").write_text(conftest, encoding="utf-8")
    settings = "".join(f"{line.format(pg_ctl=pg_ctl())}\n" for line in ini)
    (project / "pytest.ini").write_text(f"[pytest]\n{settings}", encoding="utf-8")
    (project / "schema.sql").write_text(SCHEMA, encoding="utf-8")
    (project / "test_bodies.py").write_text(BODIES[scenario], encoding="utf-8")
    (project / "bench_probe.py").write_text(PROBE, encoding="utf-8")
    if owner is not None:
        for path in [project, *project.rglob("*")]:
            shutil.chown(path, owner)
    return project


def run_pytest(
    venv: Path, project: Path, workers: int, user: str | None, *extra: str, kept: bool = False
) -> dict[str, Any]:
    """One pytest run, sampled: wall time, servers, peak PSS, first test, exit code."""
    token = uuid.uuid4().hex
    first = project / f"first-{token}"
    env = {
        **os.environ,
        TOKEN_VAR: token,
        "BENCH_FIRST_TEST": str(first),
        "PYTHONPATH": str(project),
        # Compiled modules cached as in a user's own venv: the runs' user can write neither the
        # venvs nor this checkout, so without it every run would compile (and assertion-rewrite)
        # each module of pytest's plugins, and of the editable xprocess, afresh.
        "PYTHONPYCACHEPREFIX": str(pycache(venv, user)),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if user is not None:
        env["HOME"] = str(project)
    # pytest's temporary directories (where pytest-redis's and pytest-postgresql's servers
    # work) in a root of this run's own, not the /tmp/pytest-of-<user> that other pytest runs
    # of the same user share: a server working there is this run's. Short, for the servers'
    # Unix sockets in it.
    temproot = Path(tempfile.mkdtemp(prefix="xsb-"))
    TEMP_ROOTS.append(temproot)
    if user is not None:
        shutil.chown(temproot, user)
    env["PYTEST_DEBUG_TEMPROOT"] = str(temproot)
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "bench_probe"]
    command += ["-n", str(workers), "-p", "no:randomly", *extra]
    places = [str(project), str(temproot)]
    sampler = Sampler(token, places)
    sampler.start()
    started = time.time()
    result = subprocess.run(
        command, cwd=project, env=env, user=user, capture_output=True, text=True, check=False
    )
    wall = time.time() - started
    sampler.stop.set()
    sampler.join()
    # What is still stopping gets a few seconds; what runs after them was left behind.
    _, left = ([], []) if kept else psutil.wait_procs(sampler.sample(), timeout=5)
    for proc in left:
        print(f"  left running: pid {proc.pid} {' '.join(proc.info['cmdline'] or [])}")
    times = [float(t) for t in first.read_text().split()] if first.exists() else []
    return {
        "wall": wall,
        "servers": len(sampler.servers),
        "peak_pss_mb": sampler.peak_pss / 2**20,
        "first_test": min(times) - started if times else None,
        "returncode": result.returncode,
        "tail": result.stdout[-600:] + result.stderr[-600:],
        "left": left,
    }


def pycache(venv: Path, user: str | None) -> Path:
    """The bytecode cache of ``venv``'s runs, owned by the user who runs them."""
    cache = venv / "pycache"
    if not cache.exists():
        cache.mkdir()
        if user is not None:
            shutil.chown(cache, user)
    return cache


def warm_up(base: Path, venvs: dict[str, Path], scenarios: list[str], user: str | None) -> None:
    """One unmeasured run of each side and scenario, so that what it compiles is cached (as it
    is for a user after their first run with the installed plugins)."""
    for scenario in scenarios:
        for side in SIDES:
            project = make_project(base / "warm-up", scenario, side, user)
            sample = run_pytest(venvs[side], project, 2, user, *OTHER[scenario][side])
            kill(sample["left"])


def kill(processes: list[psutil.Process]) -> None:
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(processes, timeout=10)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/servers.py", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--only", default="postgresql,redis")
    parser.add_argument("--user", default="postgres" if os.geteuid() == 0 else None)
    parser.add_argument(
        "--python", default="/usr/bin/python3" if os.geteuid() == 0 else sys.executable
    )
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    venvs = build_venvs(args.python)
    workers = [int(n) for n in args.workers.split(",")]
    scenarios = args.only.split(",")
    samples: dict[str, list[dict[str, Any]]] = {}
    errors: list[str] = []
    leftovers = 0
    base = Path(tempfile.mkdtemp(prefix="xprocess-servers-bench-"))
    if args.user:
        shutil.chown(base, args.user)
    try:
        warm_up(base, venvs, scenarios, args.user)
        plan = [
            (repeat, scenario, n, side)
            for repeat in range(args.repeat)
            for scenario in scenarios
            for n in workers
            for side in SIDES
        ]
        for repeat, scenario, n, side in plan:
            project = make_project(base / f"r{repeat}-n{n}", scenario, side, args.user)
            # A new project's first run (nothing cached), then the run a user makes every day:
            # the same project again, its server stopped at the end of the first.
            for kind in KINDS:
                sample = run_pytest(venvs[side], project, n, args.user, *OTHER[scenario][side])
                if sample["returncode"] != 0:
                    errors.append(f"{scenario} {side} -n {n}: exit {sample['returncode']}")
                    errors.append(sample["tail"])
                leftovers += len(sample["left"])
                kill(sample.pop("left"))
                sample.pop("tail")
                samples.setdefault(f"{scenario}|{side}|{n}|{kind}", []).append(sample)
                print(
                    f"{scenario:10} {side:32} -n {n} {kind:>5}: {sample['wall']:.2f} s, "
                    f"{sample['servers']} servers, {sample['peak_pss_mb']:.0f} MB, "
                    f"first test {sample['first_test'] or float('nan'):.2f} s",
                    flush=True,
                )
        kept = (
            kept_runs(base, venvs[XPROCESS], args.user, errors) if "postgresql" in scenarios else {}
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for temproot in TEMP_ROOTS:
            shutil.rmtree(temproot, ignore_errors=True)
    report(samples, scenarios, workers, kept, errors, leftovers, args.json)
    return 1 if errors or leftovers else 0


def kept_runs(base: Path, venv: Path, user: str | None, errors: list[str]) -> dict[str, Any]:
    """The first test of a run whose server an earlier run kept (xprocess), without xdist and at
    -n 4; beside it, interleaved, the first test of a test with no fixture: pytest alone."""
    project = make_project(base / "kept", "postgresql", XPROCESS, user)
    (project / "test_alone.py").write_text("def test_alone():\n    pass\n", encoding="utf-8")
    if user is not None:
        shutil.chown(project / "test_alone.py", user)
    found: dict[str, Any] = {}
    for n in (0, 4):
        for round_ in range(4):
            for what, extra in (("kept", "test_bodies.py"), ("pytest alone", "test_alone.py")):
                sample = run_pytest(venv, project, n, user, "--xpostgresql-keep", extra, kept=True)
                if sample["returncode"] != 0:
                    errors.append(f"kept run: exit {sample['returncode']}\n{sample['tail']}")
                if round_:  # the first round starts the server
                    found.setdefault(f"-n {n}", {}).setdefault(what, []).append(
                        sample["first_test"]
                    )
    env = {**os.environ, "HOME": str(project)}
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "--xkill"],
        cwd=project,
        env=env,
        user=user,
        capture_output=True,
        check=False,
    )
    return found


def median(samples: list[dict[str, Any]], field: str) -> float:
    values = [s[field] for s in samples if s[field] is not None]
    return statistics.median(values) if values else float("nan")


def report(
    samples: dict[str, list[dict[str, Any]]],
    scenarios: list[str],
    workers: list[int],
    kept: dict[str, Any],
    errors: list[str],
    leftovers: int,
    json_path: Path | None,
) -> None:
    fields = [
        ("wall", "wall s"),
        ("servers", "servers"),
        ("peak_pss_mb", "PSS MB"),
        ("first_test", "1st test s"),
    ]
    print()
    # A ratio is taken within each repeat (the two sides ran one after the other), then the
    # median of those and their range: the machine's noise moves both sides of a repeat alike.
    heading = "plugins / xprocess (ratio, range)"
    print(f"{'scenario':11}{'-n':>3} {'run':>5}  " + "  ".join(f"{f:>37}" for _, f in fields))
    print(f"{'':20}" + "  ".join(f"{heading:>37}" for _ in fields))
    rows = []
    for scenario, n, kind in ((s, n, k) for k in KINDS for s in scenarios for n in workers):
        plugin = samples.get(f"{scenario}|{PLUGINS}|{n}|{kind}", [])
        ours = samples.get(f"{scenario}|{XPROCESS}|{n}|{kind}", [])
        cells = []
        row: dict[str, Any] = {"scenario": scenario, "workers": n, "run": kind}
        for field, _ in fields:
            a, b = median(plugin, field), median(ours, field)
            pairs = zip(plugin, ours, strict=False)
            ratios = [x[field] / y[field] for x, y in pairs if x[field] and y[field]]
            ratio = statistics.median(ratios) if ratios else float("nan")
            low, high = (min(ratios), max(ratios)) if ratios else (ratio, ratio)
            row[field] = {"plugins": a, "xprocess": b, "ratio": ratio, "range": [low, high]}
            cells.append(f"{a:7.2f} / {b:6.2f} ({ratio:4.1f}x, {low:3.1f}-{high:3.1f})")
        rows.append(row)
        print(f"{scenario:11}{n:>3} {kind:>5}  " + "  ".join(f"{c:>37}" for c in cells))
    lines = {
        scenario: {side: user_lines(*SETUP[scenario][side]) for side in SIDES}
        for scenario in scenarios
    }
    for scenario, counts in lines.items():
        print(f"lines of user code, {scenario}: ", end="")
        print(f"{PLUGINS} {counts[PLUGINS]}, xprocess {counts[XPROCESS]}")
    for label, runs in kept.items():
        first, alone = (statistics.median(runs[what]) for what in ("kept", "pytest alone"))
        print(
            f"xprocess, kept server, {label}: first test after {first:.2f} s; pytest alone "
            f"{alone:.2f} s, so the server's fixtures add {first - alone:.2f} s"
        )
    print(f"leftover server processes killed: {leftovers}")
    for error in errors:
        print(f"ERROR {error}")
    if json_path is not None:
        json_path.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "lines": lines,
                    "kept_first_test": kept,
                    "errors": errors,
                    "leftovers": leftovers,
                    "samples": samples,
                },
                indent=1,
            ),
            encoding="utf-8",
        )


if __name__ == "__main__":
    sys.exit(main())
