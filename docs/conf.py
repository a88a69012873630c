"""Sphinx configuration of xprocess's reference documentation (built in CI with -W)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xprocess import __version__  # noqa: E402

project = "xprocess"
author = "The xprocess developers"
copyright = "The xprocess developers"
version = release = __version__
extensions: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
# ``::`` blocks are terminal output and commands: shown as they are, not highlighted.
highlight_language = "none"
