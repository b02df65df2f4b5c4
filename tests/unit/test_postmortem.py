"""The post-mortem: assembled from a record and its runs' results.json, manifests verified
(tampering and missing files named), Markdown and HTML written, and the notebook run in a real
kernel with and without an incident to write about."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from irlib import chain, postmortem
from irlib import incident as inc
from irlib.profile import IncidentSettings
from tests.helpers import ROOT

T0 = datetime(2026, 1, 15, 9, 15, tzinfo=UTC)
SEED = IncidentSettings()


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def fake_run(
    incident_dir: Path, name: str, started: float, verdict: dict, mitigations: list[dict]
) -> Path:
    """A run folder as `irlib run` leaves it: results.json, notebook, HTML, manifest.json."""
    run_dir = incident_dir / name
    run_dir.mkdir()
    results = {
        "runbook": "p1_system_unavailable",
        "incident": incident_dir.name,
        "operator": "bob",
        "status": "completed",
        "started_at": at(started),
        "finished_at": at(started + 2),
        "verdict": verdict,
        "mitigations": mitigations,
        "exit_code": 0 if verdict["state"] == "healthy" else 1,
    }
    (run_dir / "results.json").write_text(json.dumps(results))
    (run_dir / "notebook.ipynb").write_text('{"cells": []}')
    (run_dir / "notebook.html").write_text("<html></html>")
    files = {
        p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "size": p.stat().st_size}
        for p in sorted(run_dir.iterdir())
    }
    chain.seal(run_dir, {"files": files}, key_env=None)  # as irlib.archive closes a run
    return run_dir


DOWN = {
    "state": "down",
    "summary": "down: probable cause oom-killed",
    "severity": "P1",
    "causes": [
        {
            "id": "oom-killed",
            "title": "calibration-service OOM-killed",
            "evidence": "3 pods OOMKilled",
            "advice": "raise the memory limit",
        }
    ],
    "mitigations": [],
}
HEALTHY = {
    "state": "healthy",
    "summary": "healthy: 16 checks passed",
    "severity": None,
    "causes": [],
    "mitigations": [],
}
EXECUTED = {
    "id": "scale:calibration-service=5",
    "outcome": "executed",
    "at": at(41),
    "summary": "scale calibration-service to 5",
    "detail": "done",
}
FAILED = {
    "id": "delete-pod:calibration-service-x",
    "outcome": "failed",
    "at": at(40.5),
    "summary": "delete a pod",
    "detail": "ApiException: 403",
}


@pytest.fixture
def drilled(tmp_path: Path) -> inc.Incident:
    """An incident at the seed's times: opened 09:15, runs at 09:50 and 09:55, resolved 10:00."""
    i = inc.open_incident(
        tmp_path, severity="P1", title="API unavailable", settings=SEED, by="dana", now=T0
    )
    inc.stamp(tmp_path, i.id, "acknowledged", now=T0 + timedelta(minutes=2))
    for run in (
        fake_run(i.folder, "20260115T095000Z-p1_system_unavailable", 35, DOWN, []),
        fake_run(
            i.folder, "20260115T095500Z-p1_system_unavailable", 40, HEALTHY, [FAILED, EXECUTED]
        ),
    ):
        inc.attach_run(run)
    inc.note(tmp_path, i.id, "add memory-based autoscaling", kind="action-item")
    inc.stamp(tmp_path, i.id, "resolved", now=T0 + timedelta(minutes=45))
    return inc.load(tmp_path, i.id)


def test_attached_runs_make_the_timeline(drilled: inc.Incident) -> None:
    assert [(e.kind, e.stage) for e in drilled.entries if e.kind != "action-item"] == [
        ("opened", "alert"),
        ("acknowledged", "acknowledge"),
        ("run-started", "investigate"),
        ("verdict", "investigate"),
        ("run-started", "investigate"),
        ("mitigation", "mitigate"),
        ("mitigation", "mitigate"),
        ("verdict", "mitigate"),
        ("resolved", "resolve"),
    ]
    assert drilled.root_cause == "calibration-service OOM-killed: 3 pods OOMKilled"


