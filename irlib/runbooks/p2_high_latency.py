"""P2: High Latency, the seed runbook's second scenario, step by step.

Symptoms: API response time > 5 s, dashboards slow, user complaints. The steps follow the seed:
identify the bottleneck (Prometheus, pg_stat_statements, pg_stat_activity, locks), check
resource utilization (pods against limits, database connections, Redis memory, the api's
pool), common fixes (guarded), then a verdict whose cause ids are the lab's latency faults.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from irlib.diagnosis import conclude
from irlib.guard import Plan, parse_mitigation_id
from irlib.http.checks import check_pool
from irlib.k8s import Kube
from irlib.k8s import checks as k8s
from irlib.k8s import mitigations as k8s_fix
from irlib.mitigation import MitigationPanel
from irlib.postgres import checks as pg
from irlib.postgres import mitigations as pg_fix
from irlib.profile import Profile
from irlib.prom.checks import check_latency
from irlib.redis.checks import check_memory
from irlib.results import Cause, Check, Verdict
from irlib.results import facts_of as _facts
from irlib.runbook import CheckSpec, Runbook, Step

MITIGATION_ACTIONS = ("create-index", "analyze", "terminate", "scale", "restart")
CPU_HOT = 0.9  # of the CPU limit: throttled
MEMORY_HOT = 0.85  # of the memory limit: an OOM kill is near
MAX_TERMINATE_IDS = 20


class HighLatency(Runbook):
    name = "p2_high_latency"

    def diagnose(self, checks: Mapping[str, Check]) -> Verdict:
        return diagnose(checks, self.profile)  # this module's pure rule, below

    mitigation_actions = MITIGATION_ACTIONS

    def __init__(
        self,
        *,
        window: str = "5m",
        recheck_window: str = "30s",
        recheck_wait_s: float = 30.0,
        statement_sample_s: float = 2.0,
        pool_path: str = "/v1/admin/pool",
        rollout_timeout_s: float = 60.0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        k = self.profile.kubernetes
        self.kube = Kube.for_target(k, timeout_s=self.timeout_s)
        self.window, self.recheck_window = window, recheck_window
        self.recheck_wait_s = recheck_wait_s
        self.statement_sample_s = statement_sample_s
        self.pool_path = pool_path
        self.rollout_timeout_s = rollout_timeout_s

    def _pg(self, fn: Callable[..., Check], **kw: Any) -> Callable[[], Check]:
        p = self.profile.postgres
        return partial(fn, p.dsn, timeout_s=self.timeout_s, password_env=p.password_env, **kw)

    # -- 1. Identify Bottleneck --------------------------------------------------------------

    def _latency_spec(self, window: str) -> CheckSpec:
        p = self.profile
        return self.spec(
            "api latency",
            "prometheus",
            partial(
                check_latency,
                p.prometheus.url,
                metric=p.prometheus.latency_metric,
                job=p.prometheus.job,
                window=window,
                threshold_s=p.thresholds.api_latency_p99_s,
                timeout_s=self.timeout_s,
            ),
        )

    def _bottleneck_specs(self, window: str) -> list[CheckSpec]:
        statements = self._pg(
            pg.check_top_statements,
            slow_ms=self.profile.thresholds.db_statement_mean_ms,
            min_calls=self.profile.thresholds.db_statement_min_calls,
            sample_s=self.statement_sample_s,
        )
        return [
            self._latency_spec(window),
            # its sampling window comes on top of the usual timeout
            CheckSpec(
                "top statements",
                "postgres",
                statements,
                timeout_s=self.timeout_s + self.statement_sample_s,
            ),
            self.spec("active queries", "postgres", self._pg(pg.check_active_queries)),
            self.spec("blocking locks", "postgres", self._pg(pg.check_blocking_locks)),
        ]

    def identify_bottleneck(self) -> Step:
        return self.run_step("1. Identify Bottleneck", self._bottleneck_specs(self.window))

    # -- 2. Check Resource Utilization ----------------------------------------------------------

    def _pool_spec(self) -> CheckSpec:
        p = self.profile
        return self.spec(
            "api pool",
            "api",
            partial(
                check_pool,
                p.api.url + self.pool_path,
                timeout_s=p.timeouts.http_s,
            ),
        )

    def resource_utilization(self) -> Step:
        p = self.profile
        return self.run_step(
            "2. Check Resource Utilization",
            [
                self.spec(
                    "top pods",
                    "kubernetes",
                    partial(
                        k8s.check_top_pods,
                        self.kube,
                        warn_ratio=MEMORY_HOT,
                        app_label=p.kubernetes.app_label,
                    ),
                ),
                self.spec(
                    "database connections",
                    "postgres",
                    self._pg(
                        pg.check_connection_count, warn_ratio=p.thresholds.db_connections_warn_ratio
                    ),
                ),
                self.spec(
                    "redis memory",
                    "redis",
                    partial(
                        check_memory,
                        p.redis.url,
                        timeout_s=self.timeout_s,
                        password_env=p.redis.password_env,
                    ),
                ),
                self._pool_spec(),
            ],
        )

    # -- 3. Common Fixes --------------------------------------------------------------------------

    def common_fixes(self) -> MitigationPanel:
        """Plan what the evidence recommends (and whatever was confirmed), run only what was
        confirmed, then re-check latency, the statements, locks and the pool."""
        panel: MitigationPanel = self.mitigate(
            "3. Common Fixes", diagnose(self.latest, self.profile)
        )
        return panel

    def plan(self, mitigation_id: str, *, recommended: bool = True) -> Plan:
        m = parse_mitigation_id(mitigation_id, allowed=MITIGATION_ACTIONS)
        p = self.profile.postgres
        db: dict[str, Any] = {"timeout_s": self.timeout_s, "password_env": p.password_env}
        if m.action == "create-index":
            columns = (m.value or "").split(",")
            return pg_fix.plan_create_index(p.dsn, m.target, columns, recommended=recommended, **db)
        if m.action == "analyze":
            return pg_fix.plan_analyze(p.dsn, m.target, recommended=recommended, **db)
        if m.action == "terminate":
            return pg_fix.plan_terminate(p.dsn, m.target, recommended=recommended, **db)
        if m.action == "restart":
            return k8s_fix.plan_restart(self.kube, m.target, recommended=recommended)
        return k8s_fix.plan_scale(self.kube, m.target, int(m.value or 0), recommended=recommended)

    def apply(self, plan: Plan) -> dict[str, Any]:
        m = parse_mitigation_id(plan.id, allowed=MITIGATION_ACTIONS)
        p = self.profile.postgres
        if m.action == "create-index":
            columns = (m.value or "").split(",")
            return pg_fix.apply_create_index(p.dsn, m.target, columns, password_env=p.password_env)
        if m.action == "analyze":
            return pg_fix.apply_analyze(p.dsn, m.target, password_env=p.password_env)
        if m.action == "terminate":
            return pg_fix.apply_terminate(
                p.dsn, m.target, timeout_s=self.timeout_s, password_env=p.password_env
            )
        if m.action == "restart":
            result = k8s_fix.apply_restart(self.kube, m.target)
        else:
            result = k8s_fix.apply_scale(self.kube, m.target, int(m.value or 0))
        result["rollout"] = k8s_fix.wait_rollout(
            self.kube, m.target, timeout_s=self.rollout_timeout_s
        )
        return result

    def recheck(self) -> Step | None:
        """p99 over the short `recheck_window`, each statement's mean over a fresh sample, the
        locks and the pool: what the fix was meant to change. It first waits `recheck_wait_s`,
        so that requests which were slow before the fix (a lock's waiters finish the moment
        it is released) have left the window."""
        time.sleep(self.recheck_wait_s)
        return self.run_step(
            "Re-check after the fix",
            [*self._bottleneck_specs(self.recheck_window), self._pool_spec()],
        )


# -- the verdict -------------------------------------------------------------------------------


def latency_high(checks: Mapping[str, Check]) -> bool:
    return bool(_facts(checks, "api latency").get("high"))


def _with_latency(checks: Mapping[str, Check], supported: tuple[str, ...]) -> tuple[str, ...]:
    return supported + (("api latency",) if latency_high(checks) else ())


def _p99(checks: Mapping[str, Check]) -> str:
    p99 = _facts(checks, "api latency").get("p99_s")
    return f"; API p99 {p99:.2f} s" if isinstance(p99, int | float) else ""


Rule = Callable[[Mapping[str, Check], Profile], Cause | None]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


@rule
def _lock_contention(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    blockers = [b for b in _facts(checks, "blocking locks").get("blockers", []) if b["root"]]
    if not blockers:
        return None
    top = blockers[0]
    waiting = _facts(checks, "blocking locks").get("waiting", 0)
    return Cause(
        "lock-contention",
        f"backend {top['pid']} ({top['application_name'] or '?'}, {top['state']}) holds a "
        f"lock that {top['waiters']} session(s) wait on",
        0.9 + (0.05 if latency_high(checks) else 0.0),
        _with_latency(checks, ("blocking locks",)),
        f"{waiting} waiting; blocker pid {top['pid']} in a transaction open "
        f"{top['xact_s'] or 0:g} s, last query: {top['query']}{_p99(checks)}",
        mitigations=tuple(f"terminate:{b['pid']}" for b in blockers[:3]),
        advice=f"terminate backend {top['pid']} so its waiters proceed; then find why "
        f"{top['application_name'] or 'that client'} left its transaction open",
    )


@rule
def _connection_exhaustion(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    pool = _facts(checks, "api pool")
    conns = _facts(checks, "database connections")
    limit, used = conns.get("max_connections"), conns.get("connections") or 0
    server_full = bool(limit) and used >= profile.thresholds.db_connections_warn_ratio * (
        limit or 0
    )
    if not pool.get("exhausted") and not server_full:
        return None
    idle_tx = _facts(checks, "active queries").get("idle_in_transaction", [])
    ours = [r for r in idle_tx if r["application_name"] == profile.kubernetes.api_deployment]
    culprits = ours or idle_tx
    supported = ("api pool",) if pool.get("exhausted") else ("database connections",)
    p = pool.get("pool") or {}
    where = (
        f"api pool {p.get('in_use')} of {p.get('max_size')} in use, {p.get('waiting')} waiting"
        if pool.get("exhausted")
        else f"{used} of max_connections {limit}"
    )
    return Cause(
        "connection-exhaustion",
        "database connections used up" + (" by sessions idle in transaction" if culprits else ""),
        # a pool full of busy connections is what any slow query or lock does to it: only the
        # api's own sessions left idle in transaction (or idle ones filling the server) make
        # the connections themselves the cause; another app's idle transaction that holds a
        # lock is lock-contention's finding
        0.9 if ours or (server_full and idle_tx) else 0.6,
        _with_latency(checks, supported + (("active queries",) if culprits else ())),
        f"{where}; {len(culprits)} session(s) idle in transaction "
        f"(by state: {conns.get('by_state', {})}){_p99(checks)}",
        # terminating sessions frees what is exhausted only when they hold it: the api's own
        # pool, or the server's connections; another app's idle session does neither
        mitigations=tuple(f"terminate:{r['pid']}" for r in culprits[:MAX_TERMINATE_IDS])
        if ours or server_full
        else (),
        advice=f"terminate the sessions idle in transaction, then rollout restart "
        f"{profile.kubernetes.api_deployment} (restart:{profile.kubernetes.api_deployment}) "
        "and find the code path that never commits",
    )


def _large_scans(r: Mapping[str, Any], table: str, min_rows: int) -> list[dict[str, Any]]:
    """The plan's sequential scans of `table` over at least `min_rows` rows."""
    scans = (r.get("plan") or {}).get("seq_scans") or []
    return [x for x in scans if x["table"] == table and (x.get("rows") or 0) >= min_rows]


