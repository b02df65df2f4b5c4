"""Steady requests to the trading API, so that its metrics and logs show traffic.

Talks only to the API over HTTP (through the ingress): BASE_WORKERS loops, each one request
at a time every 100-200 ms, and FAULT_WORKERS more while a lab fault is on, so that a slow or
blocked request never stops the traffic a latency drill measures. Ignores every failure,
until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal

import httpx

from irlib.lab.config import LabConfig, read_control
from irlib.lab.seed import SYMBOLS

PAUSE_S = (0.1, 0.2)
BASE_WORKERS = 2
FAULT_WORKERS = 2  # more traffic while a fault is on (read from control.json)
HEALTH_EVERY = 20  # the deep health check is dearer: only every 20th request


def next_path(n: int) -> str:
    if n % HEALTH_EVERY == 0:
        return "/health"
    symbol = random.choice(list(SYMBOLS))
    return random.choices(
        [
            f"/v1/market-data/{symbol}/latest",
            f"/v1/orders?symbol={symbol}&limit=20",
            "/v1/orders?limit=20",
            "/v1/positions",
            "/v1/strategies",
            "/v1/calibration/status",
        ],
        weights=[35, 20, 15, 15, 8, 7],
    )[0]


async def run(config: LabConfig) -> None:
    # a signal cancels this task, and with it any request still waiting for a slow API
    this = asyncio.current_task()
    assert this is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, this.cancel)
    async with httpx.AsyncClient(base_url=config.url("api"), timeout=10.0) as client:
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.TaskGroup() as group:
                for w in range(BASE_WORKERS + FAULT_WORKERS):
                    group.create_task(worker(config, client, extra=w >= BASE_WORKERS))


def fault_on(config: LabConfig) -> bool:
    try:
        return bool(read_control(config).get("faults"))
    except (OSError, ValueError):
        return False


async def worker(config: LabConfig, client: httpx.AsyncClient, *, extra: bool) -> None:
    for n in itertools.count(random.randrange(HEALTH_EVERY)):
        if extra and not fault_on(config):
            await asyncio.sleep(1.0)
            continue
        with contextlib.suppress(httpx.HTTPError):
            await client.get(next_path(n))
        await asyncio.sleep(random.uniform(*PAUSE_S))


def main(config: LabConfig) -> None:
    asyncio.run(run(config))
