"""The P1 Execution Failures verdict and checklist as pure functions: facts in, causes out."""

from __future__ import annotations

from typing import Any

import pytest

from irlib.checklist import Checklist
from irlib.errors import UsageError
from irlib.profile import (
    HttpTarget,
    KubernetesTarget,
    PostgresTarget,
    Profile,
    PrometheusTarget,
    RedisTarget,
)
from irlib.reconciliation import reconcile, unreported_fills
from irlib.results import Check, Health, Status
from irlib.runbooks.p1_execution_failures import (
    CHECKLIST,
    diagnose,
    reconciliation_check,
    submission_stopped,
    validate_parameters,
)

PROFILE = Profile(
    name="test",
    kubernetes=KubernetesTarget(),
    api=HttpTarget("http://api.invalid", token_env="IRLIB_ADMIN_TOKEN"),
    broker=HttpTarget("http://broker.invalid", token_env="IRLIB_BROKER_TOKEN"),
    market_data=HttpTarget("http://md.invalid"),
    postgres=PostgresTarget("postgresql://x@db.invalid/trading"),
    redis=RedisTarget("redis://redis.invalid"),
    prometheus=PrometheusTarget("http://prom.invalid"),
)


def check(name: str, status: Status = Status.OK, **facts: Any) -> Check:
    return Check(name, "t", status, name, facts=facts)


def healthy_checks() -> dict[str, Check]:
    recon = reconciliation_check(reconcile([], [], {}))
    checks = [
        check("strategies", running=["a"], paused=[], all_paused=False),
        check("broker status", reachable=True, http_status=200),
        check("broker auth test", http_status=200, auth_refused=False),
        check("broker latency", latency_s=0.01, max_s=0.5, slow=False),
        check("order rejections", Status.WARN, rejecting_now=False, recent_rejected=1, recent=10),
        check("execution-service logs", matching=3, errors=0, last_lines=[]),
        check("pods", crashlooping=[], not_ready=[]),
        check("pending orders", Status.WARN, count=7, old=7),
        recon,
    ]
    return {c.name: c for c in checks}


def with_(checks: dict[str, Check], *changed: Check) -> dict[str, Check]:
    return {**checks, **{c.name: c for c in changed}}


def test_no_problem_is_healthy_even_with_warnings() -> None:
    verdict = diagnose(healthy_checks(), PROFILE)
    assert verdict.state is Health.HEALTHY and verdict.causes == () and verdict.severity is None


def test_a_check_that_could_not_find_out_is_not_healthy() -> None:
    verdict = diagnose(
        with_(healthy_checks(), check("broker auth test", Status.ERROR, timed_out=True)), PROFILE
    )
    assert verdict.state is Health.DEGRADED and "could not check" in verdict.summary


FAULT_CHECKS = {
    "broker-auth-failure": [
        check("broker auth test", Status.FAIL, http_status=401, auth_refused=True),
        check("order rejections", Status.ERROR, http_status=401, auth_refused=True),
    ],
    "broker-rejects": [
        check(
            "order rejections",
            Status.FAIL,
            rejecting_now=True,
            recent_rejected=9,
            recent=10,
            top_reason="risk check failed",
        ),
    ],
    "broker-latency": [
        check("broker latency", Status.FAIL, latency_s=1.2, max_s=0.5, slow=True),
    ],
    "execution-service-crash": [
        check(
            "pods",
            Status.FAIL,
            crashlooping=[
                {
                    "pod": "execution-service-x",
                    "app": "execution-service",
                    "restarts": 3,
                    "status": "CrashLoopBackOff",
                    "last_state": "Error",
                }
            ],
        ),
    ],
    "broker-down": [check("broker status", Status.FAIL, reachable=False)],
}