def test_the_postmortem_has_the_seeds_sections_and_verifies_the_evidence(
    drilled: inc.Incident,
) -> None:
    pm = postmortem.assemble(drilled.id, outputs_dir=drilled.folder.parent, settings=SEED)
    assert isinstance(pm, postmortem.PostMortem)
    md = pm.markdown()
    for line in [
        "- **Incident ID**: INC-2026-0001",
        "- **Severity**: P1 (Critical)",
        "- **Duration**: 45 minutes (09:15 - 10:00 UTC)",
        "- **Impact**: Complete outage (from the runbooks' verdicts)",
        "- 09:15:00 - Incident opened (P1, Critical): API unavailable",
        "- 10:00:00 - Resolved: incident closed",
        "calibration-service OOM-killed: 3 pods OOMKilled",
        "- [ ] add memory-based autoscaling",
        "- [ ] raise the memory limit",
        "- [ ] Find why delete-pod:calibration-service-x failed: ApiException: 403",
        "- [ ] Review why the investigate (root cause) target (30 min) was missed",
        "| investigate (root cause) | 30 min | 37 min | missed |",
    ]:
        assert line in md, line
    assert "scale calibration-service to 5" in md.split("## Fix")[1]
    rows = [line for line in md.splitlines() if line.startswith("| [2026")]
    assert len(rows) == 2 and all(r.endswith("| verified |") for r in rows)
    md_path, html_path = pm.write().paths
    assert md_path.read_text() == md
    page = html_path.read_text()
    assert page.count('<input type="checkbox" disabled>') == len(pm.action_items())
    assert 'href="20260115T095000Z-p1_system_unavailable/notebook.html"' in page


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("tamper", "notebook.html does not match its sha256 in the manifest"),
        ("delete", "notebook.html is missing"),
        ("no-manifest", "manifest.json is missing"),
    ],
    ids=["tampered", "deleted", "no-manifest"],
)
def test_damaged_evidence_is_named(drilled: inc.Incident, damage: str, problem: str) -> None:
    run_dir = drilled.runs[0]
    if damage == "tamper":
        (run_dir / "notebook.html").write_text("<html>edited afterwards</html>")
    elif damage == "delete":
        (run_dir / "notebook.html").unlink()
    else:
        (run_dir / "manifest.json").unlink()
    checked = postmortem.verify_run(run_dir)
    assert not checked.verified and problem in checked.problems
    pm = postmortem.assemble(drilled.id, outputs_dir=drilled.folder.parent, settings=SEED)
    assert isinstance(pm, postmortem.PostMortem)
    assert f"FAILED: {problem}" in pm.markdown()
    assert f"- [ ] Evidence {run_dir.name} fails verification" in pm.markdown()


def test_without_an_id_the_latest_incident_is_assembled(tmp_path: Path) -> None:
    for n in range(2):
        inc.open_incident(tmp_path, severity="P2", title=f"slow {n}", settings=SEED, now=T0)
    pm = postmortem.assemble(outputs_dir=tmp_path, settings=SEED)
    assert isinstance(pm, postmortem.PostMortem) and pm.incident.id == "INC-2026-0002"
    assert isinstance(postmortem.assemble(outputs_dir=tmp_path / "none"), postmortem.NoIncident)


def test_the_notebook_runs_with_its_defaults_and_no_incident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRLIB_OUTPUTS", str(tmp_path))  # the kernel inherits it
    for name in ("IRLIB_RUN_DIR", "IRLIB_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(ROOT / "notebooks" / "postmortem.ipynb", as_version=4)
    NotebookClient(
        nb,
        kernel_name="python3",
        timeout=60,
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    ).execute()
    shown = "\n".join(
        "".join(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert f"No incident under {tmp_path}: nothing to write" in shown
    assert not list(tmp_path.iterdir())
