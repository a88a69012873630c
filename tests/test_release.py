"""Letting go of a process: who still holds it, across the runs on one rootdir."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support import srv_under_read_only_root
from xprocess import ProcessStarter
from xprocess.fingerprint import fingerprint_of
from xprocess.runs import Run, holder_entry, release_holder

DEAD = {"run": "dead", "pid": 2**22 + 1, "create_time": 1.0, "since_boot": None, "worker": "gw0"}


def me(run: str, worker: str = "gw0") -> dict[str, Any]:
    return holder_entry(Run.of(run), worker)


def test_the_last_holder_of_every_run_stops_the_process() -> None:
    left, last = release_holder([me("a")], [], "a", os.getpid())
    assert (left, last) == ([], True)


def test_a_release_keeps_the_process_while_a_live_holder_of_another_run_holds_it() -> None:
    other = {**me("b"), "pid": os.getppid()}  # a live process of run b
    other.update(Run.of("b", os.getppid()).entry())
    left, last = release_holder([me("a"), other], [], "a", os.getpid())
    assert left == [other] and not last


def test_a_release_keeps_the_process_while_another_live_run_uses_it() -> None:
    user = Run.of("b", os.getppid()).entry()
    assert release_holder([me("a")], [user], "a", os.getpid()) == ([], False)


def test_what_a_dead_run_held_is_no_hold() -> None:
    assert release_holder([me("a"), DEAD], [{**DEAD}], "a", os.getpid()) == ([], True)


class Kept(ProcessStarter):
    pattern = "ready"
    args = ("server",)


def test_whether_a_run_stops_a_process_at_its_end_is_not_part_of_its_fingerprint() -> None:
    stopped = type("Kept", (Kept,), {"terminate_at_end": True, "timeout": 5})
    assert fingerprint_of("m.Kept", stopped) == fingerprint_of("m.Kept", Kept)
    changed = type("Kept", (Kept,), {"args": ("server", "--other")})
    assert fingerprint_of("m.Kept", changed) != fingerprint_of("m.Kept", Kept)


def test_a_teardown_release_in_a_read_only_records_root_does_not_raise(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist", reason="-n needs pytest-xdist: pip install pytest-xdist")
    with srv_under_read_only_root(pytester.path) as srv:
        pytester.makepyfile(
            f"""
            import pytest
            from conftest import Server

            @pytest.fixture(scope="session")
            def server(xprocess):
                pid, _ = xprocess.ensure("srv", Server)
                yield pid
                xprocess.getinfo("srv").terminate()

            @pytest.mark.parametrize("i", range(2))
            def test_reuses(server, i):
                assert server == {srv.pid}
            """
        )
        done = srv.pytest("-n", "2", "-p", "no:randomly")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 passed" in done.stdout and "error" not in done.stdout
        assert ".locks" not in done.stdout + done.stderr  # pytest warns of its own cache
