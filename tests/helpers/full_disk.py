"""Run with ROOT on a tiny tmpfs: fill it, then ensure a process whose record cannot be written.

Prints JSON: the error ensure raised, and the pids of the started child still running after it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil

from xprocess import ProcessStarter, XProcess

CHILD = str(Path(__file__).parent / "child.py")


def main() -> None:
    root, marker = Path(sys.argv[1]), sys.argv[2]
    # The child never prints its ready line: it waits for a file that never comes.
    args = (sys.executable, "-u", CHILD, "--wait-file", marker + ".never")
    starter = type("Server", (ProcessStarter,), {"pattern": "ready", "args": args})
    xp = XProcess(None, root / "records")
    (root / "records").mkdir()
    try:
        with open(root / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
    except OSError:
        pass
    try:
        xp.ensure("srv", starter)
        error = ""
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    left = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if marker + ".never" in (p.info["cmdline"] or [])
    ]
    print(json.dumps({"error": error, "left": left}))


if __name__ == "__main__":
    main()
