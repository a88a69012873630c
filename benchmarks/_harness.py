"""Plumbing of the benchmark: the sides measured, a generated project and its pytest runs, and
finding whatever a project left running.

Every pytest the benchmark runs gets ``XPROCESS_BENCH_TOKEN=<run id>/<project>`` in its
environment. Whatever it starts inherits that variable, so after a project the harness finds
every process it left, whichever plugin started it and whether or not a record of it exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENVS = BENCH_DIR / ".venvs"
CHILD = ROOT / "tests" / "helpers" / "child.py"
ENV_VAR = "XPROCESS_BENCH_TOKEN"
PYTEST_XPROCESS = "pytest-xprocess"
PYTEST_XPROCESS_PIN = "pytest-xprocess==1.0.2"
# Pinned in the pytest-xprocess venv to the versions this interpreter has: both run one pytest.
SHARED_DISTS = ("pytest", "pytest-xdist", "psutil")
# PYTHONDONTWRITEBYTECODE makes every run compile the editable checkout again, and
# PYTHONUNBUFFERED turns a child's block-buffered output into one write per line.
_DROPPED = frozenset({ENV_VAR, "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "XPROCESS_PORTABLE"})

Samples = dict[str, list[float]]


class BenchError(Exception):
    """A scenario could not be measured (a generated test failed, a run timed out, ...)."""


@dataclass(frozen=True)
class Side:
    """One column of the table: a plugin, the interpreter that has it, and extra environment."""

    name: str  # "xprocess", "portable" (xprocess with XPROCESS_PORTABLE=1) or "pytest-xprocess"
    python: Path
    env: dict[str, str] = field(default_factory=dict)


def versions(python: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    names = [*SHARED_DISTS, "xprocess", PYTEST_XPROCESS]
    result = subprocess.run(
        [str(python), "-c", script, *names], capture_output=True, text=True, check=True
    )
    found: dict[str, str] = json.loads(result.stdout)
    return found


def sides(against: bool, base_python: str, rebuild: bool) -> list[Side]:
    """The running interpreter on both of xprocess's paths, and pytest-xprocess if ``against``."""
    ours = Path(sys.executable)
    have = versions(ours)
    if "xprocess" not in have:
        raise SystemExit(f"{ours} has no xprocess installed: pip install -e '.[dev]' first")
    chosen = [Side("xprocess", ours), Side("portable", ours, {"XPROCESS_PORTABLE": "1"})]
    if against:
        pins = [f"{name}=={have[name]}" for name in SHARED_DISTS if name in have]
        theirs = _venv(VENVS / PYTEST_XPROCESS, base_python, [PYTEST_XPROCESS_PIN, *pins], rebuild)
        chosen.insert(0, Side(PYTEST_XPROCESS, theirs))
    return chosen


def _venv(where: Path, base_python: str, requirements: list[str], rebuild: bool) -> Path:
    """Create ``where`` with ``requirements``, or reuse it when it was built the same way."""
    python, spec_file = where / "bin" / "python", where / ".bench-spec.json"
    spec = json.dumps({"base": base_python, "requirements": requirements})
    if not rebuild and python.exists() and spec_file.exists() and spec_file.read_text() == spec:
        return python
    shutil.rmtree(where, ignore_errors=True)
    say(f"building venv {where}: {' '.join(requirements)}")
    subprocess.run([base_python, "-m", "venv", str(where)], check=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    subprocess.run([*pip, *requirements], check=True)
    spec_file.write_text(spec)
    return python


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Imported by every generated test module.
BENCHHELP = '''\
"""Helpers of the generated benchmark tests (written by benchmarks/run.py)."""

import json, re, sys
from pathlib import Path

from xprocess import ProcessStarter

HERE = Path(__file__).resolve().parent
COUNT_FILE = HERE / "started.txt"
CHILD = @@CHILD@@
SEED = @@SEED@@
# Ready at once and about 1 ms to start, so its own start-up does not hide the plugin's cost.
SHELL_READY = ["/bin/sh", "-c", "echo ready; exec sleep 600"]


def child(*flags, buffered=False):
    """The helper child's command; buffered=True keeps Python's stdout block-buffered."""
    return [sys.executable, *([] if buffered else ["-u"]), CHILD, *map(str, flags)]


def starter(command, ready="^ready", wait=30.0, read_lines=50):
    return type("Starter", (ProcessStarter,), dict(
        args=list(command), pattern=ready, timeout=wait, max_read_lines=read_lines))


def ready_stamp(logpath, text):
    """The wall-clock time the child printed after ``text`` in its latest such line."""
    with open(str(logpath), "rb") as log:
        log.seek(max(0, log.seek(0, 2) - 16384))
        tail = log.read().decode("utf-8", "replace")
    return float(re.findall(re.escape(text) + r" (\\d+\\.\\d+)", tail)[-1])


def save(key, values):
    results = HERE / "results.json"
    data = json.loads(results.read_text()) if results.exists() else {}
    data.setdefault(key, []).extend(float(v) for v in values)
    results.write_text(json.dumps(data))
'''


@dataclass
class Project:
    """A generated pytest project in ``path``, run by ``side``."""

    side: Side
    path: Path
    token: str
    seed: int
    notes: list[str] = field(default_factory=list)

    def setup(self) -> None:
        self.path.mkdir(parents=True)
        self.write("pytest.ini", "[pytest]\n")
        text = BENCHHELP.replace("@@CHILD@@", repr(str(CHILD))).replace("@@SEED@@", str(self.seed))
        self.write("benchhelp.py", text)

    def write(self, name: str, text: str) -> None:
        (self.path / name).write_text(text, encoding="utf-8")

    @property
    def records_root(self) -> Path:
        return self.path / ".pytest_cache" / "d" / ".xprocess"

    def pytest(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run ``<side's python> -m pytest ARGS`` in the project."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTEST_", "COV_CORE_")) and key not in _DROPPED
        }
        env.update(self.side.env, **{ENV_VAR: self.token})
        cmd = [str(self.side.python), "-m", "pytest", *args]
        try:
            return subprocess.run(
                cmd,
                cwd=self.path,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{' '.join(cmd)} did not finish within {timeout:g} s") from exc

    def timed(self, *args: str) -> float:
        """Wall time of one pytest run that must pass, from the harness's side."""
        start = time.perf_counter()
        result = self.pytest(*args)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise BenchError(f"pytest {' '.join(args)} exited {result.returncode}:\n{tail(result)}")
        return elapsed

    def run_tests(self, *args: str) -> Samples:
        """Run the project's tests; return the samples they saved in results.json."""
        self.timed("-q", "-p", "no:randomly", *args)
        results = self.path / "results.json"
        raw = json.loads(results.read_text()) if results.exists() else {}
        return {str(k): [float(v) for v in vs] for k, vs in raw.items()}

    def xkill(self) -> str:
        return self.pytest("--xkill", timeout=300).stdout


def tail(result: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


def tagged(token_prefix: str) -> list[psutil.Process]:
    """Live processes whose environment carries a token starting with ``token_prefix``."""
    found = []
    for proc in psutil.process_iter():
        try:
            token = proc.environ().get(ENV_VAR, "")
            if token.startswith(token_prefix) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {' '.join(proc.cmdline())}"
    except psutil.Error:
        return str(proc.pid)


def kill_all(procs: list[psutil.Process]) -> list[int]:
    """SIGKILL ``procs`` and wait for them; returns the pids still alive after 10 s."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _, alive = psutil.wait_procs(procs, timeout=10)
    return [proc.pid for proc in alive]
