"""LocalPath: a pathlib.Path that answers what conftests call on pytest-xprocess's py.path paths."""

from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path

import pytest

from xprocess.localpath import LocalPath, local_path, log_path


def test_it_is_a_pathlib_path_and_what_it_derives_is_one_too(tmp_path: Path) -> None:
    path = LocalPath(tmp_path, "srv", "xprocess.log")
    assert isinstance(path, Path) and os.fspath(path) == str(tmp_path / "srv" / "xprocess.log")
    assert path == tmp_path / "srv" / "xprocess.log"
    assert isinstance(path.parent, LocalPath) and isinstance(path / "x", LocalPath)
    assert pickle.loads(pickle.dumps(path)) == path
    assert local_path(path) is path and isinstance(local_path(str(path)), LocalPath)


def test_py_path_names(tmp_path: Path) -> None:
    path = LocalPath(tmp_path) / "server.tar.gz"
    assert path.strpath == str(path)
    assert (path.basename, path.purebasename, path.ext) == ("server.tar.gz", "server.tar", ".gz")
    assert path.dirname == str(tmp_path)
    assert path.dirpath() == tmp_path and path.dirpath("a", "b") == tmp_path / "a" / "b"
    assert LocalPath(tmp_path).join("a", "b.conf") == tmp_path / "a" / "b.conf"
    assert path.relto(tmp_path) == "server.tar.gz" and path.relto("/elsewhere") == ""
    assert path.new(basename="other.log") == tmp_path / "other.log"
    assert path.new(ext=".zip") == tmp_path / "server.tar.zip"


def test_check_answers_like_py_path(tmp_path: Path) -> None:
    directory = LocalPath(tmp_path)
    conf = directory.join("redis.conf")
    assert not conf.check() and conf.check(exists=0)
    conf.write("port 6400\n")
    assert conf.check() and conf.check(file=1) and not conf.check(dir=1) and conf.isfile()
    assert directory.check(dir=1) and directory.isdir() and not directory.check(file=1)
    assert not conf.check(link=1) and not conf.islink()
    with pytest.raises(TypeError, match="unknown conditions"):
        conf.check(fle=1)


def test_reading_and_writing_like_py_path(tmp_path: Path) -> None:
    conf = LocalPath(tmp_path).join("sub", "server.conf")
    conf.write("a\nb\n", ensure=True)
    conf.write("c\n", mode="a")
    assert conf.read() == "a\nb\nc\n" and conf.read("rb") == b"a\nb\nc\n"
    assert conf.readlines() == ["a\n", "b\n", "c\n"] and conf.readlines(cr=False) == ["a", "b", "c"]
    conf.write_binary(b"\x00\x01")
    assert conf.read_binary() == b"\x00\x01" and conf.size() == 2 and conf.mtime() > 0
    assert conf.read_text(errors="replace")  # pathlib's own calls are unchanged


def test_ensure_listdir_copy_move_remove(tmp_path: Path) -> None:
    root = LocalPath(tmp_path)
    made = root.ensure("a", "b", "pidfile")
    assert made.check(file=1) and made.read() == ""
    assert root.ensure("data", dir=True).check(dir=1)
    assert sorted(p.basename for p in root.listdir()) == ["a", "data"]
    assert root.listdir("d*") == [root / "data"]
    made.copy(root / "data" / "copy")
    (root / "data" / "copy").move(root / "moved")
    assert (root / "moved").check(file=1)
    root.join("a").remove()
    (root / "moved").remove()
    assert sorted(p.basename for p in root.listdir(sort=True)) == ["data"]


def test_a_log_reads_what_the_running_start_wrote(tmp_path: Path) -> None:
    log = tmp_path / "xprocess.log"
    log.write_text("serving on port 1\nstopped\n")
    start = log.stat().st_size
    with log.open("a") as f:
        f.write("serving on port 2\n")
    path = log_path(log, start)
    assert path.read() == "serving on port 2\n" and path.readlines() == ["serving on port 2\n"]
    assert path.read_text().startswith("serving on port 1")  # pathlib: the whole file
    log.write_text("truncated\n")  # shorter than the start: all of it
    assert path.read() == "truncated\n"
    assert (path.parent / "xprocess.log").read() == "truncated\n"


def test_new_with_an_empty_basename_and_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cwd.new(basename="").dirpath().chdir(), as a preparefunc of a Django project does.
    monkeypatch.chdir(tmp_path)
    controldir = LocalPath(tmp_path, "records", "server")
    controldir.mkdir(parents=True)
    assert controldir.new(basename="") == controldir.parent  # py.path: the basename goes
    old = controldir.dirpath().chdir()
    assert old == tmp_path and Path.cwd() == tmp_path / "records"


def test_attributes_can_be_set_on_it_as_on_py_path(tmp_path: Path) -> None:
    log = LocalPath(tmp_path, "xprocess.log")
    log.write_text("ready\n")
    log.open = functools.partial(log.open, "rb")  # type: ignore[assignment, method-assign]
    with log.open() as f:
        data: object = f.read()
    assert data == b"ready\n"
