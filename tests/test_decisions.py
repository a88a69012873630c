"""The start policy as a pure function, and a starter read once whatever its form."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from tests.support import child_args
from xprocess import InvalidStarterError, ProcessStarter, XProcess
from xprocess.decisions import Action, Decision, decide
from xprocess.records import FAILED, READY, STARTING, ProcessRecord
from xprocess.runs import Run, uses
from xprocess.starter import DEFAULT_TIMEOUT, describe_starter

ME, SIBLING = 1000, 1001


def record(state: str = READY, **fields: Any) -> ProcessRecord:
    made = ProcessRecord("srv", 4242, 1.0, ["srv"], "/tmp", "/tmp/log", 0, 0.0, state=state)
    made.run_id, made.starter, made.fingerprint, made.started_by = "run", "m.Srv", "f1", SIBLING
    for key, value in fields.items():
        setattr(made, key, value)
    return made


def decision(found: ProcessRecord | None, alive: bool = True, **request: Any) -> Decision:
    asked: dict[str, Any] = {
        "restart": False,
        "run_id": "run",
        "caller": ME,
        "label": "m.Srv",
        "fingerprint": "f1",
    }
    asked.update(request)
    return decide(found, alive=alive, **asked)


def test_nothing_recorded_starts() -> None:
    assert decision(None, alive=False) == Decision(Action.START)


def test_a_ready_live_process_is_reused() -> None:
    assert decision(record()).action is Action.REUSE


@pytest.mark.parametrize("state", [READY, STARTING])
def test_a_dead_or_half_started_process_is_stopped_then_started(state: str) -> None:
    assert decision(record(state), alive=state == STARTING) == Decision(
        Action.START, stop_first=True
    )


def test_restart_stops_then_starts() -> None:
    assert decision(record(run_id="earlier"), restart=True) == Decision(
        Action.START, stop_first=True
    )


def test_a_restart_another_worker_of_the_run_made_is_reused() -> None:
    assert decision(record(), restart=True).action is Action.REUSE


def test_a_failure_is_replayed_to_another_caller_of_the_run() -> None:
    assert decision(record(FAILED), alive=False).action is Action.REPLAY


@pytest.mark.parametrize(
    "fields",
    [
        {"started_by": ME},  # this caller made the attempt: it asks again, so it retries
        {"replayed_to": [ME]},  # it was told once already
        {"run_id": "earlier"},  # a failure of an earlier run
        {"starter": "m.Other"},  # another starter under the same name
    ],
)
def test_a_failure_is_not_replayed_twice_nor_to_its_own_caller(fields: dict[str, Any]) -> None:
    assert decision(record(FAILED, **fields), alive=False) == Decision(
        Action.START, stop_first=True
    )


def test_a_kept_process_of_another_starter_definition_is_restarted() -> None:
    made = decision(record(run_id="earlier"), fingerprint="f2")
    assert made.action is Action.START and made.stop_first
    assert "changed" in made.reason


def test_an_old_record_without_a_fingerprint_is_reused() -> None:
    assert decision(record(fingerprint=""), fingerprint="f2").action is Action.REUSE


@pytest.mark.parametrize("run_id", ["run", "earlier"], ids=["this-run", "another-run"])
def test_a_process_of_another_definition_held_by_others_is_waited_for(run_id: str) -> None:
    made = decision(record(run_id=run_id), fingerprint="f2", held_by_others=True)
    assert made == Decision(Action.WAIT)


def test_a_process_of_another_definition_nobody_else_holds_is_restarted_within_a_run() -> None:
    made = decision(record(run_id="run"), fingerprint="f2", held_by_others=False)
    assert made.action is Action.START and made.stop_first
    assert "changed" in made.reason


def test_a_process_of_the_same_definition_held_by_others_is_reused() -> None:
    assert decision(record(), held_by_others=True).action is Action.REUSE


class Server(ProcessStarter):
    pattern = "ready"
    args = child_args()
    timeout = 7
    terminate_at_end = True


class WithProperty(ProcessStarter):
    pattern = "ready"
    args = child_args()

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return 9.0


def factory(control_dir: Path, xprocess: Any) -> ProcessStarter:
    return Server(control_dir, xprocess)


def legacy(cwd: Path) -> tuple[str, list[str]]:
    return "ready", child_args()


@pytest.mark.parametrize(
    ("form", "label", "timeout", "at_end"),
    [
        (Server, "Server", 7.0, True),
        (functools.partial(Server), "Server", 7.0, True),
        (factory, "Server", 7.0, True),
        (WithProperty, "WithProperty", 9.0, False),
        (legacy, "legacy", DEFAULT_TIMEOUT, False),
    ],
    ids=["class", "partial", "factory", "timeout-property", "preparefunc"],
)
def test_every_starter_form_is_described_the_same_way(
    tmp_path: Path, form: Any, label: str, timeout: float, at_end: bool
) -> None:
    described = describe_starter("srv", form, tmp_path, None)
    assert described.label == f"{__name__}.{label}"
    assert described.timeout == timeout
    assert described.terminate_at_end is at_end


def test_an_instance_is_described_by_its_class(tmp_path: Path) -> None:
    assert describe_starter("srv", Server(tmp_path), tmp_path, None).label.endswith(".Server")


def test_a_partial_reusing_a_process_registers_its_run_as_a_user(tmp_path: Path) -> None:
    with XProcess(None, tmp_path, run=Run.of("first")) as first:
        first.ensure("srv", functools.partial(Server))
    with XProcess(None, tmp_path, run=Run.of("second")) as second:
        second.ensure("srv", functools.partial(Server))
        info = second.getinfo("srv")
        assert info.record is not None and uses(info.record.users, "second")
        assert info.terminate() == 1


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("patern", "pattern"), ("timout", "timeout"), ("terminate_at_exit", "terminate_at_end")],
)
def test_a_misspelt_attribute_is_refused_before_starting(
    tmp_path: Path, typo: str, meant: str
) -> None:
    starter = type("Typo", (ProcessStarter,), {"pattern": "ready", "args": child_args(), typo: 1})
    with pytest.raises(InvalidStarterError, match=f"unknown attribute '{typo}'.*'{meant}'"):
        XProcess(None, tmp_path).ensure("srv", starter)
    assert not (tmp_path / "srv" / "record.json").exists()


def test_attributes_of_the_users_own_are_left_alone(tmp_path: Path) -> None:
    starter = type(
        "Own",
        (ProcessStarter,),
        {"pattern": "ready", "args": child_args(), "server_path": "x", "port": 5},
    )
    assert describe_starter("srv", starter, tmp_path, None).label.endswith("Own")


def test_args_runs_only_once_the_process_it_replaces_is_stopped(tmp_path: Path) -> None:
    seen: list[bool] = []

    class Prepares(ProcessStarter):
        pattern = "ready"

        def args(self) -> list[str]:  # e.g. initdb into the control dir
            old = XProcess(None, tmp_path).getinfo("srv")
            seen.append(old.isrunning())
            return child_args()

    with XProcess(None, tmp_path) as xp:
        first, _ = xp.ensure("srv", Prepares)
        second, _ = xp.ensure("srv", Prepares, restart=True)
        assert seen == [False, False] and first != second
        assert xp.getinfo("srv").terminate() == 1
