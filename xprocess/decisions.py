"""The policy of ``ensure``: reuse, replay a failure, start (stopping the old one first), or wait.

:func:`decide` is a pure function of the record, its liveness and the request, so every rule can be
driven by a unit test; ``starting.ensure_process`` carries out what it decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from xprocess.records import FAILED, READY, ProcessRecord

__all__ = ["Action", "Decision", "decide"]


class Action(enum.Enum):
    REUSE = "reuse"
    REPLAY = "replay a failure"
    START = "start"
    WAIT = "wait for the holders of another definition"


@dataclass(frozen=True)
class Decision:
    """What ``ensure`` does: ``action``; before a start, whether something recorded must be
    stopped first (``stop_first``), and why a running process is replaced (``reason``)."""

    action: Action
    stop_first: bool = False
    reason: str = ""


def decide(
    record: ProcessRecord | None,
    *,
    alive: bool,
    restart: bool,
    run_id: str,
    caller: int,
    label: str,
    fingerprint: str,
    held_by_others: bool = False,
) -> Decision:
    """Reuse, replay a failure, start (stopping what the record describes first), or wait.

    ``caller`` is the pid asking. A ``restart`` asked for again by another worker of the run that
    already restarted it reuses that restart. A failure of this run's start is replayed once to
    each other caller of the same starter; the caller that made the attempt, or one that was
    already told, starts afresh. A running process started from another definition of its
    starter (an edited conftest, another test's starter of the same name) is never handed out:
    while other processes (``held_by_others``: of this run or another) hold it, the caller waits
    for them to release it; then it is restarted from the caller's definition.
    """
    if record is None:
        return Decision(Action.START)
    if (
        restart
        and alive
        and record.state == READY
        and record.run_id == run_id
        and record.started_by not in (0, caller)
    ):
        restart = False  # another worker of this run restarted it a moment ago
    if not restart and record.state == READY and alive:
        changed = record.fingerprint and fingerprint and record.fingerprint != fingerprint
        if not changed:
            return Decision(Action.REUSE)
        if held_by_others:
            return Decision(Action.WAIT)
        return Decision(Action.START, stop_first=True, reason="its starter has changed")
    if (
        not restart
        and record.state == FAILED
        and record.run_id == run_id
        and record.starter == label
        and caller != record.started_by
        and caller not in record.replayed_to
    ):
        return Decision(Action.REPLAY)
    return Decision(Action.START, stop_first=True)
