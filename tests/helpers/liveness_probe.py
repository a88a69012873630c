"""Prints "live" or "dead": whether the record ``NAME`` under ``ROOT`` describes a live process.

Run with another ``XPROCESS_PORTABLE`` than the writer of the record, it shows whether a record
written on one path of the liveness check is read correctly on the other.
"""

from __future__ import annotations

import sys

from xprocess import XProcessInfo
from xprocess.capabilities import PORTABLE


def main() -> None:
    root, name = sys.argv[1], sys.argv[2]
    live = XProcessInfo(root, name).isrunning()
    print(f"{'portable' if PORTABLE else 'fast'} {'live' if live else 'dead'}")


if __name__ == "__main__":
    main()
