"""What happens to managed processes when a run ends."""

from __future__ import annotations

from pathlib import Path

from xprocess.manager import XProcessInfo
from xprocess.records import RecordStore

__all__ = ["stop_run_processes"]


def stop_run_processes(root: Path, run_id: str, *, interrupted: bool) -> list[str]:
    """Terminate the processes the run ``run_id`` was the last to use and asked to stop.

    ``terminate_at_end`` processes are stopped at every end of run; ``terminate_on_interrupt``
    ones only when ``interrupted``. Returns the names terminated.
    """
    stopped = []
    for name, record in RecordStore(root).records():
        if record is None or record.last_run != run_id:
            continue
        wanted = record.terminate_at_end or (interrupted and record.terminate_on_interrupt)
        if wanted and XProcessInfo(root, name, record).terminate() == 1:
            stopped.append(name)
    return stopped
