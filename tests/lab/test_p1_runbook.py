"""P1 "System Unavailable" end to end: `irlib run` against the lab, one fault at a time.

Each run is a real papermill execution of notebooks/p1_system_unavailable.ipynb in a real
kernel, against the lab's real servers; mitigations are verified with the real kubectl.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import LabHandle, run_runbook

RUNBOOK = "p1_system_unavailable"


def run(
    lab: LabHandle, outputs: Path, *args: str, profile: str | None = None, timeout: float = 240
) -> tuple[int, Path | None, dict]:
    """`irlib run p1_system_unavailable ...`: exit code, run folder, results.json."""
    return run_runbook(lab, RUNBOOK, outputs, *args, profile=profile, timeout=timeout)


def top_cause(results: dict) -> str | None:
    causes = (results.get("verdict") or {}).get("causes") or []
    return causes[0]["id"] if causes else None


def deployments_snapshot(lab: LabHandle) -> dict:
    """What a mitigation could change: deployments' templates and replicas, and the pods."""
    deps = json.loads(lab.kubectl("get", "deployments", "-n", "trading", "-o", "json").stdout)
    pods = json.loads(lab.kubectl("get", "pods", "-n", "trading", "-o", "json").stdout)
    return {
        "deployments": {
            d["metadata"]["name"]: (
                d["spec"]["replicas"],
                d["spec"]["template"],
                d["metadata"].get("generation"),
            )
            for d in deps["items"]
        },
        "pods": sorted(p["metadata"]["name"] for p in pods["items"]),
    }


def test_no_fault_gives_a_healthy_verdict_and_exit_0(lab: LabHandle, tmp_path: Path) -> None:
    code, run_dir, results = run(lab, tmp_path)
    assert code == 0, results.get("verdict")
    assert results["verdict"]["state"] == "healthy"
    for name in ("notebook.ipynb", "notebook.html", "results.json", "manifest.json"):
        assert (run_dir / name).is_file()
    assert run_dir.parent.name == "adhoc" and run_dir.name.endswith(RUNBOOK)


def test_bad_deploy_rollback_confirmed_restores_the_last_good_image(
    lab: LabHandle, tmp_path: Path
) -> None:
    good = lab.kubectl(
        "get",
        "deployment",
        "api-service",
        "-n",
        "trading",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout
    lab.irlib("lab", "inject", "bad-deploy", check=True)
    try:
        before = deployments_snapshot(lab)
        code, _, results = run(lab, tmp_path / "unconfirmed")
        assert code == 1 and top_cause(results) == "bad-deploy"
        assert deployments_snapshot(lab)["deployments"] == before["deployments"]
        outcomes = {a["outcome"] for a in results["mitigations"]}
        assert "executed" not in outcomes and "planned" in outcomes

        code, _, results = run(
            lab, tmp_path / "confirmed", "--confirm", "rollback:api-service", "--operator", "alice"
        )
        assert code == 0, results.get("verdict")
        executed = [a for a in results["mitigations"] if a["outcome"] == "executed"]
        assert [a["id"] for a in executed] == ["rollback:api-service"]
        assert executed[0]["operator"] == "alice"
        image = lab.kubectl(
            "get",
            "deployment",
            "api-service",
            "-n",
            "trading",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ).stdout
        assert image == good
        history = lab.kubectl(
            "rollout", "history", "deployment/api-service", "-n", "trading"
        ).stdout
        revisions = [int(line.split()[0]) for line in history.splitlines() if line[:1].isdigit()]
        assert max(revisions) >= 4  # 1, 2 at start; 3 the bad deploy; the rollback is new
        status = lab.kubectl(
            "rollout", "status", "deployment/api-service", "-n", "trading", "--timeout=30s"
        )
        assert "successfully rolled out" in status.stdout
        import httpx

        assert httpx.get(lab.lab.config.url("api") + "/health", timeout=5).status_code == 200
    finally:
        lab.irlib("lab", "clear", check=True)


def test_the_admin_token_appears_in_no_evidence_file(lab: LabHandle, tmp_path: Path) -> None:
    token = lab.exports["IRLIB_ADMIN_TOKEN"]
    _, run_dir, _ = run(lab, tmp_path)
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path.name


def hung_broker_profile(lab: LabHandle, tmp_path: Path, port: int) -> str:
    data = yaml.safe_load(Path(lab.exports["IRLIB_PROFILE"]).read_text())
    data["broker"]["url"] = f"http://127.0.0.1:{port}"
    data["timeouts"]["http_s"] = 1.0
    path = tmp_path / "hung-broker.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_down_dependency_is_an_error_and_the_runbook_completes(
    lab: LabHandle, tmp_path: Path, silent_port: int
) -> None:
    lab.irlib("lab", "inject", "database-down", check=True)
    try:
        profile = hung_broker_profile(lab, tmp_path, silent_port)
        code, _, results = run(lab, tmp_path, "-p", "timeout_s", "2", profile=profile)
    finally:
        lab.irlib("lab", "clear", check=True)
    assert code == 1
    checks = {c["check"]: c for c in results["checks"]}
    assert checks["database connections"]["status"] == "error"
    assert "cannot count" in checks["database connections"]["summary"]
    assert checks["broker"]["status"] == "error" and "1 s" in checks["broker"]["summary"]
    assert checks["redis ping"]["status"] == "ok"  # the others still ran
    assert all(c["duration_s"] <= 2.5 for c in results["checks"]), results["checks"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-p", "namespce", "trading"), "namespce"),
        (("-p", "timeout_s", "abc"), "timeout_s"),
        (("--confirm", "reboot:everything"), "reboot:everything"),
    ],
    ids=["misspelled", "mistyped", "unknown-mitigation"],
)
def test_bad_parameters_are_refused_before_anything_runs(
    lab: LabHandle, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    from tests.helpers import irlib

    result = irlib("run", RUNBOOK, "--outputs", str(tmp_path), *args, env=lab.env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_cell_past_its_timeout_is_exit_3_with_evidence(
    lab: LabHandle, tmp_path: Path, silent_port: int
) -> None:
    profile = hung_broker_profile(lab, tmp_path, silent_port)
    data = yaml.safe_load(Path(profile).read_text())
    data["timeouts"]["http_s"] = 5.0
    Path(profile).write_text(yaml.safe_dump(data))
    code, run_dir, results = run(lab, tmp_path, "--timeout", "2", profile=profile)
    assert code == 3
    assert run_dir is not None and (run_dir / "notebook.ipynb").is_file()
    assert results["status"] == "crashed" and "tim" in json.dumps(results).lower()
