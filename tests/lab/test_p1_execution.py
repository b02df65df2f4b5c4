"""P1 "Execution Failures" end to end: `irlib run p1_execution_failures` against the lab.

Each run is a real papermill execution of notebooks/p1_execution_failures.ipynb against the
lab's real broker, PostgreSQL, Kubernetes API and execution-service process; what a run must
or must not change is checked with direct SQL and HTTP calls, never through irlib.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from irlib.lab.faults_execution import MISMATCH_ACCOUNT, MISMATCH_DELTAS, P1_EXECUTION
from tests.helpers import LabHandle, irlib, run_runbook
from tests.lab.test_p1_runbook import hung_broker_profile, top_cause

RUNBOOK = P1_EXECUTION


def run(
    lab: LabHandle, outputs: Path, *args: str, profile: str | None = None, timeout: float = 240
) -> tuple[int, Path | None, dict[str, Any]]:
    return run_runbook(lab, RUNBOOK, outputs, *args, profile=profile, timeout=timeout)


def sql(lab: LabHandle, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(lab.lab.config.postgres_dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def broker_get(lab: LabHandle, path: str) -> Any:
    resp = httpx.get(
        lab.lab.config.url("broker") + path,
        headers={"Authorization": f"Bearer {lab.exports['IRLIB_BROKER_TOKEN']}"},
        timeout=10,
    )
    resp.raise_for_status()
    return resp.json()


def admin_post(lab: LabHandle, path: str) -> None:
    resp = httpx.post(
        lab.lab.config.url("api") + path,
        headers={"Authorization": f"Bearer {lab.exports['IRLIB_ADMIN_TOKEN']}"},
        timeout=10,
    )
    resp.raise_for_status()


def books(lab: LabHandle) -> dict[str, Any]:
    """Everything a reconciliation could write: row counts and checksums of both books."""
    return (
        {
            table: sql(
                lab, f"SELECT count(*), coalesce(sum(qty), 0), max(updated_at) FROM {table}"
            )[0]
            for table in ("positions", "broker.positions", "broker.orders")
        }
        | {
            table: sql(lab, f"SELECT count(*) FROM {table}")[0]
            for table in ("execution_reports", "broker.fills", "orders")
        }
        | {"broker cash": sql(lab, "SELECT sum(cash) FROM broker.accounts")[0]}
    )


@pytest.fixture
def quiet_flow(lab: LabHandle) -> Iterator[None]:
    """Strategies paused (set up directly in the database, not by the runbook) so that the
    execution-service sends nothing: both books hold still while a test compares them."""
    sql(lab, "UPDATE strategies SET paused = true")
    time.sleep(1.5)  # an order already on its way lands
    try:
        yield
    finally:
        sql(lab, "UPDATE strategies SET paused = false")


def checks(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in results["checks"]}


def test_no_fault_gives_a_healthy_verdict_and_records_the_checklist(
    lab: LabHandle, tmp_path: Path
) -> None:
    code, run_dir, results = run(lab, tmp_path, "-p", "checklist", '["orders", "pnl"]')
    assert code == 0, results.get("verdict")
    assert results["verdict"]["state"] == "healthy" and results["verdict"]["causes"] == []
    assert {a["outcome"] for a in results["mitigations"]} == {"planned"}  # nothing ran
    checklist = results["checklist"]
    assert [i["id"] for i in checklist["items"] if i["done"]] == ["orders", "pnl"]
    assert checklist["done"] == 2 and checklist["total"] == 5 and not checklist["complete"]
    events = (run_dir / "events.jsonl").read_text()
    assert '"kind": "checklist"' in events
    notebook = (run_dir / "notebook.ipynb").read_text()
    assert "[x] All pending orders cancelled or confirmed" in notebook
    assert "[ ] Positions reconciled with broker" in notebook


def test_position_mismatch_lists_exactly_the_changed_symbols_and_writes_nothing(
    lab: LabHandle, tmp_path: Path, quiet_flow: None
) -> None:
    lab.irlib("lab", "inject", "position-mismatch", check=True)
    try:
        before = books(lab)
        code, _, results = run(lab, tmp_path)
        after = books(lab)
        broker_qty = {
            p["symbol"]: p["qty"]
            for p in broker_get(lab, f"/v1/accounts/{MISMATCH_ACCOUNT}/positions")["positions"]
        }
        internal_qty = dict(
            sql(lab, "SELECT symbol, qty FROM positions WHERE account = %s", (MISMATCH_ACCOUNT,))
        )
        broker_db = dict(
            sql(
                lab,
                "SELECT symbol, qty FROM broker.positions WHERE account_id = %s",
                (MISMATCH_ACCOUNT,),
            )
        )
    finally:
        lab.irlib("lab", "clear", check=True)
    assert code == 1 and top_cause(results) == "position-mismatch"
    assert after == before  # the reconciliation wrote to neither book
    recon = checks(results)["position reconciliation"]
    mismatches = recon["facts"]["mismatches"]
    assert {(m["account"], m["symbol"]) for m in mismatches} == {
        (MISMATCH_ACCOUNT, s) for s in MISMATCH_DELTAS
    }
    for m in mismatches:
        assert m["broker_qty"] == broker_qty[m["symbol"]] == broker_db[m["symbol"]]
        assert m["internal_qty"] == internal_qty[m["symbol"]]
        assert m["difference"] == -MISMATCH_DELTAS[m["symbol"]]
        assert m["value"] is not None
    table = recon["evidence"][0]["rows"]
    assert [r["status"] for r in table[: len(MISMATCH_DELTAS)]] == ["MISMATCH"] * 3  # first
    assert all(r["status"] != "MISMATCH" for r in table[len(MISMATCH_DELTAS) :])
    titles = [e["title"] for e in recon["evidence"]]
    assert any("MANUALLY VERIFY" in t for t in titles)


def test_missing_reports_are_listed_with_broker_ids_and_nothing_is_booked(
    lab: LabHandle, tmp_path: Path, quiet_flow: None
) -> None:
    lab.irlib("lab", "inject", "missing-execution-reports", check=True)
    try:
        before = books(lab)
        code, _, results = run(lab, tmp_path)
        after = books(lab)
        control = json.loads(Path(lab.state_dir, "control.json").read_text())
    finally:
        lab.irlib("lab", "clear", check=True)
    assert code == 1 and top_cause(results) == "missing-execution-reports"
    assert after == before
    recon = checks(results)["position reconciliation"]
    unreported = recon["facts"]["unreported"]
    ids = control["missing_reports"]["orders"]
    assert sorted(f["client_order_id"] for f in unreported) == sorted(f"ORD-{i}" for i in ids)
    assert all(f["broker_order_id"].startswith("BRK-") for f in unreported)
    # their position differences are explained by those fills: no separate mismatch cause
    assert recon["facts"]["unexplained"] == []


def _running(lab: LabHandle) -> list[tuple[str, bool]]:
    return sql(lab, "SELECT name, paused FROM strategies ORDER BY id")


def test_pause_all_only_when_confirmed_and_then_no_new_order_reaches_the_broker(
    lab: LabHandle, tmp_path: Path
) -> None:
    before = sql(lab, "SELECT name, paused, updated_at FROM strategies ORDER BY id")
    assert not any(paused for _, paused, _ in before)
    replicas = lab.kubectl(
        "get", "deployment", "execution-service", "-n", "trading", "-o",
        "jsonpath={.spec.replicas}",
    ).stdout  # fmt: skip

    code, _, results = run(lab, tmp_path / "unconfirmed")
    assert code == 0, results.get("verdict")
    assert sql(lab, "SELECT name, paused, updated_at FROM strategies ORDER BY id") == before
    assert {a["outcome"] for a in results["mitigations"]} == {"planned"}
    planned = {a["id"] for a in results["mitigations"]}
    assert {"pause-all", "scale:execution-service=0"} <= planned
    stopped = checks(results)["order submission stopped"]
    assert stopped["status"] == "warn" and "not stopped" in stopped["summary"]

    try:
        code, _, results = run(lab, tmp_path / "confirmed", "--confirm", "pause-all")
        assert code == 0, results.get("verdict")
        assert all(paused for _, paused in _running(lab)), _running(lab)
        executed = [a for a in results["mitigations"] if a["outcome"] == "executed"]
        assert [a["id"] for a in executed] == ["pause-all"]
        assert executed[0]["result"]["all_paused"] is True
        verified = [c for c in results["checks"] if c["check"] == "order submission stopped"]
        assert verified[-1]["status"] == "ok" and verified[-1]["facts"]["all_paused"] is True
        # the execution-service kept running (no scale), yet a new order goes nowhere
        assert lab.kubectl(
            "get", "deployment", "execution-service", "-n", "trading", "-o",
            "jsonpath={.spec.replicas}",
        ).stdout == replicas  # fmt: skip
        (order_id,) = sql(
            lab,
            "INSERT INTO orders (strategy_id, account, symbol, side, qty, state)"
            " VALUES (1, 'ACC-001', 'SPY', 'buy', 10, 'new') RETURNING id",
        )[0]
        time.sleep(4)  # several passes of the execution-service
        assert sql(lab, "SELECT state FROM orders WHERE id = %s", (order_id,)) == [("new",)]
        sent = broker_get(lab, "/v1/orders?limit=200")["orders"]
        assert f"ORD-{order_id}" not in {o["client_order_id"] for o in sent}
        assert not sql(
            lab, "SELECT 1 FROM broker.orders WHERE client_order_id = %s", (f"ORD-{order_id}",)
        )
        sql(lab, "UPDATE orders SET state = 'cancelled' WHERE id = %s", (order_id,))
    finally:
        admin_post(lab, "/v1/admin/resume-all")


def test_a_hung_broker_is_an_error_within_the_timeout_and_the_run_completes(
    lab: LabHandle, tmp_path: Path, silent_port: int
) -> None:
    profile = hung_broker_profile(lab, tmp_path, silent_port)
    t0 = time.monotonic()
    code, run_dir, results = run(lab, tmp_path, "-p", "timeout_s", "2", profile=profile)
    assert code == 1  # nothing could be found out about the broker: not healthy
    elapsed = time.monotonic() - t0
    assert run_dir is not None and results["status"] == "completed", results.get("reason")
    by_name = checks(results)
    for name in (
        "broker status",
        "broker auth test",
        "broker latency",
        "order rejections",
        "position reconciliation",
    ):
        assert by_name[name]["status"] == "error", by_name[name]
        assert by_name[name]["duration_s"] <= 2.5, by_name[name]
    assert by_name["strategies"]["status"] == "ok"  # the others still ran
    assert elapsed < 90


def test_an_unknown_checklist_item_is_refused_before_anything_runs(
    lab: LabHandle, tmp_path: Path
) -> None:
    result = irlib(
        "run", RUNBOOK, "--outputs", str(tmp_path), "-p", "checklist", '["pnl", "lunch"]',
        env=lab.env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "lunch" in result.stderr and "root-cause" in result.stderr
    assert not any(tmp_path.iterdir())
