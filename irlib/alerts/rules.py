"""The alert rules for the seed's symptoms, built from a profile's names and thresholds.

Each rule is labelled with the runbook that diagnoses it and the seed's severity, and
annotated with a summary and the runbook's URL, so that Alertmanager (and `irlib serve`) can
route a firing alert to its runbook. The metric names below are what the platform's services
export; the drill lab's apps export exactly these (irlib.lab.apps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from irlib.profile import Profile

P1_UNAVAILABLE = "p1_system_unavailable"
P1_EXECUTION = "p1_execution_failures"
P2_LATENCY = "p2_high_latency"
P2_CALIBRATION = "p2_calibration_failures"

# What the services export (besides the api's latency histogram, named by the profile).
HTTP_REQUESTS = "http_requests_total"  # api-service: route, method, status
ORDERS_SENT = "trading_orders_sent_total"  # execution-service: orders the broker answered
ORDERS_FILLED = "trading_orders_filled_total"
ORDERS_REJECTED = "trading_orders_rejected_total"  # reason
LAST_FILL = "trading_last_fill_timestamp_seconds"  # the service's start until a first fill
UNSENT_ORDER_AGE = "trading_unsent_order_oldest_age_seconds"  # running strategies' `new`
POSITION_MISMATCHES = "trading_position_mismatches"  # account/symbol pairs differing
FILLS_WITHOUT_REPORT = "trading_fills_without_report"  # broker fills the platform never booked
CALIBRATION_LAST_SUCCESS = "calibration_last_success_timestamp_seconds"  # symbol
CALIBRATION_CONVERGED = "calibration_last_attempt_converged"  # symbol: 1 or 0
CALIBRATION_RMSE = "calibration_last_rmse"  # symbol
CALIBRATION_DURATION = "calibration_last_duration_seconds"  # symbol
SURFACE_QUOTES = "option_surface_quotes"  # symbol: quotes in its newest surface, 0 = missing
LAST_TICK = "market_data_last_tick_timestamp_seconds"  # symbol

FORMATS = ("prometheus", "prometheusrule")


@dataclass(frozen=True)
class AlertRule:
    """One alert: its PromQL, the runbook that diagnoses it, its severity and summary."""

    name: str
    expr: str
    runbook: str
    severity: str
    summary: str

    def to_rule(self, profile: Profile) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": profile.alerts.pending,
            "labels": {"runbook": self.runbook, "severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "runbook_url": profile.alerts.runbook_url.format(runbook=self.runbook),
            },
        }


def alert_rules(profile: Profile) -> list[AlertRule]:
    """Every rule, in the seed's order of its runbooks."""
    a, t = profile.alerts, profile.thresholds
    w = a.window
    api = f'job="{profile.prometheus.job}"'
    exe = f'job="{a.execution_job}"'
    cal = f'job="{a.calibration_job}"'
    latency = profile.prometheus.latency_metric
    return [
        AlertRule(
            "ApiErrorRateHigh",
            f'sum(rate({HTTP_REQUESTS}{{{api},status=~"5.."}}[{w}])) / '
            f"sum(rate({HTTP_REQUESTS}{{{api}}}[{w}])) > {a.api_error_ratio:g}",
            P1_UNAVAILABLE,
            "P1",
            "api-service answers {{ $value | humanizePercentage }} of requests with 5xx",
        ),
        AlertRule(
            "ApiHealthFailing",
            f'sum(rate({HTTP_REQUESTS}{{{api},route="{profile.api.health_path}",'
            f'status!~"2.."}}[{w}])) > 0',
            P1_UNAVAILABLE,
            "P1",
            f"api-service {profile.api.health_path} is failing",
        ),
        AlertRule(
            "ApiDown",
            f"up{{{api}}} == 0",
            P1_UNAVAILABLE,
            "P1",
            "Prometheus cannot scrape api-service {{ $labels.instance }}",
        ),
        AlertRule(
            "NoTradingActivity",
            f"time() - max({LAST_FILL}{{{exe}}}) > {a.no_trading_s:g}",
            P1_EXECUTION,
            "P1",
            "no order filled for {{ $value | humanizeDuration }}",
        ),
        AlertRule(
            "OrdersRejected",
            f"sum(rate({ORDERS_REJECTED}{{{exe}}}[{w}])) / "
            f"clamp_min(sum(rate({ORDERS_SENT}{{{exe}}}[{w}])), 1e-9) > "
            f"{a.orders_rejected_ratio:g}",
            P1_EXECUTION,
            "P1",
            "the broker rejects {{ $value | humanizePercentage }} of orders",
        ),
        AlertRule(
            "OrdersNotFilled",
            f"max({UNSENT_ORDER_AGE}{{{exe}}}) > {a.order_unsent_max_s:g}",
            P1_EXECUTION,
            "P1",
            "an order has waited {{ $value | humanizeDuration }} to reach the broker",
        ),
        AlertRule(
            "PositionMismatch",
            f"max({POSITION_MISMATCHES}{{{exe}}}) > 0",
            P1_EXECUTION,
            "P1",
            "{{ $value }} position(s) differ between the platform and the broker",
        ),
        AlertRule(
            "ExecutionReportsMissing",
            f"max({FILLS_WITHOUT_REPORT}{{{exe}}}) > 0",
            P1_EXECUTION,
            "P1",
            "{{ $value }} broker fill(s) without an execution report",
        ),
        AlertRule(
            "ApiLatencyHigh",
            f"histogram_quantile(0.99, sum by (le) (rate({latency}_bucket{{{api}}}[{w}]))) "
            f"> {t.api_latency_p99_s:g}",
            P2_LATENCY,
            "P2",
            "api-service p99 latency is {{ $value | humanizeDuration }}",
        ),
        AlertRule(
            "CalibrationStale",
            f"time() - {CALIBRATION_LAST_SUCCESS}{{{cal}}} > {t.calibration_max_age_h * 3600:g}",
            P2_CALIBRATION,
            "P2",
            "{{ $labels.symbol }}: last successful calibration {{ $value | humanizeDuration }} ago",
        ),
        AlertRule(
            "CalibrationFailing",
            f"{CALIBRATION_CONVERGED}{{{cal}}} == 0",
            P2_CALIBRATION,
            "P2",
            "{{ $labels.symbol }}: the last calibration did not converge",
        ),
        AlertRule(
            "CalibrationSlow",
            f"{CALIBRATION_DURATION}{{{cal}}} > {t.calibration_duration_max_s:g}",
            P2_CALIBRATION,
            "P2",
            "{{ $labels.symbol }}: the last calibration took {{ $value | humanizeDuration }}",
        ),
        AlertRule(
            "CalibrationRmseHigh",
            f"{CALIBRATION_RMSE}{{{cal}}} > {t.calibration_rmse_max:g}",
            P2_CALIBRATION,
            "P2",
            "{{ $labels.symbol }}: the last calibration's RMSE is {{ $value }}",
        ),
        AlertRule(
            "OptionSurfaceMissing",
            f"{SURFACE_QUOTES}{{{cal}}} == 0",
            P2_CALIBRATION,
            "P2",
            "{{ $labels.symbol }}: no option surface in the calibration window",
        ),
        AlertRule(
            "MarketDataStale",
            f"time() - {LAST_TICK}{{{cal}}} > {t.market_data_max_age_s:g}",
            P2_CALIBRATION,
            "P2",
            "{{ $labels.symbol }}: last tick {{ $value | humanizeDuration }} ago",
        ),
    ]


def rule_groups(profile: Profile) -> dict[str, Any]:
    """The rules as Prometheus's rule file (`rule_files`) holds them."""
    rules = [r.to_rule(profile) for r in alert_rules(profile)]
    return {"groups": [{"name": profile.alerts.group, "rules": rules}]}


def prometheus_rule(profile: Profile) -> dict[str, Any]:
    """The same rules as a Prometheus Operator `PrometheusRule` object."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": profile.alerts.group,
            "namespace": profile.kubernetes.namespace,
            "labels": {"app.kubernetes.io/name": "irlib"},
        },
        "spec": rule_groups(profile),
    }


def render(profile: Profile, fmt: str) -> str:
    """YAML text of the rules in `fmt` (one of FORMATS)."""
    doc = rule_groups(profile) if fmt == "prometheus" else prometheus_rule(profile)
    return yaml.safe_dump(doc, sort_keys=False, width=120)
