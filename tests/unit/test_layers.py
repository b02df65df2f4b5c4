"""irlib's layers (pyproject.toml's [tool.importlinter]): no module imports from a layer above
its own, so there are no import cycles between them. Checked with import-linter; and the check
is shown to fail on a copy of irlib given one upward import. Beyond the layers, no module of
irlib reaches itself through its imports (grimp's graph, which import-linter is built on)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.helpers import ROOT

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
    assert "2 kept, 0 broken" in result.stdout


def import_cycles(package: str) -> list[set[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan)."""
    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[set[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in order:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], order[imported])
        if low[module] == order[module]:
            group = set()
            while (member := stack.pop()) != module:
                group.add(member)
            if group:
                cycles.append(group | {module})

    for module in sorted(graph.modules):
        if module not in order:
            visit(module)
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    assert import_cycles("irlib") == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text("from cyclic import c\n")
    (package / "c.py").write_text("from cyclic import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic") == [{"cyclic.a", "cyclic.b", "cyclic.c"}]


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
