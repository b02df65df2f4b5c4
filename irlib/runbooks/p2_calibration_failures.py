"""P2: Calibration Failures, step by step in the seed's order: Investigation (service pods and
logs, last successful calibration, a manual test calibration and a plot of the fit), Common
Issues (market data unavailable, optimization not converging), Recovery (a guarded forced
recalibration, then verify it or the fallback). `diagnose` is pure; cause ids = lab faults.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from irlib.calibration import checks as cal
from irlib.calibration import mitigations as cal_fix
from irlib.calibration.plot import SurfacePlot, surface_plot
from irlib.diagnosis import conclude
from irlib.errors import UsageError
from irlib.guard import Plan, parse_mitigation_id
from irlib.k8s import Kube, quantity
from irlib.k8s import checks as k8s
from irlib.mitigation import MitigationPanel
from irlib.profile import Profile
from irlib.results import Cause, Check, Verdict
from irlib.results import facts_of as _facts
from irlib.runbook import CheckSpec, Runbook, Step

MITIGATION_ACTIONS = ("recalibrate",)
STATUS = "last successful calibration"
IN_USE = "parameters in use"
TEST = "manual calibration test"
MARKET = "market data"
CONFIG = "optimiser config"


class CalibrationFailures(Runbook):
    name = "p2_calibration_failures"

    def diagnose(self, checks: Mapping[str, Check]) -> Verdict:
        return diagnose(checks, self.profile)  # this module's pure rule, below

    mitigation_actions = MITIGATION_ACTIONS

    def __init__(
        self,
        *,
        symbol: str = "SPY",
        log_tail: int = 100,
        ingestion_log_tail: int = 50,
        log_since_s: int = 600,
        test_timeout_s: float = 30.0,
        recalibration_timeout_s: float = 60.0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        k = self.profile.kubernetes
        self.kube = Kube.for_target(k, timeout_s=self.timeout_s)
        self.symbol = parse_mitigation_id(f"recalibrate:{symbol.upper()}").target
        self.log_tail, self.ingestion_log_tail = log_tail, ingestion_log_tail
        self.log_since_s = log_since_s
        self.test_timeout_s = test_timeout_s
        self.recalibration_timeout_s = recalibration_timeout_s
        self.base_url = self.profile.api.url
        self.before: dict[str, str | None] = {}  # symbol -> calibrated_at when planned

    # -- Investigation ----------------------------------------------------------------------

    def check_service_status(self) -> Step:
        """`kubectl get pods -l app=calibration-service` and its logs for errors."""
        k, app = self.profile.kubernetes, self.profile.kubernetes.calibration_deployment
        return self.run_step(
            "Check calibration service status",
            [
                self.spec(
                    "calibration pods",
                    "kubernetes",
                    partial(
                        k8s.check_pods,
                        self.kube,
                        app_label=k.app_label,
                        restarts_warn=self.profile.thresholds.restarts_warn,
                        selector=f"{k.app_label}={app}",
                        name="calibration pods",
                    ),
                ),
                self.spec(
                    f"logs {app}",
                    "kubernetes",
                    partial(
                        k8s.check_logs,
                        self.kube,
                        app=app,
                        app_label=k.app_label,
                        tail=self.log_tail,
                        since_s=self.log_since_s,
                    ),
                ),
                self.spec(
                    f"OOM kills {app}",
                    "kubernetes",
                    partial(k8s.check_oom_kills, self.kube, app=app, app_label=k.app_label),
                ),
            ],
        )

    def _status_spec(self) -> CheckSpec:
        t = self.profile.thresholds
        return self.spec(
            STATUS,
            "calibration",
            partial(
                cal.check_calibration_status,
                self.base_url,
                timeout_s=self.profile.timeouts.http_s,
                max_age_h=t.calibration_max_age_h,
                rmse_max=t.calibration_rmse_max,
                duration_max_s=t.calibration_duration_max_s,
            ),
        )

    def _in_use_spec(self) -> CheckSpec:
        t = self.profile.thresholds
        return self.spec(
            IN_USE,
            "calibration",
            partial(
                cal.check_parameters_in_use,
                self.base_url,
                self.symbol,
                timeout_s=self.profile.timeouts.http_s,
                max_age_h=t.calibration_max_age_h,
                rmse_max=t.calibration_rmse_max,
            ),
        )

    def check_last_calibration(self) -> Step:
        """`curl /v1/calibration/status`: every symbol's last success, against thresholds."""
        return self.run_step(
            "Check last successful calibration", [self._status_spec(), self._in_use_spec()]
        )

    def manual_calibration_test(self) -> Step:
        """The seed's `test_calibration --symbol SPY`: fit now, store nothing."""
        spec = CheckSpec(
            TEST,
            "calibration",
            partial(
                cal.check_test_calibration,
                self.base_url,
                self.symbol,
                timeout_s=self.test_timeout_s,
                rmse_max=self.profile.thresholds.calibration_rmse_max,
            ),
            timeout_s=self.test_timeout_s + 1,
        )
        return self.run_step("Manual calibration test", [spec])

    def plot_fit(self) -> SurfacePlot:
        """The symbol's quotes against the parameters in use and the test fit."""
        test = self.latest.get(TEST)
        return surface_plot(
            self.base_url,
            self.symbol,
            timeout_s=self.test_timeout_s,
            test_quotes=(test.facts.get("quotes") or []) if test else [],
        )

    # -- Common Issues ------------------------------------------------------------------------

    def _symbols(self) -> list[str]:
        status = self.latest.get(STATUS)
        known = list(status.facts.get("symbols") or []) if status else []
        return known or [self.symbol]

    def market_data_unavailable(self) -> Step:
        """`kubectl logs -l app=data-ingestion --tail=50` and each symbol's latest tick."""
        k = self.profile.kubernetes
        return self.run_step(
            "Market data unavailable",
            [
                self.spec(
                    f"logs {k.ingestion_deployment}",
                    "kubernetes",
                    partial(
                        k8s.check_logs,
                        self.kube,
                        app=k.ingestion_deployment,
                        app_label=k.app_label,
                        tail=self.ingestion_log_tail,
                        since_s=self.log_since_s,
                    ),
                ),
                self.spec(
                    MARKET,
                    "api",
                    partial(
                        cal.check_market_data,
                        self.base_url,
                        self._symbols(),
                        timeout_s=self.profile.timeouts.http_s,
                        max_age_s=self.profile.thresholds.market_data_max_age_s,
                    ),
                ),
            ],
        )

    def optimization_not_converging(self) -> Step:
        """Check calibration parameters: the optimiser's config in force, beside its defaults."""
        return self.run_step(
            "Optimization not converging",
            [
                self.spec(
                    CONFIG,
                    "calibration",
                    partial(
                        cal.check_optimiser_config,
                        self.base_url,
                        timeout_s=self.profile.timeouts.http_s,
                    ),
                )
            ],
        )

    # -- Recovery -----------------------------------------------------------------------------

    def force_recalibration(self) -> MitigationPanel:
        """Plan `recalibrate:SYMBOL` (recommended when the evidence says so), run it only when
        confirmed, then verify."""
        panel: MitigationPanel = self.mitigate(
            "Force recalibration",
            diagnose(self.latest, self.profile),
            wanted=[f"recalibrate:{self.symbol}"],
        )
        return panel

    def plan(self, mitigation_id: str, *, recommended: bool = True) -> Plan:
        m = parse_mitigation_id(mitigation_id, allowed=MITIGATION_ACTIONS)
        plan = cal_fix.plan_recalibration(
            self.base_url,
            m.target,
            timeout_s=self.profile.timeouts.http_s,
            token_env=self.profile.api.token_env,
            recommended=recommended,
        )
        self.before[m.target] = plan.before.get("calibrated_at")
        return plan

    def apply(self, plan: Plan) -> dict[str, Any]:
        m = parse_mitigation_id(plan.id, allowed=MITIGATION_ACTIONS)
        return cal_fix.apply_recalibration(
            self.base_url,
            m.target,
            timeout_s=self.recalibration_timeout_s,
            token_env=self.profile.api.token_env,
        )

    def _verify_specs(self) -> list[CheckSpec]:
        t = self.profile.thresholds
        specs = [
            self.spec(
                f"recalibration {symbol}",
                "calibration",
                partial(
                    cal.check_recalibrated,
                    self.base_url,
                    symbol,
                    before=before,
                    timeout_s=self.profile.timeouts.http_s,
                    max_age_h=t.calibration_max_age_h,
                    rmse_max=t.calibration_rmse_max,
                ),
            )
            for symbol, before in self.before.items()
            if self._attempted(symbol)
        ]
        return [*specs, self._status_spec(), self._in_use_spec()]

    def _attempted(self, symbol: str) -> bool:
        return any(
            a.id == f"recalibrate:{symbol}" and a.outcome in ("executed", "failed")
            for a in self.guard.attempts
        )

    def recheck(self) -> Step | None:
        return self.run_step("Re-check after recalibration", self._verify_specs())

    def verify_fallback(self) -> Step:
        """After a forced recalibration: `calibrated_at` moved and the fit is good, or the
        previous parameters are still served (the automatic fallback); else the state now."""
        return self.run_step("Verify fallback is working", self._verify_specs())


