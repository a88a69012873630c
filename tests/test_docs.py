"""The code the docs show is run: examples/recipes, which docs/*.rst include, passes alone and
under xdist, and stops every server it started."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.support import live_records

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "examples" / "recipes"


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "xdist"])
def test_the_recipes_run_and_stop_their_servers(pytester: pytest.Pytester, workers: int) -> None:
    shutil.copytree(
        RECIPES,
        pytester.path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__"),
    )
    result = pytester.runpytest_subprocess(*(["-n", str(workers)] if workers else []))
    result.assert_outcomes(passed=6)
    assert live_records(pytester.path) == []
    shown = pytester.runpytest_subprocess("--xshow")
    for name in ("server", "quiet", "answering", "api", "kept"):
        shown.stdout.fnmatch_lines([f"{name} *DEAD *"])


def test_every_included_part_of_the_recipes_is_marked_in_them() -> None:
    conftest = (RECIPES / "conftest.py").read_text(encoding="utf-8")
    included = set()
    for page in (ROOT / "docs").glob("*.rst"):
        text = page.read_text(encoding="utf-8")
        included |= set(re.findall(r":start-after: # \[([\w-]+)\]", text))
    assert included, "no page includes the recipes"
    for name in included:
        assert f"# [{name}]\n" in conftest and f"# [end {name}]\n" in conftest, name
