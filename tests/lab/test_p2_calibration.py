"""P2 "Calibration Failures" end to end: `irlib run p2_calibration_failures` against the lab.

Each run is a real papermill execution of notebooks/p2_calibration_failures.ipynb against
the lab's real calibration-service, PostgreSQL and Kubernetes API; what a recalibration did
is checked with SQL on the calibrations table, HTTP to the calibration API and kubectl.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from irlib.lab import surfaces
from irlib.lab.heston import HestonParams
from irlib.profile import Thresholds
from tests.helpers import LabHandle, irlib, run_runbook
from tests.unit.test_heston import TOLERANCE, within_tolerance

RUNBOOK = "p2_calibration_failures"
RMSE_MAX = Thresholds().calibration_rmse_max


def run(lab: LabHandle, outputs: Path, *args: str) -> tuple[int, Path | None, dict[str, Any]]:
    """`irlib run p2_calibration_failures ...`: exit code, run folder, results.json."""
    return run_runbook(lab, RUNBOOK, outputs, *args, timeout=240)


def top_cause(results: dict[str, Any]) -> dict[str, Any]:
    causes = (results.get("verdict") or {}).get("causes") or []
    return causes[0] if causes else {}


def sql(lab: LabHandle, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(lab.lab.config.postgres_dsn, connect_timeout=5) as conn:
        return conn.execute(statement, params).fetchall()


def api(lab: LabHandle, path: str, **params: str) -> httpx.Response:
    return httpx.get(lab.lab.config.url("api") + path, params=params, timeout=30)


def in_use(lab: LabHandle, symbol: str = "SPY") -> dict[str, Any]:
    resp = api(lab, "/v1/calibration/heston", symbol=symbol)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_no_fault_is_healthy_exit_0_and_stores_nothing(lab: LabHandle, tmp_path: Path) -> None:
    count = "SELECT count(*), max(calibrated_at) FROM calibrations"
    before = sql(lab, count)
    code, run_dir, results = run(lab, tmp_path)
    assert code == 0, results.get("verdict")
    assert results["verdict"]["state"] == "healthy"
    assert sql(lab, count) == before  # the manual test calibration stored nothing
    checks = {c["check"]: c for c in results["checks"]}
    assert checks["manual calibration test"]["status"] == "ok"
    assert checks["market data"]["status"] == "ok"
    assert [(m["id"], m["outcome"]) for m in results["mitigations"]] == [
        ("recalibrate:SPY", "planned")
    ]
    html = (run_dir / "notebook.html").read_text()
    assert "<svg" in html and "SPY implied vols" in html  # the plot survives without a kernel
    for heading in ("Investigation", "Common Issues", "Market data unavailable",
                    "Optimization not converging", "Recovery", "Force recalibration"):  # fmt: skip
        assert heading in html


@pytest.mark.parametrize("symbol", list(surfaces.GENERATING), ids=list(surfaces.GENERATING))
def test_a_healthy_labs_test_calibration_recovers_the_generating_parameters(
    lab: LabHandle, symbol: str
) -> None:
    """Within tests/unit/test_heston.py's TOLERANCE of the parameters the quotes were made from."""
    resp = api(lab, "/v1/calibration/test", symbol=symbol)
    assert resp.status_code == 200, resp.text
    fit = resp.json()
    assert fit["converged"] and fit["rmse"] < 2 * surfaces.NOISE, fit["message"]
    fitted = HestonParams.of(fit["params"])
    assert within_tolerance(fitted, surfaces.GENERATING[symbol]) == {}, TOLERANCE
    assert fit["stored"]["params"] and fit["n_quotes"] == 45


def test_stale_calibration_then_confirmed_recalibration_is_fresh_and_exit_0(
    lab: LabHandle, tmp_path: Path
) -> None:
    lab.irlib("lab", "inject", "stale-calibration", check=True)
    try:
        stale_at = in_use(lab)["calibrated_at"]
        code, run_dir, results = run(
            lab, tmp_path, "--confirm", "recalibrate:SPY", "--operator", "bob"
        )
        (age_s, rmse, converged), *_ = sql(
            lab,
            """SELECT extract(epoch FROM now() - calibrated_at), rmse, converged
               FROM calibrations WHERE symbol = 'SPY' ORDER BY calibrated_at DESC LIMIT 1""",
        )
        now_used = in_use(lab)
    finally:
        lab.irlib("lab", "clear", check=True)
    assert code == 0, results.get("verdict")
    assert results["verdict"]["state"] == "healthy"
    executed = [m for m in results["mitigations"] if m["outcome"] == "executed"]
    assert [(m["id"], m["operator"]) for m in executed] == [("recalibrate:SPY", "bob")]
    assert converged and age_s < 120 and rmse < RMSE_MAX
    assert now_used["calibrated_at"] != stale_at and not now_used["fallback"]
    assert now_used["rmse"] < RMSE_MAX
    verified = [c for c in results["checks"] if c["check"] == "recalibration SPY"]
    assert verified and all(c["status"] == "ok" for c in verified)
    assert "moved" in verified[-1]["summary"]
    token = lab.exports["IRLIB_ADMIN_TOKEN"]  # used by the recalibration, written nowhere
    assert run_dir is not None
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path.name


