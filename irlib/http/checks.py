"""Read-only HTTP checks: is an endpoint up, and what does it say about itself.

Connection refused or a 5xx is FAIL (the service is down); a timeout or a refused token is
ERROR (we could not find out).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from irlib import transport
from irlib.errors import Unreachable
from irlib.results import Check, Evidence, Status, guarded


def check_endpoint(
    name: str, url: str, *, target: str, timeout_s: float = 2.0, token_env: str | None = None
) -> Check:
    """GET `url`: OK on 2xx, FAIL on 5xx or no listener, ERROR on timeout or 401/403."""

    def body() -> Check:
        answer = transport.request("GET", url, timeout_s=timeout_s, token_env=token_env)
        rows = [{"field": k, "value": _short(v)} for k, v in _flatten(answer.body).items()]
        rows.insert(0, {"field": "http_status", "value": answer.status_code})
        evidence = (Evidence.table(f"GET {url}", rows),)
        facts = {
            "url": url,
            "reachable": True,
            "http_status": answer.status_code,
            "body": answer.body,
            "elapsed_s": round(answer.elapsed_s, 3),
        }
        code = answer.status_code
        if answer.ok:
            status, summary = Status.OK, f"{code} in {answer.elapsed_s * 1000:.0f} ms"
        elif code in (401, 403):
            status, summary = Status.ERROR, f"{code}: credentials refused"
        else:
            status, summary = Status.FAIL, f"{code}: {_reason(answer.body)}"
        return Check(name, target, status, summary, evidence, facts=facts)

    check = guarded(name, target, body, failing=(Unreachable,))
    return check if "url" in check.facts else replace(check, facts={"url": url, **check.facts})


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("error", "status", "detail", "message"):
            if key in body:
                failing = [
                    k
                    for k, v in (body.get("checks") or {}).items()
                    if isinstance(v, dict) and not v.get("ok", True)
                ]
                extra = f" (failing: {', '.join(failing)})" if failing else ""
                return f"{body[key]}{extra}"
    return str(body)[:200]


def _flatten(body: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(body, dict):
        return {prefix or "body": body}
    out: dict[str, Any] = {}
    for k, v in body.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
    return out


def _short(value: Any) -> Any:
    text = value if isinstance(value, str | int | float | bool) or value is None else str(value)
    return text[:200] if isinstance(text, str) else text


def check_pool(
    url: str, *, target: str = "api", timeout_s: float = 2.0, token_env: str | None = None
) -> Check:
    """The api-service's database connection pool (`GET /v1/admin/pool`): FAIL when every
    connection is in use and requests queue for one."""
    check = check_endpoint("api pool", url, target=target, timeout_s=timeout_s, token_env=token_env)
    body = check.facts.get("body")
    pool = body.get("pool") if isinstance(body, dict) else None
    if check.status is not Status.OK or not isinstance(pool, dict):
        return check
    size, in_use, waiting = pool.get("max_size"), pool.get("in_use") or 0, pool.get("waiting") or 0
    exhausted = isinstance(size, int) and size > 0 and in_use >= size
    facts = {**check.facts, "pool": pool, "exhausted": exhausted}
    if exhausted:
        status = Status.FAIL
        summary = f"pool exhausted: {in_use} of {size} connections in use, {waiting} waiting"
    else:
        status = Status.OK
        summary = f"{in_use} of {size or 'unbounded'} connections in use, {waiting} waiting"
    return Check(
        check.name,
        check.target,
        status,
        summary,
        (Evidence.table(f"GET {url}", [pool]),),
        duration_s=check.duration_s,
        started_at=check.started_at,
        facts=facts,
    )
