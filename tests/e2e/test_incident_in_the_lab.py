"""A scripted P1 incident in the lab through the real `irlib run` and `irlib incident`: opened,
diagnosed (bad-deploy), mitigated on confirmation, resolved, its messages and post-mortem."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from irlib import incident as inc
from irlib.escalation import targets
from irlib.profile import IncidentSettings
from tests.helpers import ROOT, LabHandle, irlib

SEED = IncidentSettings()

RUNBOOK = "p1_system_unavailable"


def _run(lab: LabHandle, outputs: Path, incident_id: str, *args: str) -> tuple[int, Path]:
    result = irlib(
        "run",
        RUNBOOK,
        "--outputs",
        str(outputs),
        "--incident",
        incident_id,
        *args,
        env=lab.env,
        timeout=240,
    )
    lines = result.stdout.strip().splitlines()
    assert lines and Path(lines[-1]).is_dir(), result.stderr[-3000:]
    run_dir = Path(lines[-1])
    return result.returncode, run_dir


def _verdict_cell_text(run_dir: Path) -> str:
    nb = json.loads((run_dir / "notebook.ipynb").read_text())
    cell = next(
        c
        for c in nb["cells"]
        if c["cell_type"] == "code" and "".join(c["source"]).strip() == "rb.verdict()"
    )
    return "".join("".join(o.get("data", {}).get("text/plain", "")) for o in cell["outputs"])


def test_a_scripted_p1_incident_in_the_lab(lab: LabHandle, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    env = {k: v for k, v in lab.env.items() if k != "IRLIB_INCIDENT_WEBHOOK_URL"}

    def incident(*args: str) -> subprocess.CompletedProcess[str]:
        return irlib("incident", *args, "--outputs", str(outputs), env=env, check=True)

    incident_id = incident(
        "open", "--severity", "P1", "--title", "API unavailable", "--by", "alice"
    ).stdout.strip()
    lab.irlib("lab", "inject", "bad-deploy", check=True)
    try:
        code, diagnosed = _run(lab, outputs, incident_id)
        assert code == 1
        code, mitigated = _run(lab, outputs, incident_id, "--confirm", "rollback:api-service")
        assert code == 0
    finally:
        lab.irlib("lab", "clear", check=True)
    assert f"Escalation for {incident_id} (P1, " in _verdict_cell_text(diagnosed)
    incident("resolved", incident_id, "--resolution", "rolled api-service back to 1.8.2")
    message = incident("message", incident_id, "resolution", "--send").stdout

    i = inc.load(outputs, incident_id)
    assert [(e.kind, e.stage) for e in i.entries] == [
        ("opened", "alert"),
        ("run-started", "investigate"),
        ("verdict", "investigate"),
        ("run-started", "investigate"),
        ("mitigation", "mitigate"),
        ("verdict", "mitigate"),
        ("resolved", "resolve"),
        ("message", "resolve"),
    ]
    runs = [e.data["run"] for e in i.of_kind("run-started")]
    assert runs == [diagnosed.name, mitigated.name]
    first, second = i.verdicts
    assert (first["state"], first["cause"], first["severity"]) == ("down", "bad-deploy", "P1")
    assert second["state"] == "healthy"
    assert i.of_kind("mitigation")[0].data["outcome"] == "executed"
    assert all(t.state == "met" for t in targets(i, SEED, i.resolved_at))

    opened_at, resolved_at = i.record.opened_at, i.resolved_at
    assert resolved_at is not None
    minutes = int((resolved_at - opened_at).total_seconds() // 60)
    assert f"Duration: {minutes} minutes ({opened_at:%H:%M} - {resolved_at:%H:%M} UTC)" in message
    assert "Root Cause: recent deployment of api-service crash-loops: revision" in message
    assert "Resolution: rolled api-service back to 1.8.2" in message

    md_path, html_path = incident("postmortem", incident_id).stdout.split()
    md = Path(md_path).read_text()
    for run_dir in (diagnosed, mitigated):
        manifest_sha = hashlib.sha256((run_dir / "manifest.json").read_bytes()).hexdigest()
        row = next(line for line in md.splitlines() if f"[{run_dir.name}]" in line)
        assert f"({run_dir.name}/notebook.html)" in row
        assert manifest_sha in row and row.rstrip(" |").endswith("verified")
        assert f'href="{run_dir.name}/notebook.html"' in Path(html_path).read_text()
    assert "- [ ] roll api-service back, then find why" in md
    assert "Evidence chain (chain.jsonl): verified: 2 run(s), every file and chain link" in md
    verified = irlib("evidence", "verify", str(outputs / incident_id), env=lab.env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    sample = ROOT / "outputs" / "sample-postmortem"  # git-ignored: for a person to read
    shutil.rmtree(sample, ignore_errors=True)
    shutil.copytree(outputs / incident_id, sample / incident_id)
