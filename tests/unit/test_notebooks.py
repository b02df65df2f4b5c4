"""The notebooks in git: thin (no logic in cells), stripped of outputs, parameterised."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from tests.helpers import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LOGIC = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.If,
    ast.Try,
    ast.With,
    ast.Lambda,
    ast.ListComp,
    ast.DictComp,
    ast.SetComp,
    ast.GeneratorExp,
    ast.IfExp,
)


def logic_in(source: str) -> list[str]:
    """The logic constructs in a cell: these belong in irlib, with tests."""
    return [type(node).__name__ for node in ast.walk(ast.parse(source)) if isinstance(node, LOGIC)]


def test_there_are_notebooks() -> None:
    assert any(p.name == "p1_system_unavailable.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_cells_hold_no_logic(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not logic_in(cell.source), f"{path.name} cell {i}: {logic_in(cell.source)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_one_parameters_cell_of_literals(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign | ast.AnnAssign)
        ast.literal_eval(node.value)


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    pass",
        "for x in y:\n    pass",
        "while True:\n    break",
        "if x:\n    pass",
        "try:\n    pass\nexcept Exception:\n    pass",
        "class A:\n    pass",
    ],
    ids=["def", "for", "while", "if", "try", "class"],
)
def test_the_logic_detector_catches_each_construct(source: str) -> None:
    assert logic_in(source)