# -- the verdict -------------------------------------------------------------------------------


def _by_prefix(checks: Mapping[str, Check], prefix: str) -> list[Check]:
    return [c for n, c in checks.items() if n.startswith(prefix)]


Rule = Callable[[Mapping[str, Check], Profile], Cause | None]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


BATCH = re.compile(r"batch_size=(\d+)")
WORKING_SET = re.compile(r"working set ([\d.]+\s*[KMGT]i)")
_UNIT_GAP = re.compile(r"(?<=[\d.])\s+(?=[A-Za-z]+$)")  # "3.1 Gi", as a log line may write it


def _bytes(text: str) -> float | None:
    """A memory quantity in bytes, also as a log line spells it ("3.1 Gi"); None if it is none."""
    return quantity.parse_or_none(_UNIT_GAP.sub("", text.strip()))


def batch_bound(batch: int, working_set: str, limit: str, headroom: float = 0.7) -> int | None:
    """The largest batch whose estimated working set fits in `headroom` of the limit."""
    ws, lim = _bytes(working_set), _bytes(limit)
    if not ws or not lim or ws < 0 or lim < 0 or batch <= 0:
        return None
    per = ws / batch
    return max(1, int(lim * headroom / per) // 50 * 50 or int(lim * headroom / per))


@rule
def _calibration_oom(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    app = profile.kubernetes.calibration_deployment
    facts = _facts(checks, f"OOM kills {app}")
    # an OOM kill long ago on a pod that is ready now is history, not today's cause
    current = facts.get("current") or []
    if not current:
        return None
    limits = sorted({r["memory_limit"] for r in current if r.get("memory_limit")})
    limit = limits[0] if limits else "its limit"
    text = str(facts.get("previous_logs") or "")
    batch = BATCH.findall(text)
    working = WORKING_SET.findall(text)
    found = f"a batch of {batch[-1]} surfaces (batch_size={batch[-1]})" if batch else ""
    if found and working:
        found += f", estimated working set {working[-1]}"
    bound = batch_bound(int(batch[-1]), working[-1], limit) if batch and working else None
    items = [
        f"increase the memory limit of {app} pods (now {limit}; `kubectl set resources "
        f"deployment/{app} --limits=memory=...`)",
        "implement batch size limits"
        + (f" (at most {bound} surfaces per batch fits the {limit} limit)" if bound else ""),
        "add memory-based autoscaling",
    ]
    return Cause(
        "calibration-oom",
        f"{app} pods OOM-killed during a large batch calibration",
        0.95 if batch else 0.85,
        (f"OOM kills {app}",) + (("calibration pods",) if "calibration pods" in checks else ()),
        f"{len(current)} {app} pod(s) OOMKilled, memory limit {limit}"
        + (f": {found} exceeded it" if found else "")
        + f" ({', '.join(r['pod'] for r in current[:3])})",
        advice="Action items: " + "; ".join(items),
    )


@rule
def _market_data_gap(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    market = _facts(checks, MARKET)
    checked, stale = market.get("checked") or [], market.get("stale") or []
    if not checked or len(stale) * 2 < len(checked):
        return None  # one symbol's late tick is not an ingestion outage
    ingestion = profile.kubernetes.ingestion_deployment
    log_errors = _facts(checks, f"logs {ingestion}").get("errors", 0)
    ages = market.get("ages") or {}
    oldest = max((a for a in ages.values() if a is not None), default=0)
    test = _facts(checks, TEST)
    supported = (MARKET,) + ((f"logs {ingestion}",) if log_errors else ())
    if test.get("reason") == "market-data-stale":
        supported += (TEST,)
    return Cause(
        "market-data-gap",
        "market data is not being ingested: calibrations would fit old data",
        0.9 + (0.05 if log_errors else 0.0),
        supported,
        f"latest ticks of {len(stale)}/{len(checked)} symbols are stale (oldest "
        f"{oldest:.0f} s, limit {market.get('max_age_s')} s)"
        + (f"; {log_errors} error line(s) in the {ingestion} logs" if log_errors else ""),
        advice=f"restore {ingestion} (its logs say why the feed stopped; contact the "
        "market-data provider), then force a recalibration of the affected symbols",
    )


@rule
def _missing_surface(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    missing = _facts(checks, STATUS).get("missing_surface") or []
    test = _facts(checks, TEST)
    if test.get("reason") == "no-surface" and test.get("symbol") not in missing:
        missing = [*missing, test["symbol"]]
    if not missing:
        return None
    window = _facts(checks, STATUS).get("quote_window_s")
    ingestion = profile.kubernetes.ingestion_deployment
    return Cause(
        "missing-surface",
        f"volatility surface missing for {', '.join(missing)}",
        0.85,
        (STATUS,) + ((TEST,) if test.get("reason") == "no-surface" else ()),
        f"no option quotes for {', '.join(missing)} in the last {window} s: no surface to "
        "calibrate (the parameters in use get older)",
        advice=f"check the option-chain feed of {', '.join(missing)} in the {ingestion} logs "
        "and with the provider; recalibrate once quotes arrive",
    )


@rule
def _calibration_divergence(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    status = _facts(checks, STATUS)
    failed = list(status.get("failed") or [])
    bad_rmse = list(status.get("bad_rmse") or [])
    in_use = _facts(checks, IN_USE)
    test = _facts(checks, TEST)
    test_failed = test.get("reason") == "fit"
    recal = [c for c in _by_prefix(checks, "recalibration ") if c.facts.get("fallback")]
    if not (failed or bad_rmse or test_failed or recal):
        return None
    fallback = sorted(
        set(status.get("fallback") or [])
        | ({in_use["symbol"]} if in_use.get("fallback") else set())
        | {c.facts["symbol"] for c in recal}
    )
    parts = []
    if failed:
        f = failed[0]
        parts.append(
            f"{', '.join(x['symbol'] for x in failed)}: last attempt failed ({f['message']}, "
            f"RMSE {f.get('rmse')}, {f.get('iterations')} iterations)"
        )
    if bad_rmse:
        parts.append(", ".join(f"{x['symbol']}: {x['why']}" for x in bad_rmse))
    if test_failed:
        parts.append(
            f"test fit of {test['symbol']}: {test.get('message')}"
            + (f", at bounds {', '.join(test['at_bounds'])}" if test.get("at_bounds") else "")
        )
    changes = _facts(checks, CONFIG).get("changes") or []
    if changes:
        parts.append(
            "optimiser config differs from its defaults: "
            + "; ".join(f"{c['setting']} {c['in_force']} (default {c['default']})" for c in changes)
        )
    if fallback:
        used = in_use.get("calibrated_at") if in_use.get("fallback") else None
        parts.append(
            f"fallback in use for {', '.join(fallback)}: the previous converged parameters"
            + (f" (from {used})" if used else "")
            + " are served"
        )
    supported = tuple(
        n
        for n, on in (
            (STATUS, failed or bad_rmse),
            (IN_USE, in_use.get("fallback")),
            (TEST, test_failed),
            (CONFIG, changes),
        )
        if on
    ) + tuple(c.name for c in recal)
    return Cause(
        "calibration-divergence",
        "calibration does not converge"
        + ("; fallback parameters in use" if fallback else " or fits poorly"),
        0.9,
        supported,
        "; ".join(parts),
        advice="try relaxed constraints: restore the optimiser's default bounds and iteration "
        "budget (a config update, or a code change), then force a recalibration; until then "
        "the previous parameters are served (automatic fallback)",
    )


@rule
def _stale_calibration(checks: Mapping[str, Check], profile: Profile) -> Cause | None:
    stale = list(_facts(checks, STATUS).get("stale") or [])
    in_use = _facts(checks, IN_USE)
    limit = profile.thresholds.calibration_max_age_h
    if (
        not stale
        and in_use.get("age_h") is not None
        and in_use["age_h"] > limit
        and not in_use.get("fallback")
    ):
        stale = [{"symbol": in_use["symbol"], "age_h": in_use["age_h"]}]
    if not stale:
        return None
    return Cause(
        "stale-calibration",
        f"model parameters stale (> {limit:g} h old)",
        0.85,
        (STATUS,) + ((IN_USE,) if in_use.get("symbol") in {s["symbol"] for s in stale} else ()),
        ", ".join(f"{s['symbol']} last calibrated {s['age_h']} h ago" for s in stale[:5])
        + f" (limit {limit:g} h): signals use old parameters",
        mitigations=tuple(f"recalibrate:{s['symbol']}" for s in stale[:5]),
        advice="force a recalibration, then find why the scheduled calibration stopped",
    )


def diagnose(checks: Mapping[str, Check], profile: Profile) -> Verdict:
    """Rank the probable causes supported by the checks and decide the calibration's state."""
    causes = sorted((c for r in RULES if (c := r(checks, profile))), key=lambda c: -c.score)
    return conclude(checks, causes, severity="P2")


def validate_parameters(values: Mapping[str, Any]) -> None:
    """Before a run: `symbol` is a ticker the guard would accept in `recalibrate:SYMBOL`
    (UsageError, exit 2, otherwise), so a bad symbol never reaches a cell."""
    symbol = values.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise UsageError(f"parameter symbol={symbol!r}: expected a ticker such as SPY")
    try:
        parse_mitigation_id(f"recalibrate:{symbol.upper()}")
    except UsageError:
        raise UsageError(
            f"parameter symbol={symbol!r}: not a ticker (letters, digits and dots, such as SPY)"
        ) from None
