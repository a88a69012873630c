"""Plumbing for the benchmark: the two venvs, running pytest in a project, finding stray processes.

Every pytest the benchmark runs gets ``XPROCESS_BENCH_TOKEN=<run id>/<project>`` in its
environment. Whatever it starts inherits that variable, so after a project is done the harness
finds every process it left, whichever tool started it and whether or not a record of it exists,
by reading ``/proc/<pid>/environ``. That is why the harness needs Linux.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BENCH_DIR",
    "ENV_VAR",
    "ROOT",
    "Tool",
    "alive",
    "cmdline",
    "current_tool",
    "kill_and_wait",
    "prepare_venvs",
    "pytest_env",
    "tagged_pids",
]

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENVS = BENCH_DIR / ".venvs"
ENV_VAR = "XPROCESS_BENCH_TOKEN"
XPROCESS_KIND = "xprocess"
PYTEST_XPROCESS_KIND = "pytest-xprocess"
PYTEST_XPROCESS_PIN = "pytest-xprocess==1.0.2"
# Versions read from the xprocess venv and pinned in the other one, so both run the same pytest.
SHARED_DISTS = ("pytest", "pytest-xdist", "psutil")
_SPEC_FILE = ".bench-spec.json"


@dataclass
class Tool:
    """One side of the comparison: which plugin, and the interpreter that has it installed."""

    kind: str  # "xprocess" or "pytest-xprocess"
    python: Path
    versions: dict[str, str] = field(default_factory=dict)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _versions(python: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    names = [*SHARED_DISTS, "xprocess", "pytest-xprocess"]
    result = subprocess.run(
        [str(python), "-c", script, *names], capture_output=True, text=True, check=True
    )
    versions: dict[str, str] = json.loads(result.stdout)
    return versions


def _pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"pip failed: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")


def _venv(
    name: str, base_python: str, requirements: list[str], rebuild: bool, fingerprint: str = ""
) -> Path:
    """Create (or reuse, when built the same way) ``.venvs/<name>``."""
    where = VENVS / name
    python = where / "bin" / "python"
    spec = json.dumps(
        {"base": base_python, "requirements": requirements, "fingerprint": fingerprint},
        sort_keys=True,
    )
    spec_file = where / _SPEC_FILE
    if (
        not rebuild
        and python.exists()
        and spec_file.exists()
        and spec_file.read_text(encoding="utf-8") == spec
    ):
        _log(f"reusing venv {where}")
        return python
    if where.exists():
        shutil.rmtree(where)
    _log(f"building venv {where}: {' '.join(requirements)}")
    subprocess.run([base_python, "-m", "venv", str(where)], check=True)
    _pip(python, *requirements)
    spec_file.write_text(spec, encoding="utf-8")
    return python


def _checkout_fingerprint() -> str:
    """Changes when the checkout's dependencies do, so its venv is rebuilt then."""
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]


def prepare_venvs(base_python: str, rebuild: bool) -> list[Tool]:
    """Build or reuse both venvs; returns [pytest-xprocess, xprocess]."""
    VENVS.mkdir(parents=True, exist_ok=True)
    ours = _venv(
        XPROCESS_KIND,
        base_python,
        ["-e", str(ROOT), "pytest-xdist"],
        rebuild,
        fingerprint=_checkout_fingerprint(),
    )
    our_versions = _versions(ours)
    pins = [f"{name}=={our_versions[name]}" for name in SHARED_DISTS if name in our_versions]
    theirs = _venv(PYTEST_XPROCESS_KIND, base_python, [PYTEST_XPROCESS_PIN, *pins], rebuild)
    return [
        Tool(PYTEST_XPROCESS_KIND, theirs, _versions(theirs)),
        Tool(XPROCESS_KIND, ours, our_versions),
    ]


def current_tool() -> Tool:
    """The running interpreter as the xprocess side (it must have this checkout installed)."""
    python = Path(sys.executable)
    versions = _versions(python)
    if "xprocess" not in versions:
        raise SystemExit(
            f"{python} has no 'xprocess' distribution installed; install this checkout into it "
            "(pip install -e .) or run without --xprocess-only"
        )
    if "pytest-xdist" not in versions:
        _log("note: pytest-xdist is not installed here; the xdist scenario will fail")
    return Tool(XPROCESS_KIND, python, versions)


# Variables that would change what is measured: PYTHONDONTWRITEBYTECODE makes every run compile
# the editable checkout again (the PyPI install has its .pyc files), PYTHONUNBUFFERED turns a
# child's block-buffered output into one write per line.
_DROPPED = frozenset({ENV_VAR, "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"})


def pytest_env(token: str) -> dict[str, str]:
    """The environment of a benchmark pytest run: ours, less what steers pytest or skews the
    measurement, plus the token."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "COV_CORE_")) and key not in _DROPPED
    }
    env[ENV_VAR] = token
    return env


# --- processes (Linux /proc) -------------------------------------------------------------------


def _stat_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    tail = raw[raw.rfind(b")") + 2 :]
    return tail[:1].decode("ascii", "replace") or None


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    state = _stat_state(pid)
    return state is not None and state not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def tagged_pids(token_prefix: str) -> list[int]:
    """Live processes whose environment carries a token starting with ``token_prefix``."""
    needle = f"{ENV_VAR}={token_prefix}".encode()
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                items = f.read().split(b"\0")
        except OSError:
            continue
        if any(item.startswith(needle) for item in items) and alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def kill_and_wait(pids: list[int], timeout: float = 10.0) -> list[int]:
    """SIGKILL ``pids`` and poll until they are gone; returns those still alive at the deadline."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    delay = 0.001
    left = [pid for pid in pids if alive(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
        left = [pid for pid in left if alive(pid)]
    return left
