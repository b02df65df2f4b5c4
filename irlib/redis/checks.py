"""Read-only Redis checks: the runbook's `redis-cli PING` and `redis-cli INFO memory`."""

from __future__ import annotations

from typing import Any

from irlib import capture
from irlib.errors import Refused, Unreachable
from irlib.redis import _client
from irlib.results import Check, Evidence, Status, guarded

TARGET = "redis"


def check_ping(url: str, *, timeout_s: float = 5.0, password_env: str | None = None) -> Check:
    def body() -> Check:
        t0 = capture.monotonic()
        with _client.session(url, timeout_s=timeout_s, password_env=password_env) as r:
            r.ping()
            info = r.info("server")
        elapsed = capture.monotonic() - t0
        row = {k: info.get(k) for k in ("redis_version", "uptime_in_seconds", "tcp_port")}
        return Check(
            "redis ping",
            TARGET,
            Status.OK,
            f"PONG in {elapsed * 1000:.0f} ms",
            (Evidence.table("server", [row]),),
            facts={"reachable": True},
        )

    # no PONG is the finding (FAIL); a silent server is unknown (ERROR)
    return guarded("redis ping", TARGET, body, failing=(Unreachable, Refused), what="PING failed")


def check_memory(
    url: str,
    *,
    warn_ratio: float = 0.9,
    timeout_s: float = 5.0,
    password_env: str | None = None,
) -> Check:
    """The seed's `redis-cli INFO memory`: used, peak, fragmentation against `maxmemory`, and
    `evicted_keys` (INFO stats). WARN when used memory passes `warn_ratio` of maxmemory and
    keys are being evicted."""
    name = "redis memory"

    def body() -> Check:
        with _client.session(url, timeout_s=timeout_s, password_env=password_env) as r:
            memory = r.info("memory")
            stats = r.info("stats")
        return _memory_check(name, memory, stats, warn_ratio)

    return guarded(name, TARGET, body, what="cannot read INFO")


def _memory_check(
    name: str, memory: dict[str, Any], stats: dict[str, Any], warn_ratio: float
) -> Check:
    used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
    evicted = int(stats.get("evicted_keys", 0))
    ratio = used / limit if limit else None
    row = {
        "used_memory_human": memory.get("used_memory_human"),
        "used_memory_peak_human": memory.get("used_memory_peak_human"),
        "mem_fragmentation_ratio": memory.get("mem_fragmentation_ratio"),
        "maxmemory_human": memory.get("maxmemory_human"),
        "maxmemory_policy": memory.get("maxmemory_policy"),
        "used_of_maxmemory": round(ratio, 3) if ratio is not None else None,
        "evicted_keys": evicted,
    }
    pressure = ratio is not None and ratio >= warn_ratio and evicted > 0
    if pressure:
        status = Status.WARN
        summary = (
            f"{memory.get('used_memory_human')} of maxmemory {memory.get('maxmemory_human')} "
            f"({ratio:.0%}), {evicted} keys evicted"
        )
    else:
        status = Status.OK
        summary = (
            f"{memory.get('used_memory_human')} used"
            + (
                f" of maxmemory {memory.get('maxmemory_human')} ({ratio:.0%})"
                if ratio is not None
                else ", no maxmemory set"
            )
            + (f", {evicted} keys evicted" if evicted else "")
        )
    return Check(
        name,
        TARGET,
        status,
        summary,
        (Evidence.table("INFO memory / INFO stats", [row]),),
        facts={
            "reachable": True,
            "used": used,
            "maxmemory": limit,
            "ratio": ratio,
            "evicted_keys": evicted,
            "pressure": pressure,
        },
    )
