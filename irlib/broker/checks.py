"""Read-only broker checks: API status, the authentication test, latency, order rejections
grouped by reason; and the reads a reconciliation needs (accounts, positions, fills).

No answer in time, or no token, is ERROR (we could not find out); a refused token, a 5xx or
an unreachable broker is FAIL; a slow broker is FAIL once even its fastest answer is slow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from irlib import io
from irlib.errors import Unreachable
from irlib.results import Check, Evidence, Status, guarded
from irlib.transport import Http as Broker  # the broker API: one pooled client, shared

TARGET = "broker"
PARALLEL = 8  # concurrent position reads: the broker serves them side by side


def _guarded(name: str, body: Callable[[], Check]) -> Check:
    # a broker that refuses connections is down (FAIL); one that is silent is unknown (ERROR)
    return guarded(name, TARGET, body, failing=(Unreachable,))


def check_status(broker: Broker, *, path: str = "/v1/status") -> Check:
    """`curl -s https://api.broker.com/v1/status`: what the broker says about itself."""

    def body() -> Check:
        answer = broker.get(path, auth=False)
        said = answer.body.get("status") if isinstance(answer.body, dict) else None
        rows = [{"field": "http_status", "value": answer.status_code}]
        if isinstance(answer.body, dict):
            rows += [{"field": k, "value": str(v)[:200]} for k, v in answer.body.items()]
        facts = {
            "reachable": True,
            "http_status": answer.status_code,
            "status": said,
            "elapsed_s": round(answer.elapsed_s, 3),
        }
        ok = answer.status_code == 200 and said in ("operational", "ok", None)
        summary = f"HTTP {answer.status_code}, {said or 'no status'}, " + (
            f"{answer.elapsed_s * 1000:.0f} ms"
        )
        return Check(
            "broker status",
            TARGET,
            Status.OK if ok else Status.FAIL,
            summary,
            (Evidence.table(f"GET {path}", rows),),
            facts=facts,
        )

    return _guarded("broker status", body)


def check_auth(broker: Broker) -> Check:
    """The broker client's `test_connection()`: does the broker accept our token?"""

    def body() -> Check:
        answer = broker.get("/v1/auth/test")
        code = answer.status_code
        facts: dict[str, Any] = {
            "http_status": code,
            "auth_refused": code in (401, 403),
            "elapsed_s": round(answer.elapsed_s, 3),
        }
        if code in (401, 403):
            return Check(
                "broker auth test",
                TARGET,
                Status.FAIL,
                f"HTTP {code}: the broker refuses our API token ({broker.token_env})",
                facts=facts,
            )
        if code != 200:
            return Check("broker auth test", TARGET, Status.FAIL, f"HTTP {code}", facts=facts)
        accounts = list(answer.body.get("accounts") or []) if isinstance(answer.body, dict) else []
        facts["accounts"] = accounts
        return Check(
            "broker auth test",
            TARGET,
            Status.OK,
            f"authenticated; {len(accounts)} active account(s)",
            (Evidence.table("accounts", [{"account": a} for a in accounts]),),
            facts=facts,
        )

    return _guarded("broker auth test", body)


def check_latency(
    broker: Broker, *, path: str = "/v1/status", max_s: float = 0.5, samples: int = 3
) -> Check:
    """Time up to `samples` calls; one quick answer is enough to call the broker quick, so a
    busy machine's single hiccup is not a slow broker."""

    def body() -> Check:
        timings: list[float] = []
        for _ in range(samples):
            timings.append(broker.get(path, auth=False).elapsed_s)
            if timings[-1] <= max_s:
                break
        best = min(timings)
        rows = [{"call": i + 1, "seconds": round(t, 3)} for i, t in enumerate(timings)]
        facts = {
            "latency_s": round(best, 3),
            "max_s": max_s,
            "slow": best > max_s,
            "samples": [round(t, 3) for t in timings],
        }
        if best > max_s:
            return Check(
                "broker latency",
                TARGET,
                Status.FAIL,
                f"slow: fastest of {len(timings)} answers took {best:.2f} s (> {max_s:g} s)",
                (Evidence.table(f"GET {path}", rows),),
                facts=facts,
            )
        return Check(
            "broker latency",
            TARGET,
            Status.OK,
            f"{best * 1000:.0f} ms",
            (Evidence.table(f"GET {path}", rows),),
            facts=facts,
        )

    return _guarded("broker latency", body)


