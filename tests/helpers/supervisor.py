"""A supervisor that ignores SIGTERM and restarts its worker whenever the worker exits."""

from __future__ import annotations

import signal
import subprocess
import sys

signal.signal(signal.SIGTERM, signal.SIG_IGN)
WORKER = [sys.executable, "-c", "import time; time.sleep(600)"]
worker = subprocess.Popen(WORKER)
print("ready", flush=True)
while True:
    worker.wait()
    worker = subprocess.Popen(WORKER)
