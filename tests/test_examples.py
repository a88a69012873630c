"""The projects in examples/: each runs green alone and under xdist, with one server per run.

Each test copies an example into its pytester directory (the example's pytest.ini makes that the
rootdir, as for a user who copied it) and runs pytest on it in a subprocess. A small plugin loaded
with ``-p`` notes, after every test, which recorded process the worker saw and that process's
descendants; the tests then check that every worker saw the same single process, that it started
once (its log holds one ready line), and that nothing of it is left once it should be stopped.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers.example_reporter import REPORT
from tests.support import HELPERS, wait_for
from xprocess.liveness import find_process

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# tests/helpers/example_reporter.py, copied into the example under this name, loaded with -p.
REPORTER = "xprocess_example_reporter"
POSTGRES_SEARCH = "/usr/lib/postgresql/*/bin"


@dataclass
class Example:
    name: str  # the directory in examples/, and the name its server is recorded under
    ready: str  # the line the server logs once per start
    install: str  # how to install the server when it is missing
    kept: bool  # True: the server outlives the run; False: terminate_at_end


HTTP = Example("http_server", "Serving HTTP on", "", kept=True)
REDIS = Example("redis", "Ready to accept connections", "apt-get install redis-server", kept=False)
POSTGRES = Example(
    "postgresql",
    "database system is ready to accept connections",
    "apt-get install postgresql",
    kept=False,
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need(found: bool, what: str, install: str) -> None:
    """Skip when ``what`` is missing, or fail when the CI environment variable is set."""
    if not found:
        message = f"{what} is not installed; install it: {install}"
        if in_ci():
            pytest.fail(f"{message} [CI is set: a missing server is a failure]")
        pytest.skip(message)


def have_postgres() -> bool:
    on_path = shutil.which("postgres")
    if on_path is not None and (Path(on_path).parent / "initdb").is_file():
        return True
    return any(
        (Path(d) / "postgres").is_file() and (Path(d) / "initdb").is_file()
        for d in glob.glob(POSTGRES_SEARCH)
    )


def need_server(example: Example) -> None:
    if example is REDIS:
        need(shutil.which("redis-server") is not None, "redis-server", example.install)
        try:
            import redis  # noqa: F401
        except ImportError:
            need(False, "redis-py", "pip install 'xprocess[redis]'")
    elif example is POSTGRES:
        need(have_postgres(), "PostgreSQL (postgres, initdb)", example.install)
        try:
            import psycopg  # noqa: F401
        except ImportError:
            need(False, "psycopg", "pip install 'psycopg[binary]'")


def copy_example(pytester: pytest.Pytester, example: Example) -> Path:
    """Copy the example (without records or caches a local run left in it) into pytester's dir."""
    shutil.copytree(
        EXAMPLES / example.name,
        pytester.path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__", ".xprocess"),
    )
    shutil.copyfile(HELPERS / "example_reporter.py", pytester.path / f"{REPORTER}.py")
    return pytester.path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", REPORTER, "-rs", *args, timeout=120)


def xdist_args(workers: int) -> list[str]:
    if not workers:
        return []
    pytest.importorskip("xdist", reason="-n needs pytest-xdist: pip install pytest-xdist")
    return ["-n", str(workers)]


@dataclass
class Seen:
    """What the tests of one or more runs saw of the recorded processes."""

    entries: list[dict[str, Any]]

    @classmethod
    def read(cls, base: Path) -> Seen:
        path = base / REPORT
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return cls([json.loads(line) for line in lines])

    def processes(self) -> set[tuple[str, int]]:
        return {(e["name"], e["pid"]) for e in self.entries}

    def workers(self) -> set[str]:
        return {e["worker"] for e in self.entries}

    def only(self) -> dict[str, Any]:
        """The single process every test saw (fails if they saw several, or none)."""
        assert len(self.processes()) == 1, f"expected one server, the tests saw {self.processes()}"
        return self.entries[0]

    def tree(self) -> set[tuple[int, float]]:
        """The server and every descendant of it any test saw: (pid, create_time)."""
        procs = set()
        for entry in self.entries:
            procs.add((entry["pid"], entry["create_time"]))
            procs.update((pid, ctime) for pid, ctime in entry["descendants"])
        return procs


def starts_in_log(entry: dict[str, Any], example: Example) -> int:
    log = Path(entry["root"]) / example.name / "xprocess.log"
    return sum(example.ready in line for line in log.read_text(errors="replace").splitlines())


def _under(path: str, roots: list[Path]) -> bool:
    return any(path == str(root) or path.startswith(f"{root}{os.sep}") for root in roots)


def leftovers(seen: Seen, roots: list[Path]) -> list[str]:
    """Live processes of the server: ones the tests saw, or any working in or naming ``roots``."""
    left = [
        f"pid {pid}"
        for pid, ctime in sorted(seen.tree())
        if find_process(pid, ctime, ignore_zombies=True) is not None
    ]
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = proc.cwd()
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if _under(cwd, roots) or any(_under(arg, roots) for arg in cmdline):
            left.append(f"pid {proc.pid} in {cwd}: {' '.join(cmdline)}")
    return left


def assert_nothing_left(seen: Seen, roots: list[Path]) -> None:
    found: list[str] = []

    def clean() -> bool:
        found[:] = leftovers(seen, roots)
        return not found

    wait_for(clean, timeout=15, what=f"the server's processes to be gone (left: {found})")


def roots_of(entry: dict[str, Any]) -> list[Path]:
    """Where the server's processes work: its records root, and PostgreSQL's data directory."""
    roots = [Path(entry["root"])]
    if "datadir" in entry["data"]:
        roots.append(Path(entry["data"]["datadir"]))
    return roots


