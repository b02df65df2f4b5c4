"""The P2 verdict, the index suggestion, the PromQL it sends and the mitigations' own
validation: pure functions, no lab (a closed port proves that no SQL was attempted)."""

from __future__ import annotations

from typing import Any

import pytest

from irlib.errors import UsageError
from irlib.guard import parse_mitigation_id
from irlib.postgres import mitigations as pg_fix
from irlib.postgres.checks import statements_status, suggest_index
from irlib.profile import profile_from_dict
from irlib.prom.checks import quantile_query
from irlib.results import Check, Health, Status
from irlib.runbooks import get_scenario
from irlib.runbooks.p2_high_latency import diagnose

PROFILE = profile_from_dict(
    {
        "name": "t",
        "kubernetes": {},
        "api": {"url": "http://127.0.0.1:1"},
        "broker": {"url": "http://127.0.0.1:1"},
        "market_data": {"url": "http://127.0.0.1:1"},
        "postgres": {"dsn": "postgresql://postgres@127.0.0.1:1/x"},
        "redis": {"url": "redis://127.0.0.1:1/0"},
        "prometheus": {"url": "http://127.0.0.1:1"},
    }
)
CLOSED_DSN = "postgresql://postgres@127.0.0.1:1/nothing"  # connecting would fail differently
ORDERS_SQL = (
    "SELECT id, symbol FROM orders WHERE $3 AND symbol = $1 AND created_at > now() - "
    "interval '1 hour' ORDER BY created_at DESC LIMIT $2"
)


def check(name: str, status: Status = Status.OK, **facts: Any) -> Check:
    return Check(name, "t", status, name, facts=facts)


def healthy_checks() -> dict[str, Check]:
    pods = [
        {
            "pod": f"api-service-{i}",
            "app": "api-service",
            "cpu_m": 120,
            "memory_mi": 300,
            "cpu_of_limit": 0.12,
            "memory_of_limit": 0.3,
        }
        for i in range(3)
    ]
    return {
        "api latency": check("api latency", p99_s=0.05, high=False),
        "top statements": check("top statements", slow=[], statements=[]),
        "active queries": check("active queries", idle_in_transaction=[], long=[]),
        "blocking locks": check("blocking locks", blockers=[], waiting=0),
        "top pods": check("top pods", rows=pods, hot=[]),
        "database connections": check(
            "database connections", connections=12, max_connections=100, by_state={}
        ),
        "redis memory": check("redis memory", pressure=False),
        "api pool": check("api pool", exhausted=False, pool={"in_use": 1, "max_size": 20}),
    }


