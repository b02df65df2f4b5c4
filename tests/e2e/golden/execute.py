"""Execute a runbook notebook in place of a person, as nbval will: no papermill, no injected
parameters, a kernel of its own. Given a kept evidence folder (tests/e2e/regressions/), it
replays it: the folder's profile, every answer from its captures, with their clock and
durations; that makes the golden copies, the same on every machine and with no lab. Without
one, it runs against $IRLIB_PROFILE (a JupyterLab-like run, tests/e2e/test_interactive.py).

    python -m tests.e2e.golden.execute NOTEBOOK TARGET [EVIDENCE_FOLDER]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from irlib import capture

# Who runs it: the one input a replay takes from the machine (the operator defaults to $USER).
OPERATOR = "golden"


def replay_env(folder: Path) -> dict[str, str]:
    """What a kernel needs to replay `folder` as nbval runs the notebook: its captures, its
    profile, a fixed operator."""
    found = capture.find(Path(folder))
    if found is None:
        raise SystemExit(f"{folder}: no captures to replay")
    return {
        capture.ENV: f"replay:{found.resolve()}",
        "IRLIB_PROFILE": str((Path(folder) / "profile.yaml").resolve()),
        "USER": OPERATOR,
    }


def execute(source: Path, folder: Path | None) -> nbformat.NotebookNode:
    nb = nbformat.read(source, as_version=4)
    saved = dict(os.environ)
    if folder is not None:
        os.environ.update(replay_env(folder))  # the kernel inherits this environment
    try:
        # no timing metadata: it is the one thing in a cell that a replay cannot fix
        NotebookClient(
            nb,
            kernel_name="python3",
            timeout=120,
            record_timing=False,
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # its plain-TCP warning
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    nb.metadata.pop("widgets", None)  # widget state: random model ids, nbval never reads it
    for n, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view is not None:  # random per run; nbval skips this mimetype
                view["model_id"] = f"golden-{n}"
    return nb


def main(source: str, target: str, folder: str | None = None) -> None:
    nbformat.write(execute(Path(source), Path(folder) if folder else None), target)


if __name__ == "__main__":
    main(*sys.argv[1:4])
