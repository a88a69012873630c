"""Records on disk: complete JSON, atomically replaced; unreadable ones read as 'no process'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import child_args
from xprocess import ProcessStarter, RecordWarning, XProcess
from xprocess.capabilities import HAVE_PROC_STAT
from xprocess.commands import show
from xprocess.layout import atomic_write


@pytest.fixture
def xp(tmp_path: Path) -> XProcess:
    return XProcess(None, tmp_path / "records")


class Starter(ProcessStarter):
    pattern = "ready"
    args = child_args()


def test_the_record_holds_what_identifies_the_process(xp: XProcess) -> None:
    pid, logpath = xp.ensure("srv", Starter)
    record = json.loads((xp.rootdir / "srv" / "record.json").read_text())
    assert record["pid"] == pid and record["state"] == "ready"
    assert record["create_time"] > 0 and record["started_at"] > 0
    assert record["argv"] == child_args()
    assert record["cwd"] == str(xp.rootdir / "srv")
    assert record["logpath"] == str(logpath)
    assert record["log_offset"] == 0
    assert [p.name for p in (xp.rootdir / "srv").iterdir() if p.name.endswith(".tmp")] == []
    assert xp.getinfo("srv").terminate() == 1


def test_the_log_offset_of_a_restart_is_where_its_output_begins(xp: XProcess) -> None:
    _, logpath = xp.ensure("srv", Starter)
    size = Path(logpath).stat().st_size
    xp.ensure("srv", Starter, restart=True)
    record = xp.getinfo("srv").record
    assert record is not None and record.log_offset == size > 0
    assert xp.getinfo("srv").terminate() == 1


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"pid": "x"}'])
def test_an_unreadable_record_reads_as_no_process_with_a_warning(
    xp: XProcess, content: str
) -> None:
    (xp.rootdir / "srv").mkdir(parents=True)
    (xp.rootdir / "srv" / "record.json").write_text(content)
    with pytest.warns(RecordWarning, match="'srv'"):
        assert not xp.getinfo("srv").isrunning()
    lines: list[str] = []
    with pytest.warns(RecordWarning):
        show([xp.rootdir], lines.append)
    assert lines[1].split()[:3] == ["srv", "-", "DEAD"]
    with pytest.warns(RecordWarning):
        pid, _ = xp.ensure("srv", Starter)
    assert xp.getinfo("srv").pid == pid
    assert xp.getinfo("srv").terminate() == 1


def test_a_record_of_a_process_that_died_reads_as_dead_and_is_restarted(xp: XProcess) -> None:
    first, _ = xp.ensure("srv", Starter)
    xp.getinfo("srv").terminate()
    second, _ = xp.ensure("srv", Starter)
    assert second != first
    assert xp.getinfo("srv").terminate() == 1


def test_recorded_data_is_readable_by_key_and_attribute(xp: XProcess) -> None:
    class WithData(ProcessStarter):
        pattern = "ready"

        def args(self) -> list[str]:
            self.data["port"] = 12345
            return child_args()

    xp.ensure("srv", WithData)
    info = xp.getinfo("srv")
    assert info.data == {"port": 12345}
    assert info.port == 12345
    with pytest.raises(AttributeError, match="recorded data keys: \\['port'\\]"):
        _ = info.host
    assert info.terminate() == 1


@pytest.mark.skipif(
    not HAVE_PROC_STAT, reason="start times since boot are read from /proc on Linux only"
)
def test_a_wall_clock_step_does_not_make_a_live_process_dead(xp: XProcess) -> None:
    xp.ensure("srv", Starter)
    path = xp.rootdir / "srv" / "record.json"
    record = json.loads(path.read_text())
    record["create_time"] += 3600  # as if the clock had been set an hour forward since
    path.write_text(json.dumps(record))
    assert xp.getinfo("srv").isrunning()
    this_boot, token = record["boot_id"], record["token"]
    record.update(boot_id="another-boot", token="a-token-no-process-carries")
    path.write_text(json.dumps(record))
    assert not xp.getinfo("srv").isrunning()
    record.update(boot_id=this_boot, token=token)
    path.write_text(json.dumps(record))
    assert xp.getinfo("srv").terminate() == 1


def test_reuse_sees_a_record_replaced_by_another_process(xp: XProcess, tmp_path: Path) -> None:
    """A reuse does not parse an unchanged record again, but sees every replacement of it: here
    a record that says the process is dead, then one that is a symlink."""
    pid, _ = xp.ensure("srv", Starter)
    assert xp.ensure("srv", Starter)[0] == pid
    path = xp.rootdir / "srv" / "record.json"
    saved = path.read_text()
    dead = json.loads(saved)
    dead["create_time"] -= 1000
    dead["start_since_boot"] = None
    atomic_write(path, json.dumps(dead))
    assert xp._caller.reusable("srv", fingerprint=dead["fingerprint"], stops=False) is None
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(saved)
    path.unlink()
    path.symlink_to(elsewhere)
    with pytest.warns(RecordWarning, match="symlink"):
        assert xp._caller.reusable("srv", fingerprint=dead["fingerprint"], stops=False) is None
    path.unlink()
    atomic_write(path, saved)
    assert xp.ensure("srv", Starter)[0] == pid
    assert xp.getinfo("srv").terminate() == 1
