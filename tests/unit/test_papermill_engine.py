"""irlib.papermill_engine: the running notebook is written at its start, then at most once per
SAVE_EVERY_S as cells start and complete, and always at the end: what the file on disk shows
at each step.
No kernel: papermill's own execution manager callbacks, as its engine calls them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from papermill.engines import papermill_engines

from irlib import papermill_engine
from irlib.papermill_engine import Engine, _Manager


def _statuses(path: Path) -> list[Any]:
    nb = json.loads(path.read_text())
    return [c["metadata"]["papermill"]["status"] for c in nb["cells"]]


def test_the_running_notebook_is_written_at_most_once_a_second_and_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interval is set for each step (not slept), so no machine is too slow for it."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"{i}") for i in range(4)])
    nb.metadata["papermill"] = {}  # as papermill's execute_notebook prepares it
    path = tmp_path / "notebook.ipynb"
    manager = _Manager(nb, output_path=str(path), progress_bar=False)
    monkeypatch.setattr(papermill_engine, "SAVE_EVERY_S", 3600.0)
    manager.notebook_start()
    assert _statuses(path) == ["pending"] * 4  # the start is written

    for cell in nb.cells[:2]:  # within the interval: nothing written
        manager.cell_start(cell)
        manager.cell_complete(cell)
    assert _statuses(path) == ["pending"] * 4

    monkeypatch.setattr(papermill_engine, "SAVE_EVERY_S", 0.0)
    manager.cell_start(nb.cells[2])  # the interval passed: written, its cell shown running
    assert _statuses(path) == ["completed", "completed", "running", "pending"]

    monkeypatch.setattr(papermill_engine, "SAVE_EVERY_S", 3600.0)
    manager.cell_complete(nb.cells[2])
    manager.cell_exception(nb.cells[3])  # (papermill marks a cell that raised)
    assert _statuses(path)[2] == "running"
    manager.notebook_complete()  # papermill calls it in a finally: always written
    assert _statuses(path) == ["completed", "completed", "completed", "failed"]


def test_it_is_papermills_engine_by_its_name() -> None:
    assert papermill_engines.get_engine(papermill_engine.NAME) is Engine
