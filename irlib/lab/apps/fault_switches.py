"""The latency faults that live inside the api-service process, switched by control.json.

`cpu_saturation`: every request is delayed as a CPU-throttled pod's would be. `connection_leak`:
the api's own pool connections are taken into transactions that are never finished (idle in
transaction), until the fault is cleared or their backends are terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import psycopg

from irlib.lab.apps._common import Database
from irlib.lab.config import Control, LabConfig, read_control

log = logging.getLogger("irlib.lab.apps.fault_switches")

POLL_S = 0.5
LEAK_PROBE_S = 1.0  # how often a leaked connection notices its backend was terminated
THROTTLED_DELAY_S = (5.5, 7.0)  # a request's extra time in a pod pinned at its CPU limit


class FaultSwitches:
    """Re-reads control.json twice a second and acts on the api-service's switches."""

    def __init__(self, config: LabConfig, db: Database) -> None:
        self.config = config
        self.db = db
        self.control: Control = {}
        self._leaks: list[asyncio.Task[None]] = []
        self._leaked = False  # once per injection: terminated backends are not leaked again

    def request_delay_s(self) -> float:
        if "cpu_saturation" not in self.control:
            return 0.0
        return random.uniform(*THROTTLED_DELAY_S)

    async def watch(self) -> None:
        try:
            while True:
                try:
                    self.control = read_control(self.config)
                except (OSError, ValueError):
                    self.control = {}
                self._leaks = [t for t in self._leaks if not t.done()]
                leak = self.control.get("connection_leak")
                if leak and not self._leaked:
                    self._leaked = True
                    self._start_leak(int(leak.get("connections") or self.db.max_size or 1))
                elif not leak:
                    self._leaked = False
                await asyncio.sleep(POLL_S)
        finally:
            for task in self._leaks:
                task.cancel()

    def _start_leak(self, n: int) -> None:
        self._leaks = [asyncio.create_task(self._leak_one()) for _ in range(n)]

    def _leaking(self) -> bool:
        return bool(self.control.get("connection_leak"))

    async def _leak_one(self) -> None:
        """Hold a pool slot and a connection in an unfinished transaction while the fault is on."""
        async with self.db.slot():
            conn = await psycopg.AsyncConnection.connect(
                self.db.dsn, autocommit=False, application_name=self.db.application_name
            )
            self.db.in_use += 1
            try:
                await conn.execute("SELECT count(*) FROM strategies")  # opens the transaction
                while self._leaking():
                    await asyncio.sleep(LEAK_PROBE_S)
                    await conn.execute("SELECT 1")  # fails once the backend is terminated
            except psycopg.Error as e:
                log.warning("leaked connection ended: %s", str(e).splitlines()[0])
            finally:
                self.db.in_use -= 1
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
