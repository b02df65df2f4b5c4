"""P1: System Unavailable, the seed runbook's first scenario, step by step.

Symptoms: API returning 5xx, health checks failing, no trading activity. The steps follow
the seed: confirm scope, obvious causes, immediate mitigation, investigation (logs, pod
details), dependencies, external dependencies; then a verdict and an incident summary draft.
`diagnose` is pure: it ranks causes from the checks' facts, named like the lab's faults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from irlib.diagnosis import conclude
from irlib.guard import Plan, parse_mitigation_id
from irlib.http.checks import check_endpoint
from irlib.io import utcnow
from irlib.k8s import Kube, capacity
from irlib.k8s import checks as k8s
from irlib.k8s import mitigations as k8s_fix
from irlib.mitigation import MitigationPanel
from irlib.postgres.checks import check_connection_count, check_connectivity
from irlib.profile import Profile
from irlib.redis.checks import check_ping
from irlib.results import Cause, Check, Health, Status, Verdict
from irlib.results import facts_of as _facts
from irlib.runbook import Runbook, Step

MITIGATION_ACTIONS = ("rollback", "delete-pod", "scale")


class SystemUnavailable(Runbook):
    name = "p1_system_unavailable"

    def diagnose(self, checks: Mapping[str, Check]) -> Verdict:
        return diagnose(checks, self.profile)  # this module's pure rule, below

    mitigation_actions = MITIGATION_ACTIONS

    def __init__(
        self,
        *,
        log_tail: int = 100,
        log_since_s: int = 600,
        events_limit: int = 20,
        scale_replicas: int = 5,
        rollout_timeout_s: float = 60.0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        k = self.profile.kubernetes
        self.kube = Kube.for_target(k, timeout_s=self.timeout_s)
        self.log_tail, self.log_since_s, self.events_limit = log_tail, log_since_s, events_limit
        self.scale_replicas = scale_replicas
        self.rollout_timeout_s = rollout_timeout_s

    # -- 1. Confirm Scope -------------------------------------------------------------------

    def _scope_specs(self) -> list[Any]:
        p, k = self.profile, self.profile.kubernetes
        return [
            self.spec(
                "api health",
                "api",
                partial(
                    check_endpoint,
                    "api health",
                    p.api.url + p.api.health_path,
                    target="api",
                    timeout_s=p.timeouts.http_s,
                ),
            ),
            self.spec(
                "pods",
                "kubernetes",
                partial(
                    k8s.check_pods,
                    self.kube,
                    app_label=k.app_label,
                    restarts_warn=p.thresholds.restarts_warn,
                ),
            ),
            self.spec(
                "ingress", "kubernetes", partial(k8s.check_ingress, self.kube, name=k.ingress)
            ),
            self.spec(
                "recent events",
                "kubernetes",
                partial(k8s.check_recent_events, self.kube, limit=self.events_limit),
            ),
        ]

    def confirm_scope(self) -> Step:
        return self.run_step("1. Confirm Scope", self._scope_specs())

    # -- 2. Check for Obvious Causes ----------------------------------------------------------

    def _obvious_specs(self) -> list[Any]:
        k = self.profile.kubernetes
        return [
            self.spec(
                "rollout history",
                "kubernetes",
                partial(k8s.check_rollout_history, self.kube, deployment=k.api_deployment),
            ),
            self.spec("nodes", "kubernetes", partial(k8s.check_nodes, self.kube)),
            self.spec("top pods", "kubernetes", partial(k8s.check_top_pods, self.kube)),
            self.spec("top nodes", "kubernetes", partial(k8s.check_top_nodes, self.kube)),
        ]

    def obvious_causes(self) -> Step:
        return self.run_step("2. Check for Obvious Causes", self._obvious_specs())

    # -- 3. Immediate Mitigation ----------------------------------------------------------------

    def immediate_mitigation(self) -> MitigationPanel:
        """Plan what the evidence so far recommends (and whatever was confirmed), run only
        what was confirmed, then wait for the rollout and re-check the scope."""
        panel: MitigationPanel = self.mitigate(
            "3. Immediate Mitigation", diagnose(self.latest, self.profile)
        )
        return panel

    def plan(self, mitigation_id: str, *, recommended: bool = True) -> Plan:
        m = parse_mitigation_id(mitigation_id, allowed=MITIGATION_ACTIONS)
        if m.action == "rollback":
            return k8s_fix.plan_rollback(self.kube, m.target, recommended=recommended)
        if m.action == "delete-pod":
            return k8s_fix.plan_delete_pod(self.kube, m.target, recommended=recommended)
        return k8s_fix.plan_scale(self.kube, m.target, int(m.value or 0), recommended=recommended)

    def apply(self, plan: Plan) -> dict[str, Any]:
        m = parse_mitigation_id(plan.id, allowed=MITIGATION_ACTIONS)
        if m.action == "rollback":
            result = k8s_fix.apply_rollback(self.kube, m.target)
        elif m.action == "delete-pod":
            result = k8s_fix.apply_delete_pod(self.kube, m.target)
        else:
            result = k8s_fix.apply_scale(self.kube, m.target, int(m.value or 0))
        deployment = (
            m.target if m.action != "delete-pod" else self.profile.kubernetes.api_deployment
        )
        result["rollout"] = k8s_fix.wait_rollout(
            self.kube, deployment, timeout_s=self.rollout_timeout_s
        )
        return result

    def recheck(self) -> Step | None:
        return self.run_step(
            "Re-check after mitigation", self._scope_specs() + self._obvious_specs()
        )

    # -- Investigation: Check Logs ----------------------------------------------------------

    def check_logs(self) -> Step:
        k = self.profile.kubernetes
        return self.run_step(
            "Check Logs",
            [
                self.spec(
                    f"logs {k.api_deployment}",
                    "kubernetes",
                    partial(
                        k8s.check_logs,
                        self.kube,
                        app=k.api_deployment,
                        app_label=k.app_label,
                        tail=self.log_tail,
                        since_s=self.log_since_s,
                    ),
                ),
                self.spec(
                    "previous logs", "kubernetes", partial(k8s.check_previous_logs, self.kube)
                ),
                self.spec("pod details", "kubernetes", partial(k8s.check_pod_details, self.kube)),
            ],
        )

    # -- Investigation: Check Dependencies ------------------------------------------------------

    def check_dependencies(self) -> Step:
        p = self.profile
        return self.run_step(
            "Check Dependencies",
            [
                self.spec(
                    "database connectivity",
                    "postgres",
                    partial(
                        check_connectivity,
                        p.postgres.dsn,
                        timeout_s=self.timeout_s,
                        password_env=p.postgres.password_env,
                    ),
                ),
                self.spec(
                    "database connections",
                    "postgres",
                    partial(
                        check_connection_count,
                        p.postgres.dsn,
                        timeout_s=self.timeout_s,
                        warn_ratio=p.thresholds.db_connections_warn_ratio,
                        password_env=p.postgres.password_env,
                    ),
                ),
                self.spec(
                    "redis ping",
                    "redis",
                    partial(
                        check_ping,
                        p.redis.url,
                        timeout_s=self.timeout_s,
                        password_env=p.redis.password_env,
                    ),
                ),
            ],
        )

    def check_external_dependencies(self) -> Step:
        p = self.profile
        return self.run_step(
            "Check External Dependencies",
            [
                self.spec(
                    "market data",
                    "market_data",
                    partial(
                        check_endpoint,
                        "market data",
                        p.market_data.url + p.market_data.status_path,
                        target="market_data",
                        timeout_s=p.timeouts.http_s,
                    ),
                ),
                self.spec(
                    "broker",
                    "broker",
                    partial(
                        check_endpoint,
                        "broker",
                        p.broker.url + p.broker.health_path,
                        target="broker",
                        timeout_s=p.timeouts.http_s,
                    ),
                ),
            ],
        )

    # -- Verdict and Resolution ----------------------------------------------------------------

    def incident_summary(self) -> IncidentSummary:
        return IncidentSummary(self, diagnose(self.latest, self.profile))


# -- what the notebook shows for the summary ------------------------------------------------


@dataclass
class IncidentSummary:
    """A draft of the seed's "Incident Summary", filled from this run."""

    runbook: SystemUnavailable
    verdict: Verdict

    def markdown(self) -> str:
        rb, v = self.runbook, self.verdict
        top = v.top_cause
        impact = {
            Health.DOWN: "Complete API outage (API failing its health check)",
            Health.DEGRADED: "Partial outage / degraded service",
            Health.HEALTHY: "No user impact found by this run",
        }[v.state]
        now = utcnow()
        minutes = int((now - rb.started_at).total_seconds() // 60)
        lines = [
            "## Incident Summary",
            f"- **Incident ID**: {rb.incident}",
            f"- **Severity**: {v.severity or 'none (healthy)'}",
            f"- **Duration**: {minutes} minutes so far (since this run started)",
            f"- **Impact**: {impact}",
            "",
            "## Timeline",
            f"- {rb.started_at:%H:%M} - Runbook {rb.name} started by {rb.operator}",
        ]
        if top:
            lines.append(f"- {now:%H:%M} - Probable root cause: {top.id} ({top.evidence})")
        for a in rb.guard.attempts:
            if a.outcome in ("executed", "failed"):
                lines.append(f"- {a.at[11:16]} - {a.outcome}: {a.summary} (by {a.operator})")
        lines.append(f"- {now:%H:%M} - Verdict: {v.state.value}")
        lines += [
            "",
            "## Root Cause",
            top.title + ": " + top.evidence
            if top
            else "No cause found: the platform looks healthy.",
            "",
            "## Action Items",
        ]
        lines += [f"- [ ] {c.advice or 'apply ' + ', '.join(c.mitigations)}" for c in v.causes]
        lines += ["- [ ] Verify service stability and close the incident"] if v.causes else []
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        return self.markdown()


# -- the verdict -------------------------------------------------------------------------------


def _failed(checks: Mapping[str, Check], name: str) -> bool:
    check = checks.get(name)
    return check is not None and check.status is Status.FAIL


Rule = Callable[[Mapping[str, Check], Profile], Cause | None]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def _api_rows(checks: Mapping[str, Check], key: str, profile: Profile) -> list[dict[str, Any]]:
    return [
        r
        for r in _facts(checks, "pods").get(key, [])
        if r["app"] == profile.kubernetes.api_deployment
    ]


def _named(pods: Iterable[str], most: int = 5) -> str:
    """The first pods by name, and how many more: a cause names what it saw."""
    names = sorted(pods)
    more = f" and {len(names) - most:,} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


@rule
def _bad_deploy(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    crashing = [
        r
        for r in _api_rows(checks, "crashlooping", profile)
        if r["last_state"] != "OOMKilled" and r["status"] != "OOMKilled"
    ]
    history = _facts(checks, "rollout history")
    if not crashing or not history.get("previous_image"):
        return None
    dep = profile.kubernetes.api_deployment
    current = history.get("current_hash")
    older = [r for r in crashing if current and r.get("template_hash") not in ("", None, current)]
    if older and len(older) == len(crashing):
        # only pods of an older revision crash (say the bad one, after a rollback, still
        # being replaced): a rollback now would bring that revision back
        return Cause(
            "bad-deploy",
            f"pods of an earlier revision of {dep} crash-loop",
            0.6,
            ("pods", "rollout history"),
            f"{len(older)} crash-looping pod(s), none of revision "
            f"{history.get('current_revision')} ({history.get('current_image')}): "
            + ", ".join(r["pod"] for r in older[:5]),
            advice=f"wait for the rollout of {dep} to replace them (kubectl rollout status); "
            "no rollback: the current revision is not the one crashing",
        )
    previous = [
        r
        for r in _facts(checks, "previous logs").get("crashed", [])
        if r["pod"] in {c["pod"] for c in crashing}
    ]
    last_line = f"; last log line: {previous[0]['last_line']}" if previous else ""
    return Cause(
        "bad-deploy",
        f"recent deployment of {dep} crash-loops",
        0.9 + (0.05 if previous else 0.0),
        ("pods", "rollout history") + (("previous logs",) if previous else ()),
        f"revision {history['current_revision']} ({history['current_image']}, "
        f"{history['current_age']} old): {len(crashing)} pod(s) crash-looping "
        f"({_named(r['pod'] for r in crashing)}); previous "
        f"image {history['previous_image']}{last_line}",
        mitigations=(f"rollback:{dep}",),
        advice=f"roll {dep} back, then find why {history['current_image']} fails to start",
    )


@rule
def _oom_killed(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    pods = _facts(checks, "pods")
    # an OOM kill long ago on a pod that is serving now is history, not today's cause
    current = {r["pod"] for r in pods.get("not_ready", []) + pods.get("restarting", [])}
    oom = [r for r in pods.get("oom_killed", []) if r["pod"] in current]
    if not oom:
        return None
    apps = sorted({r["app"] for r in oom})
    hot = _facts(checks, "top pods").get("hot", [])
    return Cause(
        "oom-killed",
        f"containers of {', '.join(apps)} killed for exceeding their memory limit",
        0.9 if any(r["status"] in ("CrashLoopBackOff", "OOMKilled") for r in oom) else 0.7,
        ("pods",) + (("top pods",) if hot else ()),
        f"{len(oom)} pod(s) last terminated OOMKilled: "
        + ", ".join(f"{r['pod']} ({r['restarts']} restarts)" for r in oom[:5]),
        advice=f"raise the memory limit of {', '.join(apps)} (kubectl set resources "
        "--limits=memory=...) and restart its pods; add memory-based autoscaling",
    )


@rule
def _node_not_ready(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    nodes = _facts(checks, "nodes").get("not_ready", [])
    if not nodes:
        return None
    stranded = [r for r in _facts(checks, "pods").get("not_ready", []) if r["node"] in nodes]
    api = profile.kubernetes.api_deployment
    # a deleted pod is re-created on the Ready nodes only if they have room for it
    fit, fit_line = _replicas_that_fit(checks, api)
    want = _facts(checks, "rollout history").get("replicas")
    short = fit is not None and isinstance(want, int) and fit < want
    return Cause(
        "node-not-ready",
        f"node(s) {', '.join(nodes)} NotReady",
        0.85 + (0.1 if stranded else 0.0),
        ("nodes",) + (("pods",) if stranded else ()),
        f"{', '.join(nodes)} NotReady; {len(stranded)} pod(s) on it not ready"
        + (f": {', '.join(r['pod'] for r in stranded[:5])}" if stranded else ""),
        mitigations=tuple(f"delete-pod:{r['pod']}" for r in stranded if r["app"] == api),
        advice="delete the stranded pods so they are rescheduled on healthy nodes; "
        "ask the infrastructure team to repair or replace the node"
        + (f"; Request emergency node addition: {fit_line}" if short else ""),
    )


@rule
def _pods_pending(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    """Pending pods, and the remedy that fits why: a new revision that asks for more than the
    previous one while its rollout is under way is rolled back; otherwise the nodes are full,
    and the remedies are capacity (a person's step) or scaling back to what fits."""
    pending = _facts(checks, "pods").get("pending", [])
    if not pending:
        return None
    reasons = _facts(checks, "recent events").get("warning_reasons", [])
    scheduling = "FailedScheduling" in reasons
    apps = sorted({r["app"] for r in pending})
    dep = profile.kubernetes.api_deployment
    history = _facts(checks, "rollout history")
    ours = [r for r in pending if r["app"] == dep]
    supported = ("pods",) + (("recent events",) if scheduling else ())
    evidence = f"{len(pending)} pod(s) Pending" + (
        " (FailedScheduling: insufficient resources)" if scheduling else ""
    )
    base = 0.85 + (0.05 if scheduling else 0.0)
    new_revision = [
        r
        for r in ours
        if history.get("rollout_in_progress")
        and r.get("template_hash")
        and r.get("template_hash") == history.get("current_hash")
    ]
    raised = capacity.grew(history.get("current_requests"), history.get("previous_requests"))
    if new_revision and raised and history.get("previous_image"):
        return Cause(
            "pods-pending",
            f"pods of {', '.join(apps)} cannot be scheduled: revision "
            f"{history.get('current_revision')} of {dep} asks for more than the nodes have",
            base,
            (*supported, "rollout history"),
            f"{evidence}; {len(new_revision)} of them from revision "
            f"{history.get('current_revision')}, whose pods request "
            f"{capacity.describe(history['current_requests'])} against "
            f"{capacity.describe(history['previous_requests'])} in revision "
            f"{history.get('previous_revision')}",
            mitigations=(f"rollback:{dep}",),
            advice=f"roll {dep} back to revision {history.get('previous_revision')} (its pods "
            "fit), then size the new requests to the nodes before deploying again",
        )
    fit, fit_line = _replicas_that_fit(checks, dep)
    want = history.get("replicas")
    scale_back = bool(ours) and fit is not None and isinstance(want, int) and 0 < fit < want
    supported += (("nodes",) if fit is not None else ()) + (
        ("rollout history",) if scale_back else ()
    )
    advice = (
        "Request emergency node addition (contact the cloud provider or infrastructure team)"
        + (f", or scale {dep} back to {fit} replicas, what the nodes fit" if scale_back else "")
        + "; then find why more pods were asked for than the nodes hold"
    )
    return Cause(
        "pods-pending",
        f"pods of {', '.join(apps)} cannot be scheduled: the nodes are full",
        base,
        supported,
        evidence + (f"; {fit_line}" if fit_line else ""),
        mitigations=(f"scale:{dep}={fit}",) if scale_back else (),
        advice=advice,
    )


def _replicas_that_fit(checks: Mapping[str, Check], dep: str) -> tuple[int | None, str]:
    """How many pods of `dep` the Ready nodes hold at the current revision's requests, and
    the line that says so; (None, "") when the checks did not read what it takes."""
    nodes = _facts(checks, "nodes").get("allocatable")
    requested = _facts(checks, "pods").get("requested")
    history = _facts(checks, "rollout history")
    per_pod = history.get("current_requests")
    if not nodes or requested is None or not per_pod:
        return None, ""
    fit = capacity.replicas_that_fit(nodes, requested, dep, per_pod)
    cpu = sum(n.get("cpu_m", 0.0) for n in nodes.values()) / 1000
    return fit, (
        f"the {len(nodes)} Ready node(s) ({cpu:g} CPU allocatable) fit {fit} {dep} pod(s) of "
        f"{capacity.describe(per_pod)} beside the other apps' pods; "
        f"{history.get('replicas')} are asked for"
    )


def _dependency_rule(cause_id: str, check_name: str, title: str, advice: str, score: float) -> Rule:
    def fn(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
        if not _failed(checks, check_name):
            return None
        return Cause(
            cause_id, title, score, (check_name,), checks[check_name].summary, advice=advice
        )

    fn.__name__ = f"_{cause_id.replace('-', '_')}"
    return rule(fn)


_dependency_rule(
    "database-down",
    "database connectivity",
    "PostgreSQL (timescaledb) is down",
    "restart or fail over timescaledb-0; the API cannot serve without it",
    0.95,
)
_dependency_rule(
    "redis-down",
    "redis ping",
    "Redis is down",
    "restart redis-0; the api-service cache is unavailable",
    0.9,
)
_dependency_rule(
    "broker-down",
    "broker",
    "the broker API is unreachable",
    "contact the broker; stop new orders (P1 Execution Failures runbook)",
    0.8,
)
_dependency_rule(
    "market-data-down",
    "market data",
    "the market-data provider is unreachable",
    "contact the market-data provider; check data-ingestion",
    0.8,
)


def diagnose(checks: Mapping[str, Check], profile: Profile) -> Verdict:
    """Rank the probable causes supported by the checks and decide the platform's state."""
    causes = sorted((c for r in RULES if (c := r(checks, profile))), key=lambda c: -c.score)
    api_down = _failed(checks, "api health")
    if api_down and not causes:
        causes = [
            Cause(
                "unknown",
                "the API fails and no check explains why",
                0.3,
                ("api health",),
                checks["api health"].summary,
                advice="read the logs and events above; escalate per the path",
            )
        ]
    return conclude(checks, causes, down=api_down, severity="P1" if api_down else "P2")
