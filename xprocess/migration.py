"""What stops a run when pytest-xprocess is installed beside xprocess.

Both distributions install the ``xprocess`` package: whichever was installed last overwrote the
other's files, so the two are mixed, and ``pip uninstall pytest-xprocess`` later deletes files
xprocess needs (``xprocess/__init__.py`` among them). Nothing tells the user; a run misbehaves
in ways that point nowhere near the cause. So the plugin refuses to run, naming the fix.
"""

from __future__ import annotations

import importlib.metadata

__all__ = ["FIX", "conflicting_distribution"]

FIX = "pip uninstall -y pytest-xprocess && pip install --force-reinstall xprocess"


def conflicting_distribution() -> str | None:
    """The message to stop the run with when pytest-xprocess is installed; None when it is not."""
    try:
        found = importlib.metadata.distribution("pytest-xprocess")
    except importlib.metadata.PackageNotFoundError:
        return None
    version = found.version or "(unknown version)"
    return (
        f"pytest-xprocess {version} is installed beside xprocess. Both install the 'xprocess' "
        "package, so their files are now mixed, and uninstalling pytest-xprocess later would "
        "delete files xprocess needs. xprocess replaces it (your conftest does not change): "
        "uninstall it, then reinstall xprocess:\n\n"
        f"    {FIX}\n"
    )
