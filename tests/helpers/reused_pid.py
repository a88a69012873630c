"""Run inside a fresh PID namespace: a stranger reuses a dead managed process's pid, calls
setsid(), leaves a daemon and exits. Prints JSON: whether --xkill and ensure left the daemon alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from xprocess import ProcessStarter, XProcess
from xprocess.commands import kill

CHILD = str(Path(__file__).parent / "child.py")
STRANGER = """
import os, sys, time
os.setsid()
if os.fork() == 0:
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(600)
"""


class Server(ProcessStarter):
    pattern = "ready"
    args = (sys.executable, "-u", CHILD)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def main() -> None:
    root = Path(sys.argv[1])
    xp = XProcess(None, root)
    pid, _ = xp.ensure("srv", Server)
    os.kill(pid, signal.SIGKILL)  # it dies; its record stays
    popen = xp.resources[-1].popen
    assert popen is not None
    popen.wait(10)
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    pidfile = root / "daemon.pid"
    stranger = subprocess.Popen([sys.executable, "-c", STRANGER, str(pidfile)])
    reused = stranger.pid == pid
    stranger.wait()
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    daemon = int(pidfile.read_text())
    lines: list[str] = []
    kill([root], lines.append)
    after_kill = not gone(daemon)
    xp.ensure("srv", Server)  # replaces the dead one: stops what is left of it
    after_ensure = not gone(daemon)
    xp.getinfo("srv").terminate()
    xp.release()
    print(
        json.dumps({"reused": reused, "kill": after_kill, "ensure": after_ensure, "lines": lines})
    )


if __name__ == "__main__":
    main()
