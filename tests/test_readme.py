"""README.rst does what its words say: its first commands, its quick start and the output it
shows are run as a user would copy them, and compared with what they really print."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.support import live_records

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
# The project directory and interpreter the README's sample output shows.
SHOWN_PROJECT = "/home/you/project"
SHOWN_PYTHON = f"{SHOWN_PROJECT}/.venv/bin/python"


def section(title: str) -> str:
    """The text of README's section ``title``, up to the next section's title."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"\n{title}\n{'-' * len(title)}\n", 1)[1]
    return re.split(r"\n[^\n]+\n-{3,}\n", body, maxsplit=1)[0]


def literal_blocks(text: str) -> list[list[str]]:
    """The ``::`` blocks of ``text``, each as its lines without the indentation."""
    blocks = []
    for block in re.findall(r"::\n\n((?:    .*\n|\n)+)", text):
        lines = [line[4:] for line in block.rstrip("\n").splitlines()]
        blocks.append(lines)
    return blocks


def quick_start_files() -> dict[str, str]:
    """The code blocks of the quick start, by the file name in their first-line comment."""
    files = {}
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", section("Quick start"))
    for block in blocks:
        code = "\n".join(line[4:] for line in block.splitlines())
        first, _, rest = code.partition("\n")
        files[first.removeprefix("# ").strip()] = rest
    return files


def normalized(lines: list[str], project: Path) -> list[str]:
    """Lines with what differs from run to run made equal: numbers, addresses, the project's
    directory and interpreter, the width of rules and columns; blank lines dropped."""
    out = []
    for printed in lines:
        line = printed.replace(sys.executable, SHOWN_PYTHON).replace(str(project), SHOWN_PROJECT)
        line = re.sub(r"0x[0-9a-f]+", "0x0", line)
        line = re.sub(r"\d+(\.\d+)?", "0", line)
        line = re.sub(r"([=_])\1{2,}", r"\1\1\1", line)
        line = " ".join(line.split())
        # http.server's usage line names the program and options as this Python's version does.
        line = re.sub(r"^E usage: .*", "E usage: ...", line)
        line = re.sub(r"^E \S.*: error: ", "E server.py: error: ", line)
        if line:
            out.append(line)
    return out


def assert_shown(shown: list[str], printed: list[str], project: Path) -> None:
    """The README's sample ``shown`` is a run of consecutive lines of the real output."""
    want, got = normalized(shown, project), normalized(printed, project)
    for start in range(len(got) - len(want) + 1):
        if got[start : start + len(want)] == want:
            return
    raise AssertionError(
        "README.rst shows output that a real run does not print; the real output:\n"
        + "\n".join(printed)
    )


def test_pytest_xdist_comes_with_xprocess() -> None:
    requirements = importlib.metadata.requires("xprocess") or []
    unconditional = [r for r in requirements if "extra ==" not in r]
    assert any(r.startswith("pytest-xdist") for r in unconditional), requirements


def first_commands() -> list[str]:
    (block, *_) = literal_blocks(section("Install, and the first commands"))
    return [line.split("#", 1)[0].strip() for line in block]


def test_the_first_commands_install_from_the_checkout_then_run_in_it() -> None:
    commands = first_commands()
    assert commands[:3] == [
        "git clone https://github.com/xprocess/xprocess",
        "pip install ./xprocess",
        "cd xprocess",
    ]
    assert all(command.startswith("pytest examples/http_server") for command in commands[3:])


@pytest.fixture
def checkout(pytester: pytest.Pytester) -> Path:
    """The example laid out as in a checkout, without records a local run left in it."""
    shutil.copytree(
        ROOT / "examples" / "http_server",
        pytester.path / "examples" / "http_server",
        ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__"),
    )
    return pytester.path


def test_the_first_commands_run_as_written(pytester: pytest.Pytester, checkout: Path) -> None:
    results = {}
    try:
        for command in first_commands()[3:]:
            args = shlex.split(command)[1:]
            result = pytester.run(sys.executable, "-m", "pytest", *args, timeout=120)
            assert result.ret == 0, f"{command!r} failed:\n{result.stdout.str()}"
            results[command] = result
    finally:
        for info in live_records(checkout / "examples" / "http_server"):
            info.terminate()
    runs = list(results.values())
    runs[0].stdout.fnmatch_lines(["*4 passed*"])
    runs[1].stdout.fnmatch_lines(["*4 passed*"])
    shown = results["pytest examples/http_server --xshow"]
    shown.stdout.fnmatch_lines(["http_server *LIVE *port=*"])
    killed = results["pytest examples/http_server --xkill"]
    killed.stdout.fnmatch_lines(["* http_server TERMINATED"])
    (xshow_sample, *_) = literal_blocks(section("What it looks like"))
    assert_shown(xshow_sample, shown.outlines, checkout)


def test_the_failed_start_shown_is_what_a_failed_start_prints(pytester: pytest.Pytester) -> None:
    files = quick_start_files()
    # The mistake the README's sample shows: an option http.server does not take.
    wrong = files["conftest.py"].replace(', self.data["port"]', ', "--port", self.data["port"]')
    assert wrong != files["conftest.py"]
    pytester.makeini("[pytest]\n")
    (pytester.path / "conftest.py").write_text(wrong, encoding="utf-8")
    (pytester.path / "test_server.py").write_text(files["test_server.py"], encoding="utf-8")
    # The README's reader has xprocess alone; pytest-asyncio (in the dev extra) would add the
    # frame of its pytest_fixture_setup wrapper above the conftest's.
    result = pytester.runpytest_subprocess("-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    (_, failed_sample) = literal_blocks(section("What it looks like"))
    assert_shown(failed_sample, result.outlines, pytester.path)
    assert live_records(pytester.path) == []


def test_the_quick_start_has_a_conftest_and_a_test() -> None:
    assert set(quick_start_files()) == {"conftest.py", "test_server.py"}


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "xdist"])
def test_the_quick_start_runs_and_stops_its_server_at_the_end(
    pytester: pytest.Pytester, workers: int
) -> None:
    for name, code in quick_start_files().items():
        (pytester.path / name).write_text(code, encoding="utf-8")
    result = pytester.runpytest_subprocess(*(["-n", str(workers)] if workers else []))
    result.assert_outcomes(passed=1)
    assert live_records(pytester.path) == [], "terminate_at_end did not stop the server"
    shown = pytester.runpytest_subprocess("--xshow")
    shown.stdout.fnmatch_lines(["server *DEAD *port=*"])


def test_the_servers_conftest_is_the_examples() -> None:
    (shown, *_) = literal_blocks(section("PostgreSQL and Redis"))
    examples = "".join(
        (ROOT / "examples" / name / "conftest.py").read_text(encoding="utf-8")
        for name in ("postgresql", "redis")
    )
    for line in filter(None, shown):
        assert line in examples, line
