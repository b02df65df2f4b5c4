"""A steady trickle of requests to the trading API, so that its metrics and logs show traffic.

Talks only to the API over HTTP (through the ingress), one request at a time every 100-200 ms,
ignoring every failure, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal

import httpx

from irlib.lab.config import LabConfig
from irlib.lab.seed import SYMBOLS

PAUSE_S = (0.1, 0.2)
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
            for n in itertools.count():
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(next_path(n))
                await asyncio.sleep(random.uniform(*PAUSE_S))


def main(config: LabConfig) -> None:
    asyncio.run(run(config))
