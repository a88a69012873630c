"""Bad input is refused with a ValueError that says what to fix, before anything starts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import child_args
from xprocess import InvalidStarterError, ProcessStarter, XProcess


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


def starter(**attrs: object) -> type[ProcessStarter]:
    attrs.setdefault("pattern", "ready")
    attrs.setdefault("args", child_args())
    return type("Starter", (ProcessStarter,), attrs)


def refuse(xp: XProcess, name: str, preparefunc: Any, *fragments: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        xp.ensure(name, preparefunc)
    assert isinstance(excinfo.value, InvalidStarterError)
    for fragment in fragments:
        assert fragment in str(excinfo.value)
    assert not (xp.rootdir / "srv" / "record.json").exists()
    assert not (xp.rootdir / "srv" / "xprocess.log").exists()


@pytest.mark.parametrize("name", ["", "..", ".", "a/b", "../escape", "a\\b", "a\0b", ".hidden"])
def test_a_name_that_would_leave_the_records_dir_is_refused(xp: XProcess, name: str) -> None:
    refuse(xp, name, starter(), repr(name))
    assert not xp.rootdir.exists()


def test_a_non_string_name_is_refused(xp: XProcess) -> None:
    refuse(xp, 3, starter(), "non-empty string")  # type: ignore[arg-type]


def test_empty_args_are_refused(xp: XProcess) -> None:
    refuse(xp, "srv", starter(args=[]), "'srv'", "args is empty")


def test_a_string_as_args_is_refused(xp: XProcess) -> None:
    refuse(xp, "srv", starter(args="redis-server --port 1"), "args must be a list", "split it")


def test_args_that_are_not_a_sequence_are_refused(xp: XProcess) -> None:
    refuse(xp, "srv", starter(args=42), "args must be a list")


def test_a_missing_executable_is_named_with_the_path_searched(
    xp: XProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nowhere:/also-not-here")
    refuse(
        xp,
        "srv",
        starter(args=["no-such-server", "--port", 1]),
        "'no-such-server'",
        "/nowhere:/also-not-here",
        "not found on PATH",
    )


def test_a_missing_executable_path_is_named(xp: XProcess) -> None:
    refuse(xp, "srv", starter(args=["/no/such/bin", "x"]), "'/no/such/bin'", "not an executable")


def test_an_invalid_regex_is_shown_with_the_re_error(xp: XProcess) -> None:
    refuse(
        xp,
        "srv",
        starter(pattern="ready (unclosed"),
        "'ready (unclosed'",
        "missing ), unterminated subpattern",
    )


@pytest.mark.parametrize("timeout", [0, -1, "10", None])
def test_a_timeout_that_is_not_positive_is_refused(xp: XProcess, timeout: object) -> None:
    refuse(xp, "srv", starter(timeout=timeout), "timeout must be a number of seconds above 0")


@pytest.mark.parametrize("value", [0, -5, 2.5])
def test_max_read_lines_below_one_is_refused(xp: XProcess, value: object) -> None:
    refuse(xp, "srv", starter(max_read_lines=value), "max_read_lines must be an integer")


def test_a_startup_check_that_is_not_callable_is_refused(xp: XProcess) -> None:
    refuse(xp, "srv", starter(startup_check=True), "startup_check must be a method")


def test_neither_pattern_nor_check_is_refused(xp: XProcess) -> None:
    refuse(xp, "srv", starter(pattern=None), "neither a 'pattern' nor a 'startup_check'")


def test_a_starter_of_another_kind_is_refused(xp: XProcess) -> None:
    refuse(xp, "srv", 42, "ProcessStarter subclass")


def test_a_bad_restart_does_not_stop_the_running_process(xp: XProcess) -> None:
    pid, _ = xp.ensure("srv", starter())
    with pytest.raises(ValueError, match="args is empty"):
        xp.ensure("srv", starter(args=[]), restart=True)
    assert xp.getinfo("srv").isrunning() and xp.getinfo("srv").pid == pid
    assert xp.getinfo("srv").terminate() == 1


def test_data_that_is_not_json_fails_with_a_type_error_naming_the_key(xp: XProcess) -> None:
    class Starter(ProcessStarter):
        pattern = "ready"

        def args(self) -> list[str]:
            self.data["when"] = object()
            return child_args()

    with pytest.raises(TypeError, match="'when' \\(object\\)"):
        xp.ensure("srv", Starter)
    assert not (xp.rootdir / "srv" / "record.json").exists()


def test_the_python_executable_is_found(xp: XProcess) -> None:
    xp.ensure("srv", starter(args=[Path(sys.executable).name, "-u", *child_args()[2:]]))
    assert xp.getinfo("srv").terminate() == 1


def test_a_factory_taking_control_dir_and_xprocess_is_accepted(xp: XProcess) -> None:
    import functools

    class Server(ProcessStarter):
        pattern = "ready"

        def __init__(self, control_dir: Path, process: object, greeting: str) -> None:
            super().__init__(control_dir, process)
            self.args = child_args("--ready", f"ready {greeting}")

    _, log = xp.ensure("srv", functools.partial(Server, greeting="hi"))
    assert "ready hi" in Path(log).read_text()
    assert xp.getinfo("srv").terminate() == 1


def test_a_bad_popen_argument_is_a_clear_startup_error(xp: XProcess) -> None:
    from xprocess import StartupError

    with pytest.raises(StartupError, match=r"(?s)cannot start 'srv'.*no-such-user-here.*command: "):
        xp.ensure("srv", starter(popen_kwargs={"user": "no-such-user-here"}))
    record = xp.getinfo("srv").record
    assert record is not None and record.state == "failed"


def test_a_restart_with_a_missing_executable_does_not_stop_the_running_process(
    xp: XProcess,
) -> None:
    pid, _ = xp.ensure("srv", starter())
    with pytest.raises(FileNotFoundError, match="not found on PATH"):
        xp.ensure("srv", starter(args=["no-such-server-binary"]), restart=True)
    assert xp.getinfo("srv").isrunning() and xp.getinfo("srv").pid == pid
    assert xp.getinfo("srv").terminate() == 1
