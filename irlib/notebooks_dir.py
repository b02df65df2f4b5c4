"""Where the runbook notebooks are: shipped inside the installed package, or, in a checkout
(an editable install, the tests), the top-level notebooks/ folder that is their one source.

The wheel copies notebooks/ to irlib/notebooks/ (setup.py's package_dir), so both layouts
hold the same files.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def notebooks_dir() -> Path:
    installed = PACKAGE / "notebooks"
    return installed if installed.is_dir() else PACKAGE.parent / "notebooks"
