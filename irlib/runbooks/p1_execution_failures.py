"""P1: Execution Failures, the seed runbook's scenario where money is lost, step by step.

Symptoms: orders not being filled, error responses from the broker, position mismatches,
missing execution reports. The steps follow the seed: stop new order submission, reconcile
positions (shown, never corrected: MANUALLY VERIFY), investigate the broker connection; then
the pending orders, the resolution checklist and a verdict whose cause ids are the lab's
fault names. `diagnose` is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from irlib import capture
from irlib import reconciliation as rec
from irlib.broker import Broker
from irlib.broker import checks as broker
from irlib.checklist import Checklist, Item, validate
from irlib.diagnosis import conclude
from irlib.guard import Plan, parse_mitigation_id
from irlib.io import utcnow
from irlib.k8s import Kube
from irlib.k8s import checks as k8s
from irlib.k8s import mitigations as k8s_fix
from irlib.mitigation import MitigationPanel
from irlib.platform import checks as platform
from irlib.platform import mitigations as platform_fix
from irlib.profile import Profile
from irlib.results import Cause, Check, Evidence, Status, Verdict, guarded
from irlib.results import facts_of as _facts
from irlib.runbook import CheckSpec, Runbook, Step

MITIGATION_ACTIONS = ("pause-all", "scale", "cancel-orders")
STOP_ACTIONS = ("pause-all", "scale")
CHECKLIST = (  # the seed's "Resolution Checklist", in its order
    Item("orders", "All pending orders cancelled or confirmed"),
    Item("positions", "Positions reconciled with broker"),
    Item("pnl", "P&L verified"),
    Item("root-cause", "Root cause identified"),
    Item("prevention", "Preventive measures implemented"),
)
SHOWN_MATCHES = 50  # matched positions shown under the mismatches; all are counted


class ExecutionFailures(Runbook):
    name = "p1_execution_failures"

    def diagnose(self, checks: Mapping[str, Check]) -> Verdict:
        return diagnose(checks, self.profile)  # this module's pure rule, below

    mitigation_actions = MITIGATION_ACTIONS

    def __init__(
        self,
        *,
        checklist: Iterable[str] = (),
        log_tail: int = 200,
        log_since_s: int = 600,
        log_pattern: str = r"broker|error|fail",
        broker_latency_max_s: float = 0.5,
        pending_max_age_s: float = 60.0,
        rejection_window_s: float = 900.0,
        fills_window_s: float = 86400.0,
        reconcile_timeout_s: float = 30.0,
        reconcile_confirm_s: float = 1.0,
        rollout_timeout_s: float = 30.0,
        **kw: Any,
    ) -> None:
        ticked = validate(CHECKLIST, checklist)  # before anything runs or is recorded
        super().__init__(**kw)
        p = self.profile
        self.kube = Kube.for_target(p.kubernetes, timeout_s=self.timeout_s)
        self.broker = Broker(
            p.broker.url, timeout_s=p.timeouts.http_s, token_env=p.broker.token_env
        )
        self.ticked = ticked
        self.log_tail, self.log_since_s, self.log_pattern = log_tail, log_since_s, log_pattern
        self.broker_latency_max_s = broker_latency_max_s
        self.pending_max_age_s = pending_max_age_s
        self.rejection_window_s = rejection_window_s
        self.fills_window_s = fills_window_s
        self.reconcile_timeout_s = max(reconcile_timeout_s, self.timeout_s)
        self.reconcile_confirm_s = reconcile_confirm_s
        self.rollout_timeout_s = rollout_timeout_s

    # -- what the steps share ---------------------------------------------------------------------

    def _db(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s, "password_env": self.profile.postgres.password_env}

    def _strategies_spec(self) -> CheckSpec:
        return self.spec(
            "strategies",
            "platform",
            partial(platform.check_strategies, self.profile.postgres.dsn, **self._db()),
        )

    def _replicas_spec(self) -> CheckSpec:
        dep = self.profile.kubernetes.execution_deployment
        return self.spec(
            f"{dep} replicas",
            "kubernetes",
            partial(k8s.check_deployment_replicas, self.kube, deployment=dep),
        )

    def _pending_spec(self) -> CheckSpec:
        return self.spec(
            "pending orders",
            "platform",
            partial(
                platform.check_pending_orders,
                self.profile.postgres.dsn,
                max_age_s=self.pending_max_age_s,
                **self._db(),
            ),
        )

    # -- 1. Stop New Order Submission ----------------------------------------------------------

    def running_strategies(self) -> Step:
        """Which strategies are submitting orders now, and whether execution-service runs."""
        return self.run_step(
            "1. Stop New Order Submission", [self._strategies_spec(), self._replicas_spec()]
        )

    def stop_new_orders(self) -> MitigationPanel:
        """The emergency stop, both ways the seed gives: pause every strategy through the admin
        API, or scale execution-service to 0. Planned and shown; run only when confirmed."""
        dep = self.profile.kubernetes.execution_deployment
        panel: MitigationPanel = self.mitigate(
            "1. Stop New Order Submission: emergency stop",
            diagnose(self.latest, self.profile),
            actions=STOP_ACTIONS,
            wanted=("pause-all", f"scale:{dep}=0"),
        )
        return panel

    def verify_stopped(self) -> Step:
        """Are the strategies paused (or execution-service scaled to 0) now?"""
        return self.run_step(
            "1. Verify: new order submission stopped",
            [self.spec("order submission stopped", "platform", self._check_stopped)],
        )

    def _check_stopped(self) -> Check:
        strategies = self._strategies_spec().call()
        replicas = self._replicas_spec().call()
        return submission_stopped(strategies, replicas)

    # -- 2. Reconcile Positions -----------------------------------------------------------------

    def reconcile_positions(self) -> Step:
        """Broker positions beside internal ones, twice a moment apart (a difference seen only
        once is an order in flight, not a mismatch); nothing is corrected."""
        spec = CheckSpec(
            "position reconciliation",
            "broker",
            self._check_reconciliation,
            timeout_s=self.reconcile_timeout_s,
        )
        return self.run_step("2. Reconcile Positions", [spec])

    def snapshot(self) -> rec.Reconciliation:
        """One reconciliation of every account both sides know (reads only)."""
        dsn, db = self.profile.postgres.dsn, self._db()
        internal = platform.positions(dsn, **db)
        accounts = sorted(set(broker.accounts(self.broker)) | {r["account"] for r in internal})
        held = broker.positions(self.broker, accounts)
        since = utcnow() - timedelta(seconds=self.fills_window_s)
        fills = broker.fills(self.broker, since=since)
        recorded = platform.recorded_fills(dsn, (f["fill_id"] for f in fills), **db)
        symbols = {r["symbol"] for r in internal} | {r["symbol"] for r in held}
        prices = platform.latest_prices(dsn, symbols, **db)
        return rec.reconcile(held, internal, prices, rec.unreported_fills(fills, recorded))

    def _check_reconciliation(self) -> Check:
        def body() -> Check:
            first = self.snapshot()
            capture.sleep(self.reconcile_confirm_s)  # skipped in a replay
            return reconciliation_check(rec.confirm(first, self.snapshot()))

        # either side may not answer, the broker or the platform's database
        return guarded("position reconciliation", "broker", body, what="cannot reconcile")

    # -- 3. Investigate Broker Connection --------------------------------------------------------

    def broker_connection(self) -> Step:
        p, k = self.profile, self.profile.kubernetes
        b = self.broker
        return self.run_step(
            "3. Investigate Broker Connection",
            [
                self.spec(
                    "broker status",
                    "broker",
                    partial(broker.check_status, b, path=p.broker.status_path),
                ),
                self.spec("broker auth test", "broker", partial(broker.check_auth, b)),
                self.spec(
                    "broker latency",
                    "broker",
                    partial(
                        broker.check_latency,
                        b,
                        path=p.broker.status_path,
                        max_s=self.broker_latency_max_s,
                    ),
                ),
                self.spec(
                    f"{k.execution_deployment} logs",
                    "kubernetes",
                    partial(
                        k8s.check_log_matches,
                        self.kube,
                        app=k.execution_deployment,
                        pattern=self.log_pattern,
                        app_label=k.app_label,
                        tail=self.log_tail,
                        since_s=self.log_since_s,
                    ),
                ),
                self.spec(
                    "order rejections",
                    "broker",
                    partial(broker.check_rejections, b, window_s=self.rejection_window_s),
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
            ],
        )

    # -- 4. Pending orders ----------------------------------------------------------------------

    def pending_orders(self) -> Step:
        return self.run_step("4. Pending Orders", [self._pending_spec()])

    def handle_pending_orders(self) -> MitigationPanel:
        """Cancel the unsent orders of a strategy (or all), guarded; orders already at the
        broker are listed to confirm there. `cancel-orders:all` is planned when any wait."""
        pending = self.latest.get("pending orders")
        waiting = bool(pending and pending.facts.get("count"))
        panel: MitigationPanel = self.mitigate(
            "4. Pending Orders: cancel or confirm",
            diagnose(self.latest, self.profile),
            actions=("cancel-orders",),
            wanted=("cancel-orders:all",) if waiting else (),
        )
        return panel

    # -- mitigations ------------------------------------------------------------------------------

    def plan(self, mitigation_id: str, *, recommended: bool = True) -> Plan:
        m = parse_mitigation_id(mitigation_id, allowed=MITIGATION_ACTIONS)
        p = self.profile
        if m.action == "pause-all":
            return platform_fix.plan_pause_all(
                p.postgres.dsn,
                p.api.url,
                token_env=p.api.token_env,
                recommended=recommended,
                **self._db(),
            )
        if m.action == "scale":
            return k8s_fix.plan_scale(
                self.kube, m.target, int(m.value or 0), recommended=recommended
            )
        return platform_fix.plan_cancel_orders(
            p.postgres.dsn, m.target, recommended=recommended, **self._db()
        )

    def apply(self, plan: Plan) -> dict[str, Any]:
        m = parse_mitigation_id(plan.id, allowed=MITIGATION_ACTIONS)
        p = self.profile
        self._last_action = m.action
        if m.action == "pause-all":
            return platform_fix.apply_pause_all(
                p.postgres.dsn, p.api.url, token_env=p.api.token_env, **self._db()
            )
        if m.action == "scale":
            result = k8s_fix.apply_scale(self.kube, m.target, int(m.value or 0))
            result["rollout"] = k8s_fix.wait_rollout(
                self.kube, m.target, timeout_s=self.rollout_timeout_s
            )
            return result
        return platform_fix.apply_cancel_orders(p.postgres.dsn, m.target, **self._db())

    def recheck(self) -> Step | None:
        if getattr(self, "_last_action", None) == "cancel-orders":
            return self.run_step("Re-check after cancelling", [self._pending_spec()])
        return self.run_step(
            "Re-check: new order submission stopped",
            [self.spec("order submission stopped", "platform", self._check_stopped)],
        )

    # -- 5. Resolution Checklist ----------------------------------------------------------------

    def resolution_checklist(self) -> Checklist:
        return Checklist(
            "Resolution Checklist",
            CHECKLIST,
            self.record,
            self.operator,
            on_change=self.archive,
            done={i: True for i in self.ticked},
        )


def validate_parameters(values: Mapping[str, Any]) -> None:
    """Before a run: every checklist id is known (UsageError otherwise)."""
    validate(CHECKLIST, values.get("checklist") or ())


def submission_stopped(strategies: Check, replicas: Check) -> Check:
    """Whether any new order can still be submitted: stopped when every strategy is paused or
    execution-service is scaled to 0; unknown (ERROR) when neither could be read."""
    paused = strategies.facts.get("all_paused")
    scaled = replicas.facts.get("stopped")
    evidence = strategies.evidence + replicas.evidence
    running = [str(n) for n in strategies.facts.get("running") or []]
    facts = {
        "all_paused": paused,
        "scaled_to_0": scaled,
        "running": running,
    }
    name = "order submission stopped"
    if paused or scaled:
        how = "every strategy paused" if paused else "execution-service scaled to 0"
        return Check(name, "platform", Status.OK, f"stopped: {how}", evidence, facts=facts)
    if paused is None and scaled is None:
        return Check(
            name,
            "platform",
            Status.ERROR,
            f"unknown: {strategies.summary}; {replicas.summary}",
            evidence,
            facts=facts,
        )
    return Check(
        name,
        "platform",
        Status.WARN,
        f"not stopped: {', '.join(running) or 'strategies'} still running "
        "and execution-service up (confirm pause-all or scale:execution-service=0)",
        evidence,
        facts=facts,
    )


def reconciliation_check(result: rec.Reconciliation, *, duration_s: float = 0.0) -> Check:
    """The reconciliation as a check: FAIL on any confirmed mismatch or unreported fill."""
    lines = result.lines
    shown = [ln.row() for ln in lines if ln.status != rec.OK]
    matched = [ln.row() for ln in lines if ln.status == rec.OK]
    shown += matched[:SHOWN_MATCHES]
    evidence = [
        Evidence.table(
            f"broker vs internal positions, mismatches first ({len(lines)} positions, "
            f"{len(matched)} matched; {min(len(matched), SHOWN_MATCHES)} of those shown)",
            shown,
        ),
    ]
    if result.unreported:
        evidence.append(
            Evidence.table(
                "broker fills without an execution report", [f.row() for f in result.unreported]
            )
        )
    corrections = result.corrections()
    if corrections:
        evidence.append(
            Evidence.table(
                "what a correction would be: MANUALLY VERIFY, nothing was changed", corrections
            )
        )
    n_mis, n_unrep = len(result.mismatches), len(result.unreported)
    facts = result.facts()
    if n_mis or n_unrep:
        value = facts["mismatch_value"]
        summary = (
            f"{n_mis} mismatch(es) worth {value:,.2f} at the latest prices; "
            f"{n_unrep} fill(s) without execution report; nothing corrected"
        )
        status = Status.FAIL
    else:
        in_flight = len(result.in_flight)
        summary = f"{len(lines)} positions agree" + (
            f" ({in_flight} in flight)" if in_flight else ""
        )
        status = Status.OK
    return Check(
        "position reconciliation",
        "broker",
        status,
        summary,
        tuple(evidence),
        duration_s=duration_s,
        facts=facts,
    )


# -- the verdict -------------------------------------------------------------------------------


Rule = Callable[[Mapping[str, Check], Profile], Cause | None]
RULES: list[Rule] = []
STOP = ("pause-all",)  # the seed's first response to any execution failure


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


@rule
def _execution_service_crash(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    dep = profile.kubernetes.execution_deployment
    crashing = [r for r in _facts(checks, "pods").get("crashlooping", []) if r["app"] == dep]
    if not crashing:
        return None
    return Cause(
        "execution-service-crash",
        f"{dep} pods crash-loop: no order reaches the broker",
        0.95,
        ("pods",),
        f"{len(crashing)} pod(s) crash-looping: "
        + ", ".join(
            f"{r['pod']} ({r['restarts']} restarts, {r['last_state'] or r['status']})"
            for r in crashing[:5]
        ),
        mitigations=STOP,
        advice=f"read `kubectl logs deploy/{dep} --previous`; roll back or fix its config; "
        "orders of running strategies queue up meanwhile",
    )


@rule
def _broker_auth_failure(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    auth = _facts(checks, "broker auth test")
    if not auth.get("auth_refused"):
        return None
    logs = _facts(checks, f"{profile.kubernetes.execution_deployment} logs")
    seen = [ln for ln in logs.get("last_lines", []) if "authentication" in ln.lower()]
    return Cause(
        "broker-auth-failure",
        "the broker refuses our API token",
        0.95,
        ("broker auth test",)
        + ((f"{profile.kubernetes.execution_deployment} logs",) if seen else ()),
        f"auth test answered HTTP {auth.get('http_status')}"
        + (f"; execution-service logs: {seen[-1][-160:]}" if seen else ""),
        mitigations=STOP,
        advice=f"renew or rotate the broker API credentials ({profile.broker.token_env}); "
        "check with the broker whether the key was revoked",
    )


@rule
def _broker_rejects(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    rej = _facts(checks, "order rejections")
    if not rej.get("rejecting_now"):
        return None
    return Cause(
        "broker-rejects",
        "the broker rejects our orders",
        0.9,
        ("order rejections",),
        f"{rej['recent_rejected']} of the latest {rej['recent']} orders rejected; "
        f"reason: {rej.get('top_reason')}",
        mitigations=STOP,
        advice="read the rejection reason with the broker (limits, margin, symbol "
        "restrictions); fix the orders or the limits before resuming strategies",
    )


@rule
def _broker_latency(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    lat = _facts(checks, "broker latency")
    if lat.get("slow"):
        return Cause(
            "broker-latency",
            "the broker answers slowly",
            0.85,
            ("broker latency",),
            f"fastest answer {lat['latency_s']:.2f} s (threshold {lat['max_s']:g} s)",
            mitigations=STOP,
            advice="ask the broker about degraded service; slow acknowledgements mean orders "
            "fill late or twice: keep strategies paused until answers are quick",
        )
    if lat.get("timed_out") and _facts(checks, "broker status").get("timed_out"):
        return Cause(
            "broker-latency",
            "the broker does not answer in time",
            0.6,
            ("broker latency", "broker status"),
            checks["broker latency"].summary,
            mitigations=STOP,
            advice="the broker accepts connections but does not answer: contact the broker",
        )
    return None


@rule
def _broker_down(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    status = _facts(checks, "broker status")
    if status.get("reachable") is not False:
        return None
    return Cause(
        "broker-down",
        "the broker API is unreachable",
        0.8,
        ("broker status",),
        checks["broker status"].summary,
        mitigations=STOP,
        advice="contact the broker; keep strategies paused",
    )


@rule
def _missing_execution_reports(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    unreported = _facts(checks, "position reconciliation").get("unreported", [])
    if not unreported:
        return None
    return Cause(
        "missing-execution-reports",
        "the broker filled orders the platform never recorded",
        0.9,
        ("position reconciliation",),
        f"{len(unreported)} fill(s) without execution report: "
        + ", ".join(
            f"{f['fill_id']} ({f['side']} {f['qty']} {f['symbol']}, {f['client_order_id']})"
            for f in unreported[:5]
        ),
        mitigations=STOP,
        advice="MANUALLY VERIFY each fill with the broker, then book its execution report; "
        "find why the reports were lost (execution-service, its queue)",
    )


@rule
def _position_mismatch(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    facts = _facts(checks, "position reconciliation")
    unexplained = facts.get("unexplained", [])
    if not unexplained:
        return None
    return Cause(
        "position-mismatch",
        "positions differ between the broker and the platform",
        0.9,
        ("position reconciliation",),
        f"{len(unexplained)} position(s) differ: "
        + ", ".join(
            f"{r['account']} {r['symbol']} broker {r['broker_qty']} vs internal {r['internal_qty']}"
            for r in unexplained[:5]
        ),
        mitigations=STOP,
        advice="MANUALLY VERIFY against the broker's statement before correcting any book; "
        "then verify P&L",
    )


# orders cannot reach the broker at all: the platform's execution is down, not degraded
DOWN_CAUSES = {"execution-service-crash", "broker-auth-failure", "broker-down"}


def diagnose(checks: Mapping[str, Check], profile: Profile) -> Verdict:
    """Rank the probable causes supported by the checks and decide the execution's state."""
    causes = sorted((c for r in RULES if (c := r(checks, profile))), key=lambda c: -c.score)
    # the seed's severity table: execution failures are P1
    return conclude(
        checks,
        causes,
        down=any(c.id in DOWN_CAUSES for c in causes),
        severity="P1" if causes else "P2",
    )
