"""Plant records naming this process (or its parent) and run --xkill; note any SIGTERM received.

    planted.py ROOT self     the records name this process (pid 1 inside a PID namespace)
    planted.py ROOT parent   a child of this process plants records naming this process

Any SIGTERM that arrives is written to ROOT/signalled. The environment carries XPROCESS_TOKEN
equal to the planted token, so only the rule "never this process or its ancestors" protects it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from xprocess.commands import kill
from xprocess.liveness import BOOT_ID, identify

ROOT = Path(sys.argv[1])


def note(signum: int, frame: FrameType | None) -> None:
    with open(ROOT / "signalled", "a") as f:
        f.write(f"{os.getpid()}\n")


def plant(name: str, pid: int, token: str) -> None:
    identity = identify(pid)
    assert identity is not None
    (ROOT / name).mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "pid": pid,
        "create_time": identity.create_time,
        "start_since_boot": identity.since_boot,
        "boot_id": BOOT_ID,
        "argv": ["x"],
        "cwd": str(ROOT / name),
        "logpath": str(ROOT / name / "xprocess.log"),
        "log_offset": 0,
        "started_at": 0.0,
        "state": "ready",
        "token": token,
        # Said outright: a record missing it requires a session leader, which this is not.
        "leads_session": False,
    }
    (ROOT / name / "record.json").write_text(json.dumps(record))


def main() -> None:
    signal.signal(signal.SIGTERM, note)
    if sys.argv[2] == "parent":
        subprocess.run([sys.executable, __file__, str(ROOT), "child"], check=True)
        return
    target = os.getppid() if sys.argv[2] == "child" else os.getpid()
    plant("with-token", target, os.environ["XPROCESS_TOKEN"])
    plant("without-token", target, "")
    kill([ROOT], print)


if __name__ == "__main__":
    main()
