"""A stand-in for a server, driven by command-line flags, used by the tests and benchmarks.

It appends its pid to --count-file (so tests can count starts), prints --before lines of noise,
waits --delay seconds, prints --ready, then runs until terminated (or exits with --exit-code).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready", default="ready")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--before", type=int, default=0, help="noise lines before the ready line")
    parser.add_argument("--exit-code", type=int, default=None, help="exit with it after --ready")
    parser.add_argument("--count-file", default=None)
    parser.add_argument("--children", type=int, default=0, help="sleeping children to spawn")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--listen", type=int, default=None, help="TCP port to accept on")
    parser.add_argument("--print-time", action="store_true", help="print the ready time too")
    parser.add_argument("--wait-file", default=None, help="print --ready once this file exists")
    parser.add_argument("--blob", type=int, default=0, help="bytes written without a newline")
    parser.add_argument(
        "--escape", default=None, help="double-fork a setsid daemon writing its pid here"
    )
    args = parser.parse_args()

    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.count_file:
        with open(args.count_file, "a") as f:
            f.write(f"{os.getpid()}\n")
    kids = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        for _ in range(args.children)
    ]
    if args.escape:
        _escape(args.escape)
    out = sys.stdout
    for i in range(args.before):
        out.write(f"noise line {i}\n")
    if args.blob:
        out.write("x" * args.blob)
    out.flush()
    if args.delay:
        time.sleep(args.delay)
    while args.wait_file and not os.path.exists(args.wait_file):
        time.sleep(0.01)
    server = None
    if args.listen is not None:
        server = socket.create_server(("127.0.0.1", args.listen))
    stamp = f" {time.time():.6f}" if args.print_time else ""
    out.write(f"{args.ready}{stamp}\n")
    out.flush()
    if args.exit_code is not None:
        sys.exit(args.exit_code)
    while True:
        if server is not None:
            conn, peer = server.accept()
            out.write(f"served a connection from port {peer[1]}\n")
            out.flush()
            conn.sendall(b"hello\n")
            conn.close()
        else:
            time.sleep(3600)
    for kid in kids:  # pragma: no cover - the process is terminated by a signal
        kid.wait()


def _escape(pidfile: str) -> None:
    """Leave a daemon outside this process's tree and session, as init-style scripts do."""
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            with open(pidfile + ".tmp", "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(pidfile + ".tmp", pidfile)
            time.sleep(600)
        os._exit(0)
    os.waitpid(middle, 0)


if __name__ == "__main__":
    main()