@pytest.fixture
def cleanup_datadirs(pytester: pytest.Pytester) -> Iterator[None]:
    """Remove PostgreSQL data directories the example put outside pytester's directory."""
    yield
    for entry in Seen.read(pytester.path).entries:
        datadir = entry["data"].get("datadir")
        if datadir and not _under(datadir, [pytester.path]):
            shutil.rmtree(datadir, ignore_errors=True)


def run_and_check_one_server(
    pytester: pytest.Pytester, example: Example, workers: int
) -> dict[str, Any]:
    """Run the example; check every test passed and saw the one server, started once."""
    result = run(pytester, *xdist_args(workers))
    result.assert_outcomes(passed=4)
    seen = Seen.read(pytester.path)
    entry = seen.only()
    if workers:
        assert len(seen.workers()) > 1, f"expected several workers, saw {seen.workers()}"
    assert starts_in_log(entry, example) == 1
    return entry


@pytest.mark.parametrize("workers", [0, 4], ids=["one-process", "xdist"])
def test_http_server_is_kept_reused_shown_and_killed(
    pytester: pytest.Pytester, workers: int
) -> None:
    copy_example(pytester, HTTP)
    entry = run_and_check_one_server(pytester, HTTP, workers)
    pid = entry["pid"]
    assert find_process(pid, entry["create_time"]) is not None, "the kept server was stopped"

    # The next run reuses the running server instead of starting another.
    run(pytester, *xdist_args(workers)).assert_outcomes(passed=4)
    seen = Seen.read(pytester.path)
    assert seen.processes() == {("http_server", pid)}
    assert starts_in_log(entry, HTTP) == 1

    run(pytester, "--xshow").stdout.fnmatch_lines([f"http_server *{pid} *LIVE *"])
    killed = run(pytester, "--xkill")
    killed.stdout.fnmatch_lines([f"{pid} http_server TERMINATED"])
    assert killed.ret == 0
    assert_nothing_left(seen, roots_of(entry))
    run(pytester, "--xshow").stdout.fnmatch_lines(["nothing recorded under *"])


@pytest.mark.parametrize("workers", [0, 4], ids=["one-process", "xdist"])
def test_redis_runs_once_and_stops_at_end_of_run(pytester: pytest.Pytester, workers: int) -> None:
    need_server(REDIS)
    copy_example(pytester, REDIS)
    entry = run_and_check_one_server(pytester, REDIS, workers)
    assert_nothing_left(Seen.read(pytester.path), roots_of(entry))
    run(pytester, "--xshow").stdout.fnmatch_lines([f"redis *{entry['pid']} *DEAD *"])


@pytest.mark.usefixtures("cleanup_datadirs")
@pytest.mark.parametrize("workers", [0, 4], ids=["one-process", "xdist"])
def test_postgresql_runs_once_and_stops_at_end_of_run_with_its_workers(
    pytester: pytest.Pytester, workers: int
) -> None:
    need_server(POSTGRES)
    copy_example(pytester, POSTGRES)
    entry = run_and_check_one_server(pytester, POSTGRES, workers)
    seen = Seen.read(pytester.path)
    assert seen.tree() - {(entry["pid"], entry["create_time"])}, "no background workers seen"
    assert_nothing_left(seen, roots_of(entry))
    run(pytester, "--xshow").stdout.fnmatch_lines([f"postgresql *{entry['pid']} *DEAD *"])


@pytest.mark.usefixtures("cleanup_datadirs")
def test_postgresql_starts_a_fresh_cluster_in_each_run(pytester: pytest.Pytester) -> None:
    need_server(POSTGRES)
    copy_example(pytester, POSTGRES)
    first = run_and_check_one_server(pytester, POSTGRES, 0)
    run(pytester).assert_outcomes(passed=4)
    seen = Seen.read(pytester.path)
    assert len(seen.processes()) == 2
    second = seen.entries[-1]
    assert starts_in_log(second, POSTGRES) == 2
    if first["data"]["datadir"] != second["data"]["datadir"]:
        assert not Path(first["data"]["datadir"]).exists(), "the old cluster was not removed"
    assert_nothing_left(seen, roots_of(first) + roots_of(second))


def hide_server(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, example: Example
) -> None:
    """Make the copied example unable to find its server: an empty PATH, no install places."""
    empty = pytester.mkdir("empty-path")
    monkeypatch.setenv("PATH", str(empty))
    module = "postgresql" if example is POSTGRES else "redis"
    with (pytester.path / "conftest.py").open("a", encoding="utf-8") as conftest:
        conftest.write(
            f"\nimport xprocess.servers.{module}\nxprocess.servers.{module}.SEARCH_DIRS = ()\n"
        )


@pytest.mark.parametrize("example", [REDIS, POSTGRES], ids=lambda e: e.name)
def test_a_missing_server_fails_its_tests_with_how_to_install_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, example: Example
) -> None:
    copy_example(pytester, example)
    hide_server(pytester, monkeypatch, example)
    result = run(pytester)
    result.assert_outcomes(errors=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [f"*_proc: ServerNotFoundError: * is not installed *{example.install}*"]
    )
    assert "SKIPPED" not in result.stdout.str()


def test_every_example_has_its_own_rootdir_and_readme() -> None:
    for example in (HTTP, REDIS, POSTGRES):
        directory = EXAMPLES / example.name
        assert (directory / "pytest.ini").is_file()
        assert (directory / "conftest.py").is_file()
        readme = (directory / "README.rst").read_text(encoding="utf-8")
        assert f"pytest examples/{example.name}" in readme
