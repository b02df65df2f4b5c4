"""Instant queries against Prometheus's HTTP API (`/api/v1/query`), through irlib.transport,
bounded by a timeout. A query Prometheus rejects raises Refused; no answer, the transport's
Unreachable or TimedOut."""

from __future__ import annotations

import math

from irlib import transport
from irlib.errors import Refused


def query(url: str, promql: str, *, timeout_s: float) -> list[tuple[dict[str, str], float | None]]:
    """An instant vector as (labels, value) pairs; NaN (no traffic in the window) is None."""
    answer = transport.request(
        "GET", url.rstrip("/") + "/api/v1/query", timeout_s=timeout_s, params={"query": promql}
    )
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.status_code != 200 or body.get("status") != "success":
        detail = body.get("error", "query failed") if body else "not JSON"
        raise Refused(f"HTTP {answer.status_code}: {detail}", answer.status_code)
    out = []
    for item in body["data"].get("result", []):
        value = float(item["value"][1])
        out.append((dict(item.get("metric", {})), None if math.isnan(value) else value))
    return out
