"""The sdist holds what its own tests need, and the metadata points at the project."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    from hatchling.builders.sdist import SdistBuilder

    out = tmp_path_factory.mktemp("dist")
    (archive,) = SdistBuilder(str(ROOT)).build(directory=str(out), versions=["standard"])
    return tarfile.open(archive)


def members(sdist: tarfile.TarFile) -> set[str]:
    return {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}


def test_the_sdist_ships_what_its_tests_run(sdist: tarfile.TarFile) -> None:
    names = members(sdist)
    for needed in (
        "tests/helpers/child.py",
        "tests/test_benchmarks_smoke.py",
        "benchmarks/run.py",
        "benchmarks/_scenarios.py",
        "examples/http_server/conftest.py",
        "examples/recipes/conftest.py",
        "docs/conf.py",
        "docs/index.rst",
        "xprocess/probes.py",
        "pyproject.toml",
    ):
        assert needed in names, needed
    assert not any("/.venv" in name or "__pycache__" in name for name in names)
    assert not any(name.startswith("docs/_build") for name in names)


def test_the_metadata_has_the_project_urls(sdist: tarfile.TarFile) -> None:
    info = next(m for m in sdist.getmembers() if m.name.endswith("/PKG-INFO"))
    extracted = sdist.extractfile(info)
    assert extracted is not None
    metadata = extracted.read().decode()
    assert "Project-URL: Source, https://github.com/xprocess/xprocess" in metadata
    assert "Project-URL: Issues, https://github.com/xprocess/xprocess/issues" in metadata
