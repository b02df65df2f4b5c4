"""Steady requests to the trading API, so that its metrics and logs show traffic.

Talks only to the API over HTTP (through the ingress): BASE_WORKERS loops, each one request
at a time every 100-200 ms, and FAULT_WORKERS more while a lab fault is on, so that a slow or
blocked request never stops the traffic a latency drill measures. Beside them the trading
dashboard polls each symbol's recent orders at a fixed rate, ten times faster while a fault is
on (open loop, as many users' browsers do: a slow answer does not slow the next poll), so that
a query which turns slow piles up as it would in production. Ignores every failure, until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import time

import httpx

from irlib.lab.config import Control, LabConfig, read_control
from irlib.lab.seed import SYMBOLS

PAUSE_S = (0.1, 0.2)
BASE_WORKERS = 2
FAULT_WORKERS = 2  # more traffic while a fault is on (read from control.json)
HEALTH_EVERY = 20  # the deep health check is dearer: only every 20th request
# The dashboard's polls of "recent orders of a symbol", per second. By index each costs
# about 0.2 ms of database time (under 1% of a core in all); without it a scan of the 2M-row
# orders table costs 0.15-0.5 s, so 40 a second ask 6-20 cores' worth: the API queues on any
# machine, and its p99 passes 5 s within seconds.
DASHBOARD_POLLS_PER_S = 40
# With no fault on, a tenth of that: the same query, by index, for the API's healthy figures,
# at a tenth of the CPU the lab burns while it waits between tests.
CALM_POLLS_PER_S = 4
DASHBOARD_MAX_IN_FLIGHT = 200  # beyond this a poll is skipped, as a browser's would time out


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
    limits = httpx.Limits(max_connections=DASHBOARD_MAX_IN_FLIGHT + 2 * FAULT_WORKERS + 8)
    async with httpx.AsyncClient(base_url=config.url("api"), timeout=10.0, limits=limits) as client:
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.TaskGroup() as group:
                switches = Switches(config)
                for w in range(BASE_WORKERS + FAULT_WORKERS):
                    group.create_task(worker(switches, client, extra=w >= BASE_WORKERS))
                group.create_task(dashboard(switches, client))


class Switches:
    """What control.json says the load should do, read at most once a second (not 40 times):
    whether a fault is on, and whether the lab paused the dashboard."""

    def __init__(self, config: LabConfig) -> None:
        self.config, self.read_at = config, float("-inf")
        self.control: Control = {}

    def _read(self) -> Control:
        now = time.monotonic()
        if now - self.read_at >= 1.0:
            self.read_at = now
            try:
                self.control = read_control(self.config)
            except (OSError, ValueError):
                self.control = {}
        return self.control

    @property
    def fault_on(self) -> bool:
        return bool(self._read().get("faults"))

    @property
    def dashboard_paused(self) -> bool:
        return bool(self._read().get("dashboard_paused"))


async def worker(switches: Switches, client: httpx.AsyncClient, *, extra: bool) -> None:
    for n in itertools.count(random.randrange(HEALTH_EVERY)):
        if extra and not switches.fault_on:
            await asyncio.sleep(1.0)
            continue
        with contextlib.suppress(httpx.HTTPError):
            await client.get(next_path(n))
        await asyncio.sleep(random.uniform(*PAUSE_S))


async def _get(client: httpx.AsyncClient, path: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await client.get(path)


async def dashboard(switches: Switches, client: httpx.AsyncClient) -> None:
    """Poll each symbol's recent orders in turn, DASHBOARD_POLLS_PER_S a second while a fault
    is on (CALM_POLLS_PER_S otherwise), whether or not the earlier polls have been answered
    (at most DASHBOARD_MAX_IN_FLIGHT waiting), unless the lab has paused the dashboard."""
    loop = asyncio.get_running_loop()
    symbols = list(SYMBOLS)
    in_flight: set[asyncio.Task[None]] = set()
    due = loop.time()
    for n in itertools.count():
        if len(in_flight) < DASHBOARD_MAX_IN_FLIGHT and not switches.dashboard_paused:
            path = f"/v1/orders?symbol={symbols[n % len(symbols)]}&limit=20"
            task = asyncio.create_task(_get(client, path))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        due += 1.0 / (DASHBOARD_POLLS_PER_S if switches.fault_on else CALM_POLLS_PER_S)
        await asyncio.sleep(max(0.0, due - loop.time()))


def main(config: LabConfig) -> None:
    asyncio.run(run(config))
