"""A stand-in for a server, driven by command-line flags, used by the tests and benchmarks.

It appends its pid to --count-file (so tests can count starts), exits at once the first time
with --fail-once, may leave a daemon (--escape), prints variables of its environment
(--show-env) and --before lines of noise (and --blob bytes without a newline), waits --delay
seconds (and for --wait-file), then listens (--listen on TCP, --unix on a unix socket) and
writes its pid to --pidfile, prints --ready, and runs until terminated (or exits with
--exit-code). With --mute it accepts connections and never answers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time


def _listen(args: argparse.Namespace) -> socket.socket | None:
    if args.listen is not None:
        return socket.create_server(("127.0.0.1", args.listen))
    if args.unix is not None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(args.unix)
        server.listen()
        return server
    return None


def _arguments() -> argparse.Namespace:
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
    parser.add_argument(
        "--fail-once", default=None, help="exit 3 before --ready unless this file exists (made)"
    )
    parser.add_argument("--unix", default=None, help="unix socket path to accept on")
    parser.add_argument("--pidfile", default=None, help="file to write the pid to when ready")
    parser.add_argument("--mute", action="store_true", help="accept but never answer")
    parser.add_argument("--wait-file", default=None, help="print --ready once this file exists")
    parser.add_argument("--blob", type=int, default=0, help="bytes written without a newline")
    parser.add_argument(
        "--escape", default=None, help="double-fork a setsid daemon writing its pid here"
    )
    parser.add_argument(
        "--show-env", action="append", default=[], help="print 'env NAME=value' of this variable"
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.count_file:
        with open(args.count_file, "a") as f:
            f.write(f"{os.getpid()}\n")
    if args.fail_once and not os.path.exists(args.fail_once):
        open(args.fail_once, "w").close()
        print("failing this first time", flush=True)
        sys.exit(3)
    kids = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        for _ in range(args.children)
    ]
    if args.escape:
        _escape(args.escape)
    out = sys.stdout
    for variable in args.show_env:
        out.write(f"env {variable}={os.environ.get(variable, '<unset>')}\n")
    for i in range(args.before):
        out.write(f"noise line {i}\n")
    if args.blob:
        out.write("x" * args.blob)
    out.flush()
    if args.delay:
        time.sleep(args.delay)
    while args.wait_file and not os.path.exists(args.wait_file):
        time.sleep(0.01)
    server = _listen(args)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    stamp = f" {time.time():.6f}" if args.print_time else ""
    out.write(f"{args.ready}{stamp}\n")
    out.flush()
    if args.exit_code is not None:
        sys.exit(args.exit_code)
    held = []
    while True:
        if server is not None and args.mute:
            held.append(server.accept()[0])
        elif server is not None:
            conn, peer = server.accept()
            source = f"port {peer[1]}" if peer else "a unix socket"
            out.write(f"served a connection from {source}\n")
            out.flush()
            with contextlib.suppress(OSError):  # a probe that has hung up already
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