def _statement_weight(r: Mapping[str, Any], t: Any, min_calls: int) -> tuple[bool, bool, str]:
    """Whether a statement dominates the database's time and whether it grew against its own
    earlier mean, and the line that says so: evidence a machine's speed does not move. Only
    a statement called `min_calls` times over the sample counts."""
    busy = (r.get("recent_calls") or 0) >= min_calls
    dominant = busy and (r.get("share") or 0.0) >= t.db_statement_share
    growth = r.get("growth")
    grew = busy and growth is not None and growth >= t.db_statement_growth
    said = (
        f"{r.get('share') or 0:.0%} of the database's time over the sample "
        f"({r['recent_calls']} calls, {r['recent_mean_ms'] or 0:.1f} ms mean"
        + (f", {growth:g}x its earlier {r['earlier_mean_ms']:.2f} ms" if growth else "")
        + ")"
    )
    return dominant, grew, said


@rule
def _slow_query(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    """A hot statement that takes most of the database's time (or grew many times over its
    own earlier mean), whose plan scans a large table sequentially where the index its filter
    wants is missing. Its absolute mean only adds weight: it moves with the machine."""
    t = profile.thresholds
    for r in _facts(checks, "top statements").get("hot", []):
        s = r.get("suggested_index")
        if not s or s["existing"]:
            continue
        # One call in the sample is enough here: the plan is the evidence (the index its filter
        # wants is missing and it scans a large table), which no machine's noise makes up. On a
        # slow machine a 2.7 s scan completes once in a 2 s sample (seen in a fault drill).
        dominant, grew, said = _statement_weight(r, t, min_calls=1)
        scans = _large_scans(r, s["table"], t.db_seq_scan_rows)
        planned = "error" not in (r.get("plan") or {"error": "no plan"})
        if not (dominant or grew) or (planned and not scans):
            continue
        slow_abs = (r["recent_mean_ms"] or 0) >= t.db_statement_mean_ms
        plan = (
            f"; plan: Seq Scan on {s['table']} ({scans[0]['rows']:,} rows)"
            if scans
            else f"; plan unavailable ({(r.get('plan') or {}).get('error')})"
        )
        return Cause(
            "slow-query",
            f"a hot statement on {s['table']} has no index for its filter",
            min(0.95, 0.75 + 0.05 * dominant + 0.05 * grew + 0.05 * bool(scans) + 0.03 * slow_abs),
            _with_latency(checks, ("top statements",)),
            f"{said}: {r['query'][:120]}{plan}; no index on {s['table']}"
            f"({', '.join(s['columns'])}){_p99(checks)}",
            mitigations=(f"create-index:{s['table']}({','.join(s['columns'])})",),
            advice=f"create the index on {s['table']}({', '.join(s['columns'])}) "
            "CONCURRENTLY, then re-check the statement's share of the database's time",
        )
    for r in _facts(checks, "top statements").get("hot", []):
        s = r.get("suggested_index")
        # only time says this one is slow, and one call's time is noise on a busy machine
        dominant, grew, said = _statement_weight(r, t, t.db_statement_min_calls)
        if s and s["existing"] and dominant and grew:
            return Cause(
                "slow-query",
                f"a hot statement on {s['table']} is slow although its index exists",
                0.5,
                _with_latency(checks, ("top statements",)),
                f"{said}: {r['query'][:120]}{_p99(checks)}",
                mitigations=(f"analyze:{s['table']}",),
                advice=f"refresh {s['table']}'s statistics (ANALYZE), then read the plan "
                "(EXPLAIN ANALYZE)",
            )
    return None


def _hot_apps(
    checks: Mapping[str, Check], key: str, ratio: float
) -> dict[str, list[dict[str, Any]]]:
    """Apps at least half of whose pods are at `ratio` or more of their limit on `key`."""
    by_app: dict[str, list[dict[str, Any]]] = {}
    for r in _facts(checks, "top pods").get("rows", []):
        by_app.setdefault(r.get("app") or r["pod"], []).append(r)
    return {
        app: rows
        for app, rows in by_app.items()
        if sum((r.get(key) or 0) >= ratio for r in rows) * 2 >= len(rows)
    }


@rule
def _cpu_saturation(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    hot = _hot_apps(checks, "cpu_of_limit", CPU_HOT)
    if not hot:
        return None
    api = profile.kubernetes.api_deployment
    app = api if api in hot else sorted(hot)[0]
    rows = hot[app]
    replicas = len(rows)
    return Cause(
        "cpu-saturation",
        f"{app} pods at their CPU limit (throttled)",
        0.8 + (0.1 if latency_high(checks) else 0.0),
        _with_latency(checks, ("top pods",)),
        ", ".join(f"{r['pod']} {r['cpu_m']}m ({r['cpu_of_limit']:.0%} of limit)" for r in rows[:5])
        + _p99(checks),
        mitigations=(f"scale:{app}={max(replicas + 2, 2 * replicas)}",) if app == api else (),
        advice=f"scale {app} out (or raise its CPU limit), then find what burns the CPU; new "
        "pods that stay Pending mean the nodes are full: request node capacity",
    )


@rule
def _memory_leak(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    hot = _hot_apps(checks, "memory_of_limit", MEMORY_HOT)
    if not hot:
        return None
    api = profile.kubernetes.api_deployment
    app = api if api in hot else sorted(hot)[0]
    rows = hot[app]
    return Cause(
        "memory-leak",
        f"{app} pods' memory close to their limit (an OOM kill is near)",
        0.75,
        ("top pods",),
        ", ".join(
            f"{r['pod']} {r['memory_mi']}Mi ({r['memory_of_limit']:.0%} of limit)" for r in rows[:5]
        ),
        mitigations=(f"restart:{app}",) if app == api else (),
        advice=f"rollout restart {app} to reclaim memory before it is OOM-killed; take a heap "
        "profile of one pod first and raise the leak with its owners",
    )


@rule
def _redis_memory_pressure(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    facts = _facts(checks, "redis memory")
    if not facts.get("pressure"):
        return None
    return Cause(
        "redis-memory-pressure",
        "Redis at its maxmemory, evicting keys",
        0.7,
        ("redis memory",),
        checks["redis memory"].summary,
        advice="raise Redis maxmemory (CONFIG SET maxmemory, then the StatefulSet's config) or "
        "find the keys that grew (redis-cli --bigkeys); the cache misses fall on the database",
    )


def diagnose(checks: Mapping[str, Check], profile: Profile) -> Verdict:
    """Rank the probable causes of high latency and decide the platform's state."""
    causes = sorted((c for r in RULES if (c := r(checks, profile))), key=lambda c: -c.score)
    high = latency_high(checks)
    if high and not causes:
        causes = [
            Cause(
                "unknown",
                "the API is slow and no check explains why",
                0.3,
                ("api latency",),
                checks["api latency"].summary,
                advice="read the per-route latency above; check the external dependencies "
                "(P1 runbook) and recent deployments",
            )
        ]
    p99 = _facts(checks, "api latency").get("p99_s")
    detail = f", API p99 {p99:.3f} s" if isinstance(p99, int | float) else ""
    return conclude(checks, causes, severity="P2", healthy_detail=detail)
