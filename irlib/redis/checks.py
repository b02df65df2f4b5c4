"""Read-only Redis checks: the runbook's `redis-cli PING`."""

from __future__ import annotations

import time

from irlib.redis import _client
from irlib.results import Check, Evidence, Status

TARGET = "redis"


def check_ping(url: str, *, timeout_s: float = 5.0, password_env: str | None = None) -> Check:
    t0 = time.monotonic()
    try:
        with _client.client(url, timeout_s=timeout_s, password_env=password_env) as r:
            r.ping()
            info = r.info("server")
    except _client.TimeoutError as e:
        return Check(
            "redis ping",
            TARGET,
            Status.ERROR,
            f"no answer: {e}",
            duration_s=time.monotonic() - t0,
            facts={"reachable": None},
        )
    except _client.Error as e:
        return Check(
            "redis ping",
            TARGET,
            Status.FAIL,
            f"PING failed: {e}",
            duration_s=time.monotonic() - t0,
            facts={"reachable": False},
        )
    elapsed = time.monotonic() - t0
    row = {k: info.get(k) for k in ("redis_version", "uptime_in_seconds", "tcp_port")}
    return Check(
        "redis ping",
        TARGET,
        Status.OK,
        f"PONG in {elapsed * 1000:.0f} ms",
        (Evidence.table("server", [row]),),
        duration_s=elapsed,
        facts={"reachable": True},
    )
