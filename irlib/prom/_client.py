"""The only module of irlib.prom that imports httpx: instant queries against Prometheus's HTTP
API (`/api/v1/query`), bounded by a timeout. A refused or timed-out query raises Unreachable."""

from __future__ import annotations

import math
from typing import Any

import httpx


class Unreachable(Exception):
    """Prometheus did not answer, or answered with an error."""


def query(url: str, promql: str, *, timeout_s: float) -> list[tuple[dict[str, str], float | None]]:
    """An instant vector as (labels, value) pairs; NaN (no traffic in the window) is None."""
    try:
        resp = httpx.get(
            url.rstrip("/") + "/api/v1/query", params={"query": promql}, timeout=timeout_s
        )
    except httpx.TimeoutException as e:
        raise Unreachable(f"no answer within {timeout_s:g} s") from e
    except httpx.HTTPError as e:
        raise Unreachable(f"{type(e).__name__}: {e}") from e
    try:
        body: dict[str, Any] = resp.json()
    except ValueError as e:
        raise Unreachable(f"HTTP {resp.status_code}: not JSON") from e
    if resp.status_code != 200 or body.get("status") != "success":
        raise Unreachable(f"HTTP {resp.status_code}: {body.get('error', 'query failed')}")
    out = []
    for item in body["data"].get("result", []):
        value = float(item["value"][1])
        out.append((dict(item.get("metric", {})), None if math.isnan(value) else value))
    return out