def check_rejections(
    broker: Broker, *, window_s: float = 900, recent: int = 10, now: datetime | None = None
) -> Check:
    """Order rejections of the last `window_s` grouped by reason, and whether the broker is
    rejecting now: most of its latest `recent` orders, the very latest one included."""

    def body() -> Check:
        rejected = broker.get_ok("/v1/orders", {"status": "rejected", "limit": 500})["orders"]
        latest = broker.get_ok("/v1/orders", {"limit": recent})["orders"]
        since = (now or io.utcnow()) - timedelta(seconds=window_s)
        in_window = [o for o in rejected if _time(o.get("created_at")) >= since]
        by_reason = Counter(o.get("reject_reason") or "(no reason given)" for o in in_window)
        rows = [{"reason": r, "orders": n} for r, n in by_reason.most_common()]
        recent_rejected = sum(o.get("status") == "rejected" for o in latest)
        rejecting_now = (
            bool(latest)
            and latest[0].get("status") == "rejected"
            and (recent_rejected * 2 >= len(latest))
        )
        facts = {
            "rejected": len(in_window),
            "by_reason": dict(by_reason),
            "recent_rejected": recent_rejected,
            "recent": len(latest),
            "rejecting_now": rejecting_now,
            "top_reason": rows[0]["reason"] if rows else None,
        }
        evidence = (
            Evidence.table(f"rejections of the last {window_s / 60:g} min by reason", rows),
            Evidence.table(
                f"the broker's latest {len(latest)} orders",
                [
                    {
                        k: o.get(k)
                        for k in (
                            "order_id",
                            "client_order_id",
                            "symbol",
                            "side",
                            "qty",
                            "status",
                            "reject_reason",
                            "created_at",
                        )
                    }
                    for o in latest
                ],
            ),
        )
        if rejecting_now:
            status, summary = (
                Status.FAIL,
                (
                    f"rejecting now: {recent_rejected} of the latest {len(latest)} orders; "
                    f"{len(in_window)} in {window_s / 60:g} min, mostly: {rows[0]['reason']}"
                ),
            )
        elif in_window:
            status, summary = (
                Status.WARN,
                (
                    f"{len(in_window)} rejection(s) in {window_s / 60:g} min, none of late"
                    if not recent_rejected
                    else f"{len(in_window)} rejection(s) in {window_s / 60:g} min"
                ),
            )
        else:
            status, summary = Status.OK, f"no rejection in {window_s / 60:g} min"
        return Check("order rejections", TARGET, status, summary, evidence, facts=facts)

    return _guarded("order rejections", body)


def _time(value: Any) -> datetime:
    try:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# -- what a reconciliation reads ---------------------------------------------------------------


def accounts(broker: Broker) -> list[str]:
    return list(broker.get_ok("/v1/auth/test").get("accounts") or [])


def positions(broker: Broker, account_ids: list[str]) -> list[dict[str, Any]]:
    """Every position the broker holds for these accounts: account, symbol, qty, avg_price."""

    def one(account: str) -> list[dict[str, Any]]:
        body = broker.get_ok(f"/v1/accounts/{account}/positions")
        return [{"account": account, **p} for p in body.get("positions") or []]

    # a few accounts at a time: the first error (timeout, 401) ends the read with its reason
    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="irlib-broker") as pool:
        return [row for rows in pool.map(one, account_ids) for row in rows]


def fills(
    broker: Broker, *, since: datetime | None = None, limit: int = 10000
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        params["since"] = since.isoformat()
    return list(broker.get_ok("/v1/fills", params).get("fills") or [])
