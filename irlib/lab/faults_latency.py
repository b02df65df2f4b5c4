"""The P2 "High Latency" faults: each slows the API (or threatens to) from where a real cause
would, under the load generator's steady traffic, so that Prometheus, pg_stat_statements,
pg_stat_activity, Redis INFO and `kubectl top` show it as in production.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import psycopg
import redis

from irlib.lab import procs
from irlib.lab.config import Control, read_control, update_control
from irlib.lab.fault_kit import (
    API_DEPLOYMENT,
    Fault,
    kube,
)
from irlib.lab.lab import Lab
from irlib.postgres.checks import IDLE_TX_S

FAULTS: list[Fault] = []  # this runbook's faults, in the order `irlib lab faults` lists them

P2_LATENCY = "p2_high_latency"
HOT_INDEX = "idx_orders_symbol_created_at"
HOT_INDEX_DDL = (
    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {HOT_INDEX} ON orders (symbol, created_at)"
)
LOCKED_TABLE = "orders"
HOLDER = "pg-holder"
FILL_PREFIX = "lab:fill:"
FILL_KEYS = 6000
FILL_VALUE = b"x" * 1024


def _sql(lab: Lab, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(lab.config.postgres_dsn, autocommit=True, connect_timeout=3) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


# -- slow-query: the hot "recent orders of a symbol" query loses its index ---------------------


def _index_exists(lab: Lab) -> bool:
    return bool(_sql(lab, "SELECT 1 FROM pg_indexes WHERE indexname = %s", (HOT_INDEX,)))


# The API's scans of the hot query, as pg_stat_activity shows them while the index is gone.
HOT_SCANS = (
    "FROM pg_stat_activity WHERE application_name = 'api-service' AND state = 'active' "
    "AND query LIKE '%FROM orders WHERE%symbol =%'"
)


def _clear_slow_query(lab: Lab) -> None:
    # an index with the same columns made by the runbook's fix counts as healed
    covered = _sql(
        lab,
        "SELECT 1 FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE t.relname = 'orders' AND i.indisvalid AND pg_get_indexdef(i.indexrelid) "
        "LIKE '%(symbol, created_at)'",
    )
    if covered:
        return
    # The lab's reset, not the runbook's fix (that one builds the index under the load, as
    # production would): behind the dashboard's pile of 2M-row scans the build takes a minute
    # on two cores; with the polls paused and the scans already running cancelled, seconds.
    update_control(lab.config, lambda c: c.update({"dashboard_paused": True}))
    try:
        _cancel_hot_scans(lab)
        _sql(lab, HOT_INDEX_DDL)
    finally:
        update_control(lab.config, lambda c: c.pop("dashboard_paused", None))


def _cancel_hot_scans(lab: Lab, timeout: float = 20.0) -> None:
    """Cancel the API's running scans until none is left: each cancel lets a request still
    queued for the pool start another, until the queue the paused dashboard left is empty."""
    deadline = time.monotonic() + timeout
    while _sql(lab, f"SELECT pg_cancel_backend(pid) {HOT_SCANS}") and time.monotonic() < deadline:
        time.sleep(0.2)


FAULTS.append(
    Fault(
        "slow-query",
        f"index {HOT_INDEX} dropped: the API's hot orders query scans 2M rows",
        lambda lab: _sql(lab, f"DROP INDEX IF EXISTS {HOT_INDEX}"),
        _clear_slow_query,
        lambda lab: not _index_exists(lab),
        runbook=P2_LATENCY,
    )
)


# -- lock-contention: a batch job holds ACCESS EXCLUSIVE on orders, idle in transaction -------


def _blocked_backends(lab: Lab) -> int:
    rows = _sql(
        lab,
        "SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0",
    )
    return int(rows[0][0])


def _inject_lock(lab: Lab) -> None:
    update_control(lab.config, lambda c: c.update({"lock_contention": {"table": LOCKED_TABLE}}))
    lab.spawn_python(HOLDER, "irlib.lab.pg_holder")


def _clear_lock(lab: Lab) -> None:
    update_control(lab.config, lambda c: c.pop("lock_contention", None))
    procs.stop_pid(lab.pid_file(HOLDER))  # it rolls back on its own within 0.5 s; make sure


FAULTS.append(
    Fault(
        "lock-contention",
        f"a batch session idle in transaction holds ACCESS EXCLUSIVE on {LOCKED_TABLE}: "
        "the API's order queries wait on it",
        _inject_lock,
        _clear_lock,
        lambda lab: _blocked_backends(lab) > 0,
        runbook=P2_LATENCY,
    )
)


# -- connection-exhaustion: the api leaks its pool's connections into open transactions -------


def _leaked(lab: Lab) -> int:
    """The api's sessions left in a transaction long enough for the runbook to count them (a
    faster machine would otherwise start the runbook while the leak is younger than that)."""
    rows = _sql(
        lab,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND state = 'idle in transaction' AND now() - xact_start >= make_interval(secs => %s)",
        (API_DEPLOYMENT, IDLE_TX_S),
    )
    return int(rows[0][0])


FAULTS.append(
    Fault(
        "connection-exhaustion",
        "api-service leaks its pool's connections into transactions it never ends: "
        "requests wait for a connection",
        lambda lab: update_control(
            lab.config, lambda c: c.update({"connection_leak": {"since": time.time()}})
        ),
        lambda lab: update_control(lab.config, lambda c: c.pop("connection_leak", None)),
        lambda lab: _leaked(lab) >= 10,
        runbook=P2_LATENCY,
    )
)


# -- redis-memory-pressure: maxmemory just under what is stored, evictions climbing ------------


def _redis(lab: Lab) -> redis.Redis:
    return redis.Redis.from_url(lab.config.redis_url, socket_timeout=3)


def _inject_redis_pressure(lab: Lab) -> None:
    with _redis(lab) as r:
        before = r.config_get("maxmemory*")
        update_control(
            lab.config,
            lambda c: c.update(
                {
                    "redis_memory_pressure": {
                        "maxmemory": before.get("maxmemory", "0"),
                        "policy": before.get("maxmemory-policy", "noeviction"),
                    }
                }
            ),
        )
        pipe = r.pipeline(transaction=False)
        for i in range(FILL_KEYS // 2):
            pipe.set(f"{FILL_PREFIX}{i}", FILL_VALUE)
        pipe.execute()
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory-policy", "allkeys-lru")
        r.config_set("maxmemory", str(used + 512 * 1024))
        for i in range(FILL_KEYS // 2, FILL_KEYS):  # past maxmemory: evictions start now
            pipe.set(f"{FILL_PREFIX}{i}", FILL_VALUE)
        pipe.execute()


def _clear_redis_pressure(lab: Lab) -> None:
    saved = read_control(lab.config).get("redis_memory_pressure") or {}
    with _redis(lab) as r:
        r.config_set("maxmemory", saved.get("maxmemory", "0"))
        r.config_set("maxmemory-policy", saved.get("policy", "noeviction"))
        keys = list(r.scan_iter(f"{FILL_PREFIX}*", count=1000))
        for i in range(0, len(keys), 1000):
            r.unlink(*keys[i : i + 1000])
        r.config_resetstat()  # evicted_keys back to 0, as after a restart
    update_control(lab.config, lambda c: c.pop("redis_memory_pressure", None))


def _redis_pressure_visible(lab: Lab) -> bool:
    with _redis(lab) as r:
        memory, stats = r.info("memory"), r.info("stats")
    limit = int(memory.get("maxmemory", 0))
    return bool(limit) and int(stats.get("evicted_keys", 0)) > 0


FAULTS.append(
    Fault(
        "redis-memory-pressure",
        "Redis at its maxmemory (allkeys-lru): keys evicted, the quote cache thrashes",
        _inject_redis_pressure,
        _clear_redis_pressure,
        _redis_pressure_visible,
        runbook=P2_LATENCY,
    )
)


# -- cpu-saturation and memory-leak: what the metrics API reports for api-service's pods -------


def _api_pods_top(lab: Lab) -> list[dict[str, Any]]:
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{lab.config.namespace}/pods"
    items = kube(lab, "GET", path + f"?labelSelector=app%3D{API_DEPLOYMENT}").json()["items"]
    return [c["usage"] for m in items for c in m["containers"]]


def _cpu_saturated(lab: Lab) -> bool:
    usage = _api_pods_top(lab)
    return bool(usage) and all(int(u["cpu"].rstrip("n")) >= 900_000_000 for u in usage)


def _memory_high(lab: Lab) -> bool:
    usage = _api_pods_top(lab)
    # 1Gi limit: 85% of it in KiB
    return bool(usage) and all(int(u["memory"].rstrip("Ki")) >= 0.85 * 2**20 for u in usage)


Switch = Literal["cpu_saturation", "memory_leak"]  # control.json keys read by kube/metrics.py


def _switch(key: Switch, value: Any) -> Any:
    def on(c: Control) -> None:
        c[key] = {API_DEPLOYMENT: value}

    def inject(lab: Lab) -> None:
        update_control(lab.config, on)

    return inject


def _unswitch(key: Switch) -> Any:
    def clear(lab: Lab) -> None:
        update_control(lab.config, lambda c: c.pop(key, None))

    return clear


FAULTS.append(
    Fault(
        "cpu-saturation",
        "api-service pods pinned at their CPU limit: throttled, every request seconds slower",
        _switch("cpu_saturation", True),
        _unswitch("cpu_saturation"),
        _cpu_saturated,
        runbook=P2_LATENCY,
    )
)


def _inject_leak(lab: Lab) -> None:
    _switch("memory_leak", time.time())(lab)


FAULTS.append(
    Fault(
        "memory-leak",
        "api-service pods' memory climbing toward their limit",
        _inject_leak,
        _unswitch("memory_leak"),
        _memory_high,
        runbook=P2_LATENCY,
    )
)
