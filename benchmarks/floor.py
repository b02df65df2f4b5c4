"""papermill's floor: the command that runs an empty notebook, the cost of any notebook run
(the kernel's start and papermill's bookkeeping) that the benchmarks print beside theirs."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def papermill_floor(folder: Path, cells: int = 10) -> list[str]:
    """Write an empty notebook of `cells` cells into `folder`; the command that runs it."""
    empty = folder / "empty.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass") for _ in range(cells)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, empty)
    out = str(folder / "empty.out.ipynb")
    papermill = [sys.executable, "-m", "papermill", "-k", "python3", "--no-progress-bar"]
    return [*papermill, str(empty), out]