@pytest.mark.parametrize("fault", list(FAULT_CHECKS), ids=list(FAULT_CHECKS))
def test_each_cause_is_named_after_its_fault(fault: str) -> None:
    verdict = diagnose(with_(healthy_checks(), *FAULT_CHECKS[fault]), PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.id == fault
    assert verdict.severity == "P1" and "pause-all" in verdict.mitigations
    down = fault in ("broker-auth-failure", "execution-service-crash", "broker-down")
    assert verdict.state is (Health.DOWN if down else Health.DEGRADED)


def test_crash_loops_of_another_app_are_not_an_execution_service_crash() -> None:
    other = check(
        "pods",
        Status.FAIL,
        crashlooping=[
            {
                "pod": "api-service-x",
                "app": "api-service",
                "restarts": 3,
                "status": "CrashLoopBackOff",
                "last_state": "Error",
            }
        ],
    )
    verdict = diagnose(with_(healthy_checks(), other), PROFILE)
    assert verdict.causes == () and verdict.state is Health.DEGRADED


def test_a_hung_broker_is_named_latency_with_less_confidence() -> None:
    hung = [
        check("broker latency", Status.ERROR, timed_out=True),
        check("broker status", Status.ERROR, timed_out=True),
    ]
    verdict = diagnose(with_(healthy_checks(), *hung), PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.id == "broker-latency"
    assert verdict.top_cause.score < 0.85


def _recon(broker: list, internal: list, fills: list) -> Check:
    prices = {"AAPL": 200.0, "MSFT": 400.0}
    return reconciliation_check(reconcile(broker, internal, prices, unreported_fills(fills, set())))


def _pos(symbol: str, qty: int) -> dict:
    return {"account": "A", "symbol": symbol, "qty": qty}


def _fill(symbol: str, qty: int) -> dict:
    return {
        "fill_id": f"FILL-{symbol}",
        "order_id": f"BRK-{symbol}",
        "client_order_id": None,
        "account_id": "A",
        "symbol": symbol,
        "side": "buy",
        "qty": qty,
        "price": 1.0,
    }


def test_mismatches_explained_by_unreported_fills_are_missing_reports_only() -> None:
    recon = _recon([_pos("MSFT", 140)], [_pos("MSFT", 100)], [_fill("MSFT", 40)])
    assert recon.status is Status.FAIL
    verdict = diagnose(with_(healthy_checks(), recon), PROFILE)
    assert [c.id for c in verdict.causes] == ["missing-execution-reports"]


def test_an_unexplained_mismatch_is_a_position_mismatch() -> None:
    recon = _recon(
        [_pos("MSFT", 140), _pos("AAPL", 5)],
        [_pos("MSFT", 100), _pos("AAPL", 7)],
        [_fill("MSFT", 40)],
    )
    verdict = diagnose(with_(healthy_checks(), recon), PROFILE)
    assert {c.id for c in verdict.causes} == {"missing-execution-reports", "position-mismatch"}
    mismatch = next(c for c in verdict.causes if c.id == "position-mismatch")
    assert "AAPL" in mismatch.evidence and "MSFT" not in mismatch.evidence


def test_checklist_records_every_change_and_refuses_unknown_items() -> None:
    records: list[tuple[str, dict]] = []
    changed: list[int] = []
    cl = Checklist(
        "Resolution Checklist",
        CHECKLIST,
        lambda k, d: records.append((k, d)),
        "alice",
        on_change=lambda: changed.append(1),
        done={"pnl": True},
    )
    assert records[-1][1]["done"] == 1 and records[-1][1]["how"] == "parameter"
    cl.tick("orders")
    cl.tick("orders")  # no change, no record
    assert len(records) == 2 and records[-1][0] == "checklist" and changed == [1]
    assert [i["id"] for i in records[-1][1]["items"] if i["done"]] == ["orders", "pnl"]
    assert "[x] P&L verified" in repr(cl) and "[ ] Root cause identified" in repr(cl)
    with pytest.raises(UsageError, match="root-cause"):
        cl.tick("lunch")
    with pytest.raises(UsageError, match="lunch"):
        validate_parameters({"checklist": ["lunch"]})


def test_checkboxes_tick_the_checklist() -> None:
    records: list[tuple[str, dict]] = []
    cl = Checklist("R", CHECKLIST, lambda k, d: records.append((k, d)), "bob")
    box = cl.checkboxes().children[1]
    box.value = True  # what a click does
    assert cl.done["positions"] is True and records[-1][1]["by"] == "bob"


def test_order_submission_is_stopped_by_a_pause_or_a_scale_to_zero() -> None:
    running = check("strategies", running=["a", "b"], all_paused=False)
    paused = check("strategies", running=[], all_paused=True)
    up = check("execution-service replicas", stopped=False)
    down = check("execution-service replicas", stopped=True)
    assert submission_stopped(paused, up).status is Status.OK
    assert submission_stopped(running, down).status is Status.OK
    not_stopped = submission_stopped(running, up)
    assert not_stopped.status is Status.WARN and "a, b" in not_stopped.summary
    unknown = submission_stopped(check("strategies", Status.ERROR), check("r", Status.ERROR))
    assert unknown.status is Status.ERROR
