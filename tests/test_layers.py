"""irlib's layers (pyproject.toml's [tool.importlinter]): no module imports from a layer above
its own, so there are no import cycles between them. Checked with import-linter; and the check
is shown to fail on a copy of irlib given one upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the irlib package under `root`, with `root`'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True
    )


def test_every_module_imports_only_from_the_layers_below_it() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_the_layer_check_fails_on_a_new_upward_import(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "irlib", tmp_path / "irlib", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    io_module = tmp_path / "irlib" / "io.py"
    # the bottom of the layers reaching up to the runner: a cycle in the making
    io_module.write_text(io_module.read_text() + "\nfrom irlib import runner  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "irlib's layers BROKEN" in result.stdout
    assert "irlib.io -> irlib.runner" in result.stdout
