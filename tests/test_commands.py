"""--xshow fits the terminal and shows a record whole on demand; --xkill forgets what is gone;
python -m xprocess --version; counts in messages read right."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import HEADER
from tests.test_plugin import run_module
from xprocess.commands import COLUMNS, MIN_DATA_WIDTH, table
from xprocess.locking import NameLock

URL = "http://127.0.0.1:40123/" + "a-long-path/" * 10  # longer than any cut of old

LONG_DATA = (
    HEADER
    + f"""
class Server(ProcessStarter):
    pattern = "ready"
    args = child()

    def args(self):
        self.data["port"] = 40123
        self.data["url"] = {URL!r}
        return child()

def test_start(xprocess):
    xprocess.ensure("server", Server)
"""
)


@pytest.fixture
def started(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.Pytester]:
    """A kept server with long data; stopped by --xkill after the test."""
    monkeypatch.delenv("COLUMNS", raising=False)
    pytester.makepyfile(test_start=LONG_DATA)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    yield pytester
    assert pytester.runpytest_subprocess("--xkill").ret == 0


def row(data: str) -> tuple[str, ...]:
    return (
        "server",
        "4242",
        "LIVE",
        "0:00:01",
        "-",
        data,
        ".pytest_cache/d/.xprocess/server/x.log",
    )


def test_the_table_cuts_data_to_the_room_the_terminal_leaves() -> None:
    data = f"port=40123, url={URL}"
    header, line = table([row(data)], width=160)
    assert len(line) == 160 and "…  .pytest_cache/" in line, line
    assert header.startswith(COLUMNS[0])


def test_the_table_cuts_nothing_when_the_output_is_no_terminal() -> None:
    data = f"port=40123, url={URL}"
    assert data in table([row(data)], width=None)[1]


def test_a_narrow_terminal_still_shows_the_first_characters_of_data() -> None:
    data = f"port=40123, url={URL}"
    line = table([row(data)], width=60)[1]
    assert data[: MIN_DATA_WIDTH - 1] + "…" in line


def test_xshow_shows_all_data_when_piped(started: pytest.Pytester) -> None:
    result = started.runpytest_subprocess("--xshow")
    result.stdout.fnmatch_lines([f"server *LIVE *port=40123, url={URL} *"])


def test_xshow_fits_the_width_columns_asks_for(
    started: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "150")
    result = started.runpytest_subprocess("--xshow")
    (line,) = (line for line in result.outlines if line.startswith("server "))
    assert len(line) == 150 and "port=40123, url=http://127.0.0.1:40123/a-long-path/" in line


def test_xshow_verbose_shows_each_record_whole(started: pytest.Pytester) -> None:
    result = started.runpytest_subprocess("--xshow", "-v")
    result.stdout.fnmatch_lines(
        [
            "server",
            "  pid      *",
            "  status   LIVE",
            "*",
            "  command  * -u *child.py",
            "*",
            "  log      */.xprocess/server/xprocess.log",
            "  data     port=40123",
            f"           url={URL}",
        ]
    )


def test_python_m_xprocess_show_name_shows_that_record_whole(started: pytest.Pytester) -> None:
    shown = run_module(started, "show", "server")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "server"
    assert f"url={URL}" in shown.stdout
    every = run_module(started, "show", "-v")
    assert every.stdout.splitlines()[0] == "server"
    assert f"url={URL}" in every.stdout and "  command  " in every.stdout
    unknown = run_module(started, "show", "nosuch")
    assert unknown.returncode == 1
    assert "nosuch: NO RECORD" in unknown.stdout


def test_python_m_xprocess_prints_its_version(pytester: pytest.Pytester) -> None:
    from xprocess import __version__

    result = run_module(pytester, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"xprocess {__version__}"


def test_xkill_forgets_the_records_of_what_is_gone_and_keeps_their_logs(
    started: pytest.Pytester,
) -> None:
    killed = started.runpytest_subprocess("--xkill")
    killed.stdout.fnmatch_lines(["* server TERMINATED"])
    started.runpytest_subprocess("--xshow").stdout.fnmatch_lines(["nothing recorded under *"])
    log = started.path / ".pytest_cache" / "d" / ".xprocess" / "server" / "xprocess.log"
    assert "ready" in log.read_text()


def test_xkill_keeps_a_record_whose_name_is_locked_by_a_start_under_way(
    started: pytest.Pytester,
) -> None:
    root = started.path / ".pytest_cache" / "d" / ".xprocess"
    with NameLock(root / ".locks" / "server.lock", "server", 0):
        started.runpytest_subprocess("--xkill").stdout.fnmatch_lines(["* server TERMINATED"])
    started.runpytest_subprocess("--xshow").stdout.fnmatch_lines(["server *DEAD *"])


ONE_LINE = (
    HEADER
    + """
class Quiet(ProcessStarter):
    pattern = "never printed"
    timeout = 1
    args = child("--ready", "the only line")

def test_start(xprocess):
    xprocess.ensure("quiet", Quiet)
"""
)


def test_a_count_of_one_reads_in_the_singular(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_start=ONE_LINE)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*pattern 'never printed' not seen in 1 line*"])
    result.stdout.no_fnmatch_line("*1 lines*")