def test_calibration_divergence_then_recalibration_fails_and_the_fallback_is_served(
    lab: LabHandle, tmp_path: Path
) -> None:
    lab.irlib("lab", "inject", "calibration-divergence", check=True)
    try:
        before = in_use(lab)
        attempts = "SELECT count(*) FROM calibrations WHERE symbol = 'SPY' AND NOT converged"
        (failed_before,), *_ = sql(lab, attempts)
        code, _, results = run(lab, tmp_path, "--confirm", "recalibrate:SPY")
        (failed_after,), *_ = sql(lab, attempts)
        after = in_use(lab)
    finally:
        lab.irlib("lab", "clear", check=True)
    assert code == 1
    tried = [m for m in results["mitigations"] if m["id"] == "recalibrate:SPY"]
    # ten evaluations run out ("did not converge") or stop short at a poor fit: both fail
    detail = tried[-1]["detail"]
    assert tried[-1]["outcome"] == "failed", tried[-1]
    assert "did not converge" in detail or "poor fit" in detail, detail
    assert failed_after == failed_before + 1  # the attempt was made, and stored as failed
    assert after["fallback"] and after["params"] == before["params"]
    assert after["calibrated_at"] == before["calibrated_at"]
    cause = top_cause(results)
    assert cause["id"] == "calibration-divergence"
    assert "fallback" in cause["title"] and "fallback in use for SPY" in cause["evidence"]
    assert "fallback parameters in use" in results["verdict"]["summary"]
    assert "relaxed constraints" in cause["advice"]


def test_calibration_oom_names_the_limit_the_batch_and_the_action_items(
    lab: LabHandle, tmp_path: Path
) -> None:
    lab.irlib("lab", "inject", "calibration-oom", check=True)
    try:
        described = lab.kubectl(
            "describe", "pods", "-l", "app=calibration-service", "-n", "trading"
        ).stdout
        code, _, results = run(lab, tmp_path)
    finally:
        lab.irlib("lab", "clear", check=True)
    assert "OOMKilled" in described and re.search(r"memory:\s+2Gi", described)
    assert code == 1
    cause = top_cause(results)
    assert cause["id"] == "calibration-oom", results["verdict"]
    assert "memory limit 2Gi" in cause["evidence"]
    assert "batch of 1180 surfaces" in cause["evidence"] and "3.1Gi" in cause["evidence"]
    for item in ("increase the memory limit", "batch size limits", "memory-based autoscaling"):
        assert item in cause["advice"]
    checks = {c["check"]: c for c in results["checks"]}
    assert checks["calibration pods"]["status"] == "fail"
    assert "batch_size=1180" in json.dumps(checks["OOM kills calibration-service"])


def test_forced_recalibration_needs_the_admin_token(lab: LabHandle) -> None:
    url = lab.lab.config.url("api") + "/v1/calibration/heston"
    body = {"symbol": "QQQ", "force": True}
    assert httpx.post(url, json=body, timeout=30).status_code == 401
    token = {"Authorization": f"Bearer {lab.exports['IRLIB_ADMIN_TOKEN']}"}
    resp = httpx.post(url, json=body, headers=token, timeout=30)
    assert resp.status_code == 201, resp.text
    assert resp.json()["calibration"]["converged"] and resp.json()["calibration"]["age_s"] < 5


@pytest.mark.parametrize("symbol", ["SPY;DROP TABLE calibrations", "", "spy$(reboot)"])
def test_a_malformed_symbol_is_refused_before_anything_runs(
    lab: LabHandle, tmp_path: Path, symbol: str
) -> None:
    result = irlib(
        "run", RUNBOOK, "--outputs", str(tmp_path), "-p", "symbol", symbol, env=lab.env
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "parameter symbol=" in result.stderr
    assert not any(tmp_path.iterdir())
