"""Interactive runs without a browser: the confirm panel's static views (what nbclient, papermill,
nbconvert and a plain viewer show), a click run once and only once, and the evidence folder of a
JupyterLab session archived from a saved notebook by the server's save hook.

tests/e2e/test_jupyterlab.py drives the same path through a real JupyterLab and chromium.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_notebook, new_output

from irlib import evidence, interactive, io
from irlib.guard import Guard, Plan
from irlib.widgets import confirm_buttons
from tests.helpers import ROOT, LabHandle

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLAN = Plan(
    "rollback:api-service",
    "roll api-service back to revision 2 (api-service:1.8.2)",
    "kubectl rollout undo deployment/api-service -n trading",
    {"revision": "3"},
)
HINT = "irlib run p1_system_unavailable --confirm rollback:api-service"


def test_the_confirm_panel_says_what_it_offers_without_a_widget_frontend() -> None:
    nb = new_notebook(
        cells=[
            new_code_cell(
                "from irlib.guard import Guard, Plan\n"
                "from irlib.widgets import confirm_buttons\n"
                f"plan = Plan(*{tuple(PLAN.__dict__.values())!r})\n"
                "guard = Guard(confirm=[], operator='alice', record=lambda kind, data: None)\n"
                "run = lambda p, clicked=False: guard.execute(p, dict, clicked=clicked)\n"
                "confirm_buttons([plan], run, runbook='p1_system_unavailable').show()"
            )
        ]
    )
    env = {k: v for k, v in os.environ.items() if k != interactive.SESSION_ENV}
    NotebookClient(nb, kernel_name="python3", timeout=60).execute(env=env)
    (output,) = nb.cells[0].outputs
    assert WIDGET_VIEW in output.data  # JupyterLab shows the buttons ...
    text, page = output.data["text/plain"], output.data["text/html"]  # ... the rest, this
    for view in (text, page):
        assert "rollback:api-service" in view and "awaiting confirmation" in view
        assert PLAN.summary in view and PLAN.command in view and HINT in view
    assert "…" not in text  # whole, where ipywidgets cuts its text at 110 characters

    # nbconvert draws a widget from saved widget state, with JavaScript from the internet:
    # without that state (JupyterLab saves none by default; the archive drops it) it falls back
    # to the static view.
    assert "widgets" in nb.metadata
    nb.metadata.pop("widgets")
    body, _ = HTMLExporter().from_notebook_node(nb)
    assert HINT in body and PLAN.command in body


def test_a_click_runs_the_plan_once_and_a_second_click_is_refused() -> None:
    recorded: list[dict[str, Any]] = []
    guard = Guard(confirm=[], operator="alice", record=lambda kind, data: recorded.append(data))
    ran: list[str] = []

    def run(plan: Plan, clicked: bool = False) -> Any:
        return guard.execute(plan, lambda: ran.append(plan.id) or {"ok": True}, clicked=clicked)

    seen: list[str] = []
    panel = confirm_buttons(
        [PLAN], run, runbook="p1_system_unavailable", on_decision=lambda a: seen.append(a.outcome)
    )
    button = panel.buttons[PLAN.id]
    button.click()
    assert button.disabled and ran == [PLAN.id]
    assert "executed by alice" in repr(panel) and "executed by alice" in panel.static_html()
    assert HINT not in repr(panel)  # nothing left to confirm

    button.click()  # the callback runs even on a disabled button, as a racing click would
    assert ran == [PLAN.id]
    assert [r["outcome"] for r in recorded] == ["executed", "refused"]
    assert seen == ["executed", "refused"]
    assert "executed by alice" in repr(panel) and "not run twice" in repr(panel)
    assert "0 of 1 mitigation(s) await confirmation" in panel.title.value


def test_no_session_folder_outside_jupyterlab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(interactive.SESSION_ENV, raising=False)
    assert interactive.session_notebook() is None  # papermill, nbval, scripts
    monkeypatch.setenv(interactive.SESSION_ENV, "/work/notebooks/p1.ipynb")
    assert interactive.session_notebook() == Path("/work/notebooks/p1.ipynb")
    monkeypatch.setenv(evidence.RUN_DIR_ENV, "/tmp/run")
    assert interactive.session_notebook() is None  # `irlib run` archives it itself


def _session_dir(tmp_path: Path, notebook: Path) -> Path:
    run_dir = tmp_path / "outputs" / "adhoc" / "20260101T000000Z-p1_system_unavailable-interactive"
    run_dir.mkdir(parents=True)
    facts = {"runbook": "p1_system_unavailable", "mode": "interactive", "notebook": str(notebook)}
    evidence.append_record(run_dir / evidence.EVENTS_FILE, {"kind": "run", "data": facts})
    return run_dir


def _marked(run_dir: Path) -> Any:
    marker = {"run_dir": str(run_dir)}
    output = new_output("display_data", data={interactive.MARKER: marker})
    return new_notebook(cells=[new_code_cell("rb = SystemUnavailable()", outputs=[output])])


def test_a_marker_cannot_point_the_hook_at_another_notebooks_folder(tmp_path: Path) -> None:
    mine, other = tmp_path / "p1.ipynb", tmp_path / "copy.ipynb"
    run_dir = _session_dir(tmp_path, mine)
    assert interactive.session_of(_marked(run_dir), mine) == run_dir
    assert interactive.session_of(_marked(run_dir), other) is None
    assert interactive.session_of(_marked(tmp_path), mine) is None  # no session there
    assert interactive.session_of(new_notebook(), mine) is None  # no marker

    nbformat.write(_marked(run_dir), other)
    interactive.post_save_hook({"type": "notebook"}, str(other))
    assert not (run_dir / "notebook.ipynb").exists()


def _archived(run_dir: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return manifest if "notebook.html" in manifest["files"] else None


def test_a_saved_notebook_is_archived_into_its_session_folder(
    lab: LabHandle, tmp_path: Path
) -> None:
    """The P1 notebook run as JupyterLab runs it (its kernel knows its notebook's path), saved,
    then the server's hook called as after a save: the same four files as `irlib run`."""
    saved, outputs = tmp_path / "p1_system_unavailable.ipynb", tmp_path / "outputs"
    env = {
        **lab.env,
        interactive.SESSION_ENV: str(saved),
        io.OUTPUTS_ENV: str(outputs),
        "USER": "bob",
        "LOGNAME": "bob",
    }
    source = ROOT / "notebooks" / "p1_system_unavailable.ipynb"
    subprocess.run(
        [sys.executable, "-m", "tests.e2e.golden.execute", str(source), str(saved)],
        env=env, cwd=ROOT, check=True, timeout=180,
    )  # fmt: skip
    (run_dir,) = (outputs / "adhoc").iterdir()
    assert run_dir.name.endswith("-p1_system_unavailable-interactive")
    first = nbformat.read(saved, as_version=4).cells[2].outputs[0]
    assert first.data[interactive.MARKER]["run_dir"] == str(run_dir)
    assert str(run_dir) in first.data["text/plain"]

    interactive.post_save_hook({"type": "notebook"}, str(saved))
    deadline = time.monotonic() + 60
    while (manifest := _archived(run_dir)) is None:
        assert time.monotonic() < deadline, "the save hook archived nothing in 60 s"
        time.sleep(0.2)

    assert {"notebook.ipynb", "notebook.html", "results.json", "events.jsonl"} <= set(
        manifest["files"]
    )
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((run_dir / name).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["runbook"]["path"] == str(saved)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["mode"] == "interactive" and results["status"] == "completed"
    assert results["operator"] == "bob" and results["verdict"]["state"] == "healthy"
    assert results["parameters"]["log_tail"] == 100 and results["exit_code"] == 0
    assert {c["check"] for c in results["checks"]} >= {"api health", "pods", "redis ping"}
    archived = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    assert archived.metadata["irlib"]["run"]["mode"] == "interactive"
    assert interactive.DECISIONS_TAG in archived.cells[-1].metadata["tags"]
    assert "No mitigation was proposed" in archived.cells[-1].source
    token = lab.exports["IRLIB_ADMIN_TOKEN"]
    for path in run_dir.iterdir():
        assert token not in path.read_text(errors="replace"), path.name
