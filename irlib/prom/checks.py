"""Read-only Prometheus checks: the seed's `histogram_quantile(0.99, rate(..._bucket[5m]))`,
as p50/p95/p99 overall and per route, against the profile's latency threshold.

A Prometheus that cannot be asked is ERROR (we do not know the latency), never OK.
"""

from __future__ import annotations

import re
from typing import Any

from irlib.prom.query import query
from irlib.results import Check, Evidence, Status, guarded

TARGET = "prometheus"
QUANTILES = (0.5, 0.95, 0.99)
_WINDOW = re.compile(r"[1-9][0-9]{0,4}[smh]")
_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_JOB = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def quantile_query(metric: str, q: float, window: str, job: str | None, by: str = "") -> str:
    """`histogram_quantile(q, sum by (le[, by]) (rate(<metric>_bucket{job=...}[window])))`."""
    if not _WINDOW.fullmatch(window):
        raise ValueError(f"window {window!r} is not a Prometheus duration like 30s, 5m or 1h")
    if not _METRIC.fullmatch(metric):
        raise ValueError(f"metric {metric!r} is not a Prometheus metric name")
    selector = ""
    if job:
        if not _JOB.fullmatch(job):
            raise ValueError(f"job {job!r} is not a plain job name")
        selector = f'{{job="{job}"}}'
    labels = "le" + (f", {by}" if by else "")
    return (
        f"histogram_quantile({q:g}, sum by ({labels}) (rate({metric}_bucket{selector}[{window}])))"
    )


def check_latency(
    url: str,
    *,
    metric: str = "http_request_duration_seconds",
    job: str | None = None,
    window: str = "5m",
    threshold_s: float = 5.0,
    timeout_s: float = 5.0,
) -> Check:
    """API p50/p95/p99 over `window`, overall and per route; FAIL when a p99 passes the
    threshold (the seed's "API response time > 5 seconds")."""
    name = "api latency"

    def body() -> Check:
        rows: dict[str, dict[str, Any]] = {}
        for q in QUANTILES:
            col = f"p{round(q * 100)}_s"
            for _labels, value in query(
                url, quantile_query(metric, q, window, job), timeout_s=timeout_s
            ):
                rows.setdefault("(all)", {"route": "(all)"})[col] = _round(value)
            for labels, value in query(
                url, quantile_query(metric, q, window, job, by="route"), timeout_s=timeout_s
            ):
                route = labels.get("route", "?")
                rows.setdefault(route, {"route": route})[col] = _round(value)
        overall = rows.pop("(all)", {"route": "(all)"})
        per_route = sorted(rows.values(), key=lambda r: -(r.get("p99_s") or 0))
        table = [overall, *per_route]
        for r in table:
            r["over_threshold"] = (r.get("p99_s") or 0) > threshold_s
        slow = [r["route"] for r in per_route if r["over_threshold"]]
        p99 = overall.get("p99_s")
        facts = {
            "reachable": True,
            "p50_s": overall.get("p50_s"),
            "p95_s": overall.get("p95_s"),
            "p99_s": p99,
            "threshold_s": threshold_s,
            "window": window,
            "routes": {r["route"]: r.get("p99_s") for r in per_route},
            "slow_routes": slow,
            "high": (p99 or 0) > threshold_s or bool(slow),
        }
        if p99 is None:
            status, summary = Status.WARN, f"no requests measured in the last {window}"
        elif facts["high"]:
            status = Status.FAIL
            summary = f"p99 {p99:.2f} s over {threshold_s:g} s" + (
                f"; slow routes: {', '.join(slow)}" if slow else ""
            )
        else:
            status = Status.OK
            p50 = overall.get("p50_s") or 0.0
            summary = f"p50 {p50:.3f} s, p99 {p99:.3f} s (threshold {threshold_s:g} s)"
        return Check(
            name,
            TARGET,
            status,
            summary,
            (Evidence.table(f"latency quantiles over {window} (seconds)", table),),
            facts=facts,
        )

    return guarded(name, TARGET, body, what="cannot query Prometheus")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