def statement(
    *,
    share: float,
    recent_mean_ms: float,
    earlier_mean_ms: float | None,
    scan_rows: int | None = 2_000_000,
    existing: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A hot statement as check_top_statements records it: its sample, plan and index."""
    scans = [] if scan_rows is None else [{"table": "orders", "rows": scan_rows, "filter": "x"}]
    return {
        "query": ORDERS_SQL,
        "calls": 900,
        "max_ms": recent_mean_ms * 2,
        "mean_ms": earlier_mean_ms or recent_mean_ms,
        "recent_calls": 12,
        "recent_mean_ms": recent_mean_ms,
        "recent_total_ms": 12 * recent_mean_ms,
        "earlier_mean_ms": earlier_mean_ms,
        "growth": round(recent_mean_ms / earlier_mean_ms, 1) if earlier_mean_ms else None,
        "share": share,
        "plan": {"node": "Limit", "seq_scans": scans},
        "suggested_index": {
            "table": "orders",
            "columns": ["symbol", "created_at"],
            "existing": list(existing),
        },
    }


def with_statement(c: dict[str, Check], row: dict[str, Any]) -> None:
    c["top statements"] = check("top statements", Status.WARN, hot=[row], slow=[])


def slow_query(c: dict[str, Check]) -> None:
    with_statement(c, statement(share=0.97, recent_mean_ms=310.0, earlier_mean_ms=0.2))


def lock_contention(c: dict[str, Check]) -> None:
    c["blocking locks"] = check(
        "blocking locks",
        Status.FAIL,
        waiting=4,
        blockers=[
            {
                "pid": 4242,
                "application_name": "nightly-report",
                "state": "idle in transaction",
                "xact_s": 9.0,
                "root": True,
                "waiters": 4,
                "query": "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE",
            }
        ],
    )


def connection_exhaustion(c: dict[str, Check]) -> None:
    idle = [
        {"pid": 500 + i, "application_name": "api-service", "state": "idle in transaction"}
        for i in range(20)
    ]
    c["active queries"] = check("active queries", Status.WARN, idle_in_transaction=idle, long=[])
    c["api pool"] = check(
        "api pool",
        Status.FAIL,
        exhausted=True,
        pool={"in_use": 20, "max_size": 20, "waiting": 4},
    )
    c["api latency"] = check("api latency", Status.FAIL, p99_s=9.0, high=True)


def redis_memory_pressure(c: dict[str, Check]) -> None:
    c["redis memory"] = check("redis memory", Status.WARN, pressure=True)


def _pods(key: str, value: float) -> list[dict[str, Any]]:
    return [
        {
            "pod": f"api-service-{i}",
            "app": "api-service",
            "cpu_m": 980,
            "memory_mi": 990,
            "cpu_of_limit": 0.1,
            "memory_of_limit": 0.3,
            key: value,
        }
        for i in range(3)
    ]


def cpu_saturation(c: dict[str, Check]) -> None:
    c["top pods"] = check("top pods", Status.WARN, rows=_pods("cpu_of_limit", 0.98))
    c["api latency"] = check("api latency", Status.FAIL, p99_s=6.5, high=True)


def memory_leak(c: dict[str, Check]) -> None:
    c["top pods"] = check("top pods", Status.WARN, rows=_pods("memory_of_limit", 0.93))


CASES = {
    "slow-query": (slow_query, ["create-index:orders(symbol,created_at)"]),
    "lock-contention": (lock_contention, ["terminate:4242"]),
    "connection-exhaustion": (connection_exhaustion, [f"terminate:{500 + i}" for i in range(20)]),
    "redis-memory-pressure": (redis_memory_pressure, []),
    "cpu-saturation": (cpu_saturation, ["scale:api-service=6"]),
    "memory-leak": (memory_leak, ["restart:api-service"]),
}


@pytest.mark.parametrize("cause", list(CASES), ids=list(CASES))
def test_each_cause_alone_tops_the_verdict_with_its_fix(cause: str) -> None:
    checks = healthy_checks()
    make, fixes = CASES[cause]
    make(checks)
    verdict = diagnose(checks, PROFILE)
    assert verdict.state is Health.DEGRADED and verdict.severity == "P2"
    assert verdict.top_cause is not None and verdict.top_cause.id == cause
    assert list(verdict.top_cause.mitigations) == fixes
    for mid in fixes:
        parse_mitigation_id(mid)  # every recommended id is one the guard accepts


def test_no_cause_is_healthy() -> None:
    verdict = diagnose(healthy_checks(), PROFILE)
    assert verdict.state is Health.HEALTHY and not verdict.causes and verdict.severity is None


def test_slow_api_without_an_explanation_is_unknown() -> None:
    checks = healthy_checks()
    checks["api latency"] = check("api latency", Status.FAIL, p99_s=7.0, high=True)
    verdict = diagnose(checks, PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.id == "unknown"


def test_one_call_grown_on_a_busy_machine_is_no_slow_statement() -> None:
    # seen on a healthy lab beside a CPU hog: the dashboard's aggregate, called once in the
    # sample, took 61 ms (6.9x its mean) and was 65% of a calm database's time
    checks = healthy_checks()
    row = statement(
        share=0.65, recent_mean_ms=61.3, earlier_mean_ms=8.9, existing=("idx_orders_symbol",)
    )
    with_statement(checks, {**row, "recent_calls": 1, "recent_total_ms": 61.3})
    assert diagnose(checks, PROFILE).state is Health.HEALTHY
    with_statement(checks, {**row, "recent_calls": 3, "recent_total_ms": 3 * 61.3})
    assert diagnose(checks, PROFILE).top_cause is not None


def test_one_call_of_a_scan_missing_its_index_is_the_slow_query_on_a_slow_machine() -> None:
    # seen in a fault drill beside a CPU hog: the slow-query fault's scan took 2.7 s, so one
    # call completed in the 2 s sample, while the full pool made connection-exhaustion a cause
    checks = healthy_checks()
    connection_exhaustion(checks)
    checks["active queries"] = check("active queries", idle_in_transaction=[], long=[])
    row = statement(share=0.989, recent_mean_ms=2730.4, earlier_mean_ms=36.8)
    with_statement(checks, {**row, "recent_calls": 1, "recent_total_ms": 2730.4})
    top = diagnose(checks, PROFILE).top_cause
    assert top is not None and top.id == "slow-query", top
    assert top.mitigations == ("create-index:orders(symbol,created_at)",)


def test_a_slow_statement_whose_index_exists_recommends_analyze() -> None:
    checks = healthy_checks()
    row = statement(
        share=0.9, recent_mean_ms=150.0, earlier_mean_ms=1.0, existing=("idx_orders_symbol",)
    )
    with_statement(checks, row)
    verdict = diagnose(checks, PROFILE)
    assert verdict.top_cause is not None and verdict.top_cause.mitigations == ("analyze:orders",)


def top_id(row: dict[str, Any]) -> str | None:
    checks = healthy_checks()
    with_statement(checks, row)
    top = diagnose(checks, PROFILE).top_cause
    return top.id if top else None


def test_a_statement_fast_in_absolute_terms_but_taking_the_databases_time_is_the_cause() -> None:
    # 4 ms is under the 25 ms threshold: on a fast machine a 2M-row scan is quick, yet it takes
    # 85% of the database's time and its plan scans the table where an index is missing
    row = statement(share=0.85, recent_mean_ms=4.0, earlier_mean_ms=None)
    assert row["recent_mean_ms"] < PROFILE.thresholds.db_statement_mean_ms
    assert top_id(row) == "slow-query"
    # so is one that grew 20x against its own earlier mean, though not dominant yet
    assert top_id(statement(share=0.3, recent_mean_ms=4.0, earlier_mean_ms=0.2)) == "slow-query"


def test_a_statement_slow_in_absolute_terms_but_a_small_share_of_the_time_is_not() -> None:
    # a rare 80 ms report query, 3% of the database's time, no faster or slower than before
    row = statement(share=0.03, recent_mean_ms=80.0, earlier_mean_ms=78.0)
    assert row["recent_mean_ms"] > PROFILE.thresholds.db_statement_mean_ms
    assert top_id(row) is None


def test_a_dominant_statement_whose_plan_uses_an_index_or_scans_a_small_table_is_not() -> None:
    assert (
        top_id(statement(share=0.9, recent_mean_ms=30.0, earlier_mean_ms=1.0, scan_rows=None))
        is None
    )
    assert (
        top_id(statement(share=0.9, recent_mean_ms=30.0, earlier_mean_ms=1.0, scan_rows=5000))
        is None
    )


def test_without_a_plan_share_and_the_missing_index_still_name_the_cause() -> None:
    row = statement(share=0.9, recent_mean_ms=30.0, earlier_mean_ms=1.0)
    row["plan"] = {"error": "permission denied"}
    checks = healthy_checks()
    with_statement(checks, row)
    top = diagnose(checks, PROFILE).top_cause
    assert top is not None and top.id == "slow-query" and "plan unavailable" in top.evidence


def test_a_pool_waiting_on_another_apps_lock_is_lock_contention_first() -> None:
    # the lab's pair lock-contention + redis-memory-pressure: the pool fills with queries that
    # wait on nightly-report's lock; redis-memory-pressure must still come second
    checks = healthy_checks()
    lock_contention(checks)
    redis_memory_pressure(checks)
    checks["api pool"] = check(
        "api pool", Status.FAIL, exhausted=True, pool={"in_use": 20, "max_size": 20, "waiting": 50}
    )
    checks["active queries"] = check(
        "active queries",
        idle_in_transaction=[
            {"pid": 4242, "application_name": "nightly-report", "state": "idle in transaction"}
        ],
        long=[],
    )
    verdict = diagnose(checks, PROFILE)
    assert [c.id for c in verdict.causes[:2]] == ["lock-contention", "redis-memory-pressure"]
    # terminating nightly-report's session frees none of the api pool's connections: the
    # lock holder is lock-contention's to terminate, connection-exhaustion recommends nothing
    exhaustion = next(c for c in verdict.causes if c.id == "connection-exhaustion")
    assert exhaustion.mitigations == ()
    assert "terminate:4242" in verdict.causes[0].mitigations


def test_a_pool_full_of_busy_connections_is_not_connection_exhaustion() -> None:
    # a slow query fills the api's pool with active queries: the statement is the cause
    checks = healthy_checks()
    slow_query(checks)
    checks["api pool"] = check(
        "api pool", Status.FAIL, exhausted=True, pool={"in_use": 20, "max_size": 20, "waiting": 90}
    )
    verdict = diagnose(checks, PROFILE)
    assert [c.id for c in verdict.causes[:2]] == ["slow-query", "connection-exhaustion"]


@pytest.mark.parametrize(
    ("sql", "wanted"),
    [
        (ORDERS_SQL, ("orders", ["symbol", "created_at"])),
        (
            "SELECT * FROM ticks WHERE symbol = $1 ORDER BY ts DESC LIMIT $2",
            ("ticks", ["symbol", "ts"]),
        ),
        (
            "SELECT symbol, max(ts) FROM ticks WHERE ts > now() - interval $1 GROUP BY symbol",
            ("ticks", ["ts"]),
        ),
        ("SELECT a.x FROM a JOIN b ON a.id = b.id WHERE b.y = $1", None),
        ("SELECT id FROM strategies ORDER BY id", None),
        ("UPDATE orders SET state = $1 WHERE id = $2", None),
    ],
    ids=["orders", "eq-then-order", "range", "join", "no-filter", "not-select"],
)
def test_suggest_index_puts_equality_columns_first(sql: str, wanted: Any) -> None:
    assert suggest_index(sql) == wanted


def _sampled(calls: int, mean_ms: float, share: float) -> dict[str, Any]:
    return {
        "query": "SELECT symbol, max(ts) FROM market_data_ticks GROUP BY symbol",
        "recent_calls": calls,
        "recent_mean_ms": mean_ms,
        "recent_total_ms": calls * mean_ms,
        "share": share,
    }


def test_one_slow_call_on_a_busy_machine_is_no_slow_statement() -> None:
    # seen on a healthy lab beside a CPU hog: one 28 ms call was 90% of a calm database's time
    assert statements_status([_sampled(1, 28.4, 0.9)], slow_ms=25, min_calls=3)[0] is Status.OK
    status, summary, _ = statements_status([_sampled(3, 50.0, 0.9)], slow_ms=25, min_calls=3)
    assert status is Status.WARN and "90% of the database's time, 50.0 ms mean" in summary
    assert statements_status([_sampled(40, 20.0, 0.9)], slow_ms=25, min_calls=3)[0] is Status.OK


def test_a_hot_statement_scanning_without_its_index_warns_however_fast() -> None:
    row = {
        **_sampled(3, 1.0, 0.5),
        "suggested_index": {"table": "market_data_ticks", "columns": ["ts"], "existing": []},
        "plan": {"seq_scans": [{"table": "market_data_ticks", "rows": 2_000_000}]},
    }
    status, summary, _ = statements_status([row], slow_ms=25, min_calls=3)
    assert status is Status.WARN and "without the index it wants" in summary


def test_quantile_query_is_the_seeds_promql_and_refuses_odd_input() -> None:
    assert quantile_query("http_request_duration_seconds", 0.99, "5m", "api-service", "route") == (
        "histogram_quantile(0.99, sum by (le, route) "
        '(rate(http_request_duration_seconds_bucket{job="api-service"}[5m])))'
    )
    for bad in ("5", "5m]) or vector(1", "0s", "1d"):
        with pytest.raises(ValueError):
            quantile_query("m", 0.99, bad, None)
    with pytest.raises(ValueError):
        quantile_query("m", 0.99, "5m", 'x"} or {job="y')


EVIL = ["orders; DROP TABLE orders", 'orders"', "orders--", "", "1orders", "a" * 64, "or ders"]


@pytest.mark.parametrize("table", EVIL, ids=range(len(EVIL)))
def test_mitigation_functions_validate_identifiers_before_connecting(table: str) -> None:
    for call in (
        lambda: pg_fix.plan_create_index(CLOSED_DSN, table, ["symbol"]),
        lambda: pg_fix.apply_create_index(CLOSED_DSN, table, ["symbol"]),
        lambda: pg_fix.plan_create_index(CLOSED_DSN, "orders", ["symbol", table]),
        lambda: pg_fix.apply_create_index(CLOSED_DSN, "orders", [table]),
        lambda: pg_fix.plan_analyze(CLOSED_DSN, table),
        lambda: pg_fix.apply_analyze(CLOSED_DSN, table),
    ):
        with pytest.raises(UsageError, match="refused"):
            call()


@pytest.mark.parametrize("pid", ["1 OR 1=1", "0", "-1", "1;SELECT 1", 1.5, True, "99999999999"])
def test_mitigation_functions_validate_pids_before_connecting(pid: Any) -> None:
    with pytest.raises(UsageError, match="refused"):
        pg_fix.plan_terminate(CLOSED_DSN, pid)
    with pytest.raises(UsageError, match="refused"):
        pg_fix.apply_terminate(CLOSED_DSN, pid)


def test_scenario_is_registered_with_read_only_steps() -> None:
    s = get_scenario("p2_high_latency")
    assert s.read_only_steps == ("identify_bottleneck", "resource_utilization")
    assert s.diagnose_fn() is diagnose
